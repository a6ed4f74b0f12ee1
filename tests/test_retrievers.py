"""Retrievers: dense (FAISS), BM25 (bm25s), hybrid fusion; their bad input and their on-disk format.

Tests that need no model index precomputed vectors (``add_vectors``) in a real FAISS index; tests marked
``slow`` load the packaged MiniLM once per process; the SQuAD test also needs the fetched data.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from conftest import require_data

import promptzip as pz
from promptzip import Chunk
from promptzip._registry import Registries
from promptzip._roles import Retriever
from promptzip.retrievers._register import register_retrievers
from promptzip.retrievers.bm25 import BM25Retriever
from promptzip.retrievers.faiss_index import DenseRetriever, IndexSpec
from promptzip.retrievers.fusion import (
    MANIFEST,
    CorpusRetriever,
    HybridRetriever,
    chunk_id,
    interpolate,
    reciprocal_rank_fusion,
    scored,
)
from promptzip.retrievers.sparse import BM25Scorer

DIM = 384


def paragraphs(text: str, source: str = "eiffel") -> list[Chunk]:
    """The blank-line paragraphs of ``text`` as chunks with their offsets."""
    return [Chunk(m.group(), source, m.start(), m.end()) for m in re.finditer(r"\S(?:.|\n(?!\n))*", text)]


def unit_vectors(n: int, seed: int, dim: int = DIM) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    out: np.ndarray = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def synthetic(n: int, offset: int = 0) -> list[Chunk]:
    return [Chunk(f"synthetic chunk {i}", f"s{i}") for i in range(offset, offset + n)]


@pytest.fixture
def corpus(article: str) -> list[Chunk]:
    return paragraphs(article)


# ------------------------------------------------------------------------------------------------ identity


def test_chunk_id_names_the_span_or_the_given_id() -> None:
    assert chunk_id(Chunk("abc", "doc", 10)) == "doc:10-13"
    assert chunk_id(Chunk("abc", "doc", 10, metadata={"id": "x1"})) == "x1"
    assert chunk_id(Chunk("abc", metadata={"id": 7})) == "7"
    for bad in (True, 1.5, ["a"], ""):
        with pytest.raises(pz.InputError, match=r"metadata\['id'\]"):
            chunk_id(Chunk("abc", metadata={"id": bad}))


def test_scored_keeps_text_source_offsets_and_metadata() -> None:
    chunk = Chunk("abc", "doc", 10, metadata={"title": "T"}, protected=True)
    out = scored(chunk, np.float32(0.5), "dense")  # type: ignore[arg-type]  # numpy scores become floats
    assert (out.text, out.source_id, out.start, out.end, out.protected) == ("abc", "doc", 10, 13, True)
    assert out.metadata == {"title": "T", "id": "doc:10-13", "score": 0.5, "retriever": "dense"}
    assert type(out.metadata["score"]) is float
    assert chunk.metadata == {"title": "T"}


# ------------------------------------------------------------------------------------------------- fusion


def test_rrf_math() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a"]])
    assert fused["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert fused["b"] == pytest.approx(1 / 62)
    assert fused["c"] == pytest.approx(1 / 63 + 1 / 61)
    weighted = reciprocal_rank_fusion([["a"], ["b"]], k=0, weights=[2.0, 1.0])
    assert weighted == {"a": 2.0, "b": 1.0}


def test_interpolation_math() -> None:
    fused = interpolate([{"a": 10.0, "b": 5.0, "c": 0.0}, {"b": 0.9, "c": 0.7}], weights=[1.0, 3.0])
    assert fused["a"] == pytest.approx((1 * 1.0 + 3 * 0.0) / 4)
    assert fused["b"] == pytest.approx((1 * 0.5 + 3 * 1.0) / 4)
    assert fused["c"] == pytest.approx((1 * 0.0 + 3 * 0.0) / 4)
    assert interpolate([{"x": 3.0, "y": 3.0}]) == {"x": 1.0, "y": 1.0}  # no spread: all equal, all kept
    assert interpolate([{}, {"x": 1.0}]) == {"x": 0.5}


@pytest.mark.parametrize("weights", [[1.0], [-1.0, 1.0], [0.0, 0.0], [float("nan"), 1.0]])
def test_bad_fusion_weights(weights: list[float]) -> None:
    with pytest.raises(pz.ConfigError, match="weights"):
        reciprocal_rank_fusion([["a"], ["b"]], weights=weights)


class Listed(Retriever):
    """A test double: returns fixed chunks with fixed scores, whatever the query."""

    def __init__(self, name: str, hits: Sequence[tuple[str, float]]) -> None:
        self.name = name
        self.hits = hits

    def _retrieve(self, query: str, k: int) -> list[Chunk]:
        return [scored(Chunk(t, "doc", 100 * ord(t[0])), s, self.name) for t, s in self.hits[:k]]


def test_hybrid_rrf_orders_by_fused_rank_and_reports_components() -> None:
    dense = Listed("dense", [("alpha", 0.9), ("beta", 0.8), ("gamma", 0.1)])
    sparse = Listed("bm25", [("gamma", 12.0), ("alpha", 3.0)])
    out = HybridRetriever([dense, sparse]).retrieve("q", 3)
    assert [c.text for c in out] == ["alpha", "gamma", "beta"]
    top = out[0]
    assert top.metadata["retriever"] == "hybrid"
    assert top.metadata["score"] == pytest.approx(1 / 61 + 1 / 62)
    assert top.metadata["ranks"] == {"dense": 1, "bm25": 2}
    assert top.metadata["scores"] == {"dense": 0.9, "bm25": 3.0}
    assert (top.source_id, top.start, top.end) == ("doc", 100 * ord("a"), 100 * ord("a") + 5)
    assert out[2].metadata["ranks"] == {"dense": 2}
    assert [c.text for c in HybridRetriever([dense, sparse]).retrieve("q", 1)] == ["alpha"]


def test_hybrid_ties_keep_first_appearance_and_names_are_unique() -> None:
    a = Listed("dense", [("x", 1.0), ("y", 0.5)])
    b = Listed("dense", [("y", 1.0), ("x", 0.5)])
    hybrid = HybridRetriever([a, b])
    assert hybrid.labels == ("dense", "dense#2")
    assert [c.text for c in hybrid.retrieve("q", 2)] == ["x", "y"]  # equal RRF: x was ranked 1 first


def test_hybrid_interpolation_mode() -> None:
    dense = Listed("dense", [("alpha", 0.9), ("beta", 0.5), ("gamma", 0.1)])
    sparse = Listed("bm25", [("gamma", 12.0), ("beta", 11.0)])
    out = HybridRetriever([dense, sparse], mode="interpolate", weights=[0.5, 0.5]).retrieve("q", 3)
    # dense: alpha 1, beta .5, gamma 0; bm25: gamma 1, beta 0 → alpha .5, beta .25, gamma .5 (alpha first seen)
    assert [c.text for c in out] == ["alpha", "gamma", "beta"]
    assert [c.metadata["score"] for c in out] == pytest.approx([0.5, 0.5, 0.25])


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (([],), {}, "at least one"),
        ((["nope"],), {}, "Retriever instances"),
        (None, {"mode": "max"}, "unknown fusion mode"),
        (None, {"rrf_k": -1}, "rrf_k"),
        (None, {"fetch_k": 0}, "fetch_k"),
        (None, {"weights": [1.0]}, "weights"),
    ],
)
def test_hybrid_bad_config(args: tuple[object, ...] | None, kwargs: dict[str, object], message: str) -> None:
    if args is None:
        args = ([Listed("a", []), Listed("b", [])],)
    with pytest.raises(pz.ConfigError, match=message):
        HybridRetriever(*args, **kwargs)  # type: ignore[arg-type]


def test_hybrid_add_and_delete_reach_every_corpus_or_none(corpus: list[Chunk]) -> None:
    one, two = BM25Retriever(), BM25Retriever(k1=2.0)
    hybrid = HybridRetriever([one, two])
    two.add(corpus[:1])
    with pytest.raises(pz.InputError, match="duplicate"):
        hybrid.add(corpus)  # refused by the second corpus: the first stays empty
    assert len(one) == 0
    two.delete(two.ids())
    ids = hybrid.add(corpus)
    assert one.ids() == two.ids() == ids
    assert hybrid.delete(ids[:2]) == 2
    assert len(one) == len(two) == len(corpus) - 2
    with pytest.raises(pz.ConfigError, match="CorpusRetriever"):
        HybridRetriever([one, Listed("x", [])]).add(corpus)


# --------------------------------------------------------------------------------------------------- BM25


def test_bm25_ranks_real_text(corpus: list[Chunk], article: str) -> None:
    bm25 = BM25Retriever()
    assert bm25.add(corpus) == [chunk_id(c) for c in corpus]
    top = bm25.retrieve("Which engineer's company designed the tower?", 3)
    assert "Gustave Eiffel" in top[0].text
    assert bm25.retrieve("plantains", 3)[0].text.startswith("Bananas")
    assert "1,083 ft" in bm25.retrieve("how tall in metres", 1)[0].text
    for hit in top:
        assert article[hit.start : hit.end] == hit.text
        assert hit.source_id == "eiffel"
        assert hit.metadata["retriever"] == "bm25"
        assert hit.metadata["score"] > 0
    scores = [c.metadata["score"] for c in top]
    assert scores == sorted(scores, reverse=True)


def test_bm25_matches_the_pipeline_scorer(corpus: list[Chunk]) -> None:
    """Same terms and formula as BM25Scorer; Lucene's variant only drops the constant (k1 + 1) factor."""
    bm25 = BM25Retriever(k1=1.2, b=0.75)
    bm25.add(corpus)
    query = "Paris tower built for the World's Fair in 1889"
    hits = bm25.retrieve(query, len(corpus))
    reference = dict(zip((chunk_id(c) for c in corpus), BM25Scorer(k1=1.2, b=0.75).score(corpus, query), strict=True))
    assert hits
    for hit in hits:
        assert hit.metadata["score"] * 2.2 == pytest.approx(reference[hit.metadata["id"]], rel=1e-5)
    assert {h.metadata["id"] for h in hits} == {key for key, s in reference.items() if s > 0}


