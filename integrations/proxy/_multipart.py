"""``multipart/form-data`` (RFC 7578, with RFC 2046's framing): read a form into its parts and write it back with one
part's content replaced, for the batch file upload route (:mod:`._openai_batches`). Small and strict on purpose:
the proxy only needs to find two fields by name and rewrite one, and a body it cannot frame exactly is refused
(400) rather than guessed at, since what it forwarded would then not be what the client sent.

* The boundary comes from the ``content-type``'s ``boundary`` parameter (1-70 characters, quoted or not).
* The preamble before the first delimiter and the epilogue after the last are ignored (RFC 2046 §5.1.1); a delimiter
  line may carry trailing spaces or tabs. Each part has header lines, a blank line, then its content; a part
  whose ``Content-Disposition`` is not ``form-data`` with a ``name`` is refused.
* A re-encoded form keeps every part's header lines as they came, in their order, and writes a fresh random
  boundary found in no part (the new content may hold the old one).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from promptzip.integrations._bodies import RequestError

__all__ = ["Form", "Part", "parse_form"]

MEDIA_TYPE = "multipart/form-data"
_MAX_BOUNDARY = 70  # RFC 2046 §5.1.1
# A parameter: a token name, then a token or a quoted string (backslash escapes a character in it).
_PARAM = re.compile(r';[ \t]*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)[ \t]*=[ \t]*("(?:[^"\\]|\\.)*"|[^;\s]*)[ \t]*')
_QUOTED = re.compile(r"\\(.)")


def _malformed(message: str) -> RequestError:
    return RequestError(f"the multipart/form-data body is malformed: {message}", code="invalid_multipart")


def _params(rest: str) -> dict[str, str]:
    """A header value's parameters after its first item (``; name="file"; filename=x``), names in lowercase."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(rest.rstrip(" \t;")):  # a trailing ';' is sloppy, not wrong
        match = _PARAM.match(rest, pos)
        if match is None:
            raise _malformed(f"cannot read the parameters {rest.strip()!r}")
        name, value = match.group(1).lower(), match.group(2)
        out[name] = _QUOTED.sub(r"\1", value[1:-1]) if value.startswith('"') else value
        pos = match.end()
    return out


@dataclass(frozen=True, slots=True)
class Part:
    """One field of a form: its header lines as they came (no blank line), its content, and its ``name`` (and
    ``filename`` for a file)."""

    head: bytes
    content: bytes
    name: str
    filename: str | None = None


@dataclass(frozen=True, slots=True)
class Form:
    """A form's parts, in order."""

    parts: tuple[Part, ...]

    def field(self, name: str) -> int | None:
        """The index of the part named ``name``, ``None`` when there is none; a 400 when there are several (the
        upstream might read another one than the proxy)."""
        found = [i for i, part in enumerate(self.parts) if part.name == name]
        if len(found) > 1:
            raise RequestError(f"the form has {len(found)} {name!r} fields; give one", param=name, code="invalid_form")
        return found[0] if found else None

    def encoded(self, contents: Mapping[int, bytes]) -> tuple[str, bytes]:
        """The form's ``content-type`` and body with the parts indexed in ``contents`` given that content."""
        data = [contents.get(i, part.content) for i, part in enumerate(self.parts)]
        while True:
            boundary = f"promptzip-{secrets.token_hex(16)}".encode("ascii")
            if not any(boundary in d or boundary in part.head for d, part in zip(data, self.parts, strict=True)):
                break
        out = bytearray()
        for part, content in zip(self.parts, data, strict=True):
            out += b"--" + boundary + b"\r\n" + part.head + b"\r\n\r\n" + content + b"\r\n"
        out += b"--" + boundary + b"--\r\n"
        return f"{MEDIA_TYPE}; boundary={boundary.decode('ascii')}", bytes(out)


def boundary_of(content_type: str) -> str | None:
    """The boundary of a ``multipart/form-data`` content type, ``None`` for another media type; a 400 for a form
    without a valid boundary."""
    media, sep, rest = content_type.partition(";")
    if media.strip().lower() != MEDIA_TYPE:
        return None
    boundary = _params(sep + rest).get("boundary", "")
    if not 0 < len(boundary) <= _MAX_BOUNDARY or not boundary.isascii() or boundary.endswith(" "):
        raise _malformed("the content-type has no valid boundary parameter")
    return boundary


def parse_form(content_type: str, body: bytes) -> Form | None:
    """The form ``body`` holds, ``None`` when ``content_type`` is not ``multipart/form-data``; a
    :class:`RequestError` (400) for a body that is not a well-framed form (module docstring)."""
    boundary = boundary_of(content_type)
    if boundary is None:
        return None
    delimiter = b"--" + boundary.encode("ascii")
    if body.startswith(delimiter):
        pos = len(delimiter)
    else:
        first = body.find(b"\r\n" + delimiter)
        if first < 0:
            raise _malformed("the boundary never occurs")
        pos = first + 2 + len(delimiter)
    parts: list[Part] = []
    while not body.startswith(b"--", pos):  # "--" after a delimiter closes the form
        eol = body.find(b"\r\n", pos)
        if eol < 0 or body[pos:eol].strip(b" \t"):
            raise _malformed("a boundary line does not end where it should")
        start = eol + 2
        end = body.find(b"\r\n" + delimiter, start)
        if end < 0:
            raise _malformed("the form is not closed by its final boundary")
        parts.append(_part(body[start:end], len(parts)))
        pos = end + 2 + len(delimiter)
    return Form(tuple(parts))


def _part(raw: bytes, index: int) -> Part:
    if raw.startswith(b"\r\n"):
        head, content = b"", raw[2:]
    else:
        split = raw.find(b"\r\n\r\n")
        if split < 0:
            raise _malformed(f"part {index + 1} has no blank line after its headers")
        head, content = raw[:split], raw[split + 4 :]
    disposition = None
    for line in head.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if not sep or not name.strip():
            raise _malformed(f"part {index + 1} has a header line without a name")
        if name.strip().lower() == b"content-disposition":
            disposition = value.decode("utf-8", "replace")
    kind, _, rest = (disposition or "").partition(";")
    params = _params(";" + rest) if rest.strip() else {}
    if kind.strip().lower() != "form-data" or not params.get("name"):
        raise _malformed(f"part {index + 1} is not a named form-data field (Content-Disposition: form-data; name=...)")
    return Part(head, content, params["name"], params.get("filename"))
