"""``promptzip train token-classifier``: targets, segments, peft's LoRA saved in the runtime's adapter layout and
merged back by the runtime, and a smoke training run on tiny local models (the real run takes tens of minutes; its
artifact is checked by the slow tests)."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_token_level import CORPUS, build_tiny_bert, build_tiny_causal_lm

from promptzip._errors import ConfigError
from promptzip.compressors.pruning import group_tokens, word_units
from promptzip.training._distill import segments
from promptzip.training.classifier import TrainConfig, TrainingText, targets_for, train
from promptzip.training.cli import add_train_command


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("train-tiny")
    return {"base": build_tiny_bert(root / "base", encoder_only=True), "teacher": build_tiny_causal_lm(root / "lm")}


def test_targets_mix_teacher_rank_and_alignment() -> None:
    text = TrainingText("xsum", "Paris hosts the games in 2024 again", ("The games: Paris 2024.",))
    starts, ends = word_units(text.text)
    nats = np.array([1.0, 5.0, 0.5, 3.0, 0.1, 4.0, 2.0])
    y = targets_for(text, starts, ends, nats, beta=0.25)
    rank = np.array([2, 6, 1, 4, 0, 5, 3]) / 6
    aligned = np.array([1, 0, 0, 1, 0, 1, 0])
    np.testing.assert_allclose(y, 0.75 * rank + 0.25 * aligned)
    np.testing.assert_allclose(targets_for(text, starts, ends, nats, beta=0.0), rank)
    assert targets_for(TrainingText("x", ""), *word_units(""), np.zeros(0), 0.25).shape == (0,)


def test_segments_align_targets_with_tokens(tiny: dict[str, Path]) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny["base"]))
    texts = [TrainingText("t", " ".join(CORPUS[:3])), TrainingText("t", "")]
    targets = [np.linspace(0, 1, len(word_units(t.text)[0])) for t in texts]
    ids, y, mask = segments(tokenizer, texts, targets, segment=16)
    assert ids.shape == y.shape == mask.shape
    assert ids.shape[1] == 16
    assert (ids[:, 0] == tokenizer.cls_token_id).all()
    assert mask[:, 0].sum() == 0
    assert mask.sum() == len(tokenizer(texts[0].text, add_special_tokens=False)["input_ids"])
    assert ((y >= 0) & (y <= 1)).all()


def test_merged_adapter_reproduces_the_trained_student(tiny: dict[str, Path], tmp_path: Path) -> None:
    """peft's LoRA and head, converted to the runtime's adapter file, give the runtime's merged student exactly the
    outputs of the peft model (and of peft's own merge), and differ from the untrained student."""
    import torch
    from safetensors.torch import save_file

    from promptzip.compressors.token_classifier import build_student
    from promptzip.training._lora import runtime_adapter
    from promptzip.training.classifier import HEADS, student

    config = TrainConfig(
        base=str(tiny["base"]), lora_rank=4, lora_alpha=8.0, lora_targets=("query", "value", "intermediate.dense")
    )
    peft_model, tokenizer = student(config)
    ids = torch.tensor([tokenizer(CORPUS[0])["input_ids"]])
    with torch.inference_mode():
        before = peft_model.eval()(input_ids=ids).logits.clone()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in peft_model.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert trainable
    assert all("lora_" in n or "classifier" in n for n in trainable)
    total = sum(p.numel() for p in peft_model.parameters())
    assert 0 < sum(p.numel() for p in peft_model.parameters() if p.requires_grad) < total / 2
    state = runtime_adapter(peft_model, rank=4, alpha=8.0, heads=HEADS)
    assert {k.rsplit(".", 1)[-1] for k in state if k.startswith("lora.")} == {"A", "B"}
    assert len([k for k in state if k.startswith("lora.")]) == 2 * 3 * 2  # 2 layers x 3 targets x (A, B)
    save_file(state, str(tmp_path / "adapter.safetensors"))
    lora = {"lora_rank": 4, "lora_alpha": 8.0}
    merged, _ = build_student(tiny["base"], adapter=tmp_path / "adapter.safetensors", lora=lora)
    with torch.inference_mode():
        want = peft_model(input_ids=ids).logits
        got = merged(input_ids=ids).logits
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-5)
        assert not np.allclose(got.numpy(), before.numpy(), atol=1e-3)
        own = peft_model.merge_and_unload()(input_ids=ids).logits
        np.testing.assert_allclose(got.numpy(), own.numpy(), atol=1e-5)


def _tiny_config(tiny: dict[str, Path], **settings: Any) -> TrainConfig:
    """A config for the tiny teacher and student: short windows and segments, a rank-2 adapter."""
    base = {"batch_size": 4, "segment": 32, "lora_rank": 2, "teacher_window": 32, "teacher_context": 8}
    return TrainConfig(teacher=str(tiny["teacher"]), base=str(tiny["base"]), **{**base, **settings})