def test_bm25_returns_only_matching_chunks(corpus: list[Chunk]) -> None:
    bm25 = BM25Retriever()
    bm25.add(corpus)
    assert len(bm25.retrieve("bananas", 5)) == 1
    assert bm25.retrieve("zyzzyva quux", 5) == []
    assert bm25.retrieve("the of and", 5) == []  # stop words only: no terms


def test_bm25_add_delete_save_load_round_trip(corpus: list[Chunk], tmp_path: Path) -> None:
    bm25 = BM25Retriever()
    bm25.add(corpus[:3])
    bm25.add(corpus[3:])  # incremental: rebuilt on the next query
    query = "Olympics beach volleyball"
    before = bm25.retrieve(query, 3)
    assert before[0].text.startswith("The 2024 Summer Olympics")
    bm25.save(tmp_path / "bm25")
    loaded = BM25Retriever.load(tmp_path / "bm25")
    assert loaded.ids() == bm25.ids()
    after = loaded.retrieve(query, 3)
    assert [(c.text, c.metadata) for c in after] == [(c.text, c.metadata) for c in before]
    olympics = before[0].metadata["id"]
    assert loaded.delete([olympics]) == 1  # after a load: term lists come back from the records
    assert all(c.metadata["id"] != olympics for c in loaded.retrieve(query, 5))
    loaded.add([corpus[-1]])
    assert loaded.retrieve(query, 1)[0].metadata["id"] == olympics
    tuned = BM25Retriever(k1=2.0, b=0.5, method="bm25+")
    tuned.add(corpus)
    reloaded = BM25Retriever.load(tuned.save(tmp_path / "params"))
    assert (reloaded.k1, reloaded.b, reloaded.method) == (2.0, 0.5, "bm25+")
    assert reloaded.retrieve(query, 2) == tuned.retrieve(query, 2)


