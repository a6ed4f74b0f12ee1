"""The first compression in a new process and the warm path's memos: a new question over a warm cache needs only
the question's embedding (the NumPy light encoder: no torch, transformers or sentence-transformers import); the
dense scorer's memo holds a request larger than its default size and hashes each sentence once; the duplicate mask
is the same with its normal forms remembered."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import promptzip as pz
from promptzip._cache import MemoryCache, encode_array, make_key
from promptzip._tokenizers import text_memos_disabled
from promptzip._types import Chunk
from promptzip.compressors.filters import duplicate_mask
from promptzip.retrievers import dense as dense_module
from promptzip.retrievers.dense import DenseScorer

SAMPLE = Path(__file__).resolve().parents[1] / "promptzip" / "_sample"
HEAVY = ("torch", "transformers", "sentence_transformers")

# The CLI in this interpreter, then the heavy modules it imported, as the last line of stderr.
_CLI = """
import json, sys
from promptzip.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
heavy = ("torch", "transformers", "sentence_transformers", "faiss", "peft")
print(json.dumps({"loaded": [m for m in heavy if m in sys.modules], "code": code}), file=sys.stderr)
"""


def _cli(*args: str) -> tuple[dict[str, object], list[str]]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("PROMPTZIP_LIGHT_ENCODER", None)
    done = subprocess.run(
        [sys.executable, "-P", "-c", _CLI, *args], capture_output=True, text=True, env=env, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stderr.strip().splitlines()[-1])
    assert status["code"] in (0, None), done.stderr
    loaded = status["loaded"]
    assert isinstance(loaded, list)
    return (json.loads(done.stdout) if done.stdout.strip() else {}), loaded


@pytest.mark.slow
def test_a_new_question_over_a_warmed_cache_imports_no_torch(tmp_path: Path) -> None:
    paragraphs = (SAMPLE / "sotu.txt").read_text(encoding="utf-8").split("\n\n")
    source = tmp_path / "speech.txt"
    source.write_text("\n\n".join(paragraphs[:16]), encoding="utf-8")  # ~2k tokens: the warm-up stays short
    url = f"sqlite:///{tmp_path}/cache.db"
    _, warmed_with = _cli("warm", str(source), "--cache", url, "--quiet")
    assert warmed_with == ["torch"]  # the warm-up encodes every sentence, with the built-in torch encoder

    question = "What did the President propose to make college more affordable?"
    budget = "200"
    args = ("compress", str(source), "--question", question, "--budget", budget, "--cache", url, "--json", "--quiet")
    result, loaded = _cli(*args)
    assert loaded == []  # the question's embedding came from the NumPy encoder, the rest from the cache
    assert 0 < int(result["tokens_out"]) <= int(budget)  # type: ignore[call-overload]
    # the same context as a process that has the heavy model loaded and nothing cached
    reference = pz.Zipper.from_preset("fast", cache="memory").compress(
        source.read_text(encoding="utf-8"), question=question, budget=int(budget)
    )
    assert result["context"] == reference.context

    again, loaded = _cli(*args)  # the question's embedding is cached now: no encoder at all
    assert loaded == []
    assert again["context"] == result["context"]


def _warm_scorer(texts: list[str], *, memo: int) -> tuple[DenseScorer, MemoryCache]:
    """A scorer whose cache holds a vector for every text (random unit rows: no encoder runs)."""
    cache = MemoryCache()
    scorer = DenseScorer(precision="float32", cache=cache, memo=memo)
    rng = np.random.default_rng(0)
    for text in texts:
        vector = rng.standard_normal(384).astype(np.float32)
        cache.put(make_key("emb:" + scorer.fingerprint, text), encode_array(vector / np.linalg.norm(vector)))
    return scorer, cache


def test_the_memo_holds_a_request_larger_than_its_default() -> None:
    texts = [f"Sentence number {i} of a long request." for i in range(300)]
    scorer, cache = _warm_scorer(texts, memo=64)
    first = scorer.embed(texts)
    reads = cache.hits
    assert reads == len(texts)
    second = scorer.embed(texts)  # the whole request is in memory now, though it is larger than memo=64
    assert cache.hits == reads
    np.testing.assert_array_equal(first, second)
    off, off_cache = _warm_scorer(texts[:10], memo=0)  # memo=0 still means no memo
    off.embed(texts[:10])
    off.embed(texts[:10])
    assert off_cache.hits == 20


def test_each_sentence_is_hashed_once_across_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [f"A sentence about topic {i}, with some words." for i in range(40)]
    scorer, _ = _warm_scorer(texts, memo=4096)
    hashed: list[str] = []
    real = dense_module.make_key

    def counting(namespace: str, *parts: str | bytes) -> str:
        if namespace.startswith("emb:"):
            hashed.extend(str(p) for p in parts)
        return real(namespace, *parts)

    monkeypatch.setattr(dense_module, "make_key", counting)
    chunks = [Chunk(t) for t in texts]
    first = scorer.score(chunks, None)  # centrality: no query, no encoder
    scorer.score_pooled([Chunk(" ".join(texts[:2]))], [[(0, len(texts[0]))]], None)
    scorer.embed(texts[5:9])
    assert sorted(hashed) == sorted(texts)  # each text once, over three passes
    assert scorer.score(chunks, None) == first
    assert len(hashed) == len(texts)


def _reference_mask(texts: list[str]) -> list[bool]:
    """The duplicate mask without embeddings, as it was computed before its normal forms were remembered."""
    seen: set[str] = set()
    out = []
    for text in texts:
        key = re.sub(r"\W+", " ", text.lower(), flags=re.UNICODE).strip()
        out.append(key in seen)
        seen.add(key)
    return out


def test_duplicate_masks_are_unchanged_by_the_remembered_normal_forms() -> None:
    base = [
        "The tower is 330 metres tall.",
        "the TOWER is 330 metres tall!",
        "The tower is 330 metres tall",
        "Ünïcödé façade — naïve café.",
        "ünïcödé FAÇADE naïve café",
        "",
        "...",
        "   ",
        "Different words entirely.",
    ]
    texts = base + [f"Sentence {i % 700}: filler text, number {i % 700}." for i in range(1500)]  # past 512
    expected = _reference_mask(texts)
    assert sum(expected) > 800  # many repeats, and some across case and punctuation
    assert duplicate_mask(texts) == expected
    assert duplicate_mask(texts) == expected  # the normal forms remembered
    with text_memos_disabled():
        assert duplicate_mask(texts) == expected
    texts[-1] = "Entirely new words, one more time."
    vectors = np.eye(len(texts), dtype=np.float32)
    vectors[-1] = vectors[8]  # the vector of "Different words entirely.": a duplicate by embedding only
    mask = duplicate_mask(texts, vectors, candidates=[8, len(texts) - 1])
    assert mask[-1]
    assert mask[:-1] == _reference_mask(texts)[:-1]
