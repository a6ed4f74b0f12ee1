"""Value types that flow through the pipeline. All frozen and slotted; numbers stay numbers."""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any

from promptzip._errors import BudgetError, InputError

__all__ = ["Budget", "Chunk", "ChunkResult", "Dropped", "Result", "Source", "Span", "TokenScores", "Variant"]


@dataclass(frozen=True, slots=True)
class Span:
    """A half-open range ``[start, end)`` of characters in a source text."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not _is_int(self.start) or not _is_int(self.end):
            raise InputError(f"Span offsets must be ints, got [{self.start!r}, {self.end!r})")
        if self.start < 0 or self.end < self.start:
            raise InputError(f"invalid span [{self.start}, {self.end})")

    def __len__(self) -> int:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class Source:
    """One original input text, kept so the uncompressed original is always recoverable. A ``protected`` source
    (a ``Chunk(protected=True)`` given as context) is kept whole, never shortened or dropped. In a source with
    ``lenient_tags`` (a ``Chunk`` whose metadata says ``{"lenient_tags": True}``: a retrieved document, whose text
    nobody wrote for promptzip), a text whose ``<pz>`` tags do not parse is read as having none (they are its own
    words, cut like the rest of it) rather than an InputError that fails the whole call; well-formed tags are
    still honoured."""

    id: str
    text: str
    protected: bool = False
    lenient_tags: bool = False


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of a source text: ``text == source[start:end]``.

    ``protected`` chunks are never shortened or dropped (code fences, ``<pz keep>`` regions, tool-call JSON).
    """

    text: str
    source_id: str = "0"
    start: int = 0
    end: int = -1
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    protected: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise InputError(f"Chunk.text must be str, not {type(self.text).__name__}")
        if not isinstance(self.source_id, str):
            raise InputError(f"Chunk.source_id must be str, not {type(self.source_id).__name__}")
        if not _is_int(self.start) or not _is_int(self.end):
            raise InputError(f"Chunk offsets must be ints, got start={self.start!r}, end={self.end!r}")
        if self.end == -1:
            object.__setattr__(self, "end", self.start + len(self.text))
        if self.start < 0 or self.end - self.start != len(self.text):
            raise InputError(f"Chunk offsets [{self.start}, {self.end}) do not match a text of length {len(self.text)}")

    @property
    def span(self) -> Span:
        return Span(self.start, self.end)


@dataclass(frozen=True, slots=True, kw_only=True)
class Budget:
    """How much context to keep: exactly one of ``tokens`` (a hard cap on the output, in the target model's
    tokens) or ``rate`` (the kept fraction of the input's tokens, LLMLingua's convention).

    >>> Budget(tokens=800).resolve(10_000)
    800
    >>> Budget(rate=0.25).resolve(10_000)
    2500
    """

    tokens: int | None = None
    rate: float | None = None

    def __post_init__(self) -> None:
        if (self.tokens is None) == (self.rate is None):
            raise BudgetError("give exactly one of Budget(tokens=...) or Budget(rate=...)")
        if self.tokens is not None:
            if not _is_int(self.tokens):
                raise BudgetError(f"Budget.tokens must be an int, not {type(self.tokens).__name__}")
            object.__setattr__(self, "tokens", int(self.tokens))  # numpy's integers become ints
            if self.tokens <= 0:
                raise BudgetError(f"Budget.tokens must be positive, got {self.tokens}", budget=self.tokens)
        if self.rate is not None:
            rate: object = self.rate  # typed float, but any real number may come (numpy's np.float32 is no float)
            if isinstance(rate, bool) or not isinstance(rate, Real):
                raise BudgetError(f"Budget.rate must be a number, not {type(rate).__name__}")
            # NaN fails it too; checked before float(), which overflows on a huge int
            if not 0 < rate <= 1:  # type: ignore[operator]
                raise BudgetError(f"Budget.rate is the kept fraction and must be in (0, 1], got {rate}")
            object.__setattr__(self, "rate", float(rate))

    @classmethod
    def coerce(cls, value: Budget | int | float | None = None, *, rate: float | None = None) -> Budget:
        """Accept a ``Budget`` or an int number of tokens as ``value``, or the kept fraction as ``rate``. A float
        ``value`` is an error that gives the right spelling: ``budget=1`` and ``budget=1.0`` must not mean one token
        and everything."""
        if isinstance(value, Budget):
            if rate is not None:
                raise BudgetError("give either budget= or rate=, not both")
            return value
        if value is None:
            if rate is None:
                raise BudgetError("a budget is required: budget=Budget(tokens=N) or Budget(rate=r)")
            return cls(rate=rate)
        if rate is not None:
            raise BudgetError("give either budget= or rate=, not both")
        if isinstance(value, bool):
            raise BudgetError("a budget cannot be a bool")
        if _is_int(value):
            return cls(tokens=int(value))
        if isinstance(value, float):
            tokens = value > 1 and math.isfinite(value)  # int(inf) would raise OverflowError
            spelling = f"rate={value!r}" if 0.0 < value <= 1.0 else f"budget={int(value)}" if tokens else None
            hint = f"; did you mean {spelling}?" if spelling else ""
            raise BudgetError(f"budget={value!r} is a float: a budget is an int number of tokens{hint}")
        raise BudgetError(f"cannot use {type(value).__name__} as a budget")

    def resolve(self, tokens_in: int) -> int:
        """The cap in tokens for an input of ``tokens_in`` tokens."""
        if self.tokens is not None:
            return self.tokens
        assert self.rate is not None  # guaranteed by __post_init__
        return math.floor(self.rate * tokens_in)


