"""``startup``: wall time of one CLI compression in a fresh process, cold and warm cache.

    python -P -m promptzip.evals.startup            # evals/results/startup.{json,md}

Runs ``promptzip compress promptzip/_sample/sotu.txt --question Q --budget 400`` (as ``python -P -m promptzip.cli``,
``--json --quiet``, preset ``fast`` unless a case says otherwise) in new subprocesses, the models already on disk, in
these cases:

* cold cache: an empty score cache (every sentence is encoded);
* warm cache + new question: a copy of a cache that one run with the sample question filled, asked another
  question (the sentences' embeddings are cached, the question's is not);
* warm cache + repeated question: the same cache, asked the sample question again;
* cold cache, sentence-transformers: the cold case with ``PROMPTZIP_TORCH_ENCODER=0``, so the sentences are
  encoded by the sentence-transformers model (torch, transformers and sentence-transformers imported) as before
  the built-in torch encoder (:mod:`promptzip.retrievers._torch_bert`);
* warm cache + new question, sentence-transformers: the new-question case with ``PROMPTZIP_LIGHT_ENCODER=0`` and
  ``PROMPTZIP_TORCH_ENCODER=0``, so the question is embedded by the sentence-transformers model as before the
  NumPy light encoder (:mod:`promptzip.retrievers._light`) and the torch one: the before/after of one run;
* warm cache + new question, tiktoken's own loader: the new-question case with ``PROMPTZIP_COMPILED_RANKS=0``, so
  the gpt-4o token counts come from tiktoken parsing its rank file, as before the compiled copy of it
  (:mod:`promptzip._tiktoken_ranks`; the other cases read the copy the first, untimed run wrote);
* cold cache, balanced: the cold case with ``--preset balanced`` (+ the distilled token classifier, run by the
  built-in torch module of :mod:`promptzip.compressors._torch_classifier`), and the same with
  ``PROMPTZIP_TORCH_ENCODER=0`` (the classifier through transformers, the sentences through sentence-transformers).

Each case runs ``--repeats`` times (default 3, a fresh copy of its cache each time, the cases in turn so that all
see the same load); the report gives the median
wall seconds of the subprocess and of the compression as the Result's ``timings["total"]`` reports it, with the
load average and CPU count, since a shared machine's load moves these numbers more than anything else.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["NEW_QUESTION", "main", "markdown", "run_startup", "write_report"]

SAMPLE = Path(__file__).parents[1] / "_sample"  # promptzip/_sample (not resolved: the source tree has evals/ apart)
NEW_QUESTION = "What did the President propose to make college more affordable?"
BUDGET = 400
CASES = {
    "cold": "cold cache",
    "cold_st": "cold cache, sentence-transformers (PROMPTZIP_TORCH_ENCODER=0)",
    "warm_new": "warm cache + new question",
    "warm_repeated": "warm cache + repeated question",
    "warm_new_heavy": "warm cache + new question, sentence-transformers (both encoders off)",
    "warm_new_tiktoken": "warm cache + new question, tiktoken's own loader (PROMPTZIP_COMPILED_RANKS=0)",
    "cold_balanced": "cold cache, balanced preset",
    "cold_balanced_st": "cold cache, balanced preset, transformers (PROMPTZIP_TORCH_ENCODER=0)",
}
# retrievers/dense.py's switches: the built-in torch encoder off (sentence-transformers encodes the sentences), and
# the light encoder off too (it embeds the question)
ST_ENV = {"PROMPTZIP_TORCH_ENCODER": "0"}
HEAVY_ENV = {**ST_ENV, "PROMPTZIP_LIGHT_ENCODER": "0"}
TIKTOKEN_ENV = {"PROMPTZIP_COMPILED_RANKS": "0"}  # promptzip/_tiktoken_ranks.py's switch
CASE_ENV = {
    "cold_st": ST_ENV,
    "warm_new_heavy": HEAVY_ENV,
    "warm_new_tiktoken": TIKTOKEN_ENV,
    "cold_balanced_st": ST_ENV,
}
COLD = ("cold", "cold_st", "cold_balanced", "cold_balanced_st")


def _compress(question: str, cache_db: Path, env: Mapping[str, str], preset: str = "fast") -> dict[str, Any]:
    """One CLI compression in a new process: its wall seconds, the Result's total, tokens out."""
    command = [sys.executable, "-P", "-m", "promptzip.cli", "compress", str(SAMPLE / "sotu.txt"), "--preset", preset]
    command += ["--question", question, "--budget", str(BUDGET), "--cache", f"sqlite:///{cache_db}", "--json"]
    started = time.perf_counter()
    done = subprocess.run([*command, "--quiet"], capture_output=True, text=True, env=dict(env), check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"promptzip compress failed ({done.returncode}): {done.stderr[-2000:]}")
    result = json.loads(done.stdout)
    return {
        "wall_s": round(wall, 3),
        "compress_s": round(float(result["timings"]["total"]), 3),
        "tokens_out": int(result["tokens_out"]),
    }


