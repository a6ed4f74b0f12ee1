"""Chat messages and string prompts: compress the context wherever the application put it.

Every text of every message goes through :func:`promptzip._understand.understand`, which splits it into
instruction, context and question regions (by promptzip's tags, document tags, fences and headings, JSON, or the
layout of a long message). With ``scope="all"`` (the default) the context regions of all messages share one budget
and one knapsack, exactly as ``compress(chunks, query=question)`` would run on them; instruction, question, tool
calls, JSON tool results, code fences and non-text parts (images, audio) go out byte for byte. ``scope="history"``
compresses earlier turns only (system and developer messages and the last user turn stay whole). Earlier user and
assistant turns and plain-text tool results are context as a whole unless tags or headings mark their structure.
Tool results and earlier user turns that are wholly JSON, a log, HTML or code, and data blocks pasted inside a
system, developer or user message or a tool result, are cut by their structure (:mod:`promptzip._structured`); a
text cut around its blocks is several slots in a row, rebuilt as one.

The question that relevance is measured against is ``question=`` when given, else the question found in the last
user turn (its text after a ``Question:`` label, or the short request after its context, or the whole turn).

Tokens are counted with OpenAI's chat convention on the target tokenizer: each message costs its text plus
``role`` and ``name`` plus 3 tokens of framing, tool-call JSON is counted as serialized, and every reply is primed
with 3 tokens. The budget is verified on the rebuilt messages; :class:`BudgetError` is raised only when what is
kept verbatim alone exceeds it, and it names the message that holds the most of that.

A message whose text was all context and all of it dropped (an older assistant turn, say) keeps
:data:`MINIMAL_TEXT` (``"…"``) as its text instead of ``""``, which providers refuse; it is counted like any other
text, so the budget still holds. A message that keeps anything else (another text, an image, tool calls) is left
with the emptied text as ``""``: the proxy removes such blocks, and OpenAI accepts an empty text beside tool calls.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from promptzip._chat_format import (
    _STRUCTURED,
    PER_MESSAGE,
    REPLY_PRIMING,
    ROLES,
    _framing_text,
    chat_text,
    message_tokens,
    validate_messages,
)
from promptzip._errors import BudgetError, InputError
from promptzip._inputs import check_text
from promptzip._message_plan import Slot, layout_of, plan, question_in, question_of, region_ids, slot_id, whole
from promptzip._structured import cut_provenance, reduce_texts, scorer_relevance
from promptzip._types import Budget, Result, Source
from promptzip._understand import Layout, Region, understand

if TYPE_CHECKING:
    from promptzip._pipeline import Zipper

__all__ = [
    "MINIMAL_TEXT",
    "ROLES",
    "SCOPES",
    "chat_text",
    "check_question",
    "check_scope",
    "compress_messages",
    "compress_prompt",
    "message_tokens",
    "question_of",
    "validate_messages",
]

SCOPES = ("all", "history")
MINIMAL_TEXT = "…"  # the text of a message whose context all went; the proxy's dialects use the same


def check_scope(scope: object) -> str:
    if not isinstance(scope, str) or scope not in SCOPES:
        raise InputError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    return scope


def check_question(question: object) -> str | None:
    """A caller's ``question=``: None, or a str (UTF-8 bytes too) that is checked as text; blank is None."""
    if question is None:
        return None
    return check_text(question, "question", allow_empty=True, allow_nul=True).strip() or None


