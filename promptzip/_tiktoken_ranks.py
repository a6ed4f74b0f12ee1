"""tiktoken encodings loaded from a compiled copy of their rank file, so a fresh process counts tokens sooner.

``tiktoken.get_encoding`` parses the rank file (200,000 lines of base64 for ``o200k_base``) line by line in Python
on every new process: about half a second, a large share of a warm CLI run or a freshly started worker's first
request. The parsed table is a function of the file alone, so the first process that loads an encoding writes it
out once, as the token bytes end to end with their lengths and ranks (``PZTK1``, below), and every later process
rebuilds the same table from that in a few slices. Only the parsing is skipped: the :class:`tiktoken.Encoding` is
constructed from the same ranks, pattern and special tokens as tiktoken's own loader gives, so the ids are its ids.

The compiled file lives with the other models derived on first use (:func:`promptzip._models.derived_models_dir`),
named by the encoding, the sha256 of the rank file and the tiktoken version, so a changed file or library is
compiled afresh. Reading it checks every length it holds; a file that is short, foreign or inconsistent is ignored
(and replaced), and one that cannot be written only costs the next process the slow load again.
``PROMPTZIP_COMPILED_RANKS=0`` turns the compiled copy off (tiktoken's own loader every time).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["ENV", "compiled_path", "load_encoding"]

logger = logging.getLogger(__name__)

ENV = "PROMPTZIP_COMPILED_RANKS"
_MAGIC = b"PZTK1\n"


def compiled_path(name: str, rank_file: Path) -> Path:
    """Where the compiled copy of ``rank_file`` (the encoding ``name``) is kept."""
    import tiktoken

    from promptzip._models import derived_models_dir, file_sha256

    key = f"{name}-{file_sha256(rank_file)[:16]}-tiktoken{tiktoken.__version__}"
    return derived_models_dir() / "tiktoken" / f"{key}.bin"


def load_encoding(name: str, rank_file: Path, slow: Callable[[], Any]) -> Any:
    """The tiktoken encoding ``name`` whose ranks are in ``rank_file``: from its compiled copy where there is one,
    else from ``slow()`` (tiktoken's own loader), whose table is then compiled for the next process."""
    if os.environ.get(ENV, "").strip().lower() in ("0", "off", "false", "no"):
        return slow()
    try:
        path = compiled_path(name, rank_file)
    except OSError:  # the rank file went away between finding and hashing it: let tiktoken say so
        return slow()
    found = _read(path, name)
    if found is not None:
        return found
    encoding = slow()
    _write(path, encoding)
    return encoding


def _read(path: Path, name: str) -> Any:
    import numpy as np
    import tiktoken

    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        if not data.startswith(_MAGIC):
            raise ValueError("not a compiled rank file")
        end = data.index(b"\n", len(_MAGIC))
        head = json.loads(data[len(_MAGIC) : end])
        count = int(head["count"])
        if head["name"] != name or count <= 0:
            raise ValueError("another encoding")
        at = end + 1
        lengths = np.frombuffer(data, dtype="<u4", count=count, offset=at)
        ranks = np.frombuffer(data, dtype="<u4", count=count, offset=at + 4 * count)
        blob = data[at + 8 * count :]
        ends = np.cumsum(lengths, dtype=np.int64)
        if int(ends[-1]) != len(blob) or int(lengths.min()) == 0:
            raise ValueError("lengths and bytes disagree")
        starts = (ends - lengths).tolist()
        tokens = [blob[s:e] for s, e in zip(starts, ends.tolist(), strict=True)]
        table = dict(zip(tokens, ranks.tolist(), strict=True))
        if len(table) != count:
            raise ValueError("repeated tokens")
        return tiktoken.Encoding(
            name, pat_str=str(head["pat_str"]), mergeable_ranks=table, special_tokens=dict(head["special_tokens"])
        )
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        logger.info("promptzip: ignoring the compiled tiktoken ranks %s (%s)", path, exc)
        return None


def _write(path: Path, encoding: Any) -> None:
    import numpy as np

    try:
        table: dict[bytes, int] = encoding._mergeable_ranks  # the parsed table: what the next process rebuilds
        head = {
            "name": encoding.name,
            "count": len(table),
            "pat_str": encoding._pat_str,
            "special_tokens": encoding._special_tokens,
        }
        tokens = list(table)
        lengths = np.array([len(t) for t in tokens], dtype="<u4")
        ranks = np.array([table[t] for t in tokens], dtype="<u4")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(_MAGIC + json.dumps(head).encode() + b"\n")
                fh.write(lengths.tobytes() + ranks.tobytes())
                fh.write(b"".join(tokens))
            os.replace(tmp, path)  # whole or not at all, whichever process writes last
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except (OSError, AttributeError, TypeError, ValueError) as exc:  # a read-only cache, or another tiktoken
        logger.info("promptzip: could not compile the tiktoken ranks to %s (%s)", path, exc)