def run_startup(*, repeats: int = 3, out: Path | None = None, command: str = "") -> dict[str, Any]:
    """Time the cases (see the module docstring); writes the report to ``out`` when given."""
    question = json.loads((SAMPLE / "sample.json").read_text(encoding="utf-8"))["question"]
    started, load_before = time.time(), os.getloadavg()
    runs: dict[str, list[dict[str, Any]]] = {case: [] for case in CASES}
    with tempfile.TemporaryDirectory(prefix="promptzip-startup-") as tmp:
        root = Path(tmp)
        # the cache folder holds the score cache and derived models (minilm-qa's merged weights, the compiled
        # tiktoken ranks): built once here,
        # so every timed run finds the models on disk, as an installed promptzip does after its first use
        env = {**os.environ, "PROMPTZIP_CACHE_DIR": str(root / "home"), "HF_HUB_OFFLINE": "1"}
        env["TRANSFORMERS_OFFLINE"] = "1"
        warm = root / "warm.db"
        _compress(question, warm, env)  # fills the sentence embeddings, spans and the sample question
        for i in range(repeats):
            for case in COLD:
                preset = "balanced" if "balanced" in case else "fast"
                case_env = {**env, **CASE_ENV.get(case, {})}
                runs[case].append(_compress(question, root / f"{case}-{i}.db", case_env, preset))
            for case, asked in (
                ("warm_new", NEW_QUESTION),
                ("warm_repeated", question),
                ("warm_new_heavy", NEW_QUESTION),
                ("warm_new_tiktoken", NEW_QUESTION),
            ):
                copy = root / f"{case}-{i}.db"
                shutil.copyfile(warm, copy)
                runs[case].append(_compress(asked, copy, {**env, **CASE_ENV.get(case, {})}))
    report: dict[str, Any] = {
        "cases": {
            case: {
                "label": CASES[case],
                "question": NEW_QUESTION if case.startswith("warm_new") else question,
                "median_wall_s": round(statistics.median(r["wall_s"] for r in rows), 2),
                "median_compress_s": round(statistics.median(r["compress_s"] for r in rows), 2),
                "runs": rows,
            }
            for case, rows in runs.items()
        },
        "meta": {
            "command": command or "python -P -m promptzip.evals.startup",
            "cli": "python -P -m promptzip.cli compress promptzip/_sample/sotu.txt --preset fast|balanced --question Q "
            f"--budget {BUDGET} --cache sqlite:///<case cache> --json --quiet",
            "repeats": repeats,
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg": [round(x, 2) for x in os.getloadavg()],
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "machine": platform.machine(),
            "seconds": round(time.time() - started, 1),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        },
    }
    if out is not None:
        write_report(report, out)
    return report