@dataclass(frozen=True, slots=True, eq=False)
class TokenScores:
    """Per-word keep scores of one text: word ``i`` is ``text[starts[i]:ends[i]]`` with score ``scores[i]``."""

    text: str
    starts: tuple[int, ...]
    ends: tuple[int, ...]
    scores: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Variant:
    """One way to include a chunk: its text, exact token cost, estimated utility and kept source spans."""

    chunk: Chunk
    kind: str
    text: str
    tokens: int
    utility: float
    kept: tuple[Span, ...] = ()
    relevance: float = 0.0

    @property
    def is_empty(self) -> bool:
        return not self.text


@dataclass(frozen=True, slots=True)
class ChunkResult:
    """Provenance of one chunk: which spans of which source survived, and at what cost."""

    source_id: str
    start: int
    end: int
    kind: str
    tokens_in: int
    tokens_out: int
    kept: tuple[Span, ...]
    relevance: float
    protected: bool = False
    text: str = ""  # the chosen variant's text as it appears in the output ("" when dropped)


@dataclass(frozen=True, slots=True)
class Dropped:
    """A span of a source that reached the model in no verbatim form: ``text == source[start:end]`` (offsets in the
    same coordinates as ``ChunkResult.kept``)."""

    source_id: str
    start: int
    end: int
    text: str


def _is_int(value: object) -> bool:
    """An int offset (numpy's integers too), not a bool; the common case costs one type check."""
    return type(value) is int or (isinstance(value, Integral) and not isinstance(value, bool))


_PREVIEW = 60  # characters of Result.text that its repr shows


