"""The dense scorer: reduced precision (bfloat16 / int8 copies, the "auto" choice, fingerprints, cache separation),
and the in-memory memo that keeps one request from encoding a text twice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from promptzip import ConfigError, InputError
from promptzip._cache import MemoryCache
from promptzip._precision import native_bf16, precision_tag, resolve_precision, with_precision
from promptzip._types import Chunk
from promptzip.retrievers.dense import DenseScorer

pytestmark = pytest.mark.slow

SENTENCES = [
    "The Eiffel Tower was completed in 1889 for the World's Fair.",
    "Gustave Eiffel's company designed and built the iron lattice tower.",
    "Paris is the capital and most populous city of France.",
    "The tower is 330 metres tall, about the height of an 81-storey building.",
    "Bananas are rich in potassium.",
]


def test_resolve_precision_checks_and_decides_auto() -> None:
    assert resolve_precision("auto") == ("bfloat16" if native_bf16() else "float32")
    assert resolve_precision("int8") == "int8"
    assert precision_tag("float32") == ""
    assert precision_tag("bfloat16") == ":bf16"
    with pytest.raises(ConfigError, match="precision must be one of"):
        resolve_precision("fp16")
    with pytest.raises(ConfigError):
        DenseScorer(precision="half")


def test_copies_are_made_once_and_float32_is_the_model_itself() -> None:
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(8, 4))
    assert with_precision(model, "float32") is model
    bf16 = with_precision(model, "bfloat16")
    assert bf16 is with_precision(model, "bfloat16")
    assert bf16 is not model
    assert next(bf16.parameters()).dtype == torch.bfloat16
    assert next(model.parameters()).dtype == torch.float32  # the shared original is never converted in place
    x = torch.randn(3, 8)
    int8 = with_precision(model, "int8")
    assert int8 is not model
    np.testing.assert_allclose(int8(x).numpy(), model(x).detach().numpy(), atol=0.05)


def test_dense_precisions_agree_and_are_cached_apart() -> None:
    cache = MemoryCache()
    by = {p: DenseScorer(precision=p, cache=cache) for p in ("float32", "bfloat16", "int8")}
    assert len({s.fingerprint for s in by.values()}) == 3
    emb = {p: s.embed(SENTENCES) for p, s in by.items()}
    for vectors in emb.values():
        assert vectors.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    cos_bf16 = np.sum(emb["float32"] * emb["bfloat16"], axis=1)
    cos_int8 = np.sum(emb["float32"] * emb["int8"], axis=1)
    assert cos_bf16.min() > 0.995  # practically lossless
    assert cos_int8.min() > 0.8
    assert not np.allclose(emb["float32"], emb["bfloat16"], atol=1e-6)  # really computed in another precision
    # the same ranking of sentences for a question
    question = "How tall is the tower?"
    chunks = [Chunk(t) for t in SENTENCES]
    rank = {p: np.argsort(-np.asarray(s.score(chunks, question))).tolist() for p, s in by.items()}
    assert rank["bfloat16"][0] == rank["float32"][0] == 3


def test_a_saved_index_loads_under_another_precision(tmp_path: Path) -> None:
    from promptzip.retrievers.faiss_index import DenseRetriever

    built = DenseRetriever(precision="float32", progress=False)
    built.add([Chunk(t, source_id=f"s{i}") for i, t in enumerate(SENTENCES)])
    built.save(tmp_path / "index")
    loaded = DenseRetriever.load(tmp_path / "index", precision="bfloat16", progress=False)
    assert loaded.encoder.precision == "bfloat16"
    assert loaded.retrieve("Who built the iron tower?", k=1)[0].text == SENTENCES[1]


def _count_forwards(scorer: DenseScorer) -> tuple[list[int], Any]:
    calls = [0]

    def hook(module: object, args: object) -> None:
        calls[0] += 1

    from promptzip.retrievers._packed import Packer
    from promptzip.retrievers._torch_bert import TorchBertEncoder

    packer = scorer.encoders.packer()  # loaded (and, for sentence-transformers, its one-time check run) before counting
    if isinstance(packer, TorchBertEncoder):  # the torch BERT: packed passes and queries enter its module
        handles = [packer.module.register_forward_pre_hook(hook)]
    else:
        assert isinstance(packer, Packer)
        model = packer.model
        # sentence-transformers' encode enters through the pipeline (which calls the BERT's forward directly), a
        # packed pass through the BERT model itself: one hook on each counts every pass once
        handles = [model.register_forward_pre_hook(hook), model[0].auto_model.register_forward_pre_hook(hook)]
    # a query may run the traced transformer (retrievers/_query_forward.py), which no module hook sees: count it
    import promptzip.retrievers._dense_encoders as encoders_module

    traced_one = encoders_module.forward_one

    def counted(model: Any, text: str) -> Any:
        calls[0] += 1
        return traced_one(model, text)

    encoders_module.forward_one = counted  # type: ignore[assignment]

    class Handles:
        def remove(self) -> None:
            for h in handles:
                h.remove()
            encoders_module.forward_one = traced_one  # type: ignore[assignment]

    return calls, Handles()


def test_memo_encodes_each_text_and_query_once_without_a_cache() -> None:
    scorer = DenseScorer(precision="float32")  # no cache
    encoder = scorer.encoders.packer()
    calls, handle = _count_forwards(scorer)
    try:
        chunks = [Chunk(t) for t in SENTENCES]
        scorer.score(chunks, "How tall is the tower?")
        first = calls[0]
        assert first >= 2  # the sentences and the question
        scorer.score(chunks[1:3], "How tall is the tower?")  # these texts and the question are known
        assert calls[0] == first
        tiny = DenseScorer(precision="float32", memo=0)  # no memo: encoded again
        assert tiny.encoders.packer() is encoder  # one encoder per process
        tiny.score(chunks, "How tall is the tower?")
        assert calls[0] > first
    finally:
        handle.remove()


def test_presets_take_a_precision() -> None:
    import promptzip as pz

    zipper = pz.Zipper.from_preset("fast", precision="int8")
    assert zipper.compressor.scorer.dense.precision == "int8"  # type: ignore[attr-defined]
    assert pz.Zipper.from_preset("fast").compressor.scorer.dense.precision == resolve_precision("auto")  # type: ignore[attr-defined]
    with pytest.raises(ConfigError):
        pz.Zipper.from_preset("fast", precision="fp8")


CLAUSED = "The iron tower was finished in 1889 for the fair, and today it stands 330 metres tall above the city."


def test_spans_are_scored_in_context_from_one_pass() -> None:
    from promptzip.compressors.extractive import clause_spans
    from promptzip.retrievers.hybrid import HybridScorer
    from promptzip.retrievers.sparse import BM25Scorer

    cache = MemoryCache()
    scorer = DenseScorer(precision="float32", cache=cache)
    spans = clause_spans(CLAUSED, min_chars=20)
    assert len(spans) == 2
    chunks = [Chunk(CLAUSED), Chunk(SENTENCES[0])]
    pairs = [spans, [(0, len(SENTENCES[0]))]]
    calls, handle = _count_forwards(scorer)
    try:
        height = scorer.score_spans(chunks, pairs, "How tall is the tower?")
        year = scorer.score_spans(chunks, pairs, "When was the tower finished?")
        assert len(height) == 3
        assert height[1] > height[0]  # the clause with the height, read in its sentence
        assert year[0] > year[1]
        # vectors are cached by (text, span): a new scorer on the same cache runs no forward pass for them
        first = calls[0]
        again = DenseScorer(precision="float32", cache=cache)
        np.testing.assert_allclose(again.embed_spans([CLAUSED], [spans]), scorer.embed_spans([CLAUSED], [spans]))
        assert calls[0] == first
    finally:
        handle.remove()
    # in context, not alone: different from encoding the clause text by itself, but close
    alone = scorer.embed([CLAUSED[slice(*spans[1])]])[0]
    ctx = scorer.embed_spans([CLAUSED], [spans])[1]
    assert 0.5 < float(alone @ ctx) < 0.9999
    with pytest.raises(InputError):
        scorer.score_spans(chunks, pairs[:1], "How tall?")
    # the hybrid mixes the in-context dense part with BM25 on the span texts
    hybrid = HybridScorer(scorer, BM25Scorer(), weight=0.3)
    mixed = hybrid.score_spans(chunks, pairs, "How tall is the tower?")
    bm25 = BM25Scorer().score_spans(chunks, pairs, "How tall is the tower?")
    top = max(bm25)
    expected = [0.7 * d + 0.3 * (b / top) for d, b in zip(height, bm25, strict=True)]
    np.testing.assert_allclose(mixed, expected, atol=1e-6)


def test_the_default_score_spans_scores_the_span_texts() -> None:
    from promptzip.testing import KeywordScorer

    chunks = [Chunk(CLAUSED)]
    spans = [[(0, 48), (50, len(CLAUSED))]]
    pieces = [Chunk(CLAUSED[0:48]), Chunk(CLAUSED[50:])]
    assert KeywordScorer().score_spans(chunks, spans, "how tall") == KeywordScorer().score(pieces, "how tall")
    assert KeywordScorer().score_spans([], [], "x") == []


def test_spans_reuse_the_token_vectors_of_the_scoring_pass() -> None:
    from promptzip.compressors.extractive import clause_spans

    spans = clause_spans(CLAUSED, min_chars=20)
    chunks = [Chunk(CLAUSED), Chunk(SENTENCES[0])]
    pairs = [spans, [(0, len(SENTENCES[0]))]]
    scorer = DenseScorer(precision="float32")
    calls, handle = _count_forwards(scorer)
    try:
        scorer.score(chunks, "How tall is the tower?")
        before = calls[0]
        reused = scorer.score_spans(chunks, pairs, "How tall is the tower?")
        assert calls[0] == before  # pooled from the states the sentence pass kept: no forward pass
    finally:
        handle.remove()
    # without kept states (states=0) the spans cost one pass over their sentences, with the same result
    fresh = DenseScorer(precision="float32", states=0)
    fresh.score(chunks, "How tall is the tower?")
    calls, handle = _count_forwards(fresh)
    try:
        np.testing.assert_allclose(fresh.score_spans(chunks, pairs, "How tall is the tower?"), reused, atol=1e-6)
        assert calls[0] == 1
    finally:
        handle.remove()
    # the kept states are bounded by their token count, oldest out first
    small = DenseScorer(precision="float32", states=40)
    small.score([Chunk(t) for t in SENTENCES], None)
    assert 0 < small._state_tokens <= 40
    assert len(small._states) < len(SENTENCES)


def test_a_span_past_the_encoders_length_limit_is_encoded_alone() -> None:
    long = " ".join(["filler words here"] * 200) + " The tower is 330 metres tall."
    tail = (len(long) - 29, len(long))
    scorer = DenseScorer(precision="float32")
    got = scorer.embed_spans([long], [[(0, 17), tail]])
    np.testing.assert_allclose(got[1], scorer.embed([long[slice(*tail)]])[0], atol=1e-6)
    assert abs(float(got[0] @ got[1])) < 0.999


def test_a_chunk_is_scored_from_its_sentences_vectors_without_a_pass() -> None:
    from promptzip.retrievers.hybrid import HybridScorer
    from promptzip.retrievers.sparse import BM25Scorer
    from promptzip.testing import KeywordScorer

    paragraph = " ".join(SENTENCES[:2])
    cut = len(SENTENCES[0])
    parts = [[(0, cut), (cut + 1, len(paragraph))], []]
    chunks = [Chunk(paragraph), Chunk(SENTENCES[4])]
    scorer = DenseScorer(precision="float32")
    query = "Who built the tower?"
    scorer.score([Chunk(SENTENCES[0]), Chunk(SENTENCES[1]), chunks[1]], query)
    calls, handle = _count_forwards(scorer)
    try:
        got = scorer.score_pooled(chunks, parts, query)
        assert calls[0] == 0  # every part (and the part-less chunk, whole) is in the memo
    finally:
        handle.remove()
    vectors = scorer.embed(SENTENCES[:2])
    mean = vectors[0] * cut + vectors[1] * (len(paragraph) - cut - 1)
    expected = float(mean @ scorer.embed_query(query)) / float(np.linalg.norm(mean))
    assert got[0] == pytest.approx(expected, abs=1e-5)
    assert got[1] == pytest.approx(scorer.score([chunks[1]], query)[0], abs=1e-6)
    assert abs(got[0] - scorer.score([chunks[0]], query)[0]) < 0.15  # close to encoding the paragraph whole
    with pytest.raises(InputError):
        scorer.score_pooled(chunks, parts[:1], query)
    # the hybrid: pooled dense, BM25 on the whole chunks; a scorer without vectors scores the chunks directly
    mixed = HybridScorer(scorer, BM25Scorer(), weight=0.3).score_pooled(chunks, parts, query)
    bm25 = BM25Scorer().score(chunks, query)
    expected_mix = [0.7 * d + 0.3 * b / max(bm25) for d, b in zip(got, bm25, strict=True)]
    np.testing.assert_allclose(mixed, expected_mix, atol=1e-6)
    assert KeywordScorer().score_pooled(chunks, parts, query) == KeywordScorer().score(chunks, query)


def test_a_request_larger_than_the_memo_encodes_each_sentence_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The extractive compressor reads the sentences' vectors in several passes (relevance, each paragraph's pooled
    relevance, deduplication). A request of more sentences than the memo may hold (65,536 in production, 8 here)
    used to evict its first sentences before the next pass and encode them again; the request memo holds them."""
    import promptzip as pz
    import promptzip.retrievers.dense as dense_module
    from promptzip._tokenizers import TextMemo
    from promptzip.compressors.extractive import ExtractiveCompressor
    from promptzip.retrievers.hybrid import HybridScorer
    from promptzip.retrievers.sparse import BM25Scorer

    monkeypatch.setattr(dense_module, "_MEMO_MAX", 8)
    scorer = DenseScorer(precision="float32", memo=4)  # no cache: the memo is all there is between passes
    encoded: list[str] = []
    encode = scorer._encode

    def counted(texts: list[str], *, keep_states: bool) -> Any:
        encoded.extend(texts)
        return encode(texts, keep_states=keep_states)

    monkeypatch.setattr(scorer, "_encode", counted)
    scorer._keys = TextMemo(max_items=4)  # the key memo's bound (65,536 texts in production) is passed too
    hashed: list[str] = []
    make_key = dense_module.make_key

    def counted_key(namespace: str, text: str) -> str:
        hashed.append(text)
        return make_key(namespace, text)

    monkeypatch.setattr(dense_module, "make_key", counted_key)
    compressor = ExtractiveCompressor(HybridScorer(scorer, BM25Scorer()), chunk_weight=0.3, dedup=True)
    zipper = pz.Zipper(compressor, max_chunk_chars=300)
    text = " ".join(f"Item {i} costs {i % 7} dollars." for i in range(60))
    result = zipper.compress(text, question="What does item 42 cost?", rate=0.2)
    assert result.decision == "compressed"
    assert len(result.chunks) > 1  # several paragraphs, each pooled from its sentences
    assert len(encoded) == len(set(encoded)) == 60  # every sentence once, in one request
    sentences = [t for t in hashed if t.startswith("Item")]
    assert len(sentences) == len(set(sentences)) == 60  # and hashed once, though the key memo holds 4
    assert len(scorer._recent) <= 8  # the memo keeps its bound; the request memo ended with the request
    scorer.score([Chunk("Item 1 costs 1 dollars.")], "What does item 42 cost?")  # outside a compression: as before
    assert encoded[-1] == "Item 1 costs 1 dollars."
