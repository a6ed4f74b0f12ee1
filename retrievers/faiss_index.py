"""Dense retrieval: a sentence-transformers encoder (packaged all-MiniLM-L6-v2 by default) and a FAISS index.

Vectors are unit-normalized and searched by inner product, so a score is the cosine similarity (in [-1, 1]).

Index type, by corpus size (:class:`IndexSpec`, ``kind="auto"``):

* **flat** (``IndexFlatIP``) below ``ann_threshold`` (50,000 chunks): exact, no training, no build cost, deletes
  in place. Brute force at that size costs less than encoding the query, so an approximate index would buy
  nothing there.
* **HNSW** (``IndexHNSWFlat``, ``M=32``, ``efSearch=64``) from ``ann_threshold`` on: much faster queries than flat at
  the same recall@10, for more memory (``2·M`` int32 links per vector) and a slow build (figures in
  ``evals/results/retrieval.md``).
  Unlike IVF it needs no training, so incremental adds keep their quality (IVF's centroids would be fitted to
  whatever corpus existed when it was trained) and nothing needs a representative sample up front. HNSW cannot
  remove vectors, so ``delete`` marks them (tombstones filtered out at search time by an ``IDSelector``) and the
  index is rebuilt from its own stored vectors once tombstones pass ``compact_ratio`` of it. Its recall relies
  on the data having neighbourhoods, as real embeddings do: on structureless vectors (uniform on the sphere) it
  collapses (0.16 at 100k), so use ``kind="flat"`` where exact results matter more than latency.

The switch happens when an ``add`` crosses the threshold (the flat index is rebuilt as HNSW from its stored
vectors, no re-encoding, so that one ``add`` takes the build time); deleting back below it keeps HNSW (no
flapping). ``kind="flat"`` or ``"hnsw"`` fixes the type. Chunk ids (:func:`~promptzip.retrievers.fusion.chunk_id`)
map to FAISS int64 ids through an ``IndexIDMap2``. For single-query serving on a busy machine,
``faiss.omp_set_num_threads(1)`` avoids OpenMP threads spin-waiting on each other (the figures above use it).

A saved index (:meth:`DenseRetriever.save`) records the encoder's weights fingerprint; loading it with another
encoder raises :class:`ConfigError` naming both fingerprints, because vectors of two encoders are not comparable.

Queries longer than the encoder's ``max_seq_length`` (256 word pieces for MiniLM) are truncated by the encoder:
a 100k-character query works and costs its tokenization (about a second), not a longer forward pass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import numpy.typing as npt

from promptzip._cache import Cache, NullCache
from promptzip._errors import ConfigError, InputError, ModelNotAvailable, check_int
from promptzip._models import resolve_model
from promptzip._types import Chunk
from promptzip.retrievers._corpus import CorpusRetriever, scored
from promptzip.retrievers.dense import DenseScorer, weights_fingerprint

if TYPE_CHECKING:
    from promptzip._pipeline import Zipper

__all__ = ["DenseRetriever", "IndexSpec"]

INDEX_FILE = "index.faiss"
_KINDS = ("auto", "flat", "hnsw")


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:
        raise ModelNotAvailable("dense retrieval needs FAISS: pip install 'promptzip[retrieval]'") from exc
    return faiss


@dataclass(frozen=True, slots=True, kw_only=True)
class IndexSpec:
    """How the FAISS index is chosen and tuned.

    ``kind``: ``"auto"`` (flat below ``ann_threshold`` chunks, HNSW from there), ``"flat"`` or ``"hnsw"``.
    ``hnsw_m``, ``ef_construction``, ``ef_search``: HNSW graph degree, build and search beam widths (search uses
    at least ``k``). ``compact_ratio``: rebuild an HNSW index once deleted vectors exceed this fraction of it.
    """

    kind: str = "auto"
    ann_threshold: int = 50_000
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 64
    compact_ratio: float = 0.25

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ConfigError(f"unknown index kind {self.kind!r}; known: {', '.join(_KINDS)}")
        for field in ("ann_threshold", "hnsw_m", "ef_construction", "ef_search"):
            check_int(getattr(self, field), f"IndexSpec.{field}")
        if not 0.0 < self.compact_ratio <= 1.0:
            raise ConfigError(f"IndexSpec.compact_ratio must be in (0, 1], got {self.compact_ratio!r}")

    def choose(self, size: int) -> str:
        """The index kind for a corpus of ``size`` chunks."""
        if self.kind != "auto":
            return self.kind
        return "hnsw" if size >= self.ann_threshold else "flat"


def _flat(faiss: Any, dim: int, spec: IndexSpec) -> Any:
    return faiss.IndexFlatIP(dim)


def _hnsw(faiss: Any, dim: int, spec: IndexSpec) -> Any:
    index = faiss.IndexHNSWFlat(dim, spec.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = spec.ef_construction
    index.hnsw.efSearch = spec.ef_search
    return index


_BUILDERS: dict[str, Callable[[Any, int, IndexSpec], Any]] = {"flat": _flat, "hnsw": _hnsw}
_KIND_OF_CLASS = {"IndexFlatIP": "flat", "IndexHNSWFlat": "hnsw"}


class DenseRetriever(CorpusRetriever):
    """Bi-encoder retrieval over a FAISS index; scores are cosine similarities.

    >>> retriever = DenseRetriever()                          # packaged MiniLM; nothing loads yet
    >>> retriever.add(chunks)                                 # doctest: +SKIP
    >>> retriever.retrieve("who built the tower?", k=3)       # doctest: +SKIP
    >>> retriever.save("index/"); DenseRetriever.load("index/")  # doctest: +SKIP

    ``model`` is a registry key (``"minilm"``), a local folder or a hub id (any sentence-transformers model).
    ``add`` encodes like :class:`~promptzip.retrievers.dense.DenseScorer` (packed rows for the packaged encoder,
    batches of ``batch_size`` for one that cannot be packed) with a progress bar above 256 new texts
    (``progress=False`` to hide it); with a ``cache`` each distinct text is encoded once, ever. ``precision`` is the
    encoder's (see :class:`~promptzip.retrievers.dense.DenseScorer`); a saved index loads under any precision of
    the same weights. :meth:`add_vectors` indexes vectors the caller computed with the same encoder. See the module
    docstring for the index type and the class docstring of :class:`~promptzip.retrievers.fusion.CorpusRetriever`
    for ids, refusals and the empty corpus (``[]``).
    """

    name = "dense"
    kind = "dense"

    def __init__(
        self,
        model: str = "minilm",
        *,
        index: IndexSpec | None = None,
        cache: Cache | None = None,
        batch_size: int = 64,
        progress: bool = True,
        precision: str = "auto",
    ) -> None:
        super().__init__()
        if index is not None and not isinstance(index, IndexSpec):
            raise ConfigError(f"index must be an IndexSpec, not {type(index).__name__}")
        self.model_name = model
        self.spec = index or IndexSpec()
        self.encoder = DenseScorer(model, cache=cache, batch_size=batch_size, progress=progress, precision=precision)
        self._fingerprint: str | None = None
        self._index: Any = None  # faiss.IndexIDMap2 over a flat or HNSW index
        self._kind: str | None = None
        self._dim: int | None = None
        self._fids: dict[str, int] = {}
        self._ids_by_fid: dict[int, str] = {}
        self._tombstones: set[int] = set()
        self._selector: tuple[Any, Any] | None = None  # (IDSelectorNot, IDSelectorBatch), kept alive together
        self._next_fid = 0
        self._warmers: dict[str, Zipper] = {}  # the stacks whose caches add(..., warm_cache=) fills, by preset

    # -- facts
    @property
    def index_kind(self) -> str | None:
        """``"flat"`` or ``"hnsw"``; ``None`` before the first add."""
        return self._kind

    @property
    def dimension(self) -> int | None:
        return self._dim

    @property
    def encoder_fingerprint(self) -> str:
        """sha256 prefix of the encoder's weight files (resolving the model, not loading it)."""
        if self._fingerprint is None:
            self._fingerprint = weights_fingerprint(resolve_model(self.model_name).path)
        return self._fingerprint

    # -- adding
    def add(self, chunks: Iterable[Chunk], *, warm_cache: bool | str | Zipper = False) -> list[str]:
        """Index ``chunks``; return their ids (see :class:`~promptzip.retrievers.fusion.CorpusRetriever`).

        ``warm_cache``: also put what compressing these chunks later reads about them, whatever the question
        (their sentences' vectors), into this retriever's cache, through :func:`promptzip._warm.warm_texts`, so a
        compression at query time only embeds the question. ``True`` warms the ``fast`` preset's keys; a preset
        name warms that preset's; a :class:`~promptzip.Zipper` warms its own cache. Needs ``cache=`` unless a
        Zipper is given."""
        zipper = None if warm_cache is False else self._warmer(warm_cache)  # a bad value fails before indexing
        ids = super().add(chunks)
        if zipper is not None and ids:
            from promptzip._warm import warm_texts

            warm_texts(zipper, [(key, self._records[key].text) for key in ids])
        return ids

    def _warmer(self, spec: bool | str | Zipper) -> Zipper:
        from promptzip._pipeline import Zipper

        if isinstance(spec, Zipper):
            return spec
        if isinstance(self.encoder.cache, NullCache):
            raise ConfigError("warm_cache needs a cache to fill: DenseRetriever(cache=...) or a Zipper with one")
        name = "fast" if spec is True else spec
        if not isinstance(name, str):
            raise ConfigError(f"warm_cache must be True, a preset name or a Zipper, not {spec!r}")
        with self._lock:
            if name not in self._warmers:
                self._warmers[name] = Zipper.from_preset(name, cache=self.encoder.cache)
            return self._warmers[name]

    def _prepare(self, items: Sequence[tuple[str, Chunk]]) -> Any:
        return self.encoder.embed([chunk.text for _, chunk in items])

    def add_vectors(self, chunks: Iterable[Chunk], vectors: npt.ArrayLike) -> list[str]:
        """Index ``chunks`` with precomputed embeddings (one row each, from this retriever's encoder); rows are
        normalized here. Same refusals as :meth:`add`, plus a shape or dimension mismatch or a zero/non-finite
        row (:class:`InputError`)."""
        if isinstance(chunks, Chunk | str):
            raise InputError("add_vectors() takes an iterable of Chunks")
        batch = list(chunks)
        matrix = self._unit_rows(vectors, len(batch))
        with self._lock:
            self._check_new(batch)
        return self._commit(batch, matrix)

    def _unit_rows(self, vectors: npt.ArrayLike, n: int) -> np.ndarray:
        try:
            matrix = np.array(vectors, dtype=np.float32, ndmin=2)
        except (TypeError, ValueError) as exc:
            raise InputError(f"vectors must be a numeric 2-D array: {exc}") from exc
        if matrix.ndim != 2 or matrix.shape[0] != n:
            raise InputError(f"expected {n} vectors (one per chunk), got an array of shape {matrix.shape}")
        if n and self._dim is not None and matrix.shape[1] != self._dim:
            raise InputError(f"vectors have dimension {matrix.shape[1]}; this index has dimension {self._dim}")
        if not np.isfinite(matrix).all():
            raise InputError("vectors contain NaN or infinite values")
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        if n and (norms <= 0).any():
            raise InputError(f"vector {int(np.argmin(norms[:, 0]))} is all zeros: it has no direction to compare")
        return np.ascontiguousarray(matrix / np.where(norms > 0, norms, 1.0), dtype=np.float32)

    def _add(self, items: Sequence[tuple[str, Chunk]], payload: Any) -> None:
        vectors = np.ascontiguousarray(payload, dtype=np.float32)
        if self._dim is None:
            self._dim = int(vectors.shape[1])
        elif vectors.shape[1] != self._dim:
            raise ConfigError(f"the encoder gives dimension {vectors.shape[1]}; this index has dimension {self._dim}")
        target = self.spec.choose(len(self._records) + len(items))
        if self._index is None:
            self._index, self._kind = self._new_index(target), target
        elif target != self._kind and self.spec.kind == "auto" and target == "hnsw":
            self._rebuild(target)
        fids = np.arange(self._next_fid, self._next_fid + len(items), dtype=np.int64)
        self._index.add_with_ids(vectors, fids)
        self._next_fid += len(items)
        for (key, _), fid in zip(items, fids.tolist(), strict=True):
            self._fids[key] = fid
            self._ids_by_fid[fid] = key

    def _new_index(self, kind: str) -> Any:
        faiss = _faiss()
        if self._dim is None:
            raise ConfigError("the index dimension is unknown before the first vectors are added")
        return faiss.IndexIDMap2(_BUILDERS[kind](faiss, self._dim, self.spec))

    # -- deleting
    def _delete(self, ids: Sequence[str]) -> None:
        fids = [self._fids.pop(key) for key in ids]
        for fid in fids:
            del self._ids_by_fid[fid]
        if self._kind == "flat":
            self._index.remove_ids(np.asarray(fids, dtype=np.int64))
            return
        self._tombstones.update(fids)
        self._selector = None
        if len(self._tombstones) > self.spec.compact_ratio * self._index.ntotal:
            self._rebuild(self._kind or "hnsw")

    def rebuild(self, kind: str | None = None) -> None:
        """Rebuild the index from its stored vectors (no re-encoding): drops HNSW tombstones, or changes the
        index type (``kind``: ``"flat"``/``"hnsw"``; default: what the spec chooses for the current size)."""
        if kind is not None and kind not in _BUILDERS:
            raise ConfigError(f"unknown index kind {kind!r}; known: {', '.join(_BUILDERS)}")
        with self._lock:
            if self._index is not None:
                self._rebuild(kind or self.spec.choose(len(self._records)))

    def _rebuild(self, kind: str) -> None:
        faiss = _faiss()
        total = int(self._index.ntotal)
        fids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        vectors = faiss.downcast_index(self._index.index).reconstruct_n(0, total) if total else None
        if self._tombstones and vectors is not None:
            live = ~np.isin(fids, np.fromiter(self._tombstones, dtype=np.int64))
            fids, vectors = fids[live], vectors[live]
        index = self._new_index(kind)
        if vectors is not None and len(fids):
            index.add_with_ids(np.ascontiguousarray(vectors), fids)
        self._index, self._kind = index, kind
        self._tombstones, self._selector = set(), None

    # -- searching
    def _search(self, query: str, k: int) -> list[tuple[str, float]]:
        return self._search_vector(self.encoder.embed_query(query), k)

    def search_vector(self, vector: npt.ArrayLike, k: int) -> list[Chunk]:
        """Like :meth:`retrieve`, for a query embedding the caller computed (normalized here)."""
        if k <= 0:
            raise InputError(f"k must be positive, got {k}")
        query = self._unit_rows(vector, 1)[0]
        with self._lock:
            if not self._records:
                return []
            hits = self._search_vector(query, min(k, len(self._records)))
            return [scored(self._records[key], score, self.name) for key, score in hits]

    def _search_vector(self, query: np.ndarray, k: int) -> list[tuple[str, float]]:
        if query.shape[0] != self._dim:
            raise ConfigError(
                f"the query embedding has dimension {query.shape[0]}; this index has dimension {self._dim} "
                f"(was it built with another encoder than {self.model_name!r}?)"
            )
        params = None
        if self._kind == "hnsw":
            faiss = _faiss()
            params = faiss.SearchParametersHNSW()  # fresh each call: IndexIDMap2 rewrites its selector in place
            params.efSearch = max(self.spec.ef_search, k)
            if self._tombstones:
                if self._selector is None:
                    batch = faiss.IDSelectorBatch(np.fromiter(sorted(self._tombstones), dtype=np.int64))
                    self._selector = (faiss.IDSelectorNot(batch), batch)
                params.sel = self._selector[0]
        scores, fids = self._index.search(query.reshape(1, -1), k, params=params)
        return [
            (self._ids_by_fid[fid], float(score))
            for score, fid in zip(scores[0].tolist(), fids[0].tolist(), strict=True)
            if fid >= 0 and fid in self._ids_by_fid
        ]

    # -- persistence
    def _dump(self) -> tuple[dict[str, bytes], dict[str, Any]]:
        files = {}
        if self._index is not None:
            files[INDEX_FILE] = _faiss().serialize_index(self._index).tobytes()
        state = {
            "encoder": {"model": self.model_name, "fingerprint": self.encoder_fingerprint},
            "dimension": self._dim,
            "index": {"kind": self._kind, "file": INDEX_FILE if self._index is not None else None},
            "spec": dataclasses.asdict(self.spec),
            "fids": [self._fids[key] for key in self._records],
            "tombstones": sorted(self._tombstones),
            "next_fid": self._next_fid,
        }
        return files, state

    @classmethod
    def _restore(
        cls,
        folder: Path,
        state: Mapping[str, Any],
        files: Mapping[str, bytes],
        records: Sequence[tuple[str, Chunk]],
        **options: Any,
    ) -> Self:
        where = f"{folder}/manifest.json"
        try:
            saved_model = str(state["encoder"]["model"])
            saved_fp = str(state["encoder"]["fingerprint"])
            spec = options.pop("index", None) or IndexSpec(**state["spec"])
            kind = state["index"]["kind"]
            dim = state["dimension"]
            fids = [int(f) for f in state["fids"]]
            tombstones = {int(f) for f in state["tombstones"]}
            next_fid = int(state["next_fid"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{where}: malformed dense index state ({exc!r})") from exc
        model = options.pop("model", None) or saved_model
        retriever = cls(model, index=spec, **options)
        current = retriever.encoder_fingerprint
        if current != saved_fp:
            raise ConfigError(
                f"the index at {folder} was built with encoder {saved_model!r} (weights fingerprint {saved_fp}); "
                f"encoder {model!r} has fingerprint {current}. Vectors of different encoders are not comparable: "
                "load it with the encoder it was built with, or re-index the corpus."
            )
        if len(fids) != len(records) or len(set(fids)) != len(fids):
            raise InputError(f"{where}: {len(fids)} FAISS ids for {len(records)} chunks")
        if records and kind not in _BUILDERS:
            raise InputError(f"{where}: unknown index kind {kind!r}")
        if records or INDEX_FILE in files:
            retriever._index = cls._read_index(folder, files, kind, dim, set(fids) | tombstones)
            retriever._kind, retriever._dim = kind, int(dim)
        retriever._fids = {key: fid for (key, _), fid in zip(records, fids, strict=True)}
        retriever._ids_by_fid = {fid: key for key, fid in retriever._fids.items()}
        retriever._tombstones = tombstones
        retriever._next_fid = max(next_fid, max(fids, default=-1) + 1, max(tombstones, default=-1) + 1)
        return retriever

    @staticmethod
    def _read_index(folder: Path, files: Mapping[str, bytes], kind: str, dim: Any, fids: set[int]) -> Any:
        faiss = _faiss()
        data = files.get(INDEX_FILE)
        if data is None:
            raise InputError(f"{folder}: the manifest lists chunks but no {INDEX_FILE}")
        try:
            index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        except (RuntimeError, MemoryError, ValueError) as exc:
            raise InputError(f"{folder / INDEX_FILE} is not a readable FAISS index: {exc}") from exc
        inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap2) else None
        if inner is None or _KIND_OF_CLASS.get(type(inner).__name__) != kind:
            raise InputError(f"{folder / INDEX_FILE} is not the {kind!r} IndexIDMap2 its manifest describes")
        if index.d != dim or index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise InputError(f"{folder / INDEX_FILE}: dimension or metric differs from the manifest")
        stored = faiss.vector_to_array(index.id_map).astype(np.int64)
        if len(stored) != len(fids) or set(stored.tolist()) != fids:
            raise InputError(f"{folder / INDEX_FILE} and its manifest disagree on which vectors it holds")
        return index
