"""Training lives apart from the runtime: the runtime never imports ``promptzip.training`` or peft, the wheel ships
the trainers in their own subpackage, and what peft trains is saved in the adapter layout the runtime merges."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_FOLDERS = ("promptzip", "compressors", "retrievers", "integrations", "compat")
TRAINING_ONLY = ("peft", "promptzip.training")
# `promptzip train` and `promptzip eval` are the CLI's doors to the trainers and the evals: the only runtime module
# allowed to name them (inside the command that needs them)
CLI = ROOT / "promptzip" / "cli.py"

FACTS = [
    ("The Eiffel Tower is in Paris. It was built from 1887 to 1889.", "When was the tower built?", "1887 to 1889"),
    ("Ada Lovelace wrote the first algorithm. She worked with Charles Babbage.", "Who worked with Ada?", "Charles"),
    ("Grace Hopper built the first compiler in 1952. COBOL was based on her work.", "What was based on it?", "COBOL"),
    ("Bananas are edible fruit. They grow on large herbaceous plants.", "What do bananas grow on?", "large"),
]


def _imports(path: Path) -> set[str]:
    """Every module a source file imports, at the top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def _names(modules: set[str], roots: tuple[str, ...]) -> set[str]:
    return {m for m in modules if any(m == r or m.startswith(r + ".") for r in roots)}


def test_no_runtime_module_imports_the_trainers_or_peft() -> None:
    offenders = {}
    for folder in RUNTIME_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            found = _names(_imports(path), TRAINING_ONLY)
            if path == CLI:
                found -= {"promptzip.training.cli", "promptzip.training.cli.add_train_command"}
            if found:
                offenders[str(path.relative_to(ROOT))] = sorted(found)
    assert not offenders, offenders
    runtime = [p for folder in ("promptzip", "compressors", "retrievers") for p in (ROOT / folder).rglob("*.py")]
    evals = {str(p.relative_to(ROOT)) for p in runtime if p != CLI and _names(_imports(p), ("promptzip.evals",))}
    assert not evals, f"runtime modules import promptzip.evals: {sorted(evals)}"


def test_data_sets_reach_the_trainers_through_one_module() -> None:
    through = {
        path.name for path in (ROOT / "training").glob("*.py") if _names(_imports(path), ("promptzip.evals", "evals"))
    }
    assert through == {"_data.py"}


def test_hand_written_lora_is_gone() -> None:
    from promptzip.compressors import token_classifier

    assert not hasattr(token_classifier, "attach_lora")
    for folder in ("compressors", "retrievers"):
        assert not list((ROOT / folder).glob("train_*.py"))
    sources = [p.read_text(encoding="utf-8") for p in (ROOT / "training").glob("*.py")]
    assert all("_WithoutLoRA" not in s and "class LoRALinear" not in s for s in sources)


