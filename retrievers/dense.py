"""Dense relevance: cosine similarity of sentence-transformers embeddings, cached by content hash.

An embedding depends only on the text and the encoder, so each distinct text is encoded once, ever, when a cache
is given. Without a query, a chunk's score is its similarity to the centroid of the request (centrality).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from promptzip._cache import Cache, NullCache, decode_array, encode_array, make_key
from promptzip._models import load_sentence_encoder, resolve_model
from promptzip._roles import Scorer
from promptzip._types import Chunk

__all__ = ["DenseScorer", "weights_fingerprint"]

_fingerprints: dict[str, str] = {}
_fp_lock = threading.Lock()


def weights_fingerprint(path: Path) -> str:
    """sha256 (first 16 hex) of a model folder's weight files; computed once per process."""
    key = str(path)
    with _fp_lock:
        if key not in _fingerprints:
            digest = hashlib.sha256()
            files = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")) if path.is_dir() else [path]
            for file in files:
                with file.open("rb") as fh:
                    while block := fh.read(1 << 20):
                        digest.update(block)
            _fingerprints[key] = digest.hexdigest()[:16]
        return _fingerprints[key]


class DenseScorer(Scorer):
    """Bi-encoder cosine relevance (packaged all-MiniLM-L6-v2 by default)."""

    name = "dense"

    def __init__(
        self, model: str = "minilm", *, cache: Cache | None = None, batch_size: int = 64, progress: bool = False
    ) -> None:
        self.model_name = model
        self.cache: Cache = cache if cache is not None else NullCache()
        self.batch_size = batch_size
        self.progress = progress
        self._fingerprint: str | None = None

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            resolved = resolve_model(self.model_name)
            self._fingerprint = f"dense:{self.model_name}:{weights_fingerprint(resolved.path)}"
        return self._fingerprint

    def _model(self) -> Any:
        return load_sentence_encoder(self.model_name)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-normalized embeddings, one row per text; cached texts are not encoded again."""
        namespace = "emb:" + self.fingerprint
        keys = [make_key(namespace, t) for t in texts]
        found = self.cache.get_many(sorted(set(keys)))
        out: np.ndarray | None = None
        missing: dict[str, int] = {}
        for i, key in enumerate(keys):
            if key not in found:
                missing.setdefault(key, i)
        vectors: dict[str, np.ndarray] = {k: decode_array(v) for k, v in found.items()}
        if missing:
            todo = list(missing.items())
            encoded = (
                self._model()
                .encode(
                    [texts[i] for _, i in todo],
                    batch_size=self.batch_size,
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                    show_progress_bar=self.progress and len(todo) > 256,
                )
                .astype(np.float32)
            )
            fresh = {key: encoded[j] for j, (key, _) in enumerate(todo)}
            vectors.update(fresh)
            self.cache.put_many({k: encode_array(v) for k, v in fresh.items()})
        dim = next(iter(vectors.values())).shape[0] if vectors else 0
        out = np.empty((len(texts), dim), dtype=np.float32)
        for i, key in enumerate(keys):
            out[i] = vectors[key]
        return out

    def embed_query(self, query: str) -> np.ndarray:
        """The unit-normalized float32 embedding of one query (never cached: queries rarely repeat).

        The encoder truncates to its ``max_seq_length`` word pieces (256 for all-MiniLM-L6-v2), so a huge query
        costs its tokenization, not a longer forward pass.
        """
        vector = self._model().encode([query], convert_to_numpy=True, normalize_embeddings=True)[0]
        return np.asarray(vector, dtype=np.float32)

    def _score(self, chunks: Sequence[Chunk], query: str | None) -> Sequence[float]:
        emb = self.embed([c.text for c in chunks])
        if query:
            q = self._model().encode([query], convert_to_numpy=True, normalize_embeddings=True)[0]
        else:
            centroid = emb.mean(axis=0)
            q = centroid / (np.linalg.norm(centroid) or 1.0)
        return [float(s) for s in emb @ q.astype(np.float32)]
