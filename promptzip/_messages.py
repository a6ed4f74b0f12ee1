"""Chat messages: compress older turns, protect what the model must see verbatim.

Protected by default: ``system``/``developer`` messages, the last ``user`` turn (it is also the question that
relevance is measured against), ``tool_calls``/``function_call`` JSON, and every non-text content part (images,
audio). Compressible: the text of earlier user and assistant turns and tool results.

Tokens are counted with OpenAI's chat convention on the target tokenizer: each message costs its text plus
``role`` and ``name`` plus 3 tokens of framing, tool-call JSON is counted as serialized, and every reply is primed
with 3 tokens.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from promptzip._errors import BudgetError, InputError
from promptzip._inputs import check_text
from promptzip._types import Budget, Result, Source

if TYPE_CHECKING:
    from promptzip._pipeline import Zipper

__all__ = ["ROLES", "compress_messages", "message_tokens"]

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
PER_MESSAGE = 3
REPLY_PRIMING = 3
_STRUCTURED = ("tool_calls", "function_call", "audio", "refusal")


def _validate(messages: object) -> list[Mapping[str, Any]]:
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
        raise InputError("messages must be a list of {'role': ..., 'content': ...} objects")
    if not messages:
        raise InputError("messages is empty")
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise InputError(f"messages[{i}] must be an object, not {type(m).__name__}")
        role = m.get("role")
        if role not in ROLES:
            raise InputError(f"messages[{i}] has an unknown role {role!r}; use one of {', '.join(sorted(ROLES))}")
        content = m.get("content")
        if content is None:
            if not any(m.get(k) for k in _STRUCTURED):
                raise InputError(f"messages[{i}] has no content")
        elif isinstance(content, list):
            for j, part in enumerate(content):
                if not isinstance(part, Mapping) or not isinstance(part.get("type"), str):
                    raise InputError(f"messages[{i}].content[{j}] must be an object with a 'type'")
                if part["type"] == "text":
                    check_text(part.get("text"), f"messages[{i}].content[{j}].text", allow_empty=True)
        else:
            check_text(content, f"messages[{i}].content", allow_empty=True)
    return list(messages)


def _texts(m: Mapping[str, Any]) -> list[tuple[Any, str]]:
    """(location, text) of each text piece of a message: None for a str content, the part index otherwise."""
    content = m.get("content")
    if isinstance(content, str):
        return [(None, content)]
    if isinstance(content, list):
        return [(j, str(p.get("text", ""))) for j, p in enumerate(content) if p.get("type") == "text"]
    return []


def _framing_text(m: Mapping[str, Any]) -> str:
    extra = [str(m.get("role", "")), str(m.get("name") or "")]
    extra += [json.dumps(m[k], ensure_ascii=False, sort_keys=True) for k in _STRUCTURED if m.get(k)]
    return " ".join(e for e in extra if e)


def message_tokens(messages: Sequence[Mapping[str, Any]], count: Any) -> int:
    """Tokens of a chat in OpenAI's convention, with ``count`` the target tokenizer's counter."""
    total = REPLY_PRIMING
    for m in messages:
        total += PER_MESSAGE + count(_framing_text(m)) + sum(count(t) for _, t in _texts(m))
    return total


def compress_messages(
    zipper: Zipper, messages: Sequence[Mapping[str, Any]], spec: Budget, *, question: str | None = None
) -> Result:
    msgs = _validate(messages)
    count = zipper.tokenizer.count
    last_user = max((i for i, m in enumerate(msgs) if m.get("role") == "user"), default=-1)
    if question is None and last_user >= 0:
        question = " ".join(t for _, t in _texts(msgs[last_user])).strip() or None

    compressible: list[tuple[int, Any, str]] = []
    fixed = REPLY_PRIMING
    for i, m in enumerate(msgs):
        fixed += PER_MESSAGE + count(_framing_text(m))
        protected = m.get("role") in ("system", "developer") or i == last_user
        for where, text in _texts(m):
            if protected or not text.strip():
                fixed += count(text)
            else:
                compressible.append((i, where, text))
    tokens_in = message_tokens(msgs, count)
    limit = spec.resolve(tokens_in)
    if tokens_in <= limit:
        compressible = []  # it already fits: the chat goes out exactly as it came in
    if not compressible:
        out = [copy.deepcopy(dict(m)) for m in msgs]
        if tokens_in > limit:
            raise BudgetError(
                f"the protected messages need {tokens_in} tokens but the budget is {limit}",
                budget=limit,
                required=tokens_in,
            )
        return Result(
            text="",
            tokens_in=tokens_in,
            tokens_out=tokens_in,
            budget=limit,
            chunks=(),
            decision="kept_all",
            fingerprint=zipper.fingerprint,
            messages=tuple(out),
        )
    # Each compressible text piece is a source; the joined context must fit what the fixed parts leave. The
    # messages are re-counted at the end and the inner budget tightened until the whole chat fits.
    ids = [f"messages[{i}]" + (f".content[{w}]" if w is not None else "") for i, w, _ in compressible]
    texts = dict(zip(ids, (t for _, _, t in compressible), strict=True))
    sources = [(Source(sid, text), 0) for sid, text in texts.items()]
    extra_in = tokens_in - zipper.tokenizer.count(zipper.assemble(*texts.values()))
    inner_limit = limit
    while True:
        inner = zipper._run(
            sources,
            None,
            None,
            Budget(tokens=max(1, inner_limit)),
            "original",
            extra_fixed=fixed,
            tokens_in_extra=extra_in,
            query=question,
        )
        out = _rebuild(msgs, compressible, ids, texts, inner)
        tokens_out = message_tokens(out, count)
        if tokens_out <= limit:
            break
        inner_limit -= tokens_out - limit
    return Result(
        text=inner.context,
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        budget=limit,
        chunks=inner.chunks,
        context=inner.context,
        decision=inner.decision,
        timings=inner.timings,
        fingerprint=zipper.fingerprint,
        sources=inner.sources,
        messages=tuple(out),
    )


def _rebuild(
    msgs: list[Mapping[str, Any]],
    compressible: list[tuple[int, Any, str]],
    ids: list[str],
    texts: dict[str, str],
    inner: Result,
) -> list[dict[str, Any]]:
    out = [copy.deepcopy(dict(m)) for m in msgs]
    pieces: dict[str, list[tuple[int, str]]] = {sid: [] for sid in ids}
    for chunk_result in inner.chunks:
        text = texts[chunk_result.source_id]
        pieces[chunk_result.source_id].extend((s.start, text[s.start : s.end]) for s in chunk_result.kept)
    for sid, (i, where, _) in zip(ids, compressible, strict=True):
        kept = " ".join(text for _, text in sorted(pieces[sid]))
        if where is None:
            out[i]["content"] = kept
        else:
            out[i]["content"][where]["text"] = kept
    return out