@dataclass(frozen=True, slots=True)
class Result:
    """What a compression returns.

    ``text`` is what the model reads, whichever call made it: the assembled prompt (instruction, compressed context,
    question) for ``compress``, the prompt with its context replaced for ``compress_prompt``, and the compressed
    chat's texts in order (joined by blank lines) for ``compress_messages``, whose ``messages`` is the chat to send.
    ``context`` is the compressed context alone. ``ratio`` is the compression factor ``tokens_in / tokens_out``
    (``inf`` when nothing is left); ``rate`` is its inverse, the kept fraction. ``decision`` is ``"compressed"``,
    ``"kept_all"`` or ``"no_relevant_context"`` (selective augmentation: nothing was relevant enough to send).

    ``outputs`` maps each source id to that source's output text (its kept variants joined in source order, ""
    when nothing of it was kept), so an integration rebuilds its own shape from it. ``regions`` counts the context
    regions that request understanding found (chat messages and string prompts), ``regions_compressed`` those that
    came out shorter than they went in. ``reused_messages`` counts the leading messages of a chat sent byte for
    byte as in an earlier request of the same conversation (cache-stable history, :mod:`promptzip._conversation`).
    ``dropped`` lists the spans of the sources that the model did not get verbatim (what ``promptzip diff`` marks).
    """

    text: str
    tokens_in: int
    tokens_out: int
    budget: int
    chunks: tuple[ChunkResult, ...]
    context: str = ""
    decision: str = "compressed"
    timings: Mapping[str, float] = field(default_factory=dict, compare=False, hash=False)
    fingerprint: str = ""
    sources: tuple[Source, ...] = field(default=(), repr=False)
    messages: tuple[Mapping[str, Any], ...] | None = field(default=None, repr=False)
    outputs: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False, repr=False)
    regions: int = 0
    regions_compressed: int = 0
    reused_messages: int = 0

    def __repr__(self) -> str:
        # The generated repr printed every chunk and the whole text (~10k characters for one article); this one
        # fits a line: the numbers, the decision, how many chunks (and messages), and the start of the text.
        preview = self.text if len(self.text) <= _PREVIEW else self.text[: _PREVIEW - 1] + "…"
        messages = f", messages={len(self.messages)}" if self.messages is not None else ""
        return (
            f"Result(tokens_in={self.tokens_in}, tokens_out={self.tokens_out}, budget={self.budget}, "
            f"ratio={self.ratio:.1f}, decision={self.decision!r}, chunks={len(self.chunks)}{messages}, "
            f"text={preview!r} ({len(self.text)} chars))"
        )

    @property
    def ratio(self) -> float:
        return self.tokens_in / self.tokens_out if self.tokens_out else math.inf

    @property
    def rate(self) -> float:
        return self.tokens_out / self.tokens_in if self.tokens_in else 1.0

    @property
    def dropped(self) -> tuple[Dropped, ...]:
        """What the model did not get, verbatim: for each source that is not protected, the maximal spans that no
        chunk kept (``ChunkResult.kept``), in source order, trimmed of whitespace; gaps of whitespace alone are left
        out, and so are ``<pz>`` tags (markup for promptzip, removed from every output), at which a span ends.

        Every other character of a source is kept verbatim or is whitespace or markup. A chunk that was summarized
        (``summary@…``: its text is a rewrite, with no kept spans) counts as dropped: its words did not reach the
        model, only a summary did, which ``ChunkResult.text`` holds. Protected sources are kept whole and have no
        dropped spans.
        """
        out: list[Dropped] = []
        for source, offset, chunks in source_chunks(self.sources, self.chunks):
            if source.protected:
                continue
            size = len(source.text)
            kept = sorted((max(0, s.start - offset), min(size, s.end - offset)) for c in chunks for s in c.kept)
            pos = 0
            gaps: list[tuple[int, int]] = []
            for a, b in kept:
                if a > pos:
                    gaps.append((pos, a))
                pos = max(pos, b)
            if pos < size:
                gaps.append((pos, size))
            for a, b in _content(source.text, gaps):
                out.append(Dropped(source.id, a + offset, b + offset, source.text[a:b]))
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (used by the CLI's ``--json`` and the proxy's headers)."""
        return {
            "text": self.text,
            "context": self.context,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "budget": self.budget,
            "ratio": self.ratio if self.tokens_out else None,
            "decision": self.decision,
            "regions": self.regions,
            "regions_compressed": self.regions_compressed,
            "reused_messages": self.reused_messages,
            "fingerprint": self.fingerprint,
            "timings": dict(self.timings),
            "chunks": [
                {
                    "source_id": c.source_id,
                    "start": c.start,
                    "end": c.end,
                    "kind": c.kind,
                    "tokens_in": c.tokens_in,
                    "tokens_out": c.tokens_out,
                    "relevance": c.relevance,
                    "protected": c.protected,
                    "kept": [[s.start, s.end] for s in c.kept],
                    "text": c.text,
                }
                for c in self.chunks
            ],
            "dropped": [
                {"source_id": d.source_id, "start": d.start, "end": d.end, "text": d.text} for d in self.dropped
            ],
            **({"messages": [dict(m) for m in self.messages]} if self.messages is not None else {}),
        }


_NON_SPACE = re.compile(r"\S")


def _segments(text: str) -> list[tuple[int, int]]:
    """The parts of ``text`` outside ``<pz>`` tags (all of it when its tags do not parse: then they are its own)."""
    from promptzip._split import parse_tags  # the splitter imports this module

    if "<" not in text:
        return [(0, len(text))]
    try:
        return [(seg.start, seg.end) for seg in parse_tags(text)]
    except InputError:
        return [(0, len(text))]


def _content(text: str, spans: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """``spans`` (sorted, disjoint) cut at ``<pz>`` tags and trimmed of whitespace; those with nothing left are left
    out."""
    out: list[tuple[int, int]] = []
    segments = _segments(text)
    ends = [e for _, e in segments]
    for a, b in spans:
        for i in range(bisect.bisect_right(ends, a), len(segments)):
            s, e = segments[i]
            if s >= b:
                break
            lo, hi = max(a, s), min(b, e)
            while lo < hi and text[lo].isspace():
                lo += 1
            while hi > lo and text[hi - 1].isspace():
                hi -= 1
            if lo < hi:
                out.append((lo, hi))
    return out


def _first_chunk_start(source: Source) -> int | None:
    """Where the first chunk of ``source`` starts in its own text (None: it has no chunk). The splitter trims chunks
    and never covers a tag, so it is the first character that is neither whitespace nor markup; a protected source
    is one chunk, the whole text."""
    if source.protected:
        return 0 if source.text else None
    for s, e in _segments(source.text):
        m = _NON_SPACE.search(source.text, s, e)
        if m is not None:
            return m.start()
    return None


def source_chunks(
    sources: Sequence[Source], chunks: Sequence[ChunkResult]
) -> list[tuple[Source, int, list[ChunkResult]]]:
    """Each source with its offset (where its text starts in the coordinates of the chunks: a ``Chunk`` context's
    ``start``, else 0) and its chunks.

    A Result lists its chunks source by source, in source order, so a source's chunks are the next run that bears
    its id and lies inside it; this keeps two sources with one id apart (two retrieved chunks of one document, at
    different offsets). A Result made otherwise falls back to every chunk with the id, at offset 0.
    """
    out: list[tuple[Source, int, list[ChunkResult]]] = []
    pos = 0
    for source in sources:
        first = _first_chunk_start(source)
        if first is None:
            out.append((source, 0, []))
            continue
        if pos >= len(chunks) or chunks[pos].source_id != source.id or chunks[pos].start < first:
            out.append((source, 0, [c for c in chunks if c.source_id == source.id]))
            continue
        offset = chunks[pos].start - first
        end = offset + len(source.text)
        run = [chunks[pos]]
        pos += 1
        while (
            pos < len(chunks)
            and chunks[pos].source_id == source.id
            and run[-1].end <= chunks[pos].start
            and chunks[pos].end <= end
        ):
            run.append(chunks[pos])
            pos += 1
        out.append((source, offset, run))
    return out