def markdown(report: Mapping[str, Any]) -> str:
    """The report as a Markdown page: one row per case."""
    meta = report["meta"]
    before = ", ".join(f"{x:.2f}" for x in meta["loadavg_before"])
    after = ", ".join(f"{x:.2f}" for x in meta["loadavg"])
    lines = [
        "# startup: one compression in a fresh process",
        "",
        f"Command: `{meta['command']}` · {meta['date']} · {meta['seconds']} s · {meta['machine']}, "
        f"{meta['cpus']} CPUs, Python {meta['python']} · load average {before} before, {after} after.",
        "",
        f"Each run is `{meta['cli']}` in a new process, the models on disk. Cold: an empty score cache. Warm: a "
        "copy of a cache one run with the sample question filled, asked a new question or the sample question "
        f"again. Median of {meta['repeats']} runs; wall is the whole subprocess (interpreter, imports, reading "
        "the file, compression, JSON), compression is the Result's `timings['total']`. The sentence-transformers "
        "rows switch the built-in encoders off: `PROMPTZIP_TORCH_ENCODER=0` (the sentences encoded by "
        "sentence-transformers, as before the torch encoder) and, for the question, `PROMPTZIP_LIGHT_ENCODER=0` too "
        "(as before the NumPy encoder). The balanced rows run `--preset balanced`; its transformers row sets "
        "`PROMPTZIP_TORCH_ENCODER=0`, which also runs the token classifier through transformers.",
        "",
        "| case | wall s (median) | compression s (median) | wall s of each run | tokens out |",
        "| --- | --- | --- | --- | --- |",
    ]
    for case in report["cases"].values():
        each = ", ".join(f"{r['wall_s']:.2f}" for r in case["runs"])
        tokens = sorted({r["tokens_out"] for r in case["runs"]})
        lines.append(
            f"| {case['label']} | {case['median_wall_s']:.2f} | {case['median_compress_s']:.2f} | {each} | "
            + ", ".join(map(str, tokens))
            + " |"
        )
    for ours, theirs, what in (
        ("cold", "cold_st", "Cold cache"),
        ("warm_new", "warm_new_heavy", "Warm + new question"),
        ("cold_balanced", "cold_balanced_st", "Cold cache, balanced"),
    ):
        new, old = report["cases"].get(ours), report["cases"].get(theirs)
        if new and old and new["median_wall_s"]:
            ratio = old["median_wall_s"] / new["median_wall_s"]
            lines += [
                "",
                f"{what}: {old['median_wall_s']:.2f} s with sentence-transformers, {new['median_wall_s']:.2f} s with "
                f"the built-in encoders ({ratio:.1f}x).",
            ]
    new, old = report["cases"].get("warm_new"), report["cases"].get("warm_new_tiktoken")
    if new and old and new["median_wall_s"]:
        ratio = old["median_wall_s"] / new["median_wall_s"]
        lines += [
            "",
            f"Warm + new question: {old['median_wall_s']:.2f} s with tiktoken's own loader, "
            f"{new['median_wall_s']:.2f} s with the compiled ranks ({ratio:.2f}x).",
        ]
    lines += ["", "Questions:", ""]
    lines += [f"- {case['label']}: {case['question']}" for case in report["cases"].values()]
    return "\n".join(lines) + "\n"


def write_report(report: Mapping[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "startup.json").write_text(json.dumps(report, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    (out / "startup.md").write_text(markdown(report), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -P -m promptzip.evals.startup", description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per case (default 3)")
    parser.add_argument("--out", type=Path, default=Path("evals/results"), help="folder (default evals/results)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    given = list(sys.argv[1:] if argv is None else argv)
    report = run_startup(
        repeats=args.repeats, out=args.out, command=" ".join(["python -P -m promptzip.evals.startup", *given])
    )
    print(markdown(report))
    print(f"wrote {args.out}/startup.json, {args.out}/startup.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