def compress_messages(
    zipper: Zipper,
    messages: Sequence[Mapping[str, Any]],
    spec: Budget,
    *,
    question: str | None = None,
    scope: str = "all",
    frozen: int = 0,
    partition: str = "",
    questions: Mapping[int, str] | None = None,
) -> Result:
    """Compress a chat (module docstring). The first ``frozen`` messages were sent before as they are now (a cached
    prefix, :mod:`promptzip._conversation`): they go out byte for byte and only count against the budget. Originals
    of structured tool outputs that were cut are stored for ``promptzip.expand`` under ``partition``. ``questions``
    gives the context of a message (by index) a question of its own to be scored against (the question of its turn,
    where a conversation's history is compacted), and its structured tool outputs one to be cut for."""
    msgs = validate_messages(messages)
    slots = plan(msgs, check_scope(scope), frozen)
    count = zipper.tokenizer.count
    question = check_question(question) or question_in(slots, msgs)
    if question is not None:  # only scored against, never sent: a NUL in the turn (a pasted file) is a blank there
        question = question.replace("\x00", " ").strip() or None
    own = {k: v.replace("\x00", " ") for k, v in (questions or {}).items()}
    framing = [PER_MESSAGE + count(_framing_text(m)) for m in msgs]
    if any(s.kind for s in slots):
        slots = _cut_structured(zipper, msgs, slots, spec, question, framing, partition, own)

    def total(texts: list[str]) -> int:
        return message_tokens(_rebuild(msgs, slots, texts), count)

    def finish(texts: list[str]) -> list[str]:
        return _keep_minimal(msgs, slots, texts)

    def describe(slot: Slot) -> str:
        return f"messages[{slot.msg}] ({msgs[slot.msg].get('role')})"

    fixed_by_message = [framing[i] for i in range(len(msgs))]
    for slot in slots:
        fixed_by_message[slot.msg] += count(slot.layout.fixed_text())
    worst = max(range(len(msgs)), key=lambda i: fixed_by_message[i])
    texts, inner, tokens_in, tokens_out, limit = _squeeze(
        zipper,
        slots,
        spec,
        question,
        total=total,
        fixed=REPLY_PRIMING + sum(fixed_by_message),
        largest=(f"messages[{worst}] ({msgs[worst].get('role')})", fixed_by_message[worst]),
        finish=finish,
        queries={sid: own[s.msg] for s in slots if s.msg in own for sid in s.ids.values()},
    )
    return _result(zipper, inner, slots, texts, tokens_in, tokens_out, limit, messages=_rebuild(msgs, slots, texts))


def compress_prompt(zipper: Zipper, prompt: object, spec: Budget, *, question: str | None = None) -> Result:
    """A string prompt (a rendered template): its context regions shrink, everything else stays byte for byte.
    A prompt in which no context region is found is compressed as one block of context (``Zipper.compress``)."""
    text = check_text(prompt, "prompt")
    question = check_question(question)
    layout = understand(text, role="user", last_user=True)
    if not layout.context:
        layout = _one_block(layout)
    slot = Slot(-1, None, layout, dict.fromkeys(layout.context, "prompt"))
    if len(layout.context) > 1:
        slot = Slot(-1, None, layout, {k: f"prompt#{n}" for n, k in enumerate(layout.context)})
    count = zipper.tokenizer.count
    texts, inner, tokens_in, tokens_out, limit = _squeeze(
        zipper,
        [slot],
        spec,
        question or layout.question,
        total=lambda t: count(t[0]),
        fixed=count(layout.fixed_text()),
        largest=("the prompt", count(layout.fixed_text())),
    )
    result = _result(zipper, inner, [slot], texts, tokens_in, tokens_out, limit, messages=None)
    return replace(result, text=texts[0])


def _one_block(layout: Layout) -> Layout:
    """A prompt in which no context region was found, as one block of context; in a raw prompt of a chat template,
    the turns read whole are that block, and the template's markers and instructions stay as they are."""
    if not any(r.rule == "template" for r in layout.regions):
        return Layout(layout.text, (Region("context", 0, len(layout.text), "whole"),))
    regions = tuple(replace(r, kind="context") if r.rule == "whole" else r for r in layout.regions)
    return Layout(layout.text, regions, layout.elements)


