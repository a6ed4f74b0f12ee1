"""The embedded default cache: one SQLite file in WAL mode, shared by threads and processes, size-bounded.

See :mod:`promptzip._cache` for the cache contract (content-addressed keys, failures degrade to misses).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from promptzip._cache import CACHE_VERSION, Cache, MiB, _check_max_bytes

__all__ = ["SQLiteCache"]

logger = logging.getLogger("promptzip")

_BUSY_TIMEOUT_S = 30.0
_TABLE = "promptzip_cache"
_ATIME_FLUSH_COUNT = 256
_ATIME_FLUSH_SECONDS = 10.0
_SQL_BATCH = 500  # stays under SQLite's limit on bound parameters


class SQLiteCache(Cache):
    """A cache in one SQLite file (WAL mode), shared safely by threads and processes, bounded by ``max_bytes``.

    Nothing touches the disk until first use. A file that is not a valid SQLite database is moved aside to
    ``<name>.corrupt-<timestamp>`` and replaced by an empty cache; a file written under another
    :data:`CACHE_VERSION` is cleared. When the stored values pass ``max_bytes``, the least recently accessed
    entries are evicted down to 90% of it. One connection per cache, guarded by a lock.
    """

    def __init__(self, path: str | os.PathLike[str], *, max_bytes: int = 1024 * MiB) -> None:
        super().__init__()
        self.path = Path(path).expanduser()
        self.max_bytes = _check_max_bytes(max_bytes)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._abandoned: list[sqlite3.Connection] = []
        self._pid = 0
        self._estimate = 0  # bytes in the table as of the last real count, plus what this process wrote since
        self._unchecked = 0  # bytes this process wrote since the last real count
        self._atimes: dict[str, float] = {}
        self._atimes_flushed = time.monotonic()

    def __repr__(self) -> str:
        return f"SQLiteCache({str(self.path)!r}, max_bytes={self.max_bytes})"

    def _get(self, key: str) -> bytes | None:
        return self._get_many([key]).get(key)

    def _get_many(self, keys: Sequence[str]) -> Mapping[str, bytes | None]:
        found: dict[str, bytes | None] = {}
        with self._lock:
            conn = self._connection()
            for start in range(0, len(keys), _SQL_BATCH):
                batch = keys[start : start + _SQL_BATCH]
                marks = ",".join("?" * len(batch))
                rows = conn.execute(f"SELECT key, value FROM {_TABLE} WHERE key IN ({marks})", batch)
                found.update((key, bytes(value)) for key, value in rows)
            now = time.time()
            self._atimes.update(dict.fromkeys(found, now))
            if (
                len(self._atimes) >= _ATIME_FLUSH_COUNT
                or time.monotonic() - self._atimes_flushed > _ATIME_FLUSH_SECONDS
            ):
                with _transaction(conn):
                    self._flush_atimes(conn)
        return found

    def _put(self, key: str, value: bytes) -> None:
        self._put_many({key: value})

    def _put_many(self, items: Mapping[str, bytes]) -> None:
        now = time.time()
        rows = [(key, value, len(value), now) for key, value in items.items() if len(value) <= self.max_bytes]
        with self._lock:
            conn = self._connection()
            with _transaction(conn):
                self._flush_atimes(conn)
                conn.executemany(f"INSERT OR REPLACE INTO {_TABLE} (key, value, size, atime) VALUES (?, ?, ?, ?)", rows)
                written = sum(row[2] for row in rows)
                self._estimate += written
                self._unchecked += written
                if self._estimate > self.max_bytes or self._unchecked > self.max_bytes // 16:
                    self._evict(conn)

    def _close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is None or self._pid != os.getpid():
                return
            try:
                if self._atimes:
                    with _transaction(conn):
                        self._flush_atimes(conn)
            finally:
                conn.close()

    def _stats(self) -> dict[str, int]:
        with self._lock:
            entries, size = (
                self._connection().execute(f"SELECT COUNT(*), COALESCE(SUM(size), 0) FROM {_TABLE}").fetchone()
            )
        return {"entries": int(entries), "bytes": int(size)}

    def _flush_atimes(self, conn: sqlite3.Connection) -> None:
        pending, self._atimes = self._atimes, {}
        self._atimes_flushed = time.monotonic()
        conn.executemany(f"UPDATE {_TABLE} SET atime = ? WHERE key = ?", [(t, k) for k, t in pending.items()])

    def _evict(self, conn: sqlite3.Connection) -> None:
        """Delete least recently accessed rows until the table holds at most 90% of ``max_bytes``."""
        (total,) = conn.execute(f"SELECT COALESCE(SUM(size), 0) FROM {_TABLE}").fetchone()
        excess = total - int(self.max_bytes * 0.9) if total > self.max_bytes else 0
        victims: list[tuple[str]] = []
        freed = 0
        cursor = conn.execute(f"SELECT key, size FROM {_TABLE} ORDER BY atime, rowid")
        for key, size in cursor:
            if freed >= excess:
                break
            victims.append((key,))
            freed += size
        cursor.close()
        conn.executemany(f"DELETE FROM {_TABLE} WHERE key = ?", victims)
        self._estimate, self._unchecked = total - freed, 0

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        if self._conn is not None:  # inherited through fork(): the child must neither use nor close it
            self._abandoned.append(self._conn)
            self._conn = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        identity = _file_identity(self.path)
        try:
            conn = self._open()
        except sqlite3.OperationalError:
            raise  # locked, unreadable, disk I/O: not corruption, so leave the file alone
        except sqlite3.DatabaseError as exc:
            if _file_identity(self.path) == identity:  # not already replaced by another process
                self._move_aside(exc)
            conn = self._open()
        self._conn, self._pid = conn, os.getpid()
        self._atimes.clear()
        return conn

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            _use_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            if version != CACHE_VERSION:
                with _transaction(conn):
                    (version,) = conn.execute("PRAGMA user_version").fetchone()  # another process may have won
                    if version != CACHE_VERSION:
                        self._create_schema(conn, version)
            (self._estimate,) = conn.execute(f"SELECT COALESCE(SUM(size), 0) FROM {_TABLE}").fetchone()
            self._unchecked = 0
        except BaseException:
            conn.close()
            raise
        return conn

    def _create_schema(self, conn: sqlite3.Connection, old_version: int) -> None:
        if old_version:
            logger.info("cache %s has version %s, not %s; clearing it", self.path, old_version, CACHE_VERSION)
        conn.execute(f"DROP TABLE IF EXISTS {_TABLE}")
        conn.execute(
            f"CREATE TABLE {_TABLE} "
            "(key TEXT PRIMARY KEY, value BLOB NOT NULL, size INTEGER NOT NULL, atime REAL NOT NULL)"
        )
        conn.execute(f"CREATE INDEX {_TABLE}_atime ON {_TABLE} (atime)")
        conn.execute(f"PRAGMA user_version = {int(CACHE_VERSION)}")

    def _move_aside(self, exc: Exception) -> None:
        aside = f"{self.path}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}"
        for suffix in ("", "-wal", "-shm"):
            with suppress(FileNotFoundError):
                os.replace(f"{self.path}{suffix}", f"{aside}{suffix}")
        logger.warning(
            "cache %s is not a valid SQLite database (%s); moved it to %s, starting empty", self.path, exc, aside
        )


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        with suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL (persistent: usually a no-op). The switch ignores the busy timeout, hence the retries."""
    deadline = time.monotonic() + _BUSY_TIMEOUT_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL").fetchone()
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _file_identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino
