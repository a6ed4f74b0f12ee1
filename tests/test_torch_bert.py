"""The torch BERT (retrievers/_torch_bert.py) against the sentence-transformers path it replaces in the dense scorer:
the same word pieces and offsets, the same vectors and token states, the same scores and compressions, and a new
process that scores many sentences without importing sentence-transformers or transformers."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from fresh_process import run_child
from odd_texts import ODD

from promptzip._models import load_sentence_encoder, resolve_model
from promptzip._precision import with_precision
from promptzip._types import Chunk
from promptzip.retrievers._light import bert_shape
from promptzip.retrievers._packed import Packer, packer_for
from promptzip.retrievers._query_forward import TOLERANCE, plain_forward_one
from promptzip.retrievers._torch_bert import TorchBertEncoder, torch_bert_encoder
from promptzip.retrievers.dense import TORCH_ENV, DenseScorer

pytestmark = pytest.mark.slow

SAMPLE = Path(__file__).resolve().parents[1] / "promptzip" / "_sample"


def _texts() -> list[str]:
    """Several hundred texts: the odd ones above, the sample's sentences, and random mixes of both."""
    sample = (SAMPLE / "sotu.txt").read_text(encoding="utf-8")
    sentences = [s.strip() for s in sample.replace("\n\n", " ").split(". ") if s.strip()]
    words = sample.split()
    pieces = [piece for text in ODD[:19] for piece in text.split()] or ["x"]
    rng = random.Random(7)
    mixed = []
    for _ in range(200):
        n = rng.choice((1, 2, 3, 5, 8, 13, 30, 60, 120, 300))
        parts = [rng.choice(pieces) if rng.random() < 0.25 else rng.choice(words) for _ in range(n)]
        mixed.append("".join(part + rng.choice((" ", " ", " ", "", "\n", "\t", "  ")) for part in parts))
    return ODD + sentences[:150] + mixed


TEXTS = _texts()


def _native(name: str) -> TorchBertEncoder:
    encoder = torch_bert_encoder(resolve_model(name).path)
    assert encoder is not None
    return encoder


@pytest.mark.parametrize("name", ["minilm", "minilm-qa"])
def test_word_pieces_and_offsets_are_the_fast_tokenizers(name: str) -> None:
    heavy = load_sentence_encoder(name)
    native = _native(name)
    assert native.limit == heavy.max_seq_length == 256
    theirs = heavy.tokenizer(TEXTS, truncation=True, max_length=heavy.max_seq_length, return_offsets_mapping=True)
    ids, offsets = native.tokenize(TEXTS)
    assert ids == theirs["input_ids"]
    for mine, their in zip(offsets, theirs["offset_mapping"], strict=True):
        np.testing.assert_array_equal(mine, np.asarray(their, dtype=np.int32).reshape(-1, 2))
    assert sum(len(x) == 256 for x in ids) >= 20  # truncation is exercised
    assert ids[0] == [101, 102]  # the empty text: [CLS] [SEP]


@pytest.mark.parametrize("name", ["minilm", "minilm-qa"])
@pytest.mark.parametrize("precision", ["float32", "bfloat16", "int8"])
def test_packed_passes_equal_the_sentence_transformers_packer(name: str, precision: str) -> None:
    heavy = with_precision(load_sentence_encoder(name), precision)
    packer = packer_for(heavy)
    if precision == "int8":  # activations quantized per batch: packed vectors are not the library encode's, so the
        assert packer is None  # dense scorer's int8 vectors stay sentence-transformers' batched ones; packed alike:
        packer = Packer(heavy)
    assert isinstance(packer, Packer)
    native = _native(name).in_precision(precision)
    assert native is _native(name).in_precision(precision)  # one copy per precision
    texts = TEXTS if precision == "float32" else TEXTS[::4]  # bfloat16 is emulated (slow) on most CPUs
    ours = native.encode(texts, states=True)
    theirs = packer.encode(texts, states=True)
    assert ours.vectors.dtype == np.float32
    assert ours.vectors.shape == theirs.vectors.shape
    assert np.abs(ours.vectors - theirs.vectors).max() <= 1e-5
    assert len(ours.states) == len(ours.offsets) == len(texts)
    for mine, their, my_offsets, their_offsets in zip(
        ours.states, theirs.states, ours.offsets, theirs.offsets, strict=True
    ):
        assert mine.dtype == their.dtype == np.float16
        np.testing.assert_array_equal(mine, their)  # the same operations in the same order
        np.testing.assert_array_equal(my_offsets, their_offsets)
    plain = native.encode(texts)
    np.testing.assert_array_equal(plain.vectors, ours.vectors)
    assert plain.states == plain.offsets == []
    if precision == "float32":  # and the library's own (batched, padded) encode, within float32 rounding
        library = heavy.encode(texts[::3], convert_to_numpy=True, normalize_embeddings=True)
        assert np.abs(ours.vectors[::3] - library).max() <= 2e-5
    empty = native.encode([], states=True)
    assert empty.vectors.shape == (0, 384)


