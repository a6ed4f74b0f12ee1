"""int8 dense scorers on the torch BERT's int8 copy (retrievers/_dense_encoders.py, ``Int8Batches``) against the
sentence-transformers int8 model they replace: the same vectors, token states and query vectors bit for bit (an int8
model quantizes each layer's input per call, so the batches, their order and their padding must be the library's),
the same scores, folders whose pipeline it does not reproduce going to sentence-transformers, a new process that
scores without importing sentence-transformers or transformers, and the switch that brings them back."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fresh_process import run_child
from odd_texts import ODD

from promptzip._models import load_sentence_encoder, resolve_model
from promptzip._precision import with_precision
from promptzip._types import Chunk
from promptzip.retrievers._dense_encoders import Int8Batches, padded_pipeline
from promptzip.retrievers._query_forward import forward_one
from promptzip.retrievers.dense import TORCH_ENV, DenseScorer

pytestmark = pytest.mark.slow

SAMPLE = Path(__file__).resolve().parents[1] / "promptzip" / "_sample"
QUESTION = "What did the President propose to make college more affordable?"


def _texts() -> list[str]:
    """The odd texts, the sample's sentences, texts of equal length (ties in the library's length sort) and
    random mixes of words."""
    sample = (SAMPLE / "sotu.txt").read_text(encoding="utf-8")
    sentences = [s.strip() for s in sample.replace("\n\n", " ").split(". ") if s.strip()]
    words = sample.split()
    rng = random.Random(3)
    mixed = [" ".join(rng.choice(words) for _ in range(rng.choice((1, 4, 30, 90, 400)))) for _ in range(40)]
    ties = ["cat", "dog", "a b", "東京", "x y", "...", "one two", "two one", "three f"]
    return ODD + sentences[:90] + ties + mixed


TEXTS = _texts()


def _int8(name: str) -> Int8Batches:
    scorer = DenseScorer(name, precision="int8")
    batches = scorer.encoders.int8_batches()
    assert batches is not None
    return batches


@pytest.mark.parametrize("name", ["minilm", "minilm-qa"])
def test_vectors_and_token_states_are_the_sentence_transformers_int8_models(name: str) -> None:
    import torch

    heavy = with_precision(load_sentence_encoder(name), "int8")
    batches = _int8(name)
    assert batches.normalize == 1
    assert batches.encoder is _int8(name).encoder  # one int8 copy per folder and process
    for size in (16, 3, 64):
        want = heavy.encode(TEXTS, batch_size=size, convert_to_numpy=True)
        vectors, none = batches.encode(TEXTS, batch_size=size, keep_states=False)
        assert none == []
        np.testing.assert_array_equal(vectors, want)
    outputs = heavy.encode(TEXTS, batch_size=16, output_value=None)
    offsets = heavy.tokenizer(TEXTS, truncation=True, max_length=heavy.max_seq_length, return_offsets_mapping=True)
    vectors, kept = batches.encode(TEXTS, batch_size=16, keep_states=True)
    np.testing.assert_array_equal(vectors, np.stack([o["sentence_embedding"].float().numpy() for o in outputs]))
    for (state, spans), out, pairs in zip(kept, outputs, offsets["offset_mapping"], strict=True):
        np.testing.assert_array_equal(state, out["token_embeddings"][out["attention_mask"].bool()].to(torch.float16))
        np.testing.assert_array_equal(spans, np.asarray(pairs, dtype=np.int32).reshape(-1, 2))
    for text in TEXTS[::9]:  # a query: a batch of one, as the library's pipeline runs it
        np.testing.assert_array_equal(
            batches.encode([text], batch_size=1, keep_states=False)[0][0], forward_one(heavy, text)
        )
    empty, states = batches.encode([], batch_size=16, keep_states=True)
    assert empty.shape == (0, 384)
    assert states == []


@pytest.mark.parametrize("packed", [True, False])
def test_the_scorer_uses_it_and_the_switch_restores_sentence_transformers(
    monkeypatch: pytest.MonkeyPatch, packed: bool
) -> None:
    chunks = [Chunk(t) for t in TEXTS[:80]]
    spans = [[(0, len(c.text) // 2), (len(c.text) // 2, len(c.text))] for c in chunks]
    monkeypatch.delenv(TORCH_ENV, raising=False)
    native = DenseScorer("minilm", precision="int8", packed=packed)
    assert isinstance(native.encoders.int8_batches(), Int8Batches)
    assert native.encoders.packer() is None  # int8 vectors are batched, as the library computes them
    assert native.encoders.torch_encoder() is None
    monkeypatch.setenv(TORCH_ENV, "0")
    old = DenseScorer("minilm", precision="int8", packed=packed)
    assert old.encoders.int8_batches() is None
    assert old.encoders.packer() is None  # the library's batched encode
    assert (old.fingerprint, old.query_fingerprint) == (native.fingerprint, native.query_fingerprint)
    monkeypatch.delenv(TORCH_ENV)
    got = native.score(chunks, QUESTION), native.score_spans(chunks, spans, QUESTION), native.embed_query("why?")
    monkeypatch.setenv(TORCH_ENV, "0")
    want = old.score(chunks, QUESTION), old.score_spans(chunks, spans, QUESTION), old.embed_query("why?")
    assert got[0] == want[0]
    assert got[1] == want[1]
    np.testing.assert_array_equal(got[2], want[2])
    assert native._states.keys() == old._states.keys()
    for text, (state, offsets) in native._states.items():
        np.testing.assert_array_equal(state, old._states[text][0])
        np.testing.assert_array_equal(offsets, old._states[text][1])


def _edited(dest: Path, name: str, **changes: Any) -> Path:
    shutil.copytree(resolve_model("minilm").path, dest)
    path = dest / name
    path.parent.mkdir(exist_ok=True)
    settings = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    settings.update(changes)
    path.write_text(json.dumps(settings), encoding="utf-8")
    return dest


def test_folders_whose_pipeline_it_does_not_reproduce_go_the_old_way(tmp_path: Path) -> None:
    assert padded_pipeline(resolve_model("minilm").path) == ("[PAD]", 1)
    others = [
        _edited(tmp_path / "left", "tokenizer_config.json", padding_side="left"),
        _edited(
            tmp_path / "prompt", "config_sentence_transformers.json", prompts={"q": "query: "}, default_prompt_name="q"
        ),
        _edited(tmp_path / "dim", "config_sentence_transformers.json", truncate_dim=128),
        _edited(tmp_path / "args", "sentence_bert_config.json", model_args={"attn_implementation": "eager"}),
        _edited(tmp_path / "tokens", "2_Normalize/config.json", module_input_name="token_embeddings"),
    ]
    for folder in others:
        assert padded_pipeline(folder) is None, folder.name
        assert DenseScorer(str(folder), precision="int8").encoders.int8_batches() is None, folder.name
    assert DenseScorer("minilm", precision="float32").encoders.int8_batches() is None


_CHILD = """
import json, sys
import promptzip as pz
question, text = sys.argv[1], sys.stdin.read()
zipper = pz.Zipper.from_preset("fast", precision="int8", cache="none")
context = zipper.compress(text, question=question, budget=300).context
loaded = ["sentence_transformers", "transformers", "torch", "promptzip.retrievers._torch_bert"]
print(json.dumps({"context": context, "loaded": [m for m in loaded if m in sys.modules]}))
"""


def _child(text: str, **env: str) -> dict[str, Any]:
    return run_child(_CHILD, QUESTION, stdin=text, **env)


def test_a_new_process_scores_int8_without_sentence_transformers_and_as_before() -> None:
    text = "\n\n".join((SAMPLE / "sotu.txt").read_text(encoding="utf-8").split("\n\n")[:20])
    fresh = _child(text)
    assert fresh["loaded"] == ["torch", "promptzip.retrievers._torch_bert"]
    old = _child(text, **{TORCH_ENV: "0"})
    assert old["loaded"][:2] == ["sentence_transformers", "transformers"]
    assert fresh["context"] == old["context"]  # byte for byte
