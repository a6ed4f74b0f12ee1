"""Fingerprints are derived from configuration: changing any constructor option of a component changes it."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from promptzip._fingerprint import RUNTIME_ONLY, derived_fingerprint
from promptzip.compressors.abstractive import AbstractiveCompressor
from promptzip.compressors.demonstrations import DemonstrationCompressor
from promptzip.compressors.extractive import ExtractiveCompressor
from promptzip.compressors.summarizers import LocalSummarizer, OpenAISummarizer
from promptzip.compressors.token_prune import PrunedExtractiveCompressor, TokenPruneCompressor
from promptzip.compressors.token_scores import WordLengthScorer
from promptzip.retrievers.hybrid import HybridScorer
from promptzip.retrievers.rerank import RerankedScorer
from promptzip.retrievers.sparse import BM25Scorer
from promptzip.testing import KeywordScorer

# Components given to a constructor: the value a test swaps in is another component with another fingerprint.
OTHER: dict[str, Callable[[], Any]] = {
    "scorer": lambda: BM25Scorer(k1=2.0),
    "dense": lambda: BM25Scorer(k1=2.0),
    "sparse": lambda: BM25Scorer(k1=3.0),
    "first": lambda: BM25Scorer(k1=2.0),
    "reranker": lambda: BM25Scorer(k1=3.0),
    "extractive": lambda: ExtractiveCompressor(BM25Scorer(k1=2.0)),
    "inner": lambda: ExtractiveCompressor(BM25Scorer(k1=2.0)),
    "summarizer": lambda: LocalSummarizer("another-model"),
}

BUILDERS: dict[str, tuple[type, dict[str, Any]]] = {
    "extractive": (ExtractiveCompressor, {"scorer": KeywordScorer()}),
    "demonstrations": (DemonstrationCompressor, {"scorer": KeywordScorer()}),
    "token-prune": (TokenPruneCompressor, {"scorer": WordLengthScorer()}),
    "pruned-extractive": (
        PrunedExtractiveCompressor,
        {"extractive": ExtractiveCompressor(KeywordScorer()), "scorer": WordLengthScorer()},
    ),
    "abstractive": (
        AbstractiveCompressor,
        {"inner": ExtractiveCompressor(KeywordScorer()), "summarizer": LocalSummarizer()},
    ),
    "bm25": (BM25Scorer, {}),
    "hybrid": (HybridScorer, {"dense": KeywordScorer(), "sparse": BM25Scorer()}),
    "reranked": (RerankedScorer, {"first": KeywordScorer(), "reranker": BM25Scorer()}),
    "local-summarizer": (LocalSummarizer, {}),
    "openai-summarizer": (OpenAISummarizer, {"base_url": "http://127.0.0.1:9/v1", "model": "m"}),
}
# What a fingerprint leaves out on purpose: nothing an output depends on.
SKIPPED = {"threads", "api_key", "api_key_env", "timeout"}


def _alternatives(name: str, value: Any) -> list[Any]:
    if name in OTHER:
        return [OTHER[name]()]
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1, value - 1]
    if isinstance(value, float):
        return [value + 0.0625, value - 0.0625]
    if isinstance(value, tuple):
        return [value[:-1] if len(value) > 1 else (*value, value[0] if value else 0.25), (0.125,), ("x",)]
    if isinstance(value, str):
        return [value + "x", "http://127.0.0.2:9/v1"]
    if isinstance(value, dict):
        return [{**value, "seed": 1}]
    if value is None:
        return [0.5, "x", ("x",), {"seed": 1}]
    raise AssertionError(f"no alternative for {name}={value!r}")


def _options(cls: type, given: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for p in inspect.signature(cls.__init__).parameters.values():
        if p.name == "self" or p.name in RUNTIME_ONLY or p.name in SKIPPED:
            continue
        out[p.name] = given.get(p.name, p.default)
    return out


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_changing_any_option_changes_the_fingerprint(kind: str) -> None:
    cls, given = BUILDERS[kind]
    base = cls(**given)
    for name, value in _options(cls, given).items():
        changed = None
        for other in _alternatives(name, value):
            try:
                changed = cls(**{**given, name: other})
                break
            except (ValueError, TypeError):  # out of range for this option: try the next alternative
                continue
        assert changed is not None, f"{kind}: no valid other value for {name}"
        assert changed.fingerprint != base.fingerprint, f"{kind}: {name} does not reach the fingerprint"
        assert cls(**given).fingerprint == base.fingerprint  # and it is stable


def test_secrets_never_reach_a_fingerprint() -> None:
    s = OpenAISummarizer(base_url="http://user:pw@127.0.0.1:9/v1", model="m", api_key="sk-secret")
    assert "sk-secret" not in s.fingerprint
    assert "pw" not in s.fingerprint


def test_a_parameter_that_is_not_stored_is_an_error_not_a_silent_omission() -> None:
    class Forgetful:
        def __init__(self, k: int = 1) -> None:
            self.kk = k

    with pytest.raises(TypeError, match="'k'"):
        derived_fingerprint(Forgetful())
