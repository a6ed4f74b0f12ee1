"""The cascade (``fast`` with ``cascade=True``): a static model distilled from the local encoder, BM25 + static
vectors for every sentence, the encoder only on the sentences the budget can use."""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

import promptzip as pz
from promptzip._budget_scope import budget_scope, current_budget
from promptzip._cache import MemoryCache
from promptzip._errors import ConfigError, ModelNotAvailable
from promptzip._registry import registries
from promptzip._types import Chunk

ANSWER = "The lighthouse keeper, Miriam Okafor, counted 4,812 gannets on the north cliffs in the spring survey."
QUESTION = "How many gannets did the lighthouse keeper count on the north cliffs?"


def _sample() -> str:
    return (resources.files("promptzip") / "_sample" / "sotu.txt").read_text(encoding="utf-8")


def _planted() -> str:
    """The State of the Union sample with one answer sentence planted in a paragraph two thirds of the way in."""
    paragraphs = _sample().split("\n\n")
    at = 2 * len(paragraphs) // 3
    paragraphs[at] = f"{paragraphs[at]} {ANSWER}"
    return "\n\n".join(paragraphs)


def _compress(zipper: pz.Zipper, text: str, question: str, budget: int) -> pz.Result:
    """A compression with its budget known to the compressor, as the pipeline gives it (budget less the question)."""
    tok = zipper.tokenizer
    with budget_scope(budget - tok.count(question) - tok.count(zipper.separator)):
        return zipper.compress(text, question=question, budget=budget)


def _entries(cache: MemoryCache) -> int:
    return int(cache.stats()["entries"])


@pytest.fixture(scope="module")
def cascade() -> pz.Zipper:
    return pz.Zipper.from_preset("fast", target="o200k_base", cache=MemoryCache(max_bytes=1 << 28), cascade=True)


# ------------------------------------------------------------------------------------------------ without models
def test_budget_scope_nests_and_resets() -> None:
    assert current_budget() is None
    with budget_scope(400):
        assert current_budget() == 400
        with budget_scope(120):
            assert current_budget() == 120
        assert current_budget() == 400
    assert current_budget() is None


def test_the_option_and_the_names_are_registered() -> None:
    from promptzip.evals.methods import method_names

    assert "cascade" in registries.scorers
    assert "minilm-qa-static" in registries.models
    assert "promptzip-fast-cascade" in method_names(slow=False)
    with pytest.raises(ConfigError, match="cascade"):
        pz.Zipper.from_preset("fast", cascade="yes")
    with pytest.raises(ConfigError, match="cascade_factor"):
        pz.Zipper.from_preset("fast", cascade=True, cascade_factor=0)


def test_bench_sets_each_variant_against_its_preset() -> None:
    from promptzip.evals.bench import markdown

    def row(method: str, cold: float, warm: float) -> dict[str, object]:
        return {
            "method": method,
            "size": 4000,
            "tokens": 3900,
            "budget": 390,
            "load_s": 3.0,
            "cold_s": cold,
            "warm_s": warm,
            "indexed_s": warm / 2,
            "cold_tokens_per_s": 3900 / cold,
            "warm_tokens_per_s": 3900 / warm,
            "ratio_cold": 10.2,
            "ratio_warm": 10.1,
            "tokens_out": 382,
            "peak_rss_mb": 700.0,
            "rss_after_load_mb": 690.0,
            "source": "the packaged State of the Union sample",
            "date": "2026-12-05",
        }

    report = {
        "machine": "x86_64 CPU, 2 cores (shared), Python 3.11",
        "date": "2026-12-05",
        "load_average": [[1.0, 1.0, 1.0], [1.5, 1.2, 1.1]],
        "ratio": 10,
        "source": "the packaged State of the Union sample",
        "threads": 1,
        "sizes": [4000],
        "llmlingua_sizes": [1000],
        "rows": [row("promptzip-fast", 0.8, 0.05), row("promptzip-fast-cascade", 0.2, 0.1)],
    }
    text = markdown(report)
    assert "| 3900 | 0.800 | 0.200 | 4.00x | 0.050 | 0.100 | 0.50x | 0.025 | 0.050 | 10.2 |" in text
    assert "1.50 / 1.20 / 1.10 after" in text


# ------------------------------------------------------------------------------------------------ with models
@pytest.mark.slow
def test_the_static_model_is_distilled_from_the_local_encoder_once() -> None:
    from promptzip._models import resolve_model
    from promptzip.retrievers.static import load_static_model, static_model_path

    folder = static_model_path("minilm-qa")  # the first use distils it (the registry's name only finds it)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["dims"] == 256
    assert resolve_model("minilm-qa-static").path == folder  # the registry name is the same derived folder
    stamp = (folder / "vectors.npy").stat().st_mtime_ns
    assert static_model_path("minilm-qa") == folder
    assert (folder / "vectors.npy").stat().st_mtime_ns == stamp  # found, not built again

    model = load_static_model("minilm-qa-static")
    vectors, pieces = model.encode(
        ["The Eiffel Tower stands in Paris.", "Bananas grow on large plants.", "Where is the Eiffel Tower?", ""]
    )
    assert vectors.shape == (4, 256)
    assert pieces[3] == 0
    assert not vectors[3].any()
    assert np.allclose(np.linalg.norm(vectors[:3], axis=1), 1.0, atol=1e-5)
    assert vectors[2] @ vectors[0] > vectors[2] @ vectors[1] + 0.2


