"""How cached values are written: arrays as ``.npy`` bytes and other values as JSON, never with pickle.

A cache may be shared between users and processes, so reading a value must never run code: object arrays and
pickled payloads are refused on both sides.
"""

from __future__ import annotations

import io
import json
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from promptzip._errors import InputError

__all__ = ["decode_array", "decode_json", "encode_array", "encode_json"]


def encode_array(a: npt.NDArray[Any]) -> bytes:
    """Serialize an array in the ``.npy`` format; object arrays are refused (they would need pickle).

    A request stores one vector per new sentence, and ``np.save`` builds and formats the same header for each, which
    costs more than the rest of a cache write. For a C-ordered array of a plain dtype the header is a function of the
    dtype and shape, so the header ``np.save`` wrote for the first such array is remembered and the next ones are that
    header and their data: the same bytes."""
    array = np.asarray(a)
    plain = array.flags.c_contiguous and array.dtype.isbuiltin == 1 and not array.dtype.hasobject
    layout = (array.dtype.str, array.shape) if plain else None
    if layout is not None and (header := _npy_headers.get(layout)) is not None:
        return header + array.tobytes()
    buffer = io.BytesIO()
    try:
        np.save(buffer, array, allow_pickle=False)
    except ValueError as exc:
        raise InputError(f"cannot cache this array without pickle: {exc}") from exc
    data = buffer.getvalue()
    if layout is not None:
        if len(_npy_headers) >= 4096:  # token-score arrays vary in length: keep the memo bounded
            _npy_headers.clear()
        _npy_headers[layout] = data[: len(data) - array.nbytes]
    return data


_npy_headers: dict[tuple[str, tuple[int, ...]], bytes] = {}  # (dtype, shape) → np.save's header; races are benign


def decode_array(b: bytes) -> npt.NDArray[Any]:
    """Read an array written by :func:`encode_array`; pickled payloads are refused, never executed.

    The cache holds many arrays of few layouts (every sentence vector shares one ``.npy`` header), so each header's
    parse (``np.lib.format``, an ``ast.literal_eval``) is remembered and the data read with ``np.frombuffer``. The
    result is a new, writable array, as from ``np.load``."""
    if bytes(b[:6]) != b"\x93NUMPY":
        raise InputError("cached value is not a .npy array")
    view = memoryview(b)
    width = 2 if view[6] == 1 else 4  # the header length field: 2 bytes in format 1.0, 4 in 2.0 and 3.0
    start = 8 + width + int.from_bytes(view[8 : 8 + width], "little")
    header = bytes(view[:start])
    layout = _npy_layouts.get(header)
    if layout is None:
        layout = _npy_layout(header)
    dtype, shape, order, count = layout
    if len(view) - start != count * dtype.itemsize:
        raise InputError(f"cached value is not a readable .npy array: {len(view) - start} data bytes for {shape}")
    return np.frombuffer(view, dtype=dtype, count=count, offset=start).reshape(shape, order=order).copy(order="K")


_NpyLayout = tuple[np.dtype[Any], tuple[int, ...], Literal["C", "F"], int]
_npy_layouts: dict[bytes, _NpyLayout] = {}  # header bytes → layout; a race can only parse one header twice


def _npy_layout(header: bytes) -> _NpyLayout:
    """Parse and remember one ``.npy`` header (object dtypes refused: they would need pickle)."""
    from numpy.lib import format as npy

    readers = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}
    try:
        stream = io.BytesIO(header)
        reader = readers.get(npy.read_magic(stream))
        if reader is None:  # format 3.0 (UTF-8 field names): np.save writes it only for such structured dtypes
            raise ValueError("unsupported .npy format version")
        shape, fortran, dtype = reader(stream)
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        raise InputError(f"cached value is not a readable .npy array: {exc}") from exc
    if dtype.hasobject:
        raise InputError("cached value is not a readable .npy array: object arrays need pickle")
    count = 1
    for n in shape:
        count *= int(n)
    layout: _NpyLayout = (dtype, tuple(int(n) for n in shape), "F" if fortran else "C", count)
    if len(_npy_layouts) >= 4096:  # token-score arrays vary in length: keep the memo bounded
        _npy_layouts.clear()
    _npy_layouts[header] = layout
    return layout


def encode_json(obj: Any) -> bytes:
    """Serialize ``obj`` as compact, key-sorted UTF-8 JSON."""
    try:
        return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise InputError(f"cannot cache this value as JSON: {exc}") from exc


def decode_json(b: bytes) -> Any:
    """Read a value written by :func:`encode_json`."""
    try:
        return json.loads(bytes(b).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"cached value is not valid JSON: {exc}") from exc
