"""CrossEncoderReranker on locally built models of the cross-encoder architecture (no cross-encoder is packaged).

``ms_marco_like``: ``BertForSequenceClassification`` with one label, initialized from the packaged MiniLM with a
fresh (seeded) head — the architecture and tokenizer of ``cross-encoder/ms-marco-MiniLM-L-6-v2``, untrained.
``two_labels``: a tiny random BERT with two labels, for the log-probability path.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import promptzip as pz
from promptzip import Chunk
from promptzip._models import resolve_model
from promptzip._roles import Scorer
from promptzip.retrievers.bm25 import BM25Retriever
from promptzip.retrievers.rerank import CrossEncoderReranker, RerankingRetriever

pytestmark = pytest.mark.slow

PASSAGES = [
    "The Eiffel Tower is 330 metres tall.",
    "Gustave Eiffel's company designed and built the tower from 1887 to 1889.",
    "Bananas are elongated, edible fruit.",
    "The 2024 Summer Olympics were held in Paris.",
    "Beach volleyball was played in a temporary stadium at the foot of the tower.",
]


@pytest.fixture(scope="session")
def ms_marco_like(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    minilm = resolve_model("minilm").path
    folder = tmp_path_factory.mktemp("cross-encoder-minilm")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = BertForSequenceClassification.from_pretrained(str(minilm), num_labels=1)
    model.save_pretrained(str(folder))
    AutoTokenizer.from_pretrained(str(minilm)).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def two_labels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    minilm = resolve_model("minilm").path
    tokenizer = AutoTokenizer.from_pretrained(str(minilm))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    config.num_labels = 2
    with torch.random.fork_rng():
        torch.manual_seed(1)
        model = BertForSequenceClassification(config)
    folder = tmp_path_factory.mktemp("cross-encoder-tiny")
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


@pytest.fixture
def chunks() -> list[Chunk]:
    return [Chunk(text, "doc", 100 * i) for i, text in enumerate(PASSAGES)]


def test_scores_match_a_direct_forward_pass(ms_marco_like: Path, chunks: list[Chunk]) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    reranker = CrossEncoderReranker(str(ms_marco_like), batch_size=2)
    assert isinstance(reranker, Scorer)
    query = "How tall is the tower?"
    scores = reranker.score(chunks, query)
    assert len(scores) == len(chunks)
    assert all(isinstance(s, float) for s in scores)
    tokenizer = AutoTokenizer.from_pretrained(str(ms_marco_like))
    model = AutoModelForSequenceClassification.from_pretrained(str(ms_marco_like)).eval()
    with torch.inference_mode():
        for chunk, score in zip(chunks, scores, strict=True):
            encoded = tokenizer(query, chunk.text, return_tensors="pt")
            assert score == pytest.approx(model(**encoded).logits[0, 0].item(), abs=1e-4)


def test_rerank_is_deterministic_and_sorted(ms_marco_like: Path, chunks: list[Chunk]) -> None:
    small = CrossEncoderReranker(str(ms_marco_like), batch_size=2)
    large = CrossEncoderReranker(str(ms_marco_like), batch_size=64)
    query = "Who built the tower?"
    first = small.rerank(query, chunks)
    assert [c.text for c in first] == [c.text for c in small.rerank(query, chunks)]
    assert [c.text for c in first] == [c.text for c in large.rerank(query, chunks)]  # padding does not reorder
    scores = [c.metadata["score"] for c in first]
    assert scores == sorted(scores, reverse=True)
    assert sorted(c.text for c in first) == sorted(PASSAGES)
    top = first[0]
    assert top.metadata["reranker"] == "cross-encoder"
    assert (top.source_id, top.end - top.start) == ("doc", len(top.text))
    assert [c.text for c in small.rerank(query, chunks, k=2)] == [c.text for c in first[:2]]
    assert small.score(chunks, None) == [0.0] * len(chunks)  # no query: nothing to compare against
    assert small.score([], query) == []
    assert small.fingerprint.startswith(f"cross-encoder:{ms_marco_like}:")


def test_long_passages_are_truncated(ms_marco_like: Path) -> None:
    reranker = CrossEncoderReranker(str(ms_marco_like), max_length=64)
    query = "How tall is the tower? " * 50
    long, shorter = Chunk("The tower is tall. " * 2000), Chunk("The tower is tall. " * 100)
    (score,), (same,) = reranker.score([long], query), reranker.score([shorter], query)
    # both pairs are cut to the same 64 tokens: the 2,000-sentence passage neither fails nor scores differently
    assert math.isfinite(score)
    assert score == pytest.approx(same, abs=1e-6)


def test_reranking_retriever_keeps_first_stage_scores(ms_marco_like: Path, chunks: list[Chunk]) -> None:
    bm25 = BM25Retriever()
    bm25.add(chunks)
    reranked = RerankingRetriever(bm25, CrossEncoderReranker(str(ms_marco_like)), fetch_k=10)
    out = reranked.retrieve("tower Paris", 2)
    candidates = {c.metadata["id"]: c.metadata["score"] for c in bm25.retrieve("tower Paris", 10)}
    assert len(out) == 2
    for hit in out:
        assert hit.metadata["first_stage_score"] == candidates[hit.metadata["id"]]
        assert hit.metadata["retriever"] == "bm25"
    with pytest.raises(pz.InputError):
        reranked.retrieve("", 2)


def test_two_label_models_score_the_last_label(two_labels: Path, chunks: list[Chunk]) -> None:
    scores = CrossEncoderReranker(str(two_labels)).score(chunks, "tower")
    assert all(s <= 0.0 for s in scores)  # log-probabilities


def test_hub_id_with_the_hub_off_is_not_available() -> None:
    reranker = CrossEncoderReranker("cross-encoder/ms-marco-MiniLM-L-6-v2")  # constructing loads nothing
    with pytest.raises(pz.ModelNotAvailable, match="ms-marco-MiniLM-L-6-v2"):
        reranker.load()
    with pytest.raises(pz.ModelNotAvailable):
        CrossEncoderReranker.from_pretrained("cross-encoder/ms-marco-MiniLM-L-6-v2")


def test_a_folder_that_is_not_a_model(tmp_path: Path, chunks: list[Chunk]) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(pz.ModelNotAvailable, match="could not load a cross-encoder"):
        CrossEncoderReranker(str(tmp_path)).score(chunks, "tower")


@pytest.mark.parametrize(("kwargs", "message"), [({"batch_size": 0}, "batch_size"), ({"max_length": 4}, "max_length")])
def test_bad_config(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(pz.ConfigError, match=message):
        CrossEncoderReranker("anything", **kwargs)


def test_bad_rerank_input(ms_marco_like: Path, chunks: list[Chunk]) -> None:
    reranker = CrossEncoderReranker(str(ms_marco_like))
    with pytest.raises(pz.InputError, match="non-empty"):
        reranker.rerank("  ", chunks)
    with pytest.raises(pz.InputError, match="positive"):
        reranker.rerank("q", chunks, k=0)
    with pytest.raises(pz.InputError, match="Chunks"):
        reranker.rerank("q", ["text"])  # type: ignore[list-item]


def test_int8_scores_stay_close_to_float32(ms_marco_like: Path, chunks: list[Chunk]) -> None:
    fp32 = CrossEncoderReranker(str(ms_marco_like))
    int8 = CrossEncoderReranker(str(ms_marco_like), int8=True)
    assert int8.fingerprint != fp32.fingerprint  # cached scores of one never stand in for the other
    query = "Who built the tower?"
    a, b = fp32.score(chunks, query), int8.score(chunks, query)
    assert b != a
    assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 0.1


def test_a_preset_reranks_its_best_sentences_with_a_cross_encoder(ms_marco_like: Path) -> None:
    from promptzip.retrievers.rerank import RerankedScorer

    zipper = pz.Zipper.from_preset("fast", rerank=str(ms_marco_like), rerank_top_k=3, cache="memory")
    assert isinstance(zipper.compressor.scorer, RerankedScorer)  # type: ignore[attr-defined]
    text = " ".join(PASSAGES)
    r = zipper.compress(text, question="Who built the tower?", budget=30)
    assert r.tokens_out <= 30
    kept = [text[s.start : s.end] for c in r.chunks for s in c.kept]
    assert kept
    assert all(k in r.context for k in kept)  # what was kept is source text, traceable to its span
