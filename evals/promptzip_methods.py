"""promptzip's own entries in the eval: every preset (``promptzip-<preset>``), preset options worth their own entry
(:data:`PRESET_VARIANTS`: ``promptzip-fast-cascade``, ``fast`` with ``cascade=True``; ``promptzip-max-summaries``,
``max`` with ``summaries=True``), the compressors run on their own (``promptzip-token-classifier``,
``promptzip-self-information``: task-agnostic word pruning) and the sparse anchor ``bm25-sentences`` (BM25 under the
same knapsack). :func:`register_promptzip` adds them to the method registry; presets are looked up when it runs, so
a plug-in preset registered before the eval is evaluated too.
"""

from __future__ import annotations

from typing import Any

from promptzip.evals.methods import TOKENIZER, Method, Output
from promptzip.evals.suites import Item

__all__ = ["PRESET_VARIANTS", "BM25Sentences", "PresetMethod", "TokenPruneMethod", "register_promptzip"]

# Entries for a preset with options: method name → (preset, options).
PRESET_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "promptzip-fast-cascade": ("fast", {"cascade": True}),
    "promptzip-max-summaries": ("max", {"summaries": True}),
}


class PresetMethod(Method):
    """A promptzip preset, one shared Zipper (in-memory cache, as a deployment would keep one) for all items."""

    def __init__(
        self, preset: str, *, seed: int = 0, options: dict[str, Any] | None = None, name: str | None = None
    ) -> None:
        self.preset = preset
        self.options = dict(options or {})
        self.name = name or f"promptzip-{preset}"
        self.zipper: Any = None
        self.retries = 0

    @property
    def description(self) -> str:  # type: ignore[override]
        from promptzip._registry import registries

        given = f" with {', '.join(f'{k}={v!r}' for k, v in self.options.items())}" if self.options else ""
        return f"promptzip preset {self.preset!r}{given}: {registries.presets.describe(self.preset)}"

    def prepare(self) -> None:
        import promptzip as pz

        if self.zipper is None:
            self.zipper = pz.Zipper.from_preset(self.preset, target=TOKENIZER, cache="memory", **self.options)
            self.zipper.compress("Warm up the models. They load once.", question="What loads?", budget=50)

    def _compress(self, item: Item, budget: int) -> Output:
        self.prepare()
        tok = self.zipper.tokenizer
        extra = tok.count(self.zipper.assemble("", item.question or "")) if item.question else 0
        extra += tok.count(self.zipper.separator) if item.question else 0
        limit = budget + extra
        for _ in range(4):
            r = self.zipper.compress(item.context, question=item.question, budget=limit)
            over = tok.count(r.context) - budget
            if over <= 0:
                break
            # The budget covers context + "\n\n" + question; a token merge across that join can leave the context
            # alone a token over. Ask again with that much less (counted in the report).
            self.retries += 1
            limit -= over
        kept = tuple(s for c in r.chunks for s in c.kept)
        summaries = sum(c.kind.startswith("summary@") for c in r.chunks)
        return Output(r.context, kept, info={"decision": r.decision, "summaries": summaries})

    def settings(self) -> dict[str, Any]:
        return {"description": self.description, "retries_for_join_merge": self.retries, "cache": "memory"}


class BM25Sentences(PresetMethod):
    """The sparse anchor: BM25 top sentences under the same knapsack (no dense model, no relevance threshold)."""

    needs_question = True

    def __init__(self, *, seed: int = 0) -> None:
        super().__init__("fast", seed=seed)
        self.name = "bm25-sentences"

    @property
    def description(self) -> str:  # type: ignore[override]
        return "BM25 (k1 1.2, b .75) over the article's sentences, top sentences under promptzip's knapsack"

    def prepare(self) -> None:
        import promptzip as pz
        from promptzip.compressors.extractive import ExtractiveCompressor
        from promptzip.retrievers.sparse import BM25Scorer

        if self.zipper is None:
            compressor = ExtractiveCompressor(BM25Scorer(), min_relevance=None, dedup=False)
            self.zipper = pz.Zipper(compressor, target=TOKENIZER, name="bm25-sentences")


class TokenPruneMethod(PresetMethod):
    """promptzip's word pruning alone, without a question: the knapsack picks each chunk's keep rate from a token
    scorer's keep-probabilities (the task-agnostic token-level methods)."""

    question_aware = False
    scorer = ""

    def __init__(self, *, seed: int = 0) -> None:
        super().__init__("fast", seed=seed)
        self.name = f"promptzip-{self.scorer}"

    @property
    def description(self) -> str:  # type: ignore[override]
        return f"promptzip token-prune with the {self.scorer!r} scorer (per-chunk rates .2/.33/.5/.7 or drop)"

    def prepare(self) -> None:
        import promptzip as pz
        from promptzip._cache import MemoryCache
        from promptzip._registry import registries

        if self.zipper is None:
            compressor = registries.compressors.create("token-prune", scorer=self.scorer, cache=MemoryCache())
            self.zipper = pz.Zipper(compressor, target=TOKENIZER, name=self.name)
            self.zipper.compress("Warm up the models. They load once.", budget=5)

    def _compress(self, item: Item, budget: int) -> Output:
        self.prepare()
        r = self.zipper.compress(item.context, budget=budget)
        return Output(r.context, tuple(s for c in r.chunks for s in c.kept), info={"decision": r.decision})


class TokenClassifierPrune(TokenPruneMethod):
    scorer = "token-classifier"


class SelfInformationPrune(TokenPruneMethod):
    scorer = "self-information"
    slow = True  # a causal LM over the whole article


def register_promptzip(methods: Any) -> None:
    """Register the anchor, the token-level compressors, one method per registered preset (a preset marked slow,
    like ``max``, stays out of quick and default runs, as a slow baseline does) and the :data:`PRESET_VARIANTS`."""
    from promptzip._registry import registries

    named: tuple[tuple[str, type[Method]], ...] = (
        ("bm25-sentences", BM25Sentences),
        ("promptzip-token-classifier", TokenClassifierPrune),
        ("promptzip-self-information", SelfInformationPrune),
    )
    for name, cls in named:
        if name not in methods:
            methods.register(name, cls, help=(cls.__doc__ or "").split("\n")[0])
    for preset in registries.presets.names():
        name = f"promptzip-{preset}"
        if name not in methods:

            def factory(preset: str = preset, **kw: Any) -> Method:
                return PresetMethod(preset, **kw)

            factory.slow = bool(getattr(registries.presets.get(preset), "slow", False))  # type: ignore[attr-defined]
            methods.register(name, factory, help=f"preset {preset}")
    for name, (preset, options) in PRESET_VARIANTS.items():
        if name not in methods and preset in registries.presets:

            def variant(name: str = name, preset: str = preset, options: dict[str, Any] = options, **kw: Any) -> Method:
                return PresetMethod(preset, options=options, name=name, **kw)

            variant.slow = bool(getattr(registries.presets.get(preset), "slow", False))  # type: ignore[attr-defined]
            given = ", ".join(f"{k}={v!r}" for k, v in options.items())
            methods.register(name, variant, help=f"preset {preset} with {given}")
