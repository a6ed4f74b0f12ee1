"""Registrations of the retrievers, the cross-encoder scorer and its model name.

``promptzip._builtins.register`` calls :func:`register_retrievers`; factories import their modules on first use,
so looking names up stays cheap (no numpy, FAISS or torch at registration).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from promptzip._models import ModelSpec

__all__ = ["register_retrievers"]

_MS_MARCO = ModelSpec(
    key="ms-marco-minilm-l6",
    kind="cross-encoder",
    description="MS MARCO MiniLM-L6 cross-encoder reranker (hub only)",
    hub_id="cross-encoder/ms-marco-MiniLM-L-6-v2",
    license="Apache-2.0",
)


def _static_model_path() -> Path:
    from promptzip.retrievers.static import static_model_path

    return static_model_path(build=False)  # distilling takes a while: on the cascade's first use, not on a lookup


_STATIC = ModelSpec(
    key="minilm-qa-static",
    kind="static-embedding",
    description="word-piece vectors distilled from minilm-qa: the cascade's first stage (distilled on first use)",
    license="Apache-2.0",
    build=_static_model_path,
)


def _dense(**kwargs: Any) -> Any:
    from promptzip.retrievers.faiss_index import DenseRetriever

    return DenseRetriever(**kwargs)


def _bm25(**kwargs: Any) -> Any:
    from promptzip.retrievers.bm25 import BM25Retriever

    return BM25Retriever(**kwargs)


def _hybrid(**kwargs: Any) -> Any:
    from promptzip.retrievers.fusion import HybridRetriever

    if "retrievers" in kwargs:
        return HybridRetriever(**kwargs)
    return HybridRetriever.default(**kwargs)


def _cascade(**kwargs: Any) -> Any:
    from promptzip.retrievers.cascade import CascadeScorer

    return CascadeScorer.from_model(**kwargs)


def _cross_encoder(**kwargs: Any) -> Any:
    from promptzip.retrievers.rerank import CrossEncoderReranker

    return CrossEncoderReranker(**kwargs)


def register_retrievers(registries: Any) -> None:
    """Register ``dense``, ``bm25`` and ``hybrid`` retrievers, the ``cross-encoder`` and ``cascade`` scorers, the
    ``ms-marco-minilm-l6`` model name (hub only: no cross-encoder is packaged) and the derived ``minilm-qa`` and
    ``minilm-qa-static`` models."""
    registries.retrievers.register("dense", _dense, help="sentence-transformers encoder + FAISS (flat, HNSW ≥ 50k)")
    registries.retrievers.register("bm25", _bm25, help="Okapi BM25 over a corpus (bm25s sparse matrices)")
    registries.retrievers.register("hybrid", _hybrid, help="dense + BM25 fused by reciprocal rank fusion")
    registries.scorers.register("cross-encoder", _cross_encoder, help="cross-encoder (query, chunk) relevance")
    registries.scorers.register(
        "cascade", _cascade, help="BM25 + static vectors for every sentence, the encoder for the budget's best"
    )
    registries.models.register(_MS_MARCO.key, _MS_MARCO, help=_MS_MARCO.description)
    from promptzip.retrievers.qa_encoder import QA_ENCODER_SPEC

    registries.models.register(QA_ENCODER_SPEC.key, QA_ENCODER_SPEC, help=QA_ENCODER_SPEC.description)
    registries.models.register(_STATIC.key, _STATIC, help=_STATIC.description)
