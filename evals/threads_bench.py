"""``threads_bench``: one CLI compression under torch's thread settings, on an idle machine and beside busy processes.

    python -P -m promptzip.evals.threads_bench      # evals/results/threads.{json,md}

torch's CPU wheel runs its OpenMP threads on GNU libgomp, whose workers spin-wait for each other before they sleep.
On a machine whose cores other processes also want, a spinning worker burns the time slice its partner needs. This
bench measures whether the CLI should ask libgomp to sleep at once (``OMP_WAIT_POLICY=PASSIVE``), side by side in
one run:

* ``default``: torch's own settings (as many threads as cores, libgomp's default wait policy);
* ``passive``: ``OMP_WAIT_POLICY=PASSIVE`` (the same threads, which sleep while they wait);
* ``one thread``: ``OMP_NUM_THREADS=1``.

Each is timed for ``promptzip compress promptzip/_sample/sotu.txt --question Q --budget 400`` (``--json --quiet``,
an empty score cache, so every sentence is encoded) with presets ``fast`` and ``balanced``, first with the machine
as it is, then beside ``--hogs`` busy-looping Python processes (default: twice the CPU count) that stand in for a
shared machine's other work. The figure is the Result's ``timings["total"]`` (the compression, not the imports),
median of ``--repeats`` runs taken in turn so that all settings see the same load; the tokens out must agree, and
the load average is recorded with each block.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from promptzip.evals.startup import BUDGET, SAMPLE, _compress

__all__ = ["SETTINGS", "main", "markdown", "run_threads"]

SETTINGS: dict[str, dict[str, str]] = {
    "default": {},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "one thread": {"OMP_NUM_THREADS": "1"},
}
PRESETS = ("fast", "balanced")
_HOG = "while True:\n    pass\n"


@contextlib.contextmanager
def _hogs(count: int) -> Iterator[None]:
    """``count`` busy-looping processes for the duration of the block (killed on the way out)."""
    procs = [subprocess.Popen([sys.executable, "-c", _HOG]) for _ in range(count)]
    try:
        time.sleep(2.0 if count else 0.0)  # let the scheduler see them before the first timed run
        yield
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


def _block(
    label: str, hogs: int, repeats: int, env: Mapping[str, str], root: Path, question: str, presets: Sequence[str]
) -> dict[str, Any]:
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {p: {s: [] for s in SETTINGS} for p in presets}
    load_before = os.getloadavg()
    with _hogs(hogs):
        for i in range(repeats):
            for preset in presets:
                for setting, extra in SETTINGS.items():
                    db = root / f"{label}-{preset}-{setting.replace(' ', '_')}-{i}.db"
                    runs[preset][setting].append(_compress(question, db, {**env, **extra}, preset))
        load_after = os.getloadavg()
    return {
        "label": label,
        "hogs": hogs,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
        "presets": {
            preset: {
                setting: {
                    "median_compress_s": round(statistics.median(r["compress_s"] for r in rows), 2),
                    "median_wall_s": round(statistics.median(r["wall_s"] for r in rows), 2),
                    "runs": rows,
                }
                for setting, rows in by_setting.items()
            }
            for preset, by_setting in runs.items()
        },
    }


def run_threads(
    *, repeats: int = 3, hogs: int | None = None, presets: Sequence[str] = PRESETS, command: str = ""
) -> dict[str, Any]:
    """Time every preset under every setting, idle and beside ``hogs`` busy processes (see the module docstring)."""
    cpus = os.cpu_count() or 1
    hogs = 2 * cpus if hogs is None else hogs
    question = json.loads((SAMPLE / "sample.json").read_text(encoding="utf-8"))["question"]
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="promptzip-threads-") as tmp:
        root = Path(tmp)
        env = {**os.environ, "PROMPTZIP_CACHE_DIR": str(root / "home"), "HF_HUB_OFFLINE": "1"}
        env["TRANSFORMERS_OFFLINE"] = "1"
        for name in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT"):
            env.pop(name, None)  # each setting starts from torch's own defaults
        for preset in presets:  # derived models built once, outside the timed runs
            _compress(question, root / f"setup-{preset}.db", env, preset)
        blocks = [_block("as it is", 0, repeats, env, root, question, presets)]
        if hogs:
            blocks.append(_block(f"beside {hogs} busy processes", hogs, repeats, env, root, question, presets))
    return {
        "blocks": blocks,
        "meta": {
            "command": command or "python -P -m promptzip.evals.threads_bench",
            "cli": "python -P -m promptzip.cli compress promptzip/_sample/sotu.txt --preset fast|balanced --question Q "
            f"--budget {BUDGET} --cache sqlite:///<empty cache> --json --quiet",
            "settings": SETTINGS,
            "repeats": repeats,
            "cpus": cpus,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "seconds": round(time.time() - started, 1),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        },
    }


def markdown(report: Mapping[str, Any]) -> str:
    """One table per block: compression seconds per preset and setting, with the ratio to the default."""
    meta = report["meta"]
    env = ", ".join(
        f"`{k}`: " + (" ".join(f"{a}={b}" for a, b in v.items()) or "none") for k, v in meta["settings"].items()
    )
    lines = [
        "# threads: one compression under torch's thread settings",
        "",
        f"Command: `{meta['command']}` · {meta['date']} · {meta['seconds']} s · {meta['machine']}, "
        f"{meta['cpus']} CPUs, Python {meta['python']}.",
        "",
        f"Each run is `{meta['cli']}` in a new process. Settings (environment): {env}. The figure is the Result's "
        f"`timings['total']` (the compression, imports excluded), median of {meta['repeats']} runs taken in turn. "
        "Busy processes are `python -c 'while True: pass'`.",
    ]
    for block in report["blocks"]:
        before = ", ".join(f"{x:.2f}" for x in block["loadavg_before"])
        after = ", ".join(f"{x:.2f}" for x in block["loadavg_after"])
        lines += [
            "",
            f"## {block['label']} (load average {before} before, {after} at the end)",
            "",
            "| preset | setting | compression s (median) | vs default | compression s of each run | tokens out |",
            "| --- | --- | ---: | ---: | --- | --- |",
        ]
        for preset, by_setting in block["presets"].items():
            base = by_setting["default"]["median_compress_s"]
            for setting, row in by_setting.items():
                each = ", ".join(f"{r['compress_s']:.2f}" for r in row["runs"])
                tokens = ", ".join(map(str, sorted({r["tokens_out"] for r in row["runs"]})))
                ratio = base / row["median_compress_s"] if row["median_compress_s"] else float("nan")
                lines.append(
                    f"| {preset} | {setting} | {row['median_compress_s']:.2f} | {ratio:.2f}x | {each} | {tokens} |"
                )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -P -m promptzip.evals.threads_bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per preset and setting (default 3)")
    parser.add_argument(
        "--hogs",
        type=int,
        default=None,
        help="busy processes in the second block (default 2 x CPUs; 0: no second block)",
    )
    parser.add_argument("--out", type=Path, default=Path("evals/results"), help="folder (default evals/results)")
    parser.add_argument(
        "--presets", default=",".join(PRESETS), help=f"comma-separated presets (default {','.join(PRESETS)})"
    )
    parser.add_argument("--stem", default="threads", help="file name of the report (default threads: threads.json/md)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or (args.hogs is not None and args.hogs < 0):
        parser.error("--repeats must be at least 1 and --hogs at least 0")
    from promptzip._registry import registries

    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    unknown = [p for p in presets if p not in registries.presets]
    if not presets or unknown:
        parser.error(f"--presets: unknown {unknown} (known: {', '.join(registries.presets.names())})")
    given = list(sys.argv[1:] if argv is None else argv)
    report = run_threads(
        repeats=args.repeats,
        hogs=args.hogs,
        presets=presets,
        command=" ".join(["python -P -m promptzip.evals.threads_bench", *given]),
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.stem}.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    (args.out / f"{args.stem}.md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
