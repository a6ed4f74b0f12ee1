"""Soft prompts: segmenting, per-segment cache, errors, serialization, the real decoder, training and resuming."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from promptzip import ConfigError, InputError
from promptzip._cache import MemoryCache, NullCache
from promptzip.compressors.soft import (
    SoftConfig,
    SoftEncoder,
    SoftPrompt,
    SoftSegment,
    packaged_dir,
)
from promptzip.compressors.soft_decoder import inputs_embeds, qa_suffix, vllm_completions_body, vllm_prompt_embeds

torch = pytest.importorskip("torch")

TEXT = (
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. It is named after the "
    "engineer Gustave Eiffel, whose company designed and built the tower from 1887 to 1889. The tower is 330 metres "
    "tall, about the same height as an 81-storey building, and the tallest structure in Paris."
)


def _encoder(cache: object = None, **kw: object) -> SoftEncoder:
    config = SoftConfig(segment_tokens=16, ratio=4, **kw)  # type: ignore[arg-type]
    return SoftEncoder(config, None, cache=cache if cache is not None else MemoryCache())  # type: ignore[arg-type]


def test_shapes_and_vectors_per_segment() -> None:
    enc = _encoder()
    soft = enc.encode(TEXT)
    tokens = soft.tokens_in
    assert len(soft.segments) == math.ceil(tokens / 16)
    assert [s.vectors for s in soft.segments] == [
        math.ceil(min(16, tokens - 16 * i) / 4) for i in range(len(soft.segments))
    ]
    assert soft.vectors.shape == (sum(s.vectors for s in soft.segments), 576)
    assert soft.vectors.dtype == np.float32
    assert soft.hidden_size == 576
    assert soft.decoder == "smollm2-135m"
    for seg in soft.segments:  # provenance: spans cover the text in order, inside it
        assert 0 <= seg.start < seg.end <= len(TEXT)
        assert seg.source == 0
    assert [s.start for s in soft.segments] == sorted(s.start for s in soft.segments)
    one = SoftEncoder(SoftConfig(segment_tokens=16, ratio=None), None, cache=NullCache()).encode(TEXT)
    assert one.n_vectors == len(one.segments)  # xRAG style: one vector per segment


def test_segment_count_is_linear_in_length() -> None:
    enc = _encoder()
    n1 = len(enc.encode(TEXT).segments)
    n4 = len(enc.encode(" ".join([TEXT] * 4)).segments)
    assert abs(n4 - 4 * n1) <= 3


def test_per_segment_cache() -> None:
    cache = MemoryCache()
    enc = _encoder(cache)
    first = enc.encode(TEXT)
    ran = enc.segments_encoded
    assert ran == len(first.segments)
    again = enc.encode(TEXT)
    assert enc.segments_encoded == ran  # the encoder did not run again
    assert np.array_equal(first.vectors, again.vectors)
    both = enc.encode([TEXT, "Bananas are elongated, edible fruit."])
    assert enc.segments_encoded == ran + 1  # only the new chunk's segment
    assert [s.source for s in both.segments][-1] == 1
    assert cache.stats()["hits"] >= 2 * ran


def test_deterministic_without_cache() -> None:
    a = _encoder(NullCache()).encode(TEXT)
    b = _encoder(NullCache()).encode(TEXT)
    assert np.array_equal(a.vectors, b.vectors)
    assert a.fingerprint == b.fingerprint


@pytest.mark.parametrize("bad", ["", "   \n", [], ["fine text", " "]])
def test_empty_input_is_an_input_error(bad: object) -> None:
    with pytest.raises(InputError):
        _encoder().encode(bad)  # type: ignore[arg-type]


def test_hidden_size_mismatch_is_a_config_error() -> None:
    class Decoder:
        def get_input_embeddings(self) -> object:
            return torch.nn.Embedding(10, 8)

    soft = SoftPrompt(np.zeros((2, 576), np.float32), (SoftSegment(0, 0, 4, 2),), 4, "smollm2-135m", 576, "fp")
    with pytest.raises(ConfigError, match=r"576.*8"):
        inputs_embeds(soft, Decoder(), None, before="", after="")


def test_serialization_and_vllm_payload_round_trip() -> None:
    soft = _encoder().encode(TEXT)
    back = SoftPrompt.from_bytes(soft.to_bytes())
    assert np.array_equal(back.vectors, soft.vectors)
    assert (back.segments, back.tokens_in, back.decoder, back.hidden_size, back.fingerprint) == (
        soft.segments,
        soft.tokens_in,
        soft.decoder,
        soft.hidden_size,
        soft.fingerprint,
    )
    with pytest.raises(InputError):
        SoftPrompt.from_bytes(b"not a soft prompt at all")
    embeds = torch.from_numpy(soft.vectors).unsqueeze(0)
    body = vllm_completions_body("m", embeds, max_tokens=4)
    assert body["model"] == "m"
    assert body["max_tokens"] == 4
    tensor = torch.load(io.BytesIO(base64.b64decode(body["prompt_embeds"])), weights_only=True)
    assert tensor.shape == (soft.n_vectors, 576)
    assert torch.equal(tensor, embeds[0])
    assert vllm_prompt_embeds(embeds[0]) == body["prompt_embeds"]


@pytest.mark.slow
def test_inputs_embeds_run_the_real_decoder() -> None:
    from promptzip._causal_lm import load_causal_lm

    model, tok = load_causal_lm("smollm2-135m")
    soft = _encoder().encode(TEXT)
    embeds, mask = inputs_embeds(soft, model, tok, after=qa_suffix("How tall is the tower?"))
    prefix = len(tok("Context:", add_special_tokens=False)["input_ids"])
    assert embeds.shape[0] == 1
    assert embeds.shape[2] == 576
    assert embeds.shape[1] > soft.n_vectors + prefix
    assert torch.equal(embeds[0, prefix : prefix + soft.n_vectors], torch.from_numpy(soft.vectors))
    with torch.no_grad():
        logits = model(inputs_embeds=embeds, attention_mask=mask).logits
    assert logits.shape[:2] == embeds.shape[:2]
    assert torch.isfinite(logits).all()
    out = model.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=3, do_sample=False)
    assert out.shape[-1] >= 1


@pytest.mark.slow
def test_training_runs_and_resumes(tmp_path: Path) -> None:
    from dataclasses import replace

    from promptzip.training.soft import QAItem, SoftTrainConfig, train_soft

    items = [
        QAItem("new_wiki", TEXT, "Who designed the tower?", "Gustave Eiffel"),
        QAItem(
            "nyt",
            "Bananas are elongated, edible fruit produced by large flowering plants.",
            "What are bananas?",
            "fruit",
        ),
        QAItem("nyt", "The 2024 Summer Olympics were held in Paris from 26 July to 11 August.", "Where?", "Paris"),
    ]
    config = SoftTrainConfig(
        segment_tokens=16, ratio=8, max_segments=1, max_text_tokens=4, batch_size=2, steps=2, eval_every=2,
        checkpoint_every=1, validation=1, projector_hidden=16, threads=2,
    )  # fmt: skip
    out, work = tmp_path / "out", tmp_path / "work"
    first = train_soft(config, out, work_dir=work, progress=False, items=items)
    assert first["training"]["steps"] == 2
    resumed = train_soft(replace(config, steps=3), out, work_dir=work, resume=True, progress=False, items=items)
    assert resumed["training"]["steps"] == 3
    assert math.isfinite(resumed["training"]["final_loss"])
    weights = out / "projector.safetensors"
    assert resumed["files"]["projector.safetensors"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    enc = SoftEncoder.from_pretrained(out)
    assert enc.encode(TEXT).vectors.shape[1] == 576


def test_packaged_manifest_matches_its_artifact() -> None:
    folder = packaged_dir()
    if not (folder / "manifest.json").is_file():
        pytest.skip("no packaged soft-encoder projector (promptzip train soft-encoder)")
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    digest = hashlib.sha256((folder / "projector.safetensors").read_bytes()).hexdigest()
    assert manifest["files"]["projector.safetensors"] == digest
    assert "SQuAD v1.1 dev" in manifest["data"]["never_used"]
    assert SoftEncoder.from_pretrained("soft-minilm-smollm2").config.hidden_size == 576


def test_train_command_is_wired() -> None:
    from promptzip.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["train", "soft-encoder", "--help"], stdout=io.StringIO(), stderr=io.StringIO())
    assert exc.value.code == 0
