"""The built-in token classifier (compressors/_torch_classifier.py) against the transformers path it replaces: the
same word pieces, offsets, special tokens and pad id, the same keep-probabilities in float32 and int8 (padded batches
and windows included), the same compressions, a new process that runs ``balanced`` without importing transformers or
sentence-transformers, and the switch that brings the transformers path back."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from odd_texts import ODD as BERT_ODD

SAMPLE = Path(__file__).resolve().parents[1] / "promptzip" / "_sample"
ODD = [*BERT_ODD, "a"]


def _texts() -> list[str]:
    """The odd texts above, the sample's paragraphs and whole text, and random mixes of both."""
    sample = (SAMPLE / "sotu.txt").read_text(encoding="utf-8")
    paragraphs = [p for p in sample.split("\n\n") if p.strip()]
    rng = random.Random(0)
    pool = "".join(ODD[4:16]) + sample[:4000]
    mixes = ["".join(rng.choice(pool) for _ in range(rng.choice([3, 40, 200, 900]))) for _ in range(40)]
    return [*ODD, *paragraphs[:40], sample[:6000], *mixes]


@pytest.fixture(scope="module")
def both() -> dict[str, tuple[Any, Any]]:
    from promptzip.compressors.token_classifier import load_distilled

    return {"hf": load_distilled(builtin=False), "torch": load_distilled(builtin=True)}


