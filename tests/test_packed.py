"""Packed encoding: texts laid end to end in rows with block-diagonal attention encode as they do alone."""

from __future__ import annotations

import numpy as np
import pytest

from promptzip._models import load_sentence_encoder
from promptzip.retrievers._packed import Packer, packer_for

pytestmark = pytest.mark.slow

TEXTS = [
    "The Eiffel Tower was completed in 1889 for the World's Fair.",
    "",
    "Short.",
    "Gustave Eiffel's company designed and built the iron lattice tower, which was at first criticised by some of "
    "France's leading artists and intellectuals for its design, but which has become a global cultural icon.",
    " ".join(["A text longer than the encoder's limit of word pieces, cut like the library cuts it."] * 30),
    "The tower is 330 metres tall, about the height of an 81-storey building.",
]


def test_packed_vectors_and_token_states_match_the_library_encode() -> None:
    model = load_sentence_encoder("minilm")  # float32: the comparison is exact up to float rounding
    packer = packer_for(model)
    assert isinstance(packer, Packer)
    encoded = packer.encode(TEXTS, states=True)
    theirs = model.encode(TEXTS, convert_to_numpy=True, normalize_embeddings=True)
    np.testing.assert_allclose(encoded.vectors, theirs, atol=2e-5)
    tokens = model.encode(TEXTS, output_value="token_embeddings")
    assert len(encoded.states) == len(encoded.offsets) == len(TEXTS)
    for state, offsets, expected, text in zip(encoded.states, encoded.offsets, tokens, TEXTS, strict=True):
        assert state.dtype == np.float16
        assert np.isfinite(state).all()
        assert state.shape == tuple(expected.shape)
        assert len(offsets) == len(state)
        np.testing.assert_allclose(state.astype(np.float32), expected.numpy(), atol=2e-2)
        real = offsets[:, 1] > offsets[:, 0]
        assert offsets[real, 1].max(initial=0) <= len(text)
    assert len(encoded.states[4]) == model.max_seq_length  # truncated where the library truncates
    plain = packer.encode(TEXTS)
    np.testing.assert_array_equal(plain.vectors, encoded.vectors)
    assert plain.states == []
    assert plain.offsets == []
    empty = packer.encode([], states=True)
    assert empty.vectors.shape == (0, encoded.vectors.shape[1])
    assert empty.states == []


def test_bins_fill_rows_best_fit_and_keep_long_texts_alone() -> None:
    packer = Packer(load_sentence_encoder("minilm"), row_tokens=100, rows=2)
    lengths = [60, 10, 150, 40, 30, 100, 5]
    rows = packer._bins(lengths)
    assert sorted(t for row in rows for t in row) == list(range(len(lengths)))
    for row in rows:
        assert len(row) == 1 or sum(lengths[t] for t in row) <= 100
    assert [2] in rows  # longer than a row: a row of its own
    assert len(rows) == 4  # 150 | 100 | 60+40 | 30+10+5


def test_only_exactly_packable_pipelines_are_packed() -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    model = load_sentence_encoder("minilm")
    assert packer_for(model) is packer_for(model)  # decided once per model
    cls = SentenceTransformer(modules=[model[0], Pooling(model[0].get_embedding_dimension(), pooling_mode="cls")])
    assert packer_for(cls) is None  # CLS pooling is not a mean over the text's tokens
