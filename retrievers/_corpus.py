"""Indexed corpora: chunk identity, scored results, and the base of the retrievers that hold a corpus.

Everything a retriever returns is a :class:`~promptzip.Chunk` of the corpus with its ``source_id`` and offsets
unchanged and three metadata keys added: ``id`` (see :func:`chunk_id`), ``score`` (higher is more relevant; the
scale belongs to the retriever that set it) and ``retriever`` (its name).

:class:`CorpusRetriever` is the base of the retrievers that hold a corpus (dense, BM25): it owns the chunk
records, id checks, the lock and the on-disk format, and a subclass implements five protected methods. A saved
index is a folder::

    manifest.json        format, version, retriever name, chunk records, sha256 of every other file, subclass state
    <index files>        whatever the subclass writes (a FAISS index, BM25 sparse matrices)

The manifest is written last and records each file's sha256, so a truncated, edited or half-written folder is
refused with :class:`InputError` before any third-party reader sees the bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
from abc import abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

from promptzip._errors import ConfigError, InputError
from promptzip._roles import Retriever
from promptzip._types import Chunk

__all__ = ["FORMAT", "FORMAT_VERSION", "MANIFEST", "CorpusRetriever", "chunk_id", "scored"]

MANIFEST = "manifest.json"
FORMAT = "promptzip-retriever"
FORMAT_VERSION = 1


def chunk_id(chunk: Chunk) -> str:
    """A chunk's id in a corpus: ``metadata["id"]`` when given (a str, or an int turned into one), else
    ``f"{source_id}:{start}-{end}"``.

    The default names the span, not just its start, so a paragraph and its first sentence (multi-scale corpora)
    can be indexed side by side.
    """
    given = chunk.metadata.get("id") if chunk.metadata else None
    if given is None:
        return f"{chunk.source_id}:{chunk.start}-{chunk.end}"
    if isinstance(given, bool) or not isinstance(given, str | int):
        raise InputError(f"Chunk.metadata['id'] must be a str or an int, not {type(given).__name__}")
    if isinstance(given, str) and not given:
        raise InputError("Chunk.metadata['id'] must not be empty")
    return str(given)


def scored(chunk: Chunk, score: float, retriever: str, **extra: Any) -> Chunk:
    """A copy of ``chunk`` (same text, source and offsets) whose metadata adds ``id``, ``score`` and ``retriever``."""
    metadata = {**chunk.metadata, "id": chunk_id(chunk), "score": float(score), "retriever": retriever, **extra}
    return Chunk(chunk.text, chunk.source_id, chunk.start, chunk.end, metadata, chunk.protected)


# ----------------------------------------------------------------------------------------------- corpus base


class CorpusRetriever(Retriever):
    """A retriever over a corpus it holds: ``add``, ``delete``, ``save``, ``load``, and ``retrieve``.

    * ``add(chunks)`` refuses (:class:`InputError`, nothing added) non-``Chunk`` items, blank texts, metadata
      that is not JSON, and ids already in the corpus or repeated in the batch.
    * ``delete(ids)`` refuses unknown ids unless ``missing_ok=True``; nothing is deleted on a refusal.
    * ``retrieve`` on an empty corpus returns ``[]`` (nothing indexed is "no relevant context", not an error);
      it returns at most ``k`` chunks, fewer when the corpus is smaller or (BM25) fewer chunks match.
    * Methods are thread-safe (one lock per retriever).

    A subclass implements ``_add``, ``_delete``, ``_search``, ``_dump`` and ``_restore`` (and ``_prepare`` for
    work that should run outside the lock).
    """

    name = "corpus"
    kind: ClassVar[str] = "corpus"  # the manifest's "retriever" value; loading checks it

    def __init__(self) -> None:
        self._records: dict[str, Chunk] = {}
        self._lock = threading.RLock()

    # -- corpus
    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, chunk_or_id: object) -> bool:
        key = chunk_id(chunk_or_id) if isinstance(chunk_or_id, Chunk) else chunk_or_id
        return isinstance(key, str) and key in self._records

    def ids(self) -> list[str]:
        """The ids of the corpus, in insertion order."""
        with self._lock:
            return list(self._records)

    def get(self, id: str) -> Chunk:
        """The chunk stored under ``id`` (as it was added)."""
        try:
            return self._records[id]
        except KeyError:
            raise InputError(f"no chunk with id {id!r} in this {self.name} retriever") from None

    def add(self, chunks: Iterable[Chunk]) -> list[str]:
        """Index ``chunks``; return their ids. See the class docstring for what is refused.

        The expensive part (encoding, tokenizing) runs outside the lock, so queries go on meanwhile.
        """
        if isinstance(chunks, Chunk | str):
            raise InputError("add() takes an iterable of Chunks; wrap a single chunk in a list")
        batch = list(chunks)
        with self._lock:
            items = self._check_new(batch)
        if not items:
            return []
        return self._commit(batch, self._prepare(items))

    def _commit(self, chunks: Sequence[Chunk], payload: Any) -> list[str]:
        with self._lock:
            items = self._check_new(chunks)  # again: another thread may have added one of these ids meanwhile
            if items:
                self._add(items, payload)
                self._records.update(items)
            return [key for key, _ in items]

    def delete(self, ids: Iterable[str], *, missing_ok: bool = False) -> int:
        """Remove chunks by id; return how many were removed."""
        if isinstance(ids, str):
            ids = [ids]
        with self._lock:
            wanted = list(dict.fromkeys(ids))
            unknown = [i for i in wanted if i not in self._records]
            if unknown and not missing_ok:
                shown = ", ".join(map(repr, unknown[:5])) + (", ..." if len(unknown) > 5 else "")
                raise InputError(f"cannot delete {len(unknown)} unknown id(s): {shown}")
            present = [i for i in wanted if i in self._records]
            if present:
                self._delete(present)
                for key in present:
                    del self._records[key]
            return len(present)

    def _check_new(self, chunks: Iterable[Chunk]) -> list[tuple[str, Chunk]]:
        items: list[tuple[str, Chunk]] = []
        batch: set[str] = set()
        for position, chunk in enumerate(chunks):
            if not isinstance(chunk, Chunk):
                raise InputError(f"item {position} is a {type(chunk).__name__}, not a Chunk", position=position)
            if not chunk.text.strip():
                raise InputError(f"chunk {position} ({chunk_id(chunk)!r}) has no text to index", position=position)
            key = chunk_id(chunk)
            if key in self._records or key in batch:
                where = "already in the corpus" if key in self._records else "repeated in this batch"
                raise InputError(
                    f"duplicate chunk id {key!r} ({where}); give each chunk a distinct metadata['id'] or span",
                    position=position,
                )
            try:
                json.dumps(dict(chunk.metadata))
            except (TypeError, ValueError) as exc:
                raise InputError(
                    f"chunk {key!r}: metadata must be JSON-serializable ({exc})", position=position
                ) from exc
            batch.add(key)
            items.append((key, chunk))
        return items

    # -- retrieval
    def _retrieve(self, query: str, k: int) -> list[Chunk]:
        with self._lock:
            if not self._records:
                return []
            hits = self._search(query, min(k, len(self._records)))
            return [scored(self._records[key], score, self.name) for key, score in hits]

    # -- persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the index to the folder ``path`` (created if needed); return it. Files are replaced atomically,
        the manifest last."""
        folder = Path(path)
        with self._lock:
            files, state = self._dump()
            manifest = {
                "format": FORMAT,
                "version": FORMAT_VERSION,
                "retriever": self.kind,
                "files": {
                    name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
                    for name, data in files.items()
                },
                "state": state,
                "chunks": [_record(key, chunk) for key, chunk in self._records.items()],
            }
        if MANIFEST in files:
            raise ConfigError(f"{type(self).__name__} may not write a file named {MANIFEST}")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for name, data in files.items():
                _write_atomic(folder / name, data)
            _write_atomic(folder / MANIFEST, json.dumps(manifest, ensure_ascii=False).encode("utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot save the {self.name} index to {folder}: {exc}") from exc
        return folder

    @classmethod
    def load(cls, path: str | os.PathLike[str], **options: Any) -> Self:
        """Read an index that :meth:`save` wrote. A missing, edited or corrupted folder raises :class:`InputError`;
        a folder of another retriever kind, format version or (dense) encoder raises :class:`ConfigError`."""
        folder = Path(path)
        manifest = _read_manifest(folder)
        if manifest["retriever"] != cls.kind:
            raise ConfigError(f"{folder} holds a {manifest['retriever']!r} index, not a {cls.kind!r} one")
        files: dict[str, bytes] = {}
        for name, info in _expect(manifest, "files", dict, folder).items():
            if not isinstance(info, dict) or not isinstance(info.get("sha256"), str) or Path(name).name != name:
                raise InputError(f"{folder / MANIFEST}: malformed entry for file {name!r}")
            try:
                data = (folder / name).read_bytes()
            except OSError as exc:
                raise InputError(f"index file {folder / name} cannot be read: {exc}") from exc
            if hashlib.sha256(data).hexdigest() != info["sha256"]:
                raise InputError(
                    f"index file {folder / name} is corrupted: its sha256 does not match the manifest "
                    "(truncated, edited, or from another save); rebuild the index or restore the folder"
                )
            files[name] = data
        records = [_chunk_from_record(r, folder) for r in _expect(manifest, "chunks", list, folder)]
        ids = [key for key, _ in records]
        if len(set(ids)) != len(ids):
            raise InputError(f"{folder / MANIFEST}: chunk ids are repeated")
        state = _expect(manifest, "state", dict, folder)
        retriever = cls._restore(folder, state, files, records, **options)
        retriever._records = dict(records)
        return retriever

    # -- subclass hooks
    def _prepare(self, items: Sequence[tuple[str, Chunk]]) -> Any:
        """The expensive, lock-free part of adding (encoding, tokenizing); its result goes to ``_add``."""
        return None

    @abstractmethod
    def _add(self, items: Sequence[tuple[str, Chunk]], payload: Any) -> None:
        """Index new, validated chunks (under the lock, before they enter ``_records``); ``payload`` is what
        ``_prepare`` returned for exactly these items."""

    @abstractmethod
    def _delete(self, ids: Sequence[str]) -> None:
        """Forget known ids (called under the lock, before they leave ``_records``)."""

    @abstractmethod
    def _search(self, query: str, k: int) -> list[tuple[str, float]]:
        """The best ``k`` (id, score) pairs, best first; ``1 <= k <= len(self)``."""

    @abstractmethod
    def _dump(self) -> tuple[dict[str, bytes], dict[str, Any]]:
        """The files to write (name → bytes) and the JSON state to keep in the manifest."""

    @classmethod
    @abstractmethod
    def _restore(
        cls,
        folder: Path,
        state: Mapping[str, Any],
        files: Mapping[str, bytes],
        records: Sequence[tuple[str, Chunk]],
        **options: Any,
    ) -> Self:
        """A retriever rebuilt from verified files and state (its ``_records`` are set afterwards)."""


def _record(key: str, chunk: Chunk) -> dict[str, Any]:
    return {
        "id": key,
        "text": chunk.text,
        "source_id": chunk.source_id,
        "start": chunk.start,
        "end": chunk.end,
        "metadata": dict(chunk.metadata),
        "protected": chunk.protected,
    }


def _chunk_from_record(record: Any, folder: Path) -> tuple[str, Chunk]:
    try:
        chunk = Chunk(
            record["text"],
            str(record["source_id"]),
            int(record["start"]),
            int(record["end"]),
            dict(record["metadata"]),
            bool(record["protected"]),
        )
        key = record["id"]
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{folder / MANIFEST}: malformed chunk record ({exc!r})") from exc
    if not isinstance(key, str) or chunk_id(chunk) != key:
        raise InputError(f"{folder / MANIFEST}: chunk record id {key!r} does not match its chunk")
    return key, chunk


def _read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not folder.is_dir():
        raise InputError(f"no saved index at {folder}: not a folder")
    try:
        manifest = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise InputError(f"no saved index at {folder}: {MANIFEST} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is corrupted or not a promptzip index manifest: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"{path} is not a promptzip index manifest")
    version = manifest.get("version")
    if version != FORMAT_VERSION:
        raise ConfigError(f"{path} has format version {version!r}; this promptzip reads version {FORMAT_VERSION}")
    _expect(manifest, "retriever", str, folder)
    return manifest


def _expect(mapping: Mapping[str, Any], key: str, kind: type, folder: Path) -> Any:
    value = mapping.get(key)
    if not isinstance(value, kind):
        raise InputError(f"{folder / MANIFEST}: {key!r} is missing or not a {kind.__name__}")
    return value


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")  # created with the usual umask, unlike mkstemp
    try:
        with tmp.open("xb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
