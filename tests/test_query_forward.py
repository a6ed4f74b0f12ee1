"""A query through the traced transformer (retrievers/_query_forward.py) is the eager pipeline's embedding, for
texts of every length up to the model's limit, and models it does not apply to keep the eager path (real MiniLM)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

import promptzip as pz
from promptzip._models import load_sentence_encoder
from promptzip.retrievers import _query_forward as qf
from promptzip.retrievers.dense import DenseScorer

WORDS = (Path(pz.__file__).parent / "_sample" / "sotu.txt").read_text().split()


@pytest.mark.slow
def test_traced_queries_equal_the_eager_pipeline_at_every_length() -> None:
    model = load_sentence_encoder("minilm-qa")
    rng = random.Random(3)
    for n in (1, 2, 4, 11, 30, 90, 250, 600):  # 600 words: past the 256-piece limit, truncated alike
        text = " ".join(rng.choice(WORDS) for _ in range(n))
        traced = qf.forward_one(model, text)
        eager = qf.plain_forward_one(model, text)
        assert np.abs(traced - eager).max() <= qf.TOLERANCE
        encoded = model.encode([text], convert_to_numpy=True, normalize_embeddings=True)[0]
        assert np.abs(traced - encoded).max() <= qf.TOLERANCE
    assert qf._traced[model] is not None  # the traced path is in use, not the fallback


@pytest.mark.slow
def test_an_int8_model_keeps_the_eager_path_and_scorers_agree() -> None:
    int8 = DenseScorer(precision="int8", memo=0)
    model = int8.encoders.model()
    assert qf._trace(model) is None  # quantized weights: the traced path does not apply
    query = "When was the tower finished?"
    assert np.abs(int8.embed_query(query) - qf.plain_forward_one(model, query)).max() <= 1e-6
    heavy = DenseScorer(precision="float32", memo=0)
    heavy.encoders.model()
    light = DenseScorer(precision="float32", memo=0, cache=None)
    light.encoders.light_tried, light.encoders.light = True, None  # as a process whose light encoder is off
    assert np.abs(heavy.embed_query(query) - light.embed_query(query)).max() <= qf.TOLERANCE
