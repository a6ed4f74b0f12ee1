"""Tool outputs in a chat, cut by their structure: which texts qualify, what share of the budget each gets, and
where the originals go.

A ``tool``/``function`` result, or an earlier user turn, whose whole text is JSON, a log, HTML or code (as
:func:`promptzip.compressors.tool_outputs.detect_kind` reads it) is not split into sentences: it is given a share of
the budget in proportion to its tokens (the same rate as the rest of the context) and cut to it by its reducer
(relevant JSON items with a summary of the rest, error lines with their context, text without markup, signatures
with the relevant bodies). The reduced text is then kept byte for byte like any other protected part, unless it
is still over its share (a large module's signatures alone may be): a cut log, HTML page or module then becomes
context for the knapsack, which keeps its most relevant paragraphs (for code: its blank-line-separated blocks).
JSON never does (it must stay valid) and is kept as cut. A text no reducer could cut is read as before. Every original
that was cut is stored in the Zipper's cache under the expand id written into the cut text, so
``promptzip.expand(id)`` (proxy: ``GET /v1/promptzip/expand/{id}``) gives it back, in the caller's scope only.

Nothing changes for a request that fits its budget, and a text that is not structured, or is too short to be worth
it, keeps its current treatment (context as a whole for plain-text results, protected for JSON).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from promptzip._cache import Cache

__all__ = ["MIN_STRUCTURED_CHARS", "MIN_TARGET", "Reduction", "reduce_texts", "structured_kind"]

MIN_STRUCTURED_CHARS = 1200  # about 300 tokens: below this a tool output is cheaper to keep than to summarise
MIN_TARGET = 48  # tokens: room for a JSON skeleton and its summary line, or a signature and a marker
_FULL = 0.8  # a cut that used this much of its share was short of room


@dataclass(frozen=True, slots=True)
class Reduction:
    """One structured text cut to its share: the new text, its kind and the expand id of the original."""

    text: str
    kind: str
    expand_id: str
    tokens_in: int
    tokens_out: int
    target: int  # the share it was cut for; a reducer's skeleton (signatures, say) may need more

    @property
    def over(self) -> bool:
        """Whether the cut is still over its share: the caller then lets the knapsack cut it further."""
        return self.tokens_out > self.target


def structured_kind(text: str, role: str, *, last_user: bool) -> str | None:
    """The reducer kind of a chat text, or None: tool results and earlier user turns that are wholly JSON, a log,
    HTML or code, and long enough (:data:`MIN_STRUCTURED_CHARS`)."""
    if len(text) < MIN_STRUCTURED_CHARS or not (role in ("tool", "function") or (role == "user" and not last_user)):
        return None
    from promptzip.compressors.tool_outputs import detect_kind

    return detect_kind(text)


def reduce_texts(
    texts: Sequence[str],
    *,
    available: int,
    other_context: int,
    question: str | None,
    count: Callable[[str], int],
    cache: Cache,
    scope: str,
) -> list[Reduction | None]:
    """Cut each structured text to its share of ``available`` tokens, shared in proportion with ``other_context``
    tokens of ordinary context; store each original that was cut. None where a text was left as it was."""
    from promptzip._expand import ExpandStore

    sizes = [count(t) for t in texts]
    total = sum(sizes) + other_context
    targets = [max(MIN_TARGET, available * size // max(total, 1)) for size in sizes]
    cuts = [_cut(t, size, target, question, count) for t, size, target in zip(texts, sizes, targets, strict=True)]
    # A reducer may need less than its share (a log that folds to a few lines): what it leaves goes, once, to the
    # texts that used all of theirs, in proportion to their size, so the budget is spent where it is short.
    used = sum(c.tokens_out if c is not None else size for c, size in zip(cuts, sizes, strict=True))
    slack = available - available * other_context // max(total, 1) - used
    short = [n for n, c in enumerate(cuts) if c is not None and c.tokens_out >= _FULL * targets[n]]
    if slack > 0 and short:
        weight = sum(sizes[n] for n in short)
        for n in short:
            more = targets[n] + slack * sizes[n] // weight
            cuts[n] = _cut(texts[n], sizes[n], more, question, count) or cuts[n]
    store = ExpandStore(cache)
    for text, cut in zip(texts, cuts, strict=True):
        if cut is not None:
            store.put(text, scope=scope)
    return cuts


def _cut(text: str, size: int, target: int, question: str | None, count: Callable[[str], int]) -> Reduction | None:
    from promptzip._expand import expand_id
    from promptzip.compressors.tool_outputs import reduce_structured

    if size <= target:
        return None
    eid = expand_id(text)
    reduced = reduce_structured(text, query=question, target_tokens=target, count=count, expand_id=eid)
    if reduced is None or reduced.tokens >= size:
        return None
    return Reduction(reduced.text, reduced.kind, eid, size, reduced.tokens, target)
