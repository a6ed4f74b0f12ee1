"""Tool outputs in a chat, cut by their structure: which texts qualify, what share of the budget each gets, and
where the originals go.

A ``tool``/``function`` result, or an earlier user turn, whose whole text is JSON, a log, HTML or code (as
:func:`promptzip.compressors.tool_outputs.detect_kind` reads it) is not split into sentences: it is given a share of
the budget (together, the same rate as the rest of the context; among themselves half by size and half to the
ones holding what is most relevant to the question) and cut to it by its reducer
(relevant JSON items with a summary of the rest, error lines with their context, text without markup, signatures
with the relevant bodies). The reduced text is then kept byte for byte like any other protected part, unless it
is still over its share (a large module's signatures alone may be): a cut log, HTML page or module then becomes
context for the knapsack, which keeps its most relevant paragraphs (for code: its blank-line-separated blocks).
JSON never does (it must stay valid) and is kept as cut. A text no reducer could cut is read as before. Every original
that was cut is stored in the Zipper's cache under the expand id written into the cut text, so
``promptzip.expand(id)`` (proxy: ``GET /v1/promptzip/expand/{id}``) gives it back, in the caller's scope only.

Nothing changes for a request that fits its budget, and a text that is not structured, or is too short to be worth
it, keeps its current treatment (context as a whole for plain-text results, protected for JSON). A block of JSON, a
log or HTML pasted inside a message of words (the turn being answered too) is cut out of the message's layout
(:mod:`promptzip._structured_blocks`) and then shares the budget and is cut here like a whole tool output.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from promptzip._cache import Cache
from promptzip._errors import ConfigError
from promptzip._roles import Scorer
from promptzip._types import Chunk, ChunkResult, Source, Span

Relevance = Callable[[Sequence[str], str], Sequence[float]]

__all__ = [
    "MAX_SCORED",
    "MIN_STRUCTURED_CHARS",
    "MIN_TARGET",
    "Reduction",
    "cut_provenance",
    "reduce_texts",
    "scorer_relevance",
    "structured_kind",
]

MIN_STRUCTURED_CHARS = 1200  # about 300 tokens: below this a tool output is cheaper to keep than to summarise
MIN_TARGET = 48  # tokens: room for a JSON skeleton and its summary line, or a signature and a marker
_FULL = 0.8  # a cut that used this much of its share was short of room
MAX_SCORED = 256  # items per text scored by the compressor's scorer; more get lexical scores
_SCORED_CHARS = 2000  # of each item: a sentence encoder reads the start anyway
# A unit of a structured text (its provenance, its windows): a line, or in a long line (compact JSON) an item ending
# in "}," or "],"
_UNIT = re.compile(r"[^\n]*?(?:\n|[}\]],|$)")
_WINDOW_CHARS = 1000  # a window of a structured text scored for its share


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


def scorer_relevance(compressor: object) -> Relevance | None:
    """The compressor's own relevance scorer (the preset's hybrid MiniLM + BM25) as a reducer's relevance, for up
    to :data:`MAX_SCORED` items per text (more fall back to the reducers' lexical scores: an encoder pass over
    thousands of JSON items would cost more than the call saves); None when the compressor has no scorer."""
    scorer = getattr(compressor, "scorer", None)
    if not isinstance(scorer, Scorer):
        return None

    def relevance(texts: Sequence[str], query: str) -> Sequence[float]:
        if len(texts) > MAX_SCORED:
            from promptzip.compressors.tool_outputs import lexical_relevance

            return lexical_relevance(texts, query)
        return scorer.score([Chunk(t[:_SCORED_CHARS]) for t in texts], query)

    return relevance


def reduce_texts(
    texts: Sequence[str],
    *,
    available: int,
    other_context: int,
    question: str | None,
    count: Callable[[str], int],
    cache: Cache,
    scope: str,
    relevance: Relevance | None = None,
    questions: Sequence[str | None] | None = None,
) -> list[Reduction | None]:
    """Cut each structured text to its share of ``available`` tokens, shared in proportion with ``other_context``
    tokens of ordinary context; store each original that was cut. None where a text was left as it was.
    ``questions`` gives each text a question of its own (the question of its turn, where a conversation's history
    is compacted; default ``question`` for all); the shares then go by size alone, since scores against different
    questions do not compare."""
    from promptzip._expand import ExpandStore

    asked = list(questions) if questions is not None else [question] * len(texts)
    if len(asked) != len(texts):
        raise ConfigError(f"{len(asked)} questions for {len(texts)} texts")
    sizes = [count(t) for t in texts]
    total = sum(sizes) + other_context
    pool = available * sum(sizes) // max(total, 1)
    one = asked[0] if len(set(asked)) == 1 and asked else None
    targets = [max(MIN_TARGET, share) for share in _shares(texts, sizes, pool, one)]
    cuts = [
        _cut(t, size, target, q, count, relevance)
        for t, size, target, q in zip(texts, sizes, targets, asked, strict=True)
    ]
    # A reducer may need less than its share (a log that folds to a few lines): what it leaves goes, once, to the
    # texts that used all of theirs, in proportion to their size, so the budget is spent where it is short.
    used = sum(c.tokens_out if c is not None else size for c, size in zip(cuts, sizes, strict=True))
    slack = available - available * other_context // max(total, 1) - used
    short = [n for n, c in enumerate(cuts) if c is not None and c.tokens_out >= _FULL * targets[n]]
    if slack > 0 and short:
        weight = sum(sizes[n] for n in short)
        for n in short:
            done = cuts[n]
            assert done is not None
            more = done.tokens_out + slack * sizes[n] // weight
            cuts[n] = _cut(texts[n], sizes[n], more, asked[n], count, relevance) or done
    store = ExpandStore(cache)
    for text, cut in zip(texts, cuts, strict=True):
        if cut is not None:
            store.put(text, scope=scope)
    return cuts


def _shares(texts: Sequence[str], sizes: Sequence[int], pool: int, question: str | None) -> list[int]:
    """Each text's share of the ``pool`` tokens the structured texts get together: one half in proportion to its
    size, so every text keeps its skeleton, its summary and some of its items; the other half to the texts that hold
    the passages most relevant to the question (:data:`_WINDOW_CHARS` windows of every text scored in one lexical
    pass, taken best first until that half is spent), so that beside other tool results the one that answers is not
    cut to the same rate as those that do not. By size alone when there is one text, no question, or no window
    scores above another. Lexical, not the preset's scorer: a share needs only where the question's words are (each
    reducer still ranks its items with the scorer), and an encoder pass over every window of every tool output in
    a long agent loop cost more than half again the time of re-selecting it."""
    from promptzip.compressors.tool_outputs import lexical_relevance

    by_size = [pool * size // max(sum(sizes), 1) for size in sizes]
    if len(texts) < 2 or not question or not question.strip():
        return by_size
    windows = [(n, w) for n, text in enumerate(texts) for w in _windows(text)]
    scores = lexical_relevance([w for _, w in windows], question)
    if max(scores) <= min(scores):
        return by_size
    shares = [share // 2 for share in by_size]
    left = pool - sum(shares)
    for k in sorted(range(len(windows)), key=lambda k: (-scores[k], k)):
        if left <= 0:
            break
        n, window = windows[k]
        take = min(left, sizes[n] - shares[n], -(-sizes[n] * len(window) // max(len(texts[n]), 1)))
        if take <= 0:  # the text is whole already
            continue
        shares[n] += take
        left -= take
    return shares


def _windows(text: str) -> list[str]:
    """``text`` in runs of whole units (:func:`_units`: lines, or the items of a long line of compact JSON) of about
    :data:`_WINDOW_CHARS` characters."""
    out: list[str] = []
    run: list[str] = []
    size = 0
    for unit in _units(text):
        run.append(unit)
        size += len(unit)
        if size >= _WINDOW_CHARS:
            out.append("".join(run))
            run, size = [], 0
    if run:
        out.append("".join(run))
    return out


def _cut(
    text: str,
    size: int,
    target: int,
    question: str | None,
    count: Callable[[str], int],
    relevance: Relevance | None,
) -> Reduction | None:
    from promptzip._expand import expand_id
    from promptzip.compressors.tool_outputs import reduce_structured

    if size <= target:
        return None
    eid = expand_id(text)
    reduced = reduce_structured(
        text, query=question, target_tokens=target, count=count, relevance=relevance, expand_id=eid
    )
    if reduced is None or reduced.tokens >= size:
        return None
    return Reduction(reduced.text, reduced.kind, eid, size, reduced.tokens, target)


def cut_provenance(
    source_id: str, original: str, sent: str, kind: str, tokens: tuple[int, int]
) -> tuple[Source, ChunkResult]:
    """A cut text's original as a source of the Result, with one chunk (``reduce@<kind>``, ``text`` what went out)
    whose kept spans are the parts that went out verbatim: its units (lines; items in a long line of JSON) found in
    order in ``sent``. So :attr:`Result.dropped` and ``promptzip diff`` show what the reducer left out as they show
    what the knapsack dropped; a cut with no verbatim part (HTML become text) keeps nothing, and its text is shown
    as what the model got instead."""
    a, b = _units(original), _units(sent)
    starts = [0]
    for unit in a:
        starts.append(starts[-1] + len(unit))
    blocks = difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks()
    kept = tuple(Span(starts[i], starts[i + n]) for i, _, n in blocks if n)
    chunk = ChunkResult(source_id, 0, len(original), f"reduce@{kind}", tokens[0], tokens[1], kept, 0.0, text=sent)
    return Source(source_id, original), chunk


def _units(text: str) -> list[str]:
    return [m.group(0) for m in _UNIT.finditer(text) if m.group(0)]