@pytest.mark.slow
def test_the_tokenizer_gives_the_fast_tokenizers_ids_offsets_and_specials(both: dict[str, tuple[Any, Any]]) -> None:
    from promptzip.compressors.token_classifier import _max_length, special_tokens

    (hf_model, hf), (model, ours) = both["hf"], both["torch"]
    assert type(model).__name__ == "TorchTokenClassifier"
    assert type(hf_model).__name__ == "BertForTokenClassification"
    texts = _texts()
    want = hf(texts, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    got = ours(texts, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    assert [list(ids) for ids in want["input_ids"]] == got["input_ids"]
    assert [[tuple(o) for o in row] for row in want["offset_mapping"]] == [list(row) for row in got["offset_mapping"]]
    assert max(len(ids) for ids in got["input_ids"]) > 512  # tokenizer.json's truncation (128) is off
    assert special_tokens(ours) == special_tokens(hf) == ([101], [102])
    assert ours.pad_token_id == hf.pad_token_id == 0
    assert _max_length(model, ours, 128) == _max_length(hf_model, hf, 128)
    assert _max_length(model, ours, 4096) == _max_length(hf_model, hf, 4096) == 512
    assert model.config.num_labels == hf_model.config.num_labels == 2


@pytest.mark.slow
@pytest.mark.parametrize("int8", [False, True])
def test_keep_probabilities_are_the_transformers_models(both: dict[str, tuple[Any, Any]], int8: bool) -> None:
    """Bit for bit: the same padded batches of windows through the same operations (int8: the same quantized
    copies, whose per-batch activation ranges see the same padded rows)."""
    import torch

    from promptzip._precision import int8_model
    from promptzip.compressors.token_classifier import keep_probabilities

    (hf_model, hf), (model, ours) = both["hf"], both["torch"]
    if int8:
        hf_model, model = int8_model(hf_model), int8_model(model)
    texts = _texts()
    for length, overlap, batch in ((128, 16, 8), (128, 16, 3), (512, 64, 8)):
        want = keep_probabilities(hf_model, hf, texts, max_length=length, overlap=overlap, batch_size=batch)
        got = keep_probabilities(model, ours, texts, max_length=length, overlap=overlap, batch_size=batch)
        for (ws, we, wp), (gs, ge, gp) in zip(want, got, strict=True):
            np.testing.assert_array_equal(ws, gs)
            np.testing.assert_array_equal(we, ge)
            np.testing.assert_array_equal(wp, gp)
    ids = torch.tensor([[101, 1996, 3578, 2003, 102], [101, 1996, 102, 0, 0]])
    with torch.inference_mode():
        for mask in ((ids != 0).long(), None):
            want_logits = hf_model(input_ids=ids, attention_mask=mask).logits
            assert torch.equal(model(input_ids=ids, attention_mask=mask).logits, want_logits)


@pytest.mark.slow
def test_merging_writes_copies_not_the_shared_base_weights(both: dict[str, tuple[Any, Any]]) -> None:
    from promptzip._models import resolve_model
    from promptzip.retrievers._light import read_safetensors
    from promptzip.retrievers._torch_bert import torch_bert_encoder

    base = resolve_model("minilm").path
    encoder = torch_bert_encoder(base)
    assert encoder is not None
    on_disk = read_safetensors(base / "model.safetensors")
    name = "encoder.layer.0.attention.self.query.weight"
    merged = both["torch"][0].bert.layers[0].query.weight.numpy()
    assert not np.array_equal(merged, on_disk[name])  # the adapter's delta is in the classifier
    np.testing.assert_array_equal(encoder.module.layers[0].query.weight.numpy(), on_disk[name])
    # the weights LoRA does not touch (embeddings, LayerNorms) are shared views, not copies
    assert both["torch"][0].bert.word.weight.numpy().base is not None


@pytest.mark.slow
def test_a_bert_token_classification_folder_loads_without_transformers_too(tmp_path: Path) -> None:
    from test_token_level import build_tiny_bert, build_tiny_xlmr

    from promptzip.compressors._torch_classifier import classifier_folder_fits, load_classifier
    from promptzip.compressors.token_classifier import keep_probabilities

    folder = build_tiny_bert(tmp_path / "bert")
    assert classifier_folder_fits(folder)
    assert not classifier_folder_fits(build_tiny_xlmr(tmp_path / "xlmr"))
    assert not classifier_folder_fits(build_tiny_bert(tmp_path / "base", encoder_only=True))
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    hf_model = AutoModelForTokenClassification.from_pretrained(str(folder)).eval()
    hf = AutoTokenizer.from_pretrained(str(folder))
    loaded = load_classifier(folder)
    assert loaded is not None
    texts = ["tiny", *ODD[10:16], " ".join(ODD)]
    want = keep_probabilities(hf_model, hf, texts, max_length=64, overlap=16, batch_size=4)
    got = keep_probabilities(*loaded, texts, max_length=64, overlap=16, batch_size=4)
    for (ws, we, wp), (gs, ge, gp) in zip(want, got, strict=True):
        np.testing.assert_array_equal(ws, gs)
        np.testing.assert_array_equal(we, ge)
        np.testing.assert_allclose(wp, gp, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_the_switch_restores_the_transformers_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from promptzip.compressors.token_classifier import builtin_wanted, load_distilled
    from promptzip.retrievers.dense import TORCH_ENV

    assert builtin_wanted()
    assert type(load_distilled()[0]).__name__ == "TorchTokenClassifier"
    monkeypatch.setenv(TORCH_ENV, "0")
    assert not builtin_wanted()
    model, tokenizer = load_distilled()
    assert type(model).__module__.startswith("transformers.")
    assert type(tokenizer).__module__.startswith("transformers.")


_RUN = """
import json, sys
import promptzip as pz
text = open(sys.argv[1], encoding="utf-8").read()
zipper = pz.Zipper.from_preset("balanced", cache="memory")
out = []
for question, budget in ((sys.argv[2], 400), (None, 150)):
    out.append(zipper.compress(text, question=question, budget=budget).text)
heavy = sorted(m for m in ("transformers", "sentence_transformers") if m in sys.modules)
print(json.dumps({"texts": out, "heavy": heavy, "builtin": "promptzip.compressors._torch_classifier" in sys.modules}))
"""


def _fresh(env: dict[str, str]) -> dict[str, Any]:
    question = "What did the President propose to make college more affordable?"
    command = [sys.executable, "-P", "-c", _RUN, str(SAMPLE / "sotu.txt"), question]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.slow
def test_a_new_process_compresses_balanced_without_transformers_and_as_before(tmp_path: Path) -> None:
    from promptzip.retrievers.dense import TORCH_ENV

    env = {**os.environ, "PROMPTZIP_CACHE_DIR": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    env.pop(TORCH_ENV, None)
    new = _fresh(env)
    assert new["heavy"] == []
    assert new["builtin"]
    old = _fresh({**env, TORCH_ENV: "0"})
    assert "transformers" in old["heavy"]
    assert not old["builtin"]
    assert new["texts"] == old["texts"]  # byte for byte
