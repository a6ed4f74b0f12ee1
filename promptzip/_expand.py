"""Nothing lost: the originals of what compression cut, stored under an *expand id* that the output names.

A reducer that cuts a tool output (a JSON array, a log, an HTML page) writes an id such as ``pz-3f2a9c0d1e2b4a5c``
into what it keeps and stores the original with :meth:`ExpandStore.put`; ``promptzip.expand(id)`` (or the proxy's
``GET /v1/promptzip/expand/{id}``) gives it back.

* **The id is the content's.** ``pz-`` and the first 16 hex digits of the SHA-256 of the text's UTF-8 bytes
  (:func:`expand_id`): the same text always gets the same id, in every process, so storing it again is harmless and
  a conversation's repeated tool output keeps one id (and the provider's prompt cache keeps hitting).
* **Scoped.** The cache key holds the scope as well as the id (:func:`~promptzip._cache.make_key` in the
  ``expand`` namespace), so an id stored under one scope (one credential of the proxy) is not found under
  another: the lookup misses, exactly as for an id never stored, and the answer tells nothing about other scopes.
* **A cache, not a database.** Originals live in the :class:`~promptzip._cache.Cache` the Zipper already shares
  (SQLite, Redis, memory), so they share its bounds: a memory cache skips a value larger than its ``max_bytes``
  (64 MiB by default) and evicts the least recently used, SQLite skips one larger than its ``max_bytes`` (1 GiB)
  and evicts down to 90 % of it, Redis refuses values over its ``proto-max-bulk-len`` (512 MB) and expires them
  after the cache's TTL (7 days by default), ``none`` stores nothing. Like every cache write, :meth:`ExpandStore.put`
  never fails on such a refusal or on a backend failure (it is counted in ``Cache.errors``); a later
  :meth:`ExpandStore.get` raises :class:`~promptzip.ExpandNotFound`. Values are zlib-compressed when that makes
  them smaller (tool output often shrinks 5-10x), and checked against their id when read back.
"""

from __future__ import annotations

import hashlib
import re
import zlib

from promptzip._cache import Cache, cache_from_url, make_key
from promptzip._errors import ExpandNotFound, InputError

__all__ = ["EXPAND_ID", "ExpandStore", "expand", "expand_id"]

EXPAND_ID = re.compile(r"pz-[0-9a-f]{16}")
"""The form of an expand id: ``pz-`` and 16 lowercase hex digits (match it with ``fullmatch``)."""

_NAMESPACE = "expand"
_FORMAT = "1"  # salts the storage keys: bump when the stored encoding changes
_RAW, _ZLIB = b"t", b"z"  # first byte of a stored value: UTF-8 as is, or zlib-compressed UTF-8
_COMPRESS_FROM = 1024  # bytes; a shorter text is stored as it is
_LEVEL = 1  # zlib's fastest level: most of the gain on repetitive tool output at a fraction of the time


def expand_id(text: str) -> str:
    """The expand id of ``text``: ``pz-`` and the first 16 hex digits of the SHA-256 of its UTF-8 bytes."""
    return "pz-" + hashlib.sha256(_utf8(_checked_text(text))).hexdigest()[:16]


class ExpandStore:
    """Originals by expand id in a :class:`~promptzip._cache.Cache`, per scope; cheap to build (one per request is
    fine), thread-safe as its cache is.

    >>> store = ExpandStore(MemoryCache())  # doctest: +SKIP
    >>> id = store.put(original, scope="tenant-a")  # doctest: +SKIP
    >>> store.get(id, scope="tenant-a") == original  # doctest: +SKIP
    True
    """

    def __init__(self, cache: Cache) -> None:
        if not isinstance(cache, Cache):
            raise InputError(f"an ExpandStore needs a promptzip Cache, not {type(cache).__name__}")
        self.cache = cache

    def __repr__(self) -> str:
        return f"ExpandStore({self.cache!r})"

    def put(self, text: str, *, scope: str = "") -> str:
        """Store ``text`` under ``scope`` and return its expand id. Never fails on the cache (see the module)."""
        id = expand_id(text)
        self.cache.put(self._key(id, _checked_scope(scope)), _encode(text))
        return id

    def get(self, id: str, *, scope: str = "") -> str:
        """The text stored under ``id`` in ``scope``; :class:`~promptzip.ExpandNotFound` when there is none (never
        stored, evicted, expired, stored under another scope, or the cache failed), :class:`~promptzip.InputError`
        when ``id`` is not of the form ``pz-`` + 16 hex digits."""
        id = check_id(id)
        value = self.cache.get(self._key(id, _checked_scope(scope)))
        text = _decode(value) if value is not None else None
        if text is None or expand_id(text) != id:  # a damaged value is as good as none
            raise ExpandNotFound(id)
        return text

    @staticmethod
    def _key(id: str, scope: str) -> str:
        return make_key(_NAMESPACE, _FORMAT, scope, id)


def expand(id: str, *, cache: str | Cache | None = None, scope: str = "") -> str:
    """The original text stored under the expand ``id`` (written into a compressed output by a reducer).

    ``cache`` is the one the compression used: a :class:`~promptzip._cache.Cache` (``zipper.cache``), a URL
    (``sqlite:///path``, ``redis://host``), or ``None`` for the default a preset Zipper uses (``$PROMPTZIP_CACHE``,
    else the SQLite file in the user's cache folder). A ``memory`` URL names a new, empty cache: pass the Cache
    object instead. ``scope`` is the one the text was stored under. Raises :class:`~promptzip.ExpandNotFound` or,
    for a malformed id, :class:`~promptzip.InputError`.
    """
    id = check_id(id)
    store = ExpandStore(cache_from_url(cache))
    try:
        return store.get(id, scope=scope)
    finally:
        if not isinstance(cache, Cache):  # opened here: release its file or connection
            store.cache.close()


def check_id(id: object) -> str:
    """``id`` when it is an expand id, else an :class:`~promptzip.InputError` (the id is not echoed: it may be
    anything a client sent, a path traversal or a megabyte of junk)."""
    if not isinstance(id, str):
        raise InputError(f"an expand id must be a str, not {type(id).__name__}")
    if EXPAND_ID.fullmatch(id) is None:
        raise InputError("not an expand id: an expand id is 'pz-' and 16 lowercase hex digits")
    return id


def _checked_text(text: object) -> str:
    if not isinstance(text, str):
        raise InputError(f"the text to store must be a str, not {type(text).__name__}")
    return text


def _checked_scope(scope: object) -> str:
    if not isinstance(scope, str):
        raise InputError(f"an expand scope must be a str, not {type(scope).__name__}")
    return scope


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # a lone surrogate (from JSON "\ud800") round-trips


def _encode(text: str) -> bytes:
    data = _utf8(text)
    if len(data) >= _COMPRESS_FROM:
        packed = zlib.compress(data, _LEVEL)
        if len(packed) < len(data):
            return _ZLIB + packed
    return _RAW + data


def _decode(value: bytes) -> str | None:
    kind, body = value[:1], value[1:]
    try:
        if kind == _ZLIB:
            body = zlib.decompress(body)
        elif kind != _RAW:
            return None
        return body.decode("utf-8", "surrogatepass")
    except (zlib.error, UnicodeDecodeError):
        return None