def test_queries_equal_the_sentence_transformers_pipeline() -> None:
    heavy = load_sentence_encoder("minilm-qa")
    native = _native("minilm-qa")
    for text in TEXTS[::15]:
        assert np.abs(native.encode_query(text) - plain_forward_one(heavy, text)).max() <= TOLERANCE


def test_the_scorer_uses_it_and_the_switch_restores_sentence_transformers(monkeypatch: pytest.MonkeyPatch) -> None:
    chunks = [Chunk(t) for t in TEXTS[:120]]
    query = "What did the President propose to make college more affordable?"
    native = DenseScorer("minilm", precision="float32")
    assert isinstance(native.encoders.packer(), TorchBertEncoder)
    monkeypatch.setenv(TORCH_ENV, "0")
    old = DenseScorer("minilm", precision="float32")
    assert isinstance(old.encoders.packer(), Packer)  # the sentence-transformers model's packed pass
    assert old.fingerprint == native.fingerprint  # cache keys stay valid across the two
    assert old.query_fingerprint == native.query_fingerprint
    assert np.abs(native.embed([c.text for c in chunks]) - old.embed([c.text for c in chunks])).max() <= 1e-5
    np.testing.assert_allclose(native.score(chunks, query), old.score(chunks, query), atol=1e-5)
    for text in {c.text for c in chunks}:  # the token states span pooling reads
        if text in native._states:
            mine, theirs = native._states[text], old._states[text]
            np.testing.assert_array_equal(mine[0], theirs[0])
            np.testing.assert_array_equal(mine[1], theirs[1])
    monkeypatch.delenv(TORCH_ENV)
    # int8 and packed=False keep sentence-transformers' batched pass (per-batch quantization is not packable)
    assert DenseScorer("minilm", precision="int8").encoders.torch_encoder() is None
    assert DenseScorer("minilm", precision="float32", packed=False).encoders.packer() is None


def test_a_folder_that_is_not_a_mean_pooling_bert_goes_the_old_way(tmp_path: Path) -> None:
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import RobertaConfig, RobertaModel

    source = resolve_model("minilm").path
    base = tmp_path / "roberta"
    config = RobertaConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=300,
        pad_token_id=0,
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        RobertaModel(config).save_pretrained(base)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        (base / name).write_bytes((source / name).read_bytes())
    folder = tmp_path / "encoder"
    first = Transformer(str(base), max_seq_length=256)
    SentenceTransformer(modules=[first, Pooling(32, pooling_mode="mean")], device="cpu").save(str(folder))
    assert bert_shape(folder) is None
    assert torch_bert_encoder(folder) is None
    scorer = DenseScorer(str(folder), precision="float32")
    assert scorer.encoders.torch_encoder() is None
    got = scorer.embed(TEXTS[:20])
    expected = SentenceTransformer(str(folder), device="cpu").encode(
        TEXTS[:20], convert_to_numpy=True, normalize_embeddings=True
    )
    assert np.abs(got - expected).max() <= 2e-5


_CHILD = """
import json, sys
import promptzip as pz
question, text = sys.argv[1], sys.stdin.read()
result = pz.Zipper.from_preset("fast", cache="none").compress(text, question=question, budget=300)
loaded = ["sentence_transformers", "transformers", "torch", "promptzip.retrievers._torch_bert"]
print(json.dumps({"context": result.context, "loaded": [m for m in loaded if m in sys.modules]}))
"""


def _child(text: str, question: str, **env: str) -> dict[str, object]:
    return run_child(_CHILD, question, stdin=text, **env)


def test_a_new_process_scores_many_sentences_without_sentence_transformers() -> None:
    paragraphs = (SAMPLE / "sotu.txt").read_text(encoding="utf-8").split("\n\n")
    text = "\n\n".join(paragraphs[:20])  # about 130 sentences: more than the light encoder's 64
    question = "What did the President propose to make college more affordable?"
    fresh = _child(text, question)
    assert fresh["loaded"] == ["torch", "promptzip.retrievers._torch_bert"]
    old = _child(text, question, **{TORCH_ENV: "0"})
    assert old["loaded"] == ["sentence_transformers", "transformers", "torch"]
    assert fresh["context"] == old["context"]