def test_bm25_refuses_another_tokenizer(corpus: list[Chunk], tmp_path: Path) -> None:
    BM25Retriever().add(corpus)
    bm25 = BM25Retriever()
    bm25.add(corpus)
    folder = bm25.save(tmp_path / "bm25")
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["state"]["tokenizer"] = "0123456789abcdef"
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(pz.ConfigError, match="different tokenizer"):
        BM25Retriever.load(folder)


@pytest.mark.parametrize("kwargs", [{"method": "bm26"}, {"k1": 0}, {"b": 1.5}, {"k1": True}])
def test_bm25_bad_config(kwargs: dict[str, object]) -> None:
    with pytest.raises(pz.ConfigError):
        BM25Retriever(**kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------- corpus rules (both kinds)


@pytest.fixture(params=["bm25", "dense"])
def empty(request: pytest.FixtureRequest) -> CorpusRetriever:
    return BM25Retriever() if request.param == "bm25" else DenseRetriever(progress=False)


def test_empty_corpus_retrieves_nothing(empty: CorpusRetriever, tmp_path: Path) -> None:
    assert empty.retrieve("anything at all", 5) == []  # documented: [] ("no relevant context"), no model load
    loaded = type(empty).load(empty.save(tmp_path / "empty"))
    assert len(loaded) == 0
    assert loaded.retrieve("anything at all", 5) == []


@pytest.mark.parametrize(("query", "k"), [("", 3), ("   \n", 3), (None, 3), ("fine", 0), ("fine", -2)])
def test_bad_query_or_k(empty: CorpusRetriever, query: object, k: int) -> None:
    with pytest.raises(pz.InputError):
        empty.retrieve(query, k)  # type: ignore[arg-type]


def add_any(retriever: CorpusRetriever, chunks: list[Chunk]) -> list[str]:
    if isinstance(retriever, DenseRetriever):
        return retriever.add_vectors(chunks, unit_vectors(len(chunks), seed=len(chunks)))
    return retriever.add(chunks)


def test_duplicate_ids_are_refused_and_nothing_is_added(empty: CorpusRetriever) -> None:
    first = [Chunk("one two three", "a"), Chunk("four five six", "b")]
    add_any(empty, first)
    with pytest.raises(pz.InputError, match=r"duplicate chunk id 'a:0-13' \(already in the corpus\)"):
        add_any(empty, [Chunk("seven eight", "c"), Chunk("one two three", "a")])
    with pytest.raises(pz.InputError, match=r"duplicate chunk id 'x' \(repeated in this batch\)"):
        add_any(empty, [Chunk("nine ten", metadata={"id": "x"}), Chunk("eleven", metadata={"id": "x"})])
    assert empty.ids() == ["a:0-13", "b:0-13"]
    assert add_any(empty, [Chunk("seven eight", "c")]) == ["c:0-11"]  # the refused batch left no trace


@pytest.mark.parametrize(
    ("chunks", "message"),
    [
        ([Chunk("   ", "a")], "no text"),
        (["plain string"], "not a Chunk"),
        ([Chunk("text", metadata={"when": object()})], "JSON-serializable"),
    ],
)
def test_bad_chunks(empty: CorpusRetriever, chunks: list[Chunk], message: str) -> None:
    with pytest.raises(pz.InputError, match=message):
        add_any(empty, chunks)
    with pytest.raises(pz.InputError, match="iterable of Chunks"):
        empty.add(Chunk("single"))  # type: ignore[arg-type]


def test_delete_unknown_ids(empty: CorpusRetriever) -> None:
    add_any(empty, [Chunk("one two", "a"), Chunk("three four", "b")])
    with pytest.raises(pz.InputError, match="1 unknown id"):
        empty.delete(["a:0-7", "nope"])
    assert len(empty) == 2  # nothing deleted on a refusal
    assert empty.delete(["a:0-7", "nope"], missing_ok=True) == 1
    assert empty.delete("b:0-10") == 1
    assert len(empty) == 0


def test_saved_folder_errors(empty: CorpusRetriever, tmp_path: Path) -> None:
    add_any(empty, [Chunk("one two three", "a"), Chunk("four five six", "b")])
    folder = empty.save(tmp_path / "index")
    with pytest.raises(pz.InputError, match="not a folder"):
        type(empty).load(tmp_path / "missing")
    other = DenseRetriever if isinstance(empty, BM25Retriever) else BM25Retriever
    with pytest.raises(pz.ConfigError, match=f"holds a '{empty.kind}' index"):
        other.load(folder)
    manifest = folder / MANIFEST
    text = manifest.read_text()
    manifest.write_text(text[: len(text) // 2])
    with pytest.raises(pz.InputError, match="corrupted or not a promptzip index manifest"):
        type(empty).load(folder)
    data = json.loads(text)
    data["version"] = 99
    manifest.write_text(json.dumps(data))
    with pytest.raises(pz.ConfigError, match="format version 99"):
        type(empty).load(folder)
    data["version"] = 1
    data["chunks"][0]["start"] = "x"
    manifest.write_text(json.dumps(data))
    with pytest.raises(pz.InputError, match="malformed chunk record"):
        type(empty).load(folder)
    manifest.unlink()
    with pytest.raises(pz.InputError, match=r"manifest\.json is missing"):
        type(empty).load(folder)


def test_corrupted_index_files_are_refused(empty: CorpusRetriever, tmp_path: Path) -> None:
    add_any(empty, [Chunk("one two three", "a"), Chunk("four five six", "b")])
    folder = empty.save(tmp_path / "index")
    name = max((p for p in folder.iterdir() if p.name != MANIFEST), key=lambda p: p.stat().st_size).name
    pristine = (folder / name).read_bytes()
    (folder / name).write_bytes(pristine[: len(pristine) // 2])
    with pytest.raises(pz.InputError, match=f"{name} is corrupted: its sha256 does not match"):
        type(empty).load(folder)
    (folder / name).unlink()
    with pytest.raises(pz.InputError, match="cannot be read"):
        type(empty).load(folder)
    # Garbage whose hash was "fixed up" in the manifest still gets a clear error, never a raw library one.
    garbage = b"\x93NUMPY garbage " * 20
    (folder / name).write_bytes(garbage)
    manifest = json.loads((folder / MANIFEST).read_text())
    import hashlib

    manifest["files"][name]["sha256"] = hashlib.sha256(garbage).hexdigest()
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(pz.InputError, match=r"not a readable FAISS index|cannot be read"):
        type(empty).load(folder)


# ------------------------------------------------------------------------------------- dense, no model


def test_dense_round_trip_with_precomputed_vectors(tmp_path: Path) -> None:
    chunks = synthetic(200)
    vectors = unit_vectors(200, seed=1)
    dense = DenseRetriever(progress=False)
    dense.add_vectors(chunks[:120], vectors[:120] * 3.0)  # rows are normalized on the way in
    dense.add_vectors(chunks[120:], vectors[120:])
    assert (len(dense), dense.index_kind, dense.dimension) == (200, "flat", DIM)
    hit = dense.search_vector(vectors[7], 3)
    assert hit[0].metadata["id"] == chunk_id(chunks[7])
    assert hit[0].metadata["score"] == pytest.approx(1.0, abs=1e-5)
    assert hit[0].metadata["retriever"] == "dense"
    removed = [chunk_id(c) for c in chunks[7:9]]
    assert dense.delete(removed) == 2
    assert len(dense) == 198
    assert all(c.metadata["id"] not in removed for c in dense.search_vector(vectors[7], 10))
    folder = dense.save(tmp_path / "dense")
    assert sorted(p.name for p in folder.iterdir()) == ["index.faiss", MANIFEST]
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["state"]["encoder"]["fingerprint"] == dense.encoder_fingerprint
    assert manifest["state"]["dimension"] == DIM
    assert manifest["state"]["index"]["kind"] == "flat"
    loaded = DenseRetriever.load(folder)
    assert loaded.ids() == dense.ids()
    for q in (vectors[0], vectors[150], unit_vectors(1, seed=9)[0]):
        assert [(c.metadata, c.text) for c in loaded.search_vector(q, 5)] == [
            (c.metadata, c.text) for c in dense.search_vector(q, 5)
        ]
    loaded.add_vectors(synthetic(5, offset=500), unit_vectors(5, seed=2))  # ids keep counting after a load
    assert len(loaded) == 203
    assert loaded.search_vector(unit_vectors(5, seed=2)[4], 1)[0].text == "synthetic chunk 504"


def test_dense_bad_vectors() -> None:
    dense = DenseRetriever(progress=False)
    dense.add_vectors(synthetic(2), unit_vectors(2, seed=0))
    bad: list[tuple[object, str]] = [
        (unit_vectors(3, seed=0), r"expected 2 vectors"),
        (unit_vectors(2, seed=0, dim=8), "dimension 8"),
        (np.zeros((2, DIM)), "all zeros"),
        (np.full((2, DIM), np.nan), "NaN"),
        ([["a"] * DIM] * 2, "numeric"),
    ]
    for vectors, message in bad:
        with pytest.raises(pz.InputError, match=message):
            dense.add_vectors(synthetic(2, offset=10), vectors)  # type: ignore[arg-type]
    assert len(dense) == 2
    with pytest.raises(pz.InputError, match="dimension 8"):
        dense.search_vector(unit_vectors(1, seed=0, dim=8)[0], 1)


def test_index_kind_follows_corpus_size() -> None:
    spec = IndexSpec(ann_threshold=1000)
    assert (spec.choose(999), spec.choose(1000), IndexSpec(kind="flat").choose(10**9)) == ("flat", "hnsw", "flat")
    vectors = unit_vectors(3000, seed=3)
    chunks = synthetic(3000)
    ann = DenseRetriever(index=spec, progress=False)
    exact = DenseRetriever(index=IndexSpec(kind="flat"), progress=False)
    ann.add_vectors(chunks[:600], vectors[:600])
    assert ann.index_kind == "flat"
    ann.add_vectors(chunks[600:], vectors[600:])  # crosses the threshold: rebuilt as HNSW, no re-encoding
    assert ann.index_kind == "hnsw"
    exact.add_vectors(chunks, vectors)
    assert exact.index_kind == "flat"
    queries = unit_vectors(50, seed=4) + 0.6 * vectors[:50]  # near stored vectors, as real queries are
    recall = np.mean(
        [
            len({c.text for c in ann.search_vector(q, 10)} & {c.text for c in exact.search_vector(q, 10)}) / 10
            for q in queries
        ]
    )
    assert recall >= 0.9  # uniform random vectors are HNSW's hardest case; real embeddings do better
    assert all(ann.search_vector(q, 1)[0].text == exact.search_vector(q, 1)[0].text for q in queries)
    assert ann.search_vector(vectors[1234], 1)[0].text == "synthetic chunk 1234"


def test_hnsw_delete_save_load_and_compaction(tmp_path: Path) -> None:
    spec = IndexSpec(kind="hnsw", compact_ratio=0.3)
    vectors = unit_vectors(1000, seed=5)
    dense = DenseRetriever(index=spec, progress=False)
    dense.add_vectors(synthetic(1000), vectors)
    gone = [chunk_id(c) for c in synthetic(100)]
    dense.delete(gone)  # HNSW cannot remove: tombstones, filtered at search time
    assert len(dense._tombstones) == 100
    assert len(dense) == 900
    for i in range(0, 100, 7):
        assert all(c.metadata["id"] not in gone for c in dense.search_vector(vectors[i], 10))
    loaded = DenseRetriever.load(dense.save(tmp_path / "hnsw"))
    assert loaded.index_kind == "hnsw"
    assert len(loaded) == 900
    assert loaded.search_vector(vectors[5], 10) == dense.search_vector(vectors[5], 10)
    assert all(c.metadata["id"] not in gone for c in loaded.search_vector(vectors[5], 10))
    loaded.delete([chunk_id(c) for c in synthetic(300, offset=100)])  # past compact_ratio: rebuilt
    assert not loaded._tombstones
    assert loaded._index.ntotal == 600
    assert loaded.search_vector(vectors[999], 1)[0].text == "synthetic chunk 999"
    loaded.rebuild("flat")
    assert loaded.index_kind == "flat"
    assert loaded.search_vector(vectors[999], 1)[0].text == "synthetic chunk 999"


def test_wrong_encoder_is_refused(tmp_path: Path) -> None:
    dense = DenseRetriever(progress=False)
    dense.add_vectors(synthetic(3), unit_vectors(3, seed=6))
    folder = dense.save(tmp_path / "dense")
    other = tmp_path / "other-encoder"
    other.mkdir()
    (other / "model.safetensors").write_bytes(b"weights of some other encoder")
    with pytest.raises(pz.ConfigError) as err:
        DenseRetriever.load(folder, model=str(other))
    message = str(err.value)
    assert dense.encoder_fingerprint in message
    assert DenseRetriever(str(other)).encoder_fingerprint in message
    assert "re-index" in message


def test_dense_index_file_and_manifest_must_agree(tmp_path: Path) -> None:
    import hashlib

    a, b = DenseRetriever(progress=False), DenseRetriever(progress=False)
    a.add_vectors(synthetic(3), unit_vectors(3, seed=7))
    b.add_vectors(synthetic(4), unit_vectors(4, seed=7))
    fa, fb = a.save(tmp_path / "a"), b.save(tmp_path / "b")
    data = (fb / "index.faiss").read_bytes()  # a valid FAISS file, but holding another corpus
    (fa / "index.faiss").write_bytes(data)
    manifest = json.loads((fa / MANIFEST).read_text())
    manifest["files"]["index.faiss"]["sha256"] = hashlib.sha256(data).hexdigest()
    (fa / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(pz.InputError, match="disagree"):
        DenseRetriever.load(fa)


@pytest.mark.parametrize(
    "kwargs", [{"kind": "ivf"}, {"ann_threshold": 0}, {"hnsw_m": 2.5}, {"compact_ratio": 0.0}, {"ef_search": True}]
)
def test_bad_index_spec(kwargs: dict[str, object]) -> None:
    with pytest.raises(pz.ConfigError):
        IndexSpec(**kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------- registration


def test_register_retrievers_is_lazy_and_complete() -> None:
    regs = Registries()
    register_retrievers(regs)
    register_retrievers(regs)  # idempotent: the same factories again are no conflict
    assert {"dense", "bm25", "hybrid"} <= set(regs.retrievers._factories)
    assert "cross-encoder" in regs.scorers._factories
    assert isinstance(regs.retrievers._factories["bm25"](k1=1.5), BM25Retriever)
    hybrid = regs.retrievers._factories["hybrid"]()
    assert isinstance(hybrid, HybridRetriever)
    assert hybrid.labels == ("dense", "bm25")
    spec = regs.models._factories["ms-marco-minilm-l6"]()
    assert spec.hub_id == "cross-encoder/ms-marco-MiniLM-L-6-v2"
    assert spec.package is None


# ------------------------------------------------------------------------------------------ with MiniLM


@pytest.mark.slow
def test_dense_retrieves_real_text(corpus: list[Chunk], article: str, tmp_path: Path) -> None:
    dense = DenseRetriever(progress=False)
    dense.add(corpus[:4])
    dense.add(corpus[4:])
    top = dense.retrieve("Who designed and built the iron tower?", 2)
    assert "Gustave Eiffel" in top[0].text
    assert dense.retrieve("yellow tropical fruit", 1)[0].text.startswith("Bananas")
    for hit in top:
        assert article[hit.start : hit.end] == hit.text
        assert hit.source_id == "eiffel"
    from promptzip.retrievers.dense import DenseScorer

    cosines = DenseScorer().score(corpus, "Who designed and built the iron tower?")
    best = int(np.argmax(cosines))
    assert top[0].metadata["id"] == chunk_id(corpus[best])
    assert top[0].metadata["score"] == pytest.approx(cosines[best], abs=1e-4)
    huge = "How tall is the tower? " + "filler words " * 8000  # > 100k characters: the encoder truncates
    assert len(huge) > 100_000
    assert len(dense.retrieve(huge, 3)) == 3
    loaded = DenseRetriever.load(dense.save(tmp_path / "dense"))
    again, before = loaded.retrieve("Olympic beach volleyball", 2), dense.retrieve("Olympic beach volleyball", 2)
    assert [c.metadata["id"] for c in again] == [c.metadata["id"] for c in before]
    # a fresh process embeds its query with the light encoder until the heavy one is loaded: equal within 2e-7
    assert [c.metadata["score"] for c in again] == pytest.approx([c.metadata["score"] for c in before], abs=1e-6)
    hybrid = HybridRetriever([loaded, BM25Retriever()])
    hybrid.retrievers[1].add(corpus)  # type: ignore[attr-defined]
    fused = hybrid.retrieve("Gustave Eiffel's company", 3)
    assert "Gustave Eiffel" in fused[0].text
    assert fused[0].metadata["ranks"] == {"dense": 1, "bm25": 1}


class Precomputed(Retriever):
    """A test double: ``dense.search_vector`` with question embeddings encoded in one batch beforehand."""

    name = "dense"

    def __init__(self, dense: DenseRetriever, questions: Sequence[str]) -> None:
        self.dense = dense
        self.vectors = dict(zip(questions, dense.encoder.embed(questions), strict=True))

    def _retrieve(self, query: str, k: int) -> list[Chunk]:
        return self.dense.search_vector(self.vectors[query], k)


@pytest.mark.slow
@pytest.mark.data
def test_squad_article_recall() -> None:
    """Recall@5 of the gold paragraph over one SQuAD v1.1 dev article's questions (its paragraphs: the corpus).

    Measured on this article's 112 questions: dense .875, BM25 .955, hybrid (RRF) .938; thresholds sit below.
    Questions are batch-encoded (``retrieve``'s own encoding is tested above) to keep this test short.
    """
    from promptzip.evals import data

    require_data("squad")
    article = next(a for a in data.load_squad_dev() if a.title == "Normans")
    chunks = [Chunk(p.text, article.title, p.start, p.end) for p in article.paragraphs]
    dense, bm25 = DenseRetriever(progress=False), BM25Retriever()
    dense.add(chunks)
    bm25.add(chunks)
    dense_view = Precomputed(dense, [q.question for q in article.questions])
    retrievers = {"dense": dense_view, "bm25": bm25, "hybrid": HybridRetriever([dense_view, bm25])}
    recall = {}
    for name, retriever in retrievers.items():
        found = [
            chunk_id(chunks[q.paragraph_index]) in {c.metadata["id"] for c in retriever.retrieve(q.question, 5)}
            for q in article.questions
        ]
        recall[name] = sum(found) / len(found)
    print(f"Normans ({len(article.questions)} questions) recall@5: {recall}")
    assert recall["dense"] >= 0.82
    assert recall["bm25"] >= 0.90
    assert recall["hybrid"] >= 0.88