def _squeeze(
    zipper: Zipper,
    slots: list[Slot],
    spec: Budget,
    question: str | None,
    *,
    total: Callable[[list[str]], int],
    fixed: int,
    largest: tuple[str, int],
    finish: Callable[[list[str]], list[str]] = list,
    queries: Mapping[str, str] | None = None,
) -> tuple[list[str], Result | None, int, int, int]:
    """Fit the request: the context regions of all slots compressed together, then the request re-counted and the
    inner budget tightened until it fits. ``finish`` completes the slots' rebuilt texts before they are counted.
    Returns the slots' texts, the inner result (None: nothing to compress), tokens in and out, and the limit."""
    originals = [s.source_text for s in slots]
    tokens_in = total(originals)
    limit = spec.resolve(tokens_in)
    if limit <= 0:
        raise BudgetError(f"the budget resolves to {limit} tokens for {tokens_in} input tokens", budget=limit)
    sources = [
        Source(sid, s.layout.text[s.layout.regions[k].start : s.layout.regions[k].end])
        for s in slots
        for k, sid in s.ids.items()
    ]
    if tokens_in <= limit:
        return originals, None, tokens_in, tokens_in, limit
    if not sources and fixed <= limit:  # nothing left to select from: cut tool outputs alone may make it fit
        texts = finish([s.layout.text for s in slots])
        if (tokens_out := total(texts)) <= limit:
            return texts, None, tokens_in, tokens_out, limit
    if not sources or fixed > limit:
        where, tokens = largest
        raise BudgetError(
            f"the parts kept verbatim (instruction, question, protected) need {fixed} tokens but the budget is "
            f"{limit}; {where} holds {tokens} of them",
            budget=limit,
            required=fixed,
        )
    overhead = {s.ids[k]: n for s in slots for k, n in s.layout.overhead(zipper.tokenizer.count).items() if k in s.ids}
    extra_in = tokens_in - zipper.tokenizer.count(zipper.assemble(*(s.text for s in sources)))
    inner_limit = limit
    while True:
        inner = zipper.compress_sources(
            sources,
            budget=max(1, inner_limit),
            query=question,
            reserved=fixed,
            extra_input_tokens=extra_in,
            tags=overhead,
            queries=queries,
        )
        texts = finish([_fill(s, inner.outputs) for s in slots])
        tokens_out = total(texts)
        if tokens_out <= limit:
            return texts, inner, tokens_in, tokens_out, limit
        if inner_limit <= fixed + 1:
            raise BudgetError(f"the request does not fit in {limit} tokens", budget=limit, required=tokens_out)
        inner_limit = max(fixed + 1, inner_limit - (tokens_out - limit))


def _cut_structured(
    zipper: Zipper,
    msgs: list[Mapping[str, Any]],
    slots: list[Slot],
    spec: Budget,
    question: str | None,
    framing: list[int],
    partition: str,
    own: Mapping[int, str],
) -> list[Slot]:
    """The slots with each structured tool output cut to its share of the budget (:mod:`promptzip._structured`),
    when the request does not fit whole; each against its message's own question where ``own`` gives one."""
    count = zipper.tokenizer.count
    tokens_in = message_tokens(msgs, count)
    limit = spec.resolve(tokens_in)
    if tokens_in <= limit or limit <= 0:
        return slots
    plain = [s for s in slots if not s.kind]
    other = sum(count(s.layout.text[s.layout.regions[k].start : s.layout.regions[k].end]) for s in plain for k in s.ids)
    fixed = REPLY_PRIMING + sum(framing) + sum(count(s.layout.fixed_text()) for s in plain)
    structured = [n for n, s in enumerate(slots) if s.kind]
    cuts = reduce_texts(
        [slots[n].layout.text for n in structured],
        available=max(0, limit - fixed),
        other_context=other,
        question=question,
        count=count,
        cache=zipper.cache,
        scope=partition,
        relevance=scorer_relevance(zipper.compressor),
        questions=[own.get(slots[n].msg, question) for n in structured],
    )
    last_user = max((i for i, m in enumerate(msgs) if m.get("role") == "user"), default=-1)
    out = list(slots)
    for n, cut in zip(structured, cuts, strict=True):
        slot, text = slots[n], slots[n].layout.text
        tokens = (cut.tokens_in, cut.tokens_out) if cut is not None else (0, 0)
        if cut is None and slot.block:  # a block that fits its share, or that no reducer could cut: as it was
            continue
        if cut is None:  # no reducer could cut it: it is read as before, by request understanding
            role = str(msgs[slot.msg].get("role"))
            layout = layout_of(text, role, last_user=slot.msg == last_user, scope="all")
            out[n] = replace(slot, layout=layout, ids=region_ids(slot, layout), kind=None)
        elif cut.over and cut.kind != "json":  # still over its share: the knapsack cuts it further, by paragraph
            layout = Layout(cut.text, (Region("context", 0, len(cut.text), "whole"),))
            out[n] = replace(slot, layout=layout, ids=region_ids(slot, layout), original=text, tokens_cut=tokens)
        else:
            out[n] = replace(slot, layout=whole(cut.text, "protected"), original=text, tokens_cut=tokens)
    return out