_COMPRESS = """
import json, sys

class Watch:  # records which module asks for peft (transformers does, by itself, whenever peft is installed)
    def find_spec(self, fullname, path=None, target=None):
        if fullname == "peft":
            frame = sys._getframe(1)
            while frame and frame.f_globals.get("__name__", "").startswith(("importlib", "_frozen_importlib")):
                frame = frame.f_back
            REQUESTERS.add(frame.f_globals.get("__name__", "?") if frame else "?")
        return None

REQUESTERS = set()
if HIDE_PEFT:
    sys.modules["peft"] = None  # as if the `train` extra were not installed: importlib reports it missing
sys.meta_path.insert(0, Watch())

import promptzip
from promptzip.compressors.soft import SoftEncoder

text = ("The Eiffel Tower is a wrought-iron lattice tower in Paris. It is 330 metres tall. It was completed in 1889 "
        "for the World's Fair. Gustave Eiffel's company designed and built it. ") * 4
result = promptzip.compress(text, question="How tall is the tower?", budget=40, preset="balanced", cache="none")
soft = SoftEncoder.from_pretrained().encode(text)
print(json.dumps({"tokens": result.tokens_out, "text": result.text, "vectors": soft.vectors[:2, :4].tolist(),
                  "modules": sorted(m for m, v in sys.modules.items() if v is not None),
                  "requesters": sorted(REQUESTERS)}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("hide_peft", [False, True], ids=["train-extra-installed", "runtime-only"])
def test_compressing_with_the_packaged_models_never_loads_training_code(tmp_path: Path, hide_peft: bool) -> None:
    """A compression with the packaged adapters (minilm-qa, minilm-tc) and the packaged projector imports neither
    ``promptzip.training`` nor the evals, never asks for peft itself (transformers' ``trainer_utils`` imports peft
    whenever it is installed: that import is the only one allowed), and works the same with peft missing."""
    code = f"HIDE_PEFT = {hide_peft}\n{_COMPRESS}"
    env = {**os.environ, "PROMPTZIP_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert 0 < out["tokens"] <= 40
    assert "330" in out["text"]
    assert out["vectors"]
    # the packaged adapters really ran: the token classifier, and minilm-qa merged into the (fresh) cache
    assert "promptzip.compressors.token_classifier" in out["modules"]
    assert list((tmp_path / "cache" / "models").glob("minilm-qa-*/model.safetensors"))
    loaded = _names(set(out["modules"]), ("promptzip.training", "promptzip.evals"))
    assert not loaded, f"compression imported {sorted(loaded)}"
    ours = [r for r in out["requesters"] if r.split(".")[0] == "promptzip"]
    assert not ours, f"promptzip asked for peft: {ours}"
    if hide_peft:
        assert not _names(set(out["modules"]), ("peft",))


@pytest.mark.slow
def test_the_wheel_ships_the_trainers_in_their_own_subpackage(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        files = set(zf.namelist())
        metadata = next(zf.read(n).decode() for n in files if n.endswith(".dist-info/METADATA"))
        shipped = {n: hashlib.sha256(zf.read(n)).hexdigest() for n in files if n.endswith(".safetensors")}
    expected = {f"promptzip/training/{p.name}" for p in (ROOT / "training").glob("*.py")}
    assert {"promptzip/training/cli.py", "promptzip/training/_lora.py", "promptzip/training/_data.py"} <= expected
    assert expected <= files, sorted(expected - files)
    stray = [f for f in files if f.startswith(("promptzip/compressors/train", "promptzip/retrievers/train"))]
    assert not stray, stray
    assert any(line.startswith("Requires-Dist: peft") and "extra == " in line for line in metadata.splitlines())
    # the runtime's artifacts are packaged unchanged: each file is the one its manifest names
    for folder in (
        "compressors/models/minilm-tc",
        "retrievers/models/minilm-qa",
        "compressors/models/soft-minilm-smollm2",
    ):
        manifest = json.loads((ROOT / folder / "manifest.json").read_text(encoding="utf-8"))
        for name, digest in manifest["files"].items():
            assert shipped[f"promptzip/{folder}/{name}"] == digest


# ----------------------------------------------------------------------------------------- real peft runs


def _articles() -> list[tuple[str, Any]]:
    from promptzip.evals.records import squad_article

    paragraphs = []
    for k, (context, question, answer) in enumerate(FACTS):
        qas = [
            {"id": f"q{k}", "question": question, "answers": [{"text": answer, "answer_start": context.index(answer)}]}
        ]
        paragraphs.append({"context": context, "qas": qas})
    return [("nyt", squad_article("facts", paragraphs))]


def _hidden(model: Any, batch: Any) -> Any:
    import torch

    with torch.inference_mode():
        return model(**batch).last_hidden_state


@pytest.mark.slow
def test_a_peft_run_on_minilm_is_merged_by_the_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A few real peft steps on the packaged MiniLM; the runtime's loader (manifest check + numpy merge) turns the
    saved adapter into a model that equals peft's own merge and differs from the base."""
    import torch
    from safetensors import safe_open
    from transformers import AutoTokenizer, BertModel

    from promptzip._models import resolve_model
    from promptzip.retrievers.qa_encoder import qa_encoder_dir, qa_encoder_path
    from promptzip.training.encoder import EncoderTrainConfig, collect_groups, fit_encoder, write_artifact

    monkeypatch.setenv("PROMPTZIP_CACHE_DIR", str(tmp_path / "cache"))
    config = EncoderTrainConfig(
        steps=2, stop_after=None, questions_per_batch=2, extra_sentences=2, lr=5e-3, warmup=1, lora_rank=4,
        lora_alpha=8.0, question_tokens=16, sentence_tokens=16, eval_questions=0,
    )  # fmt: skip
    groups = collect_groups(_articles() * 2, config)  # two copies: four batches of two questions
    fit = fit_encoder(config, groups)
    assert len(fit.losses) == 2
    out = tmp_path / "artifact"
    write_artifact(fit, config, groups, {}, out, total_seconds=0.0)
    with (
        safe_open(str(out / "adapter.safetensors"), "pt") as new,
        safe_open(str(qa_encoder_dir() / "adapter.safetensors"), "pt") as packaged,
    ):
        names = set(new.keys())
        assert names == set(packaged.keys())  # the shipped file's names: the runtime finds every layer
        for key in sorted(names):
            want = list(packaged.get_slice(key).get_shape())
            want[0 if key.endswith(".A") else 1] = 4  # the same layout at this run's rank
            assert list(new.get_slice(key).get_shape()) == want

    merged = BertModel.from_pretrained(str(qa_encoder_path(out)), add_pooling_layer=False).eval()
    base_path = resolve_model("minilm").path
    base = BertModel.from_pretrained(str(base_path), add_pooling_layer=False).eval()
    batch = AutoTokenizer.from_pretrained(str(base_path))(["When was the Eiffel Tower built?"], return_tensors="pt")
    got = _hidden(merged, batch)
    assert not torch.allclose(got, _hidden(base, batch), atol=1e-3)  # training moved the weights
    assert torch.allclose(got, _hidden(fit.model, batch), atol=1e-4)
    assert torch.allclose(got, _hidden(fit.model.merge_and_unload(), batch), atol=1e-4)


