"""Value types that flow through the pipeline. All frozen and slotted; numbers stay numbers."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from promptzip._errors import BudgetError, InputError

__all__ = ["Budget", "Chunk", "ChunkResult", "Result", "Source", "Span", "TokenScores", "Variant"]


@dataclass(frozen=True, slots=True)
class Span:
    """A half-open range ``[start, end)`` of characters in a source text."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if self.start < 0 or self.end < self.start:
            raise InputError(f"invalid span [{self.start}, {self.end})")

    def __len__(self) -> int:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class Source:
    """One original input text, kept so the uncompressed original is always recoverable. A ``protected`` source
    (a ``Chunk(protected=True)`` given as context) is kept whole, never shortened or dropped."""

    id: str
    text: str
    protected: bool = False


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
            if isinstance(self.tokens, bool) or not isinstance(self.tokens, int):
                raise BudgetError(f"Budget.tokens must be an int, not {type(self.tokens).__name__}")
            if self.tokens <= 0:
                raise BudgetError(f"Budget.tokens must be positive, got {self.tokens}", budget=self.tokens)
        if self.rate is not None:
            if isinstance(self.rate, bool) or not isinstance(self.rate, int | float):
                raise BudgetError(f"Budget.rate must be a number, not {type(self.rate).__name__}")
            if not (0.0 < float(self.rate) <= 1.0) or math.isnan(self.rate):
                raise BudgetError(f"Budget.rate is the kept fraction and must be in (0, 1], got {self.rate}")

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
        if isinstance(value, int):
            return cls(tokens=value)
        if isinstance(value, float):
            spelling = f"rate={value!r}" if 0.0 < value <= 1.0 else f"budget={int(value)}" if value > 1 else None
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
            **({"messages": [dict(m) for m in self.messages]} if self.messages is not None else {}),
        }