@pytest.mark.slow
def test_a_static_model_that_does_not_match_its_manifest_is_refused(tmp_path: Path) -> None:
    from promptzip.retrievers.static import StaticModel, static_model_path

    copy = tmp_path / "static"
    shutil.copytree(static_model_path("minilm-qa"), copy)
    vectors = np.load(copy / "vectors.npy")
    vectors[1234] += np.float16(0.5)
    np.save(copy / "vectors.npy", vectors)
    with pytest.raises(ModelNotAvailable, match="does not match its manifest"):
        StaticModel.from_folder(copy)


@pytest.mark.slow
def test_a_static_model_that_cannot_be_built_is_a_typed_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from promptzip.retrievers.cascade import CascadeScorer
    from promptzip.retrievers.dense import DenseScorer
    from promptzip.retrievers.sparse import BM25Scorer
    from promptzip.retrievers.static import static_model_path

    empty = tmp_path / "not-an-encoder"
    empty.mkdir()
    scorer = CascadeScorer(DenseScorer("minilm"), BM25Scorer(), static=str(empty))
    sentences = [Chunk(f"Sentence number {i:02d} is about gannets and cliffs.", "s", 50 * i) for i in range(40)]
    with budget_scope(30), pytest.raises(ModelNotAvailable, match=r"tokenizer\.json"):
        scorer.score(sentences, "How many gannets?")
    with pytest.raises(ModelNotAvailable):
        static_model_path("no-such-encoder")
    monkeypatch.setenv("PROMPTZIP_CACHE_DIR", str(tmp_path / "fresh"))
    with pytest.raises(ModelNotAvailable, match=r"python -P -m promptzip\.retrievers\.static"):
        static_model_path("minilm", build=False)  # a lookup (promptzip models) does not distil
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder", encoding="utf-8")
    monkeypatch.setenv("PROMPTZIP_CACHE_DIR", str(blocked))
    with pytest.raises(ModelNotAvailable, match="PROMPTZIP_CACHE_DIR"):
        static_model_path("minilm")


@pytest.mark.slow
def test_the_cascade_keeps_the_planted_answer_within_budget_reading_fewer_sentences(cascade: pz.Zipper) -> None:
    text = _planted()
    fast_cache = MemoryCache(max_bytes=1 << 28)
    fast = pz.Zipper.from_preset("fast", target="o200k_base", cache=fast_cache)
    budget = fast.tokenizer.count(text) // 20

    plain = _compress(fast, text, QUESTION, budget)
    before = _entries(cascade.cache)  # type: ignore[arg-type]
    r = _compress(cascade, text, QUESTION, budget)

    assert ANSWER in r.text
    assert ANSWER in plain.text
    assert r.tokens_out <= budget
    assert cascade.tokenizer.count(r.text) <= budget
    read, scored = cascade.compressor.scorer.last_read()  # type: ignore[attr-defined]
    assert read < scored / 3
    # what the encoder read is what went into the cache: the cascade's vectors against fast's, one per sentence
    assert _entries(cascade.cache) - before < _entries(fast_cache) / 3  # type: ignore[arg-type]
    assert r.fingerprint != plain.fingerprint


@pytest.mark.slow
def test_candidates_outrank_every_sentence_the_encoder_did_not_read(cascade: pz.Zipper) -> None:
    from promptzip._split import chunk_source
    from promptzip.compressors._stitching import chunk_sentences as _sentences

    scorer = cascade.compressor.scorer  # type: ignore[attr-defined]
    sentences, _ = _sentences(chunk_source(_planted(), "doc", max_chunk_chars=2000))
    with budget_scope(300):
        scores = np.asarray(scorer.score(sentences, QUESTION))
        read = np.abs(scorer.embed([s.text for s in sentences])).sum(axis=1) > 0
    assert 0 < read.sum() < len(sentences) / 3
    assert scores[read].min() > scores[~read].max()
    # where no budget is known, and without a question, the scores are the hybrid scorer's
    assert scorer.score(sentences[:50], QUESTION) == scorer.hybrid.score(sentences[:50], QUESTION)
    with budget_scope(300):
        assert scorer.score(sentences[:50], None) == scorer.hybrid.score(sentences[:50], None)
        assert scorer.last_read() is None


@pytest.mark.slow
def test_the_cascade_has_its_own_fingerprint(cascade: pz.Zipper) -> None:
    fast = pz.Zipper.from_preset("fast", target="o200k_base", cache="memory")
    wider = pz.Zipper.from_preset("fast", target="o200k_base", cache="memory", cascade=True, cascade_factor=5.0)
    assert len({fast.fingerprint, cascade.fingerprint, wider.fingerprint}) == 3
    assert "static:minilm-qa-static-" in cascade.compressor.fingerprint


@pytest.mark.slow
def test_the_pipeline_tells_the_cascade_its_budget(cascade: pz.Zipper) -> None:
    text = _planted()
    r = cascade.compress(text, question=QUESTION, budget=cascade.tokenizer.count(text) // 20)
    assert ANSWER in r.text
    assert cascade.compressor.scorer.last_read() is not None  # type: ignore[attr-defined]