def test_smoke_training_writes_a_small_artifact_with_a_manifest(tiny: dict[str, Path], tmp_path: Path) -> None:
    from promptzip.compressors.token_classifier import (
        TokenClassifierScorer,
        export_distilled,
        keep_probabilities,
        load_distilled,
    )

    texts = [TrainingText("cnn_dm", t, ("engineer tower",)) for t in CORPUS[:6]] + [
        TrainingText("drop", " ".join(CORPUS[:3]), ("1843",))
    ]
    config = _tiny_config(tiny, epochs=2)
    out = tmp_path / "artifact"
    manifest = train(config, out, cache_path=tmp_path / "labels.db", progress=False, texts=texts)
    assert (out / "adapter.safetensors").stat().st_size < 5 << 20
    saved = json.loads((out / "manifest.json").read_text())
    assert saved == manifest
    assert saved["teacher"]["model"] == str(tiny["teacher"])
    assert saved["base"]["package"] is None
    assert saved["training"]["steps"] >= 2
    assert saved["data"]["sources"]["cnn_dm"]["texts"] == 6
    assert set(saved["metrics"]) >= {"spearman", "agree@0.5", "agree@0.33", "random@0.5"}
    assert saved["hyperparameters"]["lora_rank"] == 2
    model, _tokenizer = load_distilled(out)
    assert model.config.num_labels == 2
    exported = export_distilled(tmp_path / "llmlingua-2-bert-base-multilingual-cased-minilm-tc", out)
    scores = TokenClassifierScorer(str(exported), int8=False).token_scores_many([CORPUS[0]])[0].scores
    ts, te, p = keep_probabilities(model, _tokenizer, [CORPUS[0]])[0]
    np.testing.assert_allclose(scores, group_tokens(*word_units(CORPUS[0]), ts, te, p), atol=1e-5)
    # the CPU default quantizes the linear layers to int8: close to float32, not equal, and cached apart
    fast = TokenClassifierScorer(str(exported))
    quantized = fast.token_scores_many([CORPUS[0]])[0].scores
    np.testing.assert_allclose(quantized, scores, atol=0.05)
    assert not np.allclose(quantized, scores, atol=1e-7)
    assert fast.fingerprint != TokenClassifierScorer(str(exported), int8=False).fingerprint
    # the teacher labels are cached: a second run does not score again (same labels, same data hash)
    again = train(config, tmp_path / "again", cache_path=tmp_path / "labels.db", progress=False, texts=texts)
    assert again["data"]["texts_sha256"] == manifest["data"]["texts_sha256"]
    assert again["training"]["teacher_seconds"] < 5
    assert again["files"] == manifest["files"]  # seeded: the same command writes the same adapter
    assert TokenClassifierScorer.name == "token-classifier"


def test_held_out_sources_are_refused_or_left_out() -> None:
    """``held_out`` removes sources from what is read; naming an unknown source, holding out one that is not
    trained on, or holding out everything is a ConfigError before any text loads."""
    from promptzip.training._distill import training_sources

    base = TrainConfig(sources=("new_wiki", "nyt", "reddit"))
    assert training_sources(replace(base, held_out=("reddit",))) == ("new_wiki", "nyt")
    assert training_sources(base) == ("new_wiki", "nyt", "reddit")
    for bad, match in (
        (replace(base, sources=("forums",)), "unknown training source"),
        (replace(base, held_out=("xsum",)), "cannot hold out"),
        (replace(base, held_out=base.sources), "nothing is left"),
    ):
        with pytest.raises(ConfigError, match=match):
            training_sources(bad)


def test_a_held_out_source_is_not_trained_on(
    tiny: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Texts handed to ``train`` obey the hold-out too: the manifest lists only the sources trained on. The
    artifact then stands in for the shipped classifier through ``$PROMPTZIP_MINILM_TC_DIR``, under a fingerprint of
    its own (so no cached score of the shipped one is reused)."""
    from promptzip.compressors.token_classifier import DISTILLED, DISTILLED_ENV, TokenClassifierScorer, distilled_dir

    texts = [TrainingText("nyt", t, ("engineer tower",)) for t in CORPUS[:4]] + [
        TrainingText("reddit", t, ("1843",)) for t in CORPUS[4:6]
    ]
    config = _tiny_config(tiny, epochs=1, held_out=("reddit",))
    manifest = train(config, tmp_path / "art", cache_path=tmp_path / "labels.db", progress=False, texts=texts)
    assert set(manifest["data"]["sources"]) == {"nyt"}
    assert manifest["hyperparameters"]["held_out"] == ["reddit"]
    shipped = TokenClassifierScorer(DISTILLED).fingerprint
    monkeypatch.setenv(DISTILLED_ENV, str(tmp_path / "art"))
    assert distilled_dir() == tmp_path / "art"
    assert TokenClassifierScorer(DISTILLED).fingerprint != shipped


def test_cli_command_is_added_to_a_parser() -> None:
    parser = argparse.ArgumentParser(prog="promptzip")
    add_train_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", "token-classifier", "--chars", "1000", "--max-minutes", "1", "--quiet"])
    assert args.chars == 1000
    assert (args.sources, args.hold_out) == (TrainConfig().sources, ())
    held = parser.parse_args(["train", "token-classifier", "--sources", "nyt,reddit", "--hold-out", "reddit"])
    assert (held.sources, held.hold_out) == (("nyt", "reddit"), ("reddit",))
    assert args.max_minutes == 1.0
    assert args.quiet
    assert callable(args.func)
    with pytest.raises(SystemExit):
        parser.parse_args(["train"])