def _keep_minimal(msgs: list[Mapping[str, Any]], slots: list[Slot], texts: list[str]) -> list[str]:
    """``texts`` with :data:`MINIMAL_TEXT` in the first text of each message that had text, lost all of it, and
    holds nothing else (no other part, no tool calls): providers refuse a message with empty content."""
    out = list(texts)
    by_message: dict[int, list[int]] = {}
    for n, slot in enumerate(slots):
        by_message.setdefault(slot.msg, []).append(n)
    for i, ns in by_message.items():
        if any(out[n].strip() for n in ns) or not any(slots[n].layout.text.strip() for n in ns):
            continue
        content = msgs[i].get("content")
        others = isinstance(content, list) and any(p.get("type") != "text" for p in content)
        if not others and not any(msgs[i].get(k) for k in _STRUCTURED):
            out[ns[0]] = MINIMAL_TEXT
    return out


def _fill(slot: Slot, outputs: Mapping[str, str]) -> str:
    return slot.layout.rebuild({k: outputs.get(sid, "") for k, sid in slot.ids.items()})


def _rebuild(msgs: list[Mapping[str, Any]], slots: list[Slot], texts: list[str]) -> list[dict[str, Any]]:
    out = [copy.deepcopy(dict(m)) for m in msgs]
    # a text cut around its data blocks is several slots in a row: the text is theirs joined
    for (i, where), group in itertools.groupby(zip(slots, texts, strict=True), key=lambda st: (st[0].msg, st[0].where)):
        pieces = list(group)
        text = "".join(t for _, t in pieces)
        if text == "".join(slot.source_text for slot, _ in pieces):
            continue
        if where is None:
            out[i]["content"] = text
        else:
            out[i]["content"][where]["text"] = text
    return out


def _result(
    zipper: Zipper,
    inner: Result | None,
    slots: list[Slot],
    texts: list[str],
    tokens_in: int,
    tokens_out: int,
    limit: int,
    *,
    messages: list[dict[str, Any]] | None,
) -> Result:
    reduced = [s for s in slots if s.original is not None and s.original != s.layout.text]
    cut = len(reduced)
    # what each reducer left out, as a source of its own (its id the slot's, or ``:original`` where the cut text is
    # itself a source the knapsack cut further)
    provenance = [
        cut_provenance(
            slot_id(s) + (":original" if s.ids else ""), s.source_text, s.layout.text, s.kind or "", s.tokens_cut
        )
        for s in reduced
    ]
    regions = sum(len(s.ids) for s in slots) + cut
    outputs = dict(inner.outputs) if inner is not None else {}
    shrunk = sum(
        1
        for s in slots
        for k, sid in s.ids.items()
        if sid in outputs and outputs[sid] != s.layout.text[s.layout.regions[k].start : s.layout.regions[k].end]
    )
    # Result.text is what the model reads, as for compress and compress_prompt: here the chat's texts in order.
    sent = chat_text(messages) if messages is not None else (inner.context if inner is not None else "")
    return Result(
        text=sent,
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        budget=limit,
        chunks=(*(inner.chunks if inner is not None else ()), *(c for _, c in provenance)),
        context=inner.context if inner is not None else "",
        decision=_decision(inner, cut),
        timings=inner.timings if inner is not None else {},
        fingerprint=zipper.fingerprint,
        sources=(*(inner.sources if inner is not None else ()), *(s for s, _ in provenance)),
        messages=tuple(messages) if messages is not None else None,
        outputs=outputs,
        regions=regions,
        regions_compressed=shrunk + cut,
    )


def _decision(inner: Result | None, cut: int) -> str:
    """The inner compression's decision; a request whose tool outputs were cut was compressed, whatever the rest."""
    decision = inner.decision if inner is not None else "kept_all"
    return "compressed" if cut and decision == "kept_all" else decision
