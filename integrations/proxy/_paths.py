"""Request paths, checked and forwarded as what they mean once percent-decoded.

A server hands the app two views of a path: ``raw_path`` as sent and ``path`` decoded. Checking one view and
forwarding the other lets a request mean one thing to the proxy and another to the upstream (``/v1/..%5Cadmin``
passes a check on the decoded path as an ordinary segment; ``/%76%31/models`` routes as ``/v1/models`` but its raw
bytes do not start with ``/v1``). So routing, the check and the upstream path all come from one parse of the raw
path: split on its literal slashes, each segment percent-decoded exactly once, anything that servers disagree on
refused, and each segment quoted again for the upstream.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from promptzip.integrations.proxy._errors import RequestError

__all__ = ["route_path", "upstream_path", "v1_segments"]

_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
# Only unreserved characters (always kept by quote) and ':' '@' go unencoded: sub-delimiters such as ';' and '='
# mean something to some servers (path parameters), so they are sent encoded, which every server decodes alike.
_SAFE = ":@"


def _refuse(why: str) -> RequestError:
    return RequestError(f"the path {why}", param="path", code="invalid_path")


def v1_segments(scope: Mapping[str, Any]) -> list[bytes]:
    """The segments after ``/v1`` of the request's path, each percent-decoded once; refused (400 ``invalid_path``)
    when servers could read it differently: a dot segment (also between encoded slashes), a backslash, a NUL, a
    malformed escape, an empty segment (``//``, which some servers merge: ``/v1//promptzip/...`` would reach the
    upstream as the proxy's own path, ``/v1//chat/completions`` as the chat route uncompressed) before the last, or a
    path that is not under ``/v1/``."""
    raw = scope.get("raw_path")
    if not isinstance(raw, bytes):  # a server that does not give it: the decoded path, encoded again
        raw = quote(str(scope.get("path", "")), safe="/").encode("ascii")
    raw = raw.split(b"?", 1)[0]
    if _BAD_ESCAPE.search(raw):
        raise _refuse("has a '%' that does not start an escape like %2F")
    head, *parts = raw.split(b"/")
    segments = [unquote_to_bytes(p) for p in parts]
    if head or len(segments) < 2 or segments[0] != b"v1":
        raise _refuse("must start with /v1/")
    if b"" in parts[:-1]:  # literally empty, not an encoded slash
        raise _refuse("must not contain an empty segment ('//')")
    for segment in segments:
        # An encoded slash stays part of its segment (model ids such as "org/name"), and is forwarded encoded;
        # but dot segments hidden behind one (..%2F..) would climb at an upstream that decodes it first.
        if any(part in (b".", b"..") for part in segment.split(b"/")):
            raise _refuse("must not contain '.' or '..' segments")
        if b"\\" in segment:
            raise _refuse("must not contain a backslash")
        if b"\x00" in segment:
            raise _refuse("must not contain a NUL (%00)")
    return segments[1:]


def route_path(segments: list[bytes]) -> str:
    """The decoded path (``/v1/...``) that routes are matched against; an encoded slash stays ``%2F``, so
    ``/v1/chat%2Fcompletions`` is not the chat route (its upstream path is not either)."""
    return "/v1/" + "/".join(s.decode("utf-8", "replace").replace("/", "%2F") for s in segments)


def upstream_path(base: bytes, segments: list[bytes]) -> bytes:
    """The path to request upstream: ``base`` (the upstream URL's path) in place of ``/v1``, then the segments."""
    quoted = "/".join(quote(s, safe=_SAFE) for s in segments)
    return base.rstrip(b"/") + b"/" + quoted.encode("ascii")
