"""What the framework integrations (LlamaIndex, Haystack) share: one compression of a list of texts under one
budget, read back per text from the pipeline's own per-source output, their settings checked up front, and their
lists of framework objects checked."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from types import MappingProxyType
from typing import Any, TypeVar

from promptzip._errors import BudgetError, ConfigError, InputError
from promptzip._pipeline import Zipper
from promptzip._types import Budget, Chunk, Result, Span
from promptzip.integrations._calls import Compression, check_on_result, fits_whole, report

__all__ = ["RETRIEVED", "Piece", "check_settings", "checked_list", "compress_texts"]

T = TypeVar("T")


# A retrieved document's text was not written for promptzip: <pz> tags in it that do not parse (a page about
# promptzip's own markup) are its text, kept verbatim, not an InputError failing the whole retrieval.
RETRIEVED: Mapping[str, Any] = MappingProxyType({"lenient_tags": True})


@dataclass(frozen=True, slots=True)
class Piece:
    """What survived of one text: its new text, the spans of the original it came from, and its cost."""

    text: str
    kept: tuple[Span, ...]
    tokens_in: int
    tokens_out: int
    relevance: float

    def provenance(self) -> dict[str, Any]:
        """JSON-ready provenance for an item's metadata."""
        return {
            "kept": [[s.start, s.end] for s in self.kept],
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "relevance": self.relevance,
        }


def compress_texts(
    compression: Compression, texts: Sequence[str], query: str | None, *, what: str = "texts"
) -> list[Piece | None]:
    """One compression of all non-blank ``texts`` under ``compression``'s budget (``query`` scores relevance only):
    for each what survived of it (``text`` is "" where nothing did), None for a blank text. Texts that fit together
    stay whole; otherwise the Result goes to ``compression``'s ``on_result`` once the budget is checked."""
    zipper, spec = compression.zipper, compression.spec
    out: list[Piece | None] = [None] * len(texts)
    live = [i for i, t in enumerate(texts) if t.strip()]
    if not live:
        return out
    chunks = [Chunk(texts[i], source_id=str(i), metadata=RETRIEVED) for i in live]
    result = zipper.compress(chunks, query=query, budget=spec, reorder="original")
    whole = fits_whole(result)
    # The pipeline's own text of each source: joined in source order, it is the context it verified against the
    # budget in the target tokenizer. Counted again here, so a broken promise is an error, never a silent overrun.
    outputs = {s.id: s.text for s in result.sources} if whole else dict(result.outputs)
    count = zipper.tokenizer.count
    used = count(zipper.separator.join(outputs[str(i)] for i in live if outputs.get(str(i))))
    if used > result.budget:
        raise BudgetError(
            f"the compressed {what} need {used} tokens, over the budget of {result.budget}",
            budget=result.budget,
            required=used,
        )
    report(compression.on_result, None if whole else result)
    for i in live:
        text = outputs.get(str(i), "")
        mine = [c for c in result.chunks if c.source_id == str(i)]
        if not text:
            spans: tuple[Span, ...] = ()
        elif whole:
            spans = (Span(0, len(texts[i])),)
        else:
            spans = tuple(s for c in mine for s in c.kept)
        best = max((c.relevance for c in mine), default=0.0)
        out[i] = Piece(text, spans, count(texts[i]), count(text) if text else 0, best)
    return out


def check_settings(
    budget: object,
    rate: object,
    preset: object,
    target: object,
    cache: object,
    zipper: object,
    on_result: Callable[[Result], object] | None = None,
) -> Compression:
    """The settings, each checked before the framework or the core sees it, so a mistake is a promptzip error naming
    it (a float budget included: it could mean tokens or a rate)."""
    if isinstance(budget, float):
        raise BudgetError(f"budget={budget!r} is a float: give an int number of tokens, or rate={budget!r}")
    # Integral: numpy's integers are ints here too, as in Budget and pz.compress.
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, Integral | Budget)):
        raise BudgetError(f"budget must be an int number of tokens or a promptzip.Budget, not {type(budget).__name__}")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, Real)):
        raise BudgetError(f"rate must be a number in (0, 1], not {type(rate).__name__}")
    for name, value in (("preset", preset), ("target", target)):
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a str, not {type(value).__name__}")
    if cache is not None and not isinstance(cache, str):
        raise ConfigError(f"cache must be a cache URL or None, not {type(cache).__name__}")
    if zipper is not None and not isinstance(zipper, Zipper):
        raise ConfigError(f"zipper must be a promptzip.Zipper, not {type(zipper).__name__}")
    rate = None if rate is None else float(rate)
    return Compression(
        budget=budget if budget is None or isinstance(budget, Budget) else int(budget),
        rate=rate,
        target=str(target),
        preset=str(preset),
        cache=cache,
        zipper=zipper,
        on_result=check_on_result(on_result),
    )


def checked_list(value: object, kind: type[T], name: str, noun: str) -> list[T]:
    """``value`` (the ``name`` argument) as a list of ``kind``, else an :class:`~promptzip.InputError` that names
    what was expected (``noun``: ``"haystack ChatMessage"``) and where it was not found."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise InputError(f"{name} must be a list of {noun}s, not {type(value).__name__}")
    for i, item in enumerate(value):
        if not isinstance(item, kind):
            raise InputError(f"{name}[{i}] must be a {noun}, not {type(item).__name__}")
    return list(value)
