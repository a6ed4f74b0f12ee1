"""Methods the harness compares, behind one small base class, registered by name.

A method turns an :class:`~promptzip.evals.suites.Item` and a token budget (for the context alone, in o200k
tokens) into an :class:`Output`: the compressed context and, when the method knows it, which character spans of
the context survived. The harness measures everything else (tokens, retention, latency) the same way for all.

Built-ins:

* promptzip's own (:mod:`promptzip.evals.promptzip_methods`): ``promptzip-<preset>`` for every preset in
  ``promptzip.registries.presets`` (looked up at run time, so presets added later join automatically; the question
  goes in as the question, and promptzip counts it in its budget, so the harness adds its cost back and measures
  the context alone), ``promptzip-token-classifier`` / ``promptzip-self-information`` (word pruning without the
  question) and the anchor ``bm25-sentences``;
* ``first-k``: the first tokens of the context up to the budget (truncation);
* ``random-sentences`` / ``random-tokens``: seeded random pruning to the budget;
* ``oracle``: the gold paragraph, trimmed to the budget around the answer: the ceiling;
* ``langchain-embeddings-filter``: LangChain's ``EmbeddingsFilter`` + ``LongContextReorder`` on the same MiniLM;
* ``llmlingua``, ``longllmlingua``, ``llmlingua2``, ``selective-context``: third-party baselines run in their own
  environment (:mod:`promptzip.evals.baselines`).

A new method subclasses :class:`Method` (one required method, ``_compress``) and registers a factory::

    METHODS.register("mine", Mine)
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from promptzip._registry import Registry
from promptzip._split import sentence_spans
from promptzip._tokenizers import Tokenizer, get_tokenizer
from promptzip._types import Span
from promptzip.evals.suites import Item

__all__ = [
    "METHODS",
    "EmbeddingsFilterMethod",
    "FirstK",
    "Method",
    "Oracle",
    "Output",
    "RandomSentences",
    "RandomTokens",
    "create_method",
    "method_names",
    "trim_to_budget",
]

TOKENIZER = "o200k_base"


@dataclass(frozen=True, slots=True)
class Output:
    """A compressed context. ``kept``: surviving character spans of the item's context (``None``: the method does
    not say). ``seconds``: the method's own timing when it runs elsewhere (a subprocess); otherwise the harness
    times the call."""

    text: str
    kept: tuple[Span, ...] | None = None
    seconds: float | None = None
    info: Mapping[str, Any] = field(default_factory=dict)


class Method(ABC):
    """One compression method under evaluation.

    ``question_aware``: uses the question (``True``), ignores it (``False``). ``needs_question`` / ``needs_gold``:
    cannot run without one (such a method is "n/a" in task-agnostic suites, never a silent skip). ``slow``: runs
    on the smaller item subset. ``prepare`` loads models before any timed call.
    """

    name = "method"
    description = ""
    question_aware = True
    needs_question = False
    needs_gold = False
    slow = False

    def prepare(self) -> None:
        return None

    def close(self) -> None:
        return None

    def applies_to(self, regime: str, kind: str) -> bool:
        if self.needs_question and regime != "query-aware":
            return False
        return not (self.needs_gold and kind != "qa")

    def compress(self, item: Item, budget: int) -> Output:
        """Compress ``item.context`` to at most ``budget`` o200k tokens (a method may overshoot: it is measured)."""
        started = time.perf_counter()
        out = self._compress(item, budget)
        if out.seconds is None:
            out = Output(out.text, out.kept, time.perf_counter() - started, out.info)
        return out

    @abstractmethod
    def _compress(self, item: Item, budget: int) -> Output: ...

    def settings(self) -> dict[str, Any]:
        """What the report says about how this method was run."""
        return {"description": self.description}


def trim_to_budget(text: str, budget: int, tokenizer: Tokenizer) -> str:
    """The longest token prefix of ``text`` that fits ``budget`` tokens when re-counted."""
    ids = tokenizer.encode(text)
    if len(ids) <= budget:
        return text
    keep = budget
    out = tokenizer.decode(ids[:keep])
    while keep > 0 and tokenizer.count(out) > budget:
        keep -= 1
        out = tokenizer.decode(ids[:keep])
    return out


def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "big")


# ------------------------------------------------------------------------------------------------ simple ones


class FirstK(Method):
    name = "first-k"
    description = "truncation: the first tokens of the context up to the budget"
    question_aware = False

    def __init__(self, *, seed: int = 0) -> None:
        self.tok = get_tokenizer(TOKENIZER)

    def _compress(self, item: Item, budget: int) -> Output:
        text = trim_to_budget(item.context, budget, self.tok)
        return Output(text, (Span(0, len(text)),) if text else ())


class RandomSentences(Method):
    name = "random-sentences"
    description = "sentences in a seeded random order, each kept if it still fits; original order"
    question_aware = False

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = seed
        self.tok = get_tokenizer(TOKENIZER)

    def _compress(self, item: Item, budget: int) -> Output:
        spans = sentence_spans(item.context)
        costs = self.tok.count_many([item.context[a:b] for a, b in spans])
        order = list(range(len(spans)))
        random.Random(_seed(self.seed, item.id, budget)).shuffle(order)
        chosen: list[int] = []
        used = 0
        for i in order:
            if used + costs[i] + 1 <= budget:
                chosen.append(i)
                used += costs[i] + 1
        chosen.sort()
        text = " ".join(item.context[spans[i][0] : spans[i][1]] for i in chosen)
        text = trim_to_budget(text, budget, self.tok)
        return Output(text, tuple(Span(*spans[i]) for i in chosen))


class RandomTokens(Method):
    name = "random-tokens"
    description = "a seeded uniform random subset of the context's o200k tokens, in order"
    question_aware = False

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = seed
        self.tok = get_tokenizer(TOKENIZER)

    def _compress(self, item: Item, budget: int) -> Output:
        ids = self.tok.encode(item.context)
        rng = random.Random(_seed(self.seed, item.id, budget))
        keep = sorted(rng.sample(range(len(ids)), min(budget, len(ids))))
        text = self.tok.decode([ids[i] for i in keep])
        while keep and self.tok.count(text) > budget:  # decoded bytes can re-merge differently: drop some more
            del keep[rng.randrange(len(keep))]
            text = self.tok.decode([ids[i] for i in keep])
        return Output(text)


class Oracle(Method):
    name = "oracle"
    description = "the gold paragraph, trimmed to the budget around the first answer occurrence (the ceiling)"
    needs_question = True
    needs_gold = True

    def __init__(self, *, seed: int = 0) -> None:
        self.tok = get_tokenizer(TOKENIZER)

    def _compress(self, item: Item, budget: int) -> Output:
        target = item.targets[0]
        if target.gold is None:
            raise ValueError(f"item {item.id} has no gold paragraph")
        start, end = target.gold.start, target.gold.end
        paragraph = item.context[start:end]
        if self.tok.count(paragraph) <= budget:
            return Output(paragraph, (Span(start, end),))
        ids = self.tok.encode(paragraph)
        hits = [re.search(rf"(?<!\w){re.escape(a)}(?!\w)", paragraph, re.IGNORECASE) for a in target.answers]
        at = min((m.start() for m in hits if m is not None), default=0)
        prefix = len(self.tok.encode(paragraph[:at]))
        first = max(0, min(prefix - budget // 2, len(ids) - budget))
        window = ids[first : first + budget]
        text = self.tok.decode(window)
        while window and self.tok.count(text) > budget:
            window = window[:-1]
            text = self.tok.decode(window)
        offset = len(self.tok.decode(ids[:first]))
        return Output(text, (Span(start + offset, start + offset + len(text)),))


# ------------------------------------------------------------------------------------------------ LangChain


class _MiniLMEmbeddings:
    """A LangChain ``Embeddings`` over promptzip's packaged MiniLM, with an in-process cache of document vectors
    (the same treatment promptzip gets from its content-hash cache), built lazily as a real subclass."""

    @staticmethod
    def create() -> Any:
        from langchain_core.embeddings import Embeddings

        from promptzip._models import load_sentence_encoder

        class MiniLMEmbeddings(Embeddings):
            def __init__(self) -> None:
                self.model = load_sentence_encoder("minilm")
                self.cache: dict[str, list[float]] = {}

            def embed_documents(self, texts: list[str]) -> list[list[float]]:
                missing = list(dict.fromkeys(t for t in texts if t not in self.cache))
                if missing:
                    vectors = self.model.encode(missing, batch_size=64, normalize_embeddings=True)
                    self.cache.update({t: [float(x) for x in v] for t, v in zip(missing, vectors, strict=True)})
                return [self.cache[t] for t in texts]

            def embed_query(self, text: str) -> list[float]:
                vector = self.model.encode([text], normalize_embeddings=True)[0]
                return [float(x) for x in vector]

        return MiniLMEmbeddings()


def _locate(context: str, text: str, hint: object) -> tuple[Span, ...]:
    """Where a split document lies in the context. The splitter's ``start_index`` is -1 when it cannot find its own
    chunk (it happens once in SQuAD dev); then the text is searched for, and a document found nowhere has no span."""
    start = hint if isinstance(hint, int) and hint >= 0 else context.find(text)
    if start < 0 or context[start : start + len(text)] != text:
        start = context.find(text)
    return (Span(start, start + len(text)),) if start >= 0 else ()


class EmbeddingsFilterMethod(Method):
    """LangChain's recipe: split into ~300-character documents (``CharacterTextSplitter(separator=". ")``, as in
    its contextual-compression docs), rank them with ``EmbeddingsFilter`` on the same MiniLM promptzip uses, keep
    the largest top-``k`` that fits the budget (``k`` chosen per item to hit the same budget; when even the top
    document is over, it alone is trimmed to the budget), then ``LongContextReorder``."""

    name = "langchain-embeddings-filter"
    description = (
        "LangChain EmbeddingsFilter (MiniLM) on 300-char splits, top-k sized to the budget (top document trimmed "
        "when over), then LongContextReorder"
    )
    needs_question = True

    def __init__(self, *, seed: int = 0, chunk_size: int = 300) -> None:
        self.chunk_size = chunk_size
        self.tok = get_tokenizer(TOKENIZER)
        self._parts: dict[str, Any] = {}
        self.trimmed = 0

    def prepare(self) -> None:
        if self._parts:
            return
        with warnings.catch_warnings():  # langchain-community announces its own sunset on import
            warnings.simplefilter("ignore", DeprecationWarning)
            from langchain_classic.retrievers.document_compressors import EmbeddingsFilter
            from langchain_community.document_transformers import LongContextReorder
            from langchain_text_splitters import CharacterTextSplitter
        # The splitter logs every split longer than chunk_size (sentences often are); that is expected here.
        logging.getLogger("langchain_text_splitters").setLevel(logging.ERROR)
        embeddings = _MiniLMEmbeddings.create()
        self._parts = {
            "splitter": CharacterTextSplitter(
                separator=". ", chunk_size=self.chunk_size, chunk_overlap=0, add_start_index=True
            ),
            "filter": EmbeddingsFilter(embeddings=embeddings, k=None, similarity_threshold=None),
            "reorder": LongContextReorder(),
        }

    def _compress(self, item: Item, budget: int) -> Output:
        from langchain_core.documents import Document

        self.prepare()
        docs = self._parts["splitter"].split_documents([Document(page_content=item.context)])
        ranked_all = self._parts["filter"].compress_documents(docs, item.question or "")
        ranked = sorted(ranked_all, key=lambda d: -float(d.state["query_similarity_score"]))
        costs = self.tok.count_many([d.page_content for d in ranked])
        chosen: list[Any] = []
        used = 0
        for doc, cost in zip(ranked, costs, strict=True):
            extra = cost + (1 if chosen else 0)  # "\n\n" between documents
            if used + extra > budget:
                break
            chosen.append(doc)
            used += extra
        if not chosen and ranked:
            self.trimmed += 1
            top = ranked[0]
            text = trim_to_budget(top.page_content, budget, self.tok)
            spans = _locate(item.context, top.page_content[: len(text)], top.metadata.get("start_index", -1))
            return Output(text, spans, info={"k": 1, "trimmed": True})
        ordered = self._parts["reorder"].transform_documents(chosen)
        text = "\n\n".join(d.page_content for d in ordered)
        text = trim_to_budget(text, budget, self.tok)
        kept = tuple(
            s for d in chosen for s in _locate(item.context, d.page_content, d.metadata.get("start_index", -1))
        )
        return Output(text, kept, info={"k": len(chosen)})

    def settings(self) -> dict[str, Any]:
        return {"description": self.description, "top_document_trimmed": self.trimmed}


# ------------------------------------------------------------------------------------------------ registry

METHODS: Registry[Method] = Registry("eval method")
METHODS.register("first-k", FirstK)
METHODS.register("random-sentences", RandomSentences)
METHODS.register("random-tokens", RandomTokens)
METHODS.register("oracle", Oracle)
METHODS.register("langchain-embeddings-filter", EmbeddingsFilterMethod)


def _register_baselines() -> None:
    from promptzip.evals.baselines import register_baselines

    register_baselines(METHODS)


def _register_promptzip() -> None:
    from promptzip.evals.promptzip_methods import register_promptzip

    register_promptzip(METHODS)


def method_names(*, slow: bool | None = None) -> list[str]:
    """Every registered method (promptzip presets first); ``slow=False``: only the fast ones."""
    _register_promptzip()
    _register_baselines()
    names = sorted(METHODS.names(), key=lambda n: (not n.startswith("promptzip-"), n))
    if slow is None:
        return names
    return [n for n in names if _is_slow(n) == slow]


def _is_slow(name: str) -> bool:
    factory = METHODS.get(name)
    return bool(getattr(factory, "slow", False))


def create_method(name: str, **options: Any) -> Method:
    _register_promptzip()
    _register_baselines()
    method: object = METHODS.get(name)(**options)
    if not isinstance(method, Method):
        raise TypeError(f"eval method {name!r} built a {type(method).__name__}, not a Method")
    return method
