"""``minilm-qa``: the packaged MiniLM bi-encoder tuned to find the sentence that answers a question.

``promptzip train qa-encoder`` (:mod:`promptzip.training.encoder`) trains rank-16 LoRA deltas on the
packaged all-MiniLM-L6-v2 from SQuAD-shifts questions and their answer sentences (training text only) and writes
them, ~2.7 MB, under ``promptzip/retrievers/models/minilm-qa/``. The first time the name is resolved, the deltas
are merged into the packaged weights and the result is written once as a plain sentence-transformers folder in
the user cache (named for the adapter's sha256), so everything that takes a sentence-encoder folder (DenseScorer,
its packed path, DenseRetriever, a FAISS index fingerprint) uses it as it uses ``minilm``, at the same speed.
The merge needs only numpy and safetensors.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from promptzip._errors import ModelNotAvailable
from promptzip._models import ModelSpec, derived_models_dir

__all__ = ["QA_ENCODER", "QA_ENCODER_ENV", "QA_ENCODER_SPEC", "merge_adapter", "qa_encoder_dir", "qa_encoder_path"]

QA_ENCODER = "minilm-qa"
QA_ENCODER_ENV = "PROMPTZIP_MINILM_QA_DIR"


def qa_encoder_dir() -> Path:
    """The folder of the adapter ``minilm-qa`` resolves to (``manifest.json`` + ``adapter.safetensors``): the
    shipped one, or ``$PROMPTZIP_MINILM_QA_DIR`` (another ``promptzip train qa-encoder --out`` artifact, e.g. one
    trained with a domain held out, for the cross-domain protocol). The merged folder and every cache key follow
    the adapter's own hash, so switching never reuses the other adapter's vectors."""
    override = os.environ.get(QA_ENCODER_ENV)
    return Path(override) if override else Path(__file__).resolve().parent / "models" / QA_ENCODER


def merge_adapter(base: Path, adapter: Path, dest: Path, *, rank: int, alpha: float) -> Path:
    """Write ``base`` (a sentence-transformers BERT folder) with the LoRA deltas of ``adapter`` merged into its
    weights (``W += B @ A * alpha / rank``) as a new folder ``dest``, atomically. Returns ``dest``."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    weights = load_file(str(base / "model.safetensors"))
    deltas = load_file(str(adapter))
    names = {k.rsplit(".", 1)[0] for k in deltas if k.startswith("lora.")}
    if not names:
        raise ModelNotAvailable(f"{adapter} holds no LoRA deltas", model=QA_ENCODER)
    for name in sorted(names):
        a, b = deltas.get(f"{name}.A"), deltas.get(f"{name}.B")
        key = name.removeprefix("lora.").removeprefix("bert.") + ".weight"
        if a is None or b is None or key not in weights or weights[key].shape != (b.shape[0], a.shape[1]):
            raise ModelNotAvailable(f"{adapter} does not fit {base}: {name}", model=QA_ENCODER)
        merged = weights[key].astype(np.float32) + (b.astype(np.float32) @ a.astype(np.float32)) * (alpha / rank)
        weights[key] = merged.astype(weights[key].dtype)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        for item in base.iterdir():
            if item.name in ("model.safetensors", "pytorch_model.bin", "README.md"):
                continue
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, staging / item.name)
        save_file(weights, str(staging / "model.safetensors"), metadata={"format": "pt"})
        try:
            os.replace(staging, dest)
        except OSError:  # another process won the race: its folder is the same bytes
            if not (dest / "model.safetensors").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


_checked: dict[tuple[str, ...], Path] = {}
_lock = threading.Lock()


def qa_encoder_path(folder: Path | None = None) -> Path:
    """The merged ``minilm-qa`` folder, built on first use (see the module doc). The adapter is checked against
    its manifest once per process and per version of the two files (name resolution happens on every request)."""
    folder = folder or qa_encoder_dir()
    manifest_path, adapter = folder / "manifest.json", folder / "adapter.safetensors"
    if not manifest_path.is_file() or not adapter.is_file():
        raise ModelNotAvailable(
            f"the {QA_ENCODER} adapter is missing from {folder} (${QA_ENCODER_ENV} names another folder); train "
            "it: promptzip train qa-encoder",
            model=QA_ENCODER,
        )
    stats = [(p, p.stat()) for p in (manifest_path, adapter)]
    key = (str(derived_models_dir()), *(f"{p}:{st.st_mtime_ns}:{st.st_size}" for p, st in stats))
    with _lock:
        found = _checked.get(key)
        if found is None or not (found / "model.safetensors").is_file():
            found = _checked[key] = _build(manifest_path, adapter)
        return found


def _build(manifest_path: Path, adapter: Path) -> Path:
    from promptzip._models import resolve_model

    manifest: dict[str, Any] = json.loads(manifest_path.read_text(encoding="utf-8"))
    digest = hashlib.sha256(adapter.read_bytes()).hexdigest()
    expected = manifest.get("files", {}).get("adapter.safetensors")
    if expected != digest:
        raise ModelNotAvailable(
            f"{adapter} does not match its manifest (sha256 {digest[:12]}…, expected {str(expected)[:12]}…)",
            model=QA_ENCODER,
        )
    dest = derived_models_dir() / f"{QA_ENCODER}-{digest[:16]}"
    if (dest / "model.safetensors").is_file():
        return dest
    hp = manifest["hyperparameters"]
    base = resolve_model(str(manifest.get("base", {}).get("model", "minilm")))
    try:
        return merge_adapter(base.path, adapter, dest, rank=int(hp["lora_rank"]), alpha=float(hp["lora_alpha"]))
    except OSError as exc:
        raise ModelNotAvailable(
            f"cannot write the merged {QA_ENCODER} folder under {dest.parent} ({exc}); point PROMPTZIP_CACHE_DIR at a "
            "writable folder",
            model=QA_ENCODER,
        ) from exc


QA_ENCODER_SPEC = ModelSpec(
    key=QA_ENCODER,
    kind="sentence-encoder",
    description="all-MiniLM-L6-v2 + LoRA tuned on SQuAD-shifts question → answer sentence (packaged adapter)",
    license="Apache-2.0",
    build=qa_encoder_path,
)
