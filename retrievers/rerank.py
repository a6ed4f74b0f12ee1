"""Cross-encoder reranking: any Hugging Face sequence-classification model that reads (query, passage) pairs.

A cross-encoder sees the query and the passage together, so it ranks far better than a bi-encoder and far
slower: use it on a retriever's top candidates (:class:`RerankingRetriever`), or as a :class:`Scorer` for the
chunks of a request. Typical models: ``cross-encoder/ms-marco-MiniLM-L-6-v2`` (registered as
``ms-marco-minilm-l6``), ``BAAI/bge-reranker-base``, or a local folder with ``config.json``, weights and a
tokenizer (what ``save_pretrained`` writes, and what ``sentence_transformers.CrossEncoder.save`` writes too).

BERT sequence-classification folders (the architecture of ``ms-marco-minilm-l6``) run on the built-in torch module and
``tokenizers`` tokenizer of :mod:`promptzip.retrievers._torch_cross`, which give transformers' scores bit for bit
(float32 and int8) without importing transformers, seconds of a new process; other folders, and every folder under
``PROMPTZIP_TORCH_ENCODER=0``, load through transformers.

Models resolve like every promptzip model (local path → packaged → hub cache → hub download where allowed,
see :mod:`promptzip._models`): a hub id that is not in the local cache while the hub is off
(``HF_HUB_OFFLINE=1``) raises :class:`ModelNotAvailable`. Loading is lazy (first score, or :meth:`load`) and
happens once per process.

Scores: with one output label (MS MARCO cross-encoders) the raw logit; with several, the log-probability of
the last label (the "relevant" class by convention). Pairs longer than ``max_length`` word pieces are truncated
longest-first (the passage, in practice).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from promptzip._deadline import check
from promptzip._errors import ConfigError, InputError, check_int
from promptzip._fingerprint import derived_fingerprint
from promptzip._models import load_hf_folder, load_once, resolve_model
from promptzip._precision import int8_model, precision_tag
from promptzip._roles import Retriever, Scorer, span_chunks
from promptzip._types import Chunk
from promptzip.retrievers._corpus import scored
from promptzip.retrievers._dense_encoders import TORCH_ENV, switched_off
from promptzip.retrievers.dense import weights_fingerprint

__all__ = ["CrossEncoderReranker", "RerankedScorer", "RerankingRetriever"]

DEFAULT_MODEL = "ms-marco-minilm-l6"


def _load(path: Path) -> tuple[Any, Any]:
    model, tokenizer = load_hf_folder(path, "AutoModelForSequenceClassification", what="cross-encoder")
    return tokenizer, model


def _load_builtin(path: Path) -> tuple[Any, Any]:
    from promptzip.retrievers._torch_cross import load_cross_encoder

    return load_cross_encoder(path) or (None, None)


class CrossEncoderReranker(Scorer):
    """Scores (query, chunk) pairs with a cross-encoder; higher is more relevant.

    >>> reranker = CrossEncoderReranker("cross-encoder/ms-marco-MiniLM-L-6-v2")   # nothing loads yet
    >>> reranker.rerank("who built the tower?", candidates, k=5)                   # doctest: +SKIP
    >>> reranker.score(chunks, "who built the tower?")                             # doctest: +SKIP

    As a :class:`Scorer` without a query it has nothing to compare against and scores every chunk 0.0.
    """

    name = "cross-encoder"

    def __init__(
        self, model: str = DEFAULT_MODEL, *, batch_size: int = 32, max_length: int = 512, int8: bool = False
    ) -> None:
        check_int(batch_size, "batch_size")
        check_int(max_length, "max_length", minimum=8)
        self.model_name = model
        self.batch_size = batch_size
        self.max_length = max_length
        self.int8 = bool(int8)
        self._path: Path | None = None
        self._fingerprint: str | None = None

    @classmethod
    def from_pretrained(cls, model: str, **kwargs: Any) -> CrossEncoderReranker:
        """Resolve and load ``model`` now (raising :class:`ModelNotAvailable` here rather than at first use)."""
        return cls(model, **kwargs).load()

    def load(self) -> CrossEncoderReranker:
        self._model()
        return self

    def _resolved(self) -> Path:
        if self._path is None:
            self._path = resolve_model(self.model_name).path
        return self._path

    def _model(self) -> tuple[Any, Any]:
        tokenizer, model = None, None
        if not switched_off(TORCH_ENV):  # a BERT folder it computes exactly: the built-in torch module
            tokenizer, model = load_once("cross-encoder-torch", self._resolved(), _load_builtin)
        if model is None:
            tokenizer, model = load_once("cross-encoder", self._resolved(), _load)
        if self.int8:  # int8 linear layers on the CPU: faster, scores close to float32
            model = int8_model(model)
        return tokenizer, model

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            tag = precision_tag("int8" if self.int8 else "float32")
            self._fingerprint = f"cross-encoder:{self.model_name}:{weights_fingerprint(self._resolved())}{tag}"
        return self._fingerprint

    def _score(self, chunks: Sequence[Chunk], query: str | None) -> Sequence[float]:
        if not query:
            return [0.0] * len(chunks)
        import torch

        tokenizer, model = self._model()
        limit = self.max_length
        model_max = getattr(tokenizer, "model_max_length", None)
        if isinstance(model_max, int) and 0 < model_max < limit:
            limit = model_max
        out: list[float] = []
        texts = [c.text for c in chunks]
        for start in range(0, len(texts), self.batch_size):
            check("the reranker")
            batch = texts[start : start + self.batch_size]
            encoded = tokenizer(
                [query] * len(batch),
                batch,
                truncation="longest_first",
                max_length=limit,
                padding=True,
                return_tensors="pt",
            )
            with torch.inference_mode():
                logits = model(**encoded).logits.float()
            values = logits[:, 0] if logits.shape[-1] == 1 else torch.log_softmax(logits, dim=-1)[:, -1]
            out.extend(values.tolist())
        return out

    def rerank(self, query: str, chunks: Sequence[Chunk], k: int | None = None) -> list[Chunk]:
        """``chunks`` sorted by cross-encoder score, best first (ties keep their order), at most ``k`` of them.

        Each result's metadata gains ``score`` (the cross-encoder's) and ``reranker``; a previous ``score`` (the
        first stage's) moves to ``first_stage_score``.
        """
        if not isinstance(query, str) or not query.strip():
            raise InputError("query must be a non-empty string")
        if k is not None and k <= 0:
            raise InputError(f"k must be positive, got {k}")
        if any(not isinstance(c, Chunk) for c in chunks):
            raise InputError("rerank() takes Chunks")
        scores = self.score(chunks, query)
        order = sorted(range(len(chunks)), key=lambda i: -scores[i])[: k if k is not None else len(chunks)]
        out = []
        for i in order:
            chunk = chunks[i]
            extra: dict[str, Any] = {"reranker": self.name}
            if "score" in chunk.metadata:
                extra["first_stage_score"] = chunk.metadata["score"]
            retriever = str(chunk.metadata.get("retriever", "input"))
            out.append(scored(chunk, scores[i], retriever, **extra))
        return out


class RerankingRetriever(Retriever):
    """A retriever whose top ``fetch_k`` candidates a cross-encoder reorders; returns the best ``k``."""

    name = "rerank"

    def __init__(self, retriever: Retriever, reranker: CrossEncoderReranker, *, fetch_k: int = 50) -> None:
        if not isinstance(retriever, Retriever):
            raise ConfigError("RerankingRetriever needs a Retriever to rerank")
        check_int(fetch_k, "fetch_k")
        self.retriever = retriever
        self.reranker = reranker
        self.fetch_k = fetch_k

    def _retrieve(self, query: str, k: int) -> list[Chunk]:
        candidates = self.retriever.retrieve(query, max(k, self.fetch_k))
        return self.reranker.rerank(query, candidates, k)


class RerankedScorer(Scorer):
    """Two-stage relevance for the chunks of a request: ``first`` scores every chunk, ``reranker`` (a
    cross-encoder) re-orders the ``top_k`` best of them.

    The top ``top_k`` chunks' first-stage scores are handed out again in the new order (best score to the chunk the
    reranker ranks first), so the distribution of scores that thresholds and utilities see stays the first stage's
    and only the order at the top changes; chunks below ``top_k`` keep their scores. The new order is by the
    reranker's standardized score plus ``weight`` times the first stage's (0: the reranker alone decides).
    Without a query the first stage's scores pass through.
    """

    name = "reranked"

    def __init__(self, first: Scorer, reranker: Scorer, *, top_k: int = 24, weight: float = 0.0) -> None:
        if not isinstance(first, Scorer) or not isinstance(reranker, Scorer):
            raise ConfigError("RerankedScorer needs two Scorers (a first stage and a reranker)")
        check_int(top_k, "top_k", minimum=2)
        self.first = first
        self.reranker = reranker
        self.top_k = top_k
        self.weight = float(weight)

    @property
    def dense(self) -> Any:
        """The first stage's bi-encoder (what callers that embed, e.g. duplicate filtering, use), if it has one."""
        return getattr(self.first, "dense", None) or (self.first if hasattr(self.first, "embed") else None)

    @property
    def fingerprint(self) -> str:
        return derived_fingerprint(self)

    def _score(self, chunks: Sequence[Chunk], query: str | None) -> Sequence[float]:
        return self._rerank(chunks, self.first.score(chunks, query), query)

    def _score_spans(
        self, chunks: Sequence[Chunk], spans: Sequence[Sequence[tuple[int, int]]], query: str | None
    ) -> Sequence[float]:
        """The first stage's span scores (in context, for an encoder), the best ``top_k`` spans re-ordered by the
        reranker reading each span's text."""
        return self._rerank(span_chunks(chunks, spans), self.first.score_spans(chunks, spans, query), query)

    def _score_pooled(
        self, chunks: Sequence[Chunk], parts: Sequence[Sequence[tuple[int, int]]], query: str | None
    ) -> Sequence[float]:
        """The first stage's pooled scores, the best ``top_k`` chunks re-ordered by the reranker."""
        return self._rerank(chunks, self.first.score_pooled(chunks, parts, query), query)

    def _rerank(self, chunks: Sequence[Chunk], first: Sequence[float], query: str | None) -> list[float]:
        import numpy as np

        scores = np.asarray(first, dtype=np.float64)
        if not query or len(chunks) < 2:
            return [float(x) for x in scores]
        top = np.argsort(-scores, kind="stable")[: self.top_k]
        second = np.asarray(self.reranker.score([chunks[i] for i in top], query), dtype=np.float64)
        key = _standardized(second) + self.weight * _standardized(scores[top])
        values = np.sort(scores[top])[::-1]
        out = scores.copy()
        out[top[np.argsort(-key, kind="stable")]] = values
        return [float(x) for x in out]


def _standardized(values: Any) -> Any:
    spread = float(values.std())
    return (values - values.mean()) / spread if spread > 0 else values * 0.0
