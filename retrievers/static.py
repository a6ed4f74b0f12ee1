"""A static embedding model distilled from a sentence encoder: the cascade's cheap first stage.

A static model holds one vector per word piece of the encoder's vocabulary; a text's vector is the mean of its word
pieces' rows, so embedding a sentence costs a tokenization and a gather: no forward pass, no torch (NumPy and the
Rust ``tokenizers`` only). ``minilm-qa-static`` is distilled from ``minilm-qa``, the encoder of the ``fast`` preset,
so it ranks by a cruder form of the same notion of relevance.

Distillation follows model2vec's recipe: every word piece of the vocabulary is read by the encoder on its own
(``[CLS] piece [SEP]``; the piece's output vector is kept), the outputs are reduced to their ``dims`` principal
components, and each row is scaled by a smooth inverse frequency weight ``sif / (sif + p)``, where ``p``
is a Zipf estimate from the piece's rank in the WordPiece vocabulary (ordered by frequency when it was built), so
that "the" counts for little and "eiffel" for much. model2vec's own ``distill`` pins transformers below 5.4 and
brings skeletoken and kernels; these few steps over the encoder we load anyway need nothing new.

The model is derived the way ``minilm-qa`` is (:mod:`promptzip.retrievers.qa_encoder`): built on first need (or by
``make install``) into the user cache, in a folder named by a fingerprint of its inputs (the encoder's weights and
tokenizer, the parameters and :data:`DISTILL_VERSION`), with a manifest of its files' sha256, checked once per
process when it is loaded. Building needs the models extra (torch, transformers); loading does not.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from promptzip._errors import ModelNotAvailable
from promptzip._models import derived_models_dir, file_sha256, load_once, resolve_model

__all__ = [
    "DISTILL_VERSION",
    "STATIC_MODEL",
    "StaticModel",
    "distill",
    "load_static_model",
    "static_model_path",
]

STATIC_MODEL = "minilm-qa-static"
BASE_ENCODER = "minilm-qa"
DIMS = 256
SIF = 1e-4  # model2vec's default: pieces more frequent than about 1 in 10,000 are weighted down
DISTILL_VERSION = 2  # raise when the recipe changes: the folder name (and every fingerprint using it) changes too
_VECTORS, _TOKENIZER, _MANIFEST = "vectors.npy", "tokenizer.json", "manifest.json"
_UNUSED = re.compile(r"\[unused\d+\]")
_BATCH = 2048


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(name).name if Path(name).exists() else name).strip("-") or "encoder"


def _inputs_fingerprint(encoder: Path, *, dims: int, sif: float) -> str:
    from promptzip.retrievers.dense import weights_fingerprint

    tokenizer = encoder / _TOKENIZER
    if not tokenizer.is_file():
        raise ModelNotAvailable(f"{encoder} has no {_TOKENIZER}: a static model needs the fast tokenizer's file")
    raw = f"v{DISTILL_VERSION}|dims={dims}|sif={sif}|{weights_fingerprint(encoder)}|{file_sha256(tokenizer)}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


_built: dict[tuple[str, str], Path] = {}
_build_lock = threading.Lock()


def static_model_path(encoder: str = BASE_ENCODER, *, dims: int = DIMS, sif: float = SIF, build: bool = True) -> Path:
    """The folder of the static model distilled from ``encoder`` (a model name or folder), distilled into the user
    cache the first time it is asked for (``build=False``: only if it is there already, as when ``promptzip models``
    lists it). A failure is :class:`ModelNotAvailable` saying what to install or fix."""
    base = resolve_model(encoder).path
    key = (str(derived_models_dir()), f"{base}|{dims}|{sif}")
    with _build_lock:
        found = _built.get(key)
        if found is not None and (found / _MANIFEST).is_file():
            return found
        dest = derived_models_dir() / f"{_slug(encoder)}-static-{_inputs_fingerprint(base, dims=dims, sif=sif)}"
        if not (dest / _MANIFEST).is_file() and not build:
            raise ModelNotAvailable(
                f"the static model of {encoder} is distilled on first use (fast with cascade=True), in about half a "
                "minute; to distil it now: python -P -m promptzip.retrievers.static",
                model=STATIC_MODEL,
            )
        if not (dest / _MANIFEST).is_file():
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)  # fail before distilling, not after
                distill(base, dest, dims=dims, sif=sif)
            except OSError as exc:
                raise ModelNotAvailable(
                    f"cannot write the static model under {dest.parent} ({exc}); point PROMPTZIP_CACHE_DIR at a "
                    "writable folder",
                    model=encoder,
                ) from exc
        _built[key] = dest
        return dest


def distill(encoder: Path, dest: Path, *, dims: int = DIMS, sif: float = SIF) -> Path:
    """Distil the sentence-encoder folder ``encoder`` into a static model folder ``dest`` (see the module doc),
    written atomically. Needs torch and transformers (the models extra). Returns ``dest``."""
    try:
        import torch
    except ImportError as exc:
        raise ModelNotAvailable(
            "building a static model needs the models extra: pip install 'promptzip[models]'", model=str(encoder)
        ) from exc
    from promptzip._models import load_hf_folder

    model, tokenizer = load_hf_folder(encoder, "AutoModel", what="sentence encoder")
    size = int(model.config.vocab_size)
    vocab: dict[str, int] = tokenizer.get_vocab()
    skip = {int(i) for i in tokenizer.all_special_ids}
    skip |= {i for piece, i in vocab.items() if _UNUSED.fullmatch(piece)}
    real = np.asarray([i for i in range(size) if i not in skip], dtype=np.int64)
    if len(real) < dims:
        raise ModelNotAvailable(f"{encoder} has {len(real)} word pieces, fewer than {dims} dimensions")
    outputs = np.empty((len(real), int(model.config.hidden_size)), dtype=np.float64)
    ends = torch.tensor([[tokenizer.cls_token_id, tokenizer.sep_token_id]], dtype=torch.long)
    with torch.inference_mode():
        for a in range(0, len(real), _BATCH):
            pieces = torch.from_numpy(real[a : a + _BATCH])[:, None]
            ids = torch.cat([ends[:, :1].expand(len(pieces), 1), pieces, ends[:, 1:].expand(len(pieces), 1)], dim=1)
            hidden = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
            outputs[a : a + len(pieces)] = hidden[:, 1].float().numpy()
    centred = outputs - outputs.mean(axis=0, keepdims=True)
    _, vectors = np.linalg.eigh(centred.T @ centred)  # ascending eigenvalues: the last columns are the components
    reduced = centred @ vectors[:, ::-1][:, :dims]
    rank = np.arange(1, len(real) + 1, dtype=np.float64)  # the vocabulary's order stands in for frequency (Zipf)
    frequency = (1.0 / rank) / float(np.sum(1.0 / rank))
    reduced *= (sif / (sif + frequency))[:, None]
    table = np.zeros((size, dims), dtype=np.float16)  # special and unused pieces stay zero: they weigh nothing
    table[real] = reduced.astype(np.float16)
    _write(encoder, dest, table, dims=dims, sif=sif)
    return dest


def _write(encoder: Path, dest: Path, table: np.ndarray, *, dims: int, sif: float) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        np.save(staging / _VECTORS, table, allow_pickle=False)
        shutil.copy2(encoder / _TOKENIZER, staging / _TOKENIZER)
        manifest = {
            "kind": "static-embedding",
            "encoder": str(encoder),
            "dims": dims,
            "sif": sif,
            "distill_version": DISTILL_VERSION,
            "files": {name: file_sha256(staging / name) for name in (_VECTORS, _TOKENIZER)},
        }
        (staging / _MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        try:
            os.replace(staging, dest)
        except OSError:  # another process won the race: its folder holds the same bytes
            if not (dest / _MANIFEST).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class StaticModel:
    """A loaded static model: ``encode`` gives unit vectors and each text's number of word pieces.

    The vectors of recent texts are remembered (a :class:`~promptzip._tokenizers.TextMemo`, about 1 KB each), so a
    request over sentences seen before costs dictionary lookups instead of a tokenization."""

    def __init__(self, folder: Path, vectors: np.ndarray, tokenizer: Any) -> None:
        from promptzip._tokenizers import TextMemo

        self.folder = folder
        self.vectors = vectors
        self._tokenizer = tokenizer
        self._lock = threading.Lock()
        self._memo: TextMemo[tuple[np.ndarray, int]] = TextMemo(max_chars=8_000_000, max_items=1 << 16)

    @property
    def fingerprint(self) -> str:
        """The folder's name: the fingerprint of everything its vectors depend on."""
        return f"static:{self.folder.name}"

    @property
    def dims(self) -> int:
        return int(self.vectors.shape[1])

    @classmethod
    def from_folder(cls, folder: Path) -> StaticModel:
        """Load ``folder`` after checking its files against the manifest; an unusable folder is ModelNotAvailable."""
        try:
            manifest = json.loads((folder / _MANIFEST).read_text(encoding="utf-8"))
            expected: dict[str, str] = manifest["files"]
            for name in (_VECTORS, _TOKENIZER):
                if file_sha256(folder / name) != expected.get(name):
                    raise ModelNotAvailable(f"{folder / name} does not match its manifest", model=str(folder))
            vectors = np.load(folder / _VECTORS, mmap_mode="r", allow_pickle=False)
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(folder / _TOKENIZER))
        except ModelNotAvailable:
            raise
        except Exception as exc:  # JSON, numpy and tokenizers each raise their own types for a bad file
            raise ModelNotAvailable(f"could not load a static model from {folder}: {exc}", model=str(folder)) from exc
        tokenizer.no_padding()
        tokenizer.no_truncation()
        return cls(folder, vectors, tokenizer)

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(unit vectors [len(texts), dims] float32, word pieces per text)``; a text without pieces is a zero row."""
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        lengths = np.zeros(len(texts), dtype=np.int64)
        todo: dict[str, list[int]] = {}
        for i, text in enumerate(texts):
            found = self._memo.get(text)
            if found is None:
                todo.setdefault(text, []).append(i)
            else:
                out[i], lengths[i] = found
        if todo:
            fresh, counts = self._encode(list(todo))
            for (text, rows), vector, count in zip(todo.items(), fresh, counts.tolist(), strict=True):
                out[rows], lengths[rows] = vector, count
                self._memo.put(text, (vector, count))
        return out, lengths

    def _encode(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            batch = getattr(self._tokenizer, "encode_batch_fast", self._tokenizer.encode_batch)  # no offsets: faster
            encodings = batch(texts, add_special_tokens=False)
        pieces = [e.ids for e in encodings]
        lengths = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        ids = np.fromiter((i for row in pieces for i in row), dtype=np.intp, count=int(lengths.sum()))
        rows = np.asarray(self.vectors[ids], dtype=np.float32)
        bounds = np.concatenate([[0], np.cumsum(lengths)]).tolist()
        for j in np.flatnonzero(lengths).tolist():  # slices summed one by one: numpy's reduceat is slower over rows
            out[j] = rows[bounds[j] : bounds[j + 1]].sum(axis=0)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1.0), lengths


def load_static_model(name: str = STATIC_MODEL) -> StaticModel:
    """A static model, loaded once per process: ``name`` is a static model (``minilm-qa-static``, or a folder with
    a manifest) or a sentence encoder to distil one from on first need (``minilm-qa``, ``minilm``, a folder)."""
    if name == STATIC_MODEL:  # the registry's name resolves only once built: build it from its encoder
        path = static_model_path(BASE_ENCODER)
    else:
        path = resolve_model(name).path
        if not (path / _MANIFEST).is_file():
            path = static_model_path(name)
    return load_once("static-embedding", path, StaticModel.from_folder)  # type: ignore[no-any-return]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -P -m promptzip.retrievers.static [ENCODER]``: distil the static model now; prints its folder."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -P -m promptzip.retrievers.static", description=main.__doc__)
    parser.add_argument(
        "encoder", nargs="?", default=BASE_ENCODER, help=f"model name or folder (default {BASE_ENCODER})"
    )
    print(static_model_path(parser.parse_args(argv).encoder))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