@pytest.mark.slow
def test_the_packaged_classifier_adapter_is_what_peft_would_have_saved() -> None:
    """Loading the shipped minilm-tc file into peft's LoRA layers gives the runtime's merged classifier's output,
    and converting it back gives the file's tensors: the conversion and the runtime's format agree."""
    import torch
    from safetensors.torch import load_file

    from promptzip.compressors.token_classifier import distilled_dir, load_distilled
    from promptzip.training._lora import runtime_adapter
    from promptzip.training.classifier import HEADS, TrainConfig, student

    folder = distilled_dir()
    hp = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["hyperparameters"]
    shipped = load_file(str(folder / "adapter.safetensors"))
    config = TrainConfig(lora_rank=hp["lora_rank"], lora_alpha=hp["lora_alpha"], lora_targets=tuple(hp["lora_targets"]))
    peft_model, tokenizer = student(config)
    layers = peft_model.get_base_model()
    with torch.no_grad():
        for key, value in shipped.items():
            if key.startswith("lora."):
                module, part = key.removeprefix("lora.").rsplit(".", 1)
                getattr(layers.get_submodule(module), f"lora_{part}")["default"].weight.copy_(value)
        head = layers.get_submodule("classifier").modules_to_save["default"]
        head.weight.copy_(shipped["classifier.weight"])
        head.bias.copy_(shipped["classifier.bias"])
    back = runtime_adapter(peft_model, rank=config.lora_rank, alpha=config.lora_alpha, heads=HEADS)
    assert back.keys() == shipped.keys()
    assert all(torch.equal(back[k], shipped[k]) for k in shipped)
    runtime, _ = load_distilled()
    ids = tokenizer(["The tower is 330 metres tall and was finished in 1889."], return_tensors="pt")
    with torch.inference_mode():
        want = runtime(**ids).logits
        assert torch.allclose(peft_model.eval()(**ids).logits, want, atol=1e-4)


def test_the_train_command_runs_from_the_training_package(tmp_path: Path) -> None:
    """``python -m promptzip.training`` is ``promptzip train``; the ``promptzip`` CLI loads the trainers only for
    that command."""
    code = (
        "import io, json, sys\n"
        "from promptzip.cli import main\n"
        "rc = main(['models', '--json'], stdout=io.StringIO(), stderr=io.StringIO())\n"
        "light = not any(m.startswith('promptzip.training') for m in sys.modules)\n"
        "try:\n"
        "    main(['train', 'qa-encoder', '--help'], stdout=io.StringIO(), stderr=io.StringIO())\n"
        "except SystemExit as exc:\n"
        "    print(json.dumps({'models': rc, 'light': light, 'train_help': exc.code}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == {"models": 0, "light": True, "train_help": 0}
    module = subprocess.run(
        [sys.executable, "-m", "promptzip.training", "soft-encoder", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert module.returncode == 0, module.stderr
    assert "--resume" in module.stdout
    assert module.stdout.startswith("usage: promptzip train soft-encoder")
