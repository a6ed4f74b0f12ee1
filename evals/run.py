"""``promptzip eval``: run the methods over the suites and write results, tables and plots.

    python -P -m promptzip.evals.run --quick                 # a few real items, fast methods (CI, ~1-2 min)
    python -P -m promptzip.evals.run                         # full run of the fast methods
    python -P -m promptzip.evals.run --baselines-only        # the slow baselines (their own environment)
    python -P -m promptzip.evals.run --report-only           # rebuild results.json/.md and plots from records

Full-run sizes: SQuAD 500 sampled questions (whole articles), Quoref/DROP 200 questions each, GSM8K 300 questions,
every SQuAD and GSM8K article task-agnostically, 100 CNN/DM and 100 XSum documents; the slow baselines take
``--n-slow`` items per suite (one per article) and ``--n-slow-articles`` whole articles in the task-agnostic SQuAD
suite. Every method that runs on a suite writes its own record file, so runs of different methods can happen apart
and add up in one report; a run of some suites rebuilds the report from every suite's records, and each suite keeps
the provenance (date, command, notes) of the run that last changed its figures
(:func:`promptzip.evals.report.build_report`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptzip._errors import ConfigError
from promptzip._torch_threads import torch_threads

if TYPE_CHECKING:
    from promptzip.evals.suites import Item

__all__ = ["EvalConfig", "add_arguments", "main", "run_eval"]

FULL_SIZES = {
    "squad-qa": 500,
    "quoref-qa": 200,
    "drop-qa": 200,
    "gsm8k-qa": 300,
    "shifts-reddit-qa": 500,
    "shifts-new_wiki-qa": 500,
    "squad-agnostic": 48,
    "gsm8k-agnostic": 32,
    "cnn_dm": 100,
    "xsum": 100,
}
QUICK_SIZES = {
    "squad-qa": 10,
    "quoref-qa": 5,
    "drop-qa": 5,
    "gsm8k-qa": 10,
    "shifts-reddit-qa": 10,
    "shifts-new_wiki-qa": 10,
    "squad-agnostic": 2,
    "gsm8k-agnostic": 2,
    "cnn_dm": 5,
    "xsum": 5,
}
DOWNSTREAM_METHODS = ("oracle", "promptzip-fast", "langchain-embeddings-filter", "first-k")


@dataclass(slots=True)
class EvalConfig:
    out: Path = Path("evals/results")
    quick: bool = False
    suites: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    baselines: bool = False
    baselines_only: bool = False
    n: dict[str, int] = field(default_factory=dict)
    n_slow: int = 8
    n_slow_articles: int = 6
    seed: int = 0
    downstream: int = 0
    downstream_ratio: float = 20.0
    downstream_articles: int = 10
    downstream_only: bool = False
    threads: int = 1
    resume: bool = False
    report_only: bool = False
    progress: bool = True
    notes: list[str] = field(default_factory=list)


def _selected_methods(config: EvalConfig) -> list[str]:
    from promptzip.evals.methods import method_names

    if config.methods:
        return list(config.methods)
    if config.baselines_only:
        return method_names(slow=True)
    if config.baselines and not config.quick:
        return method_names()
    return method_names(slow=False)


def run_eval(config: EvalConfig) -> dict[str, Any]:
    """Run, then rebuild the report from every record file under ``config.out``."""
    from promptzip.evals.methods import create_method
    from promptzip.evals.report import build_report
    from promptzip.evals.runner import run_method
    from promptzip.evals.suites import SUITES, build_suite, withdrawn_suites

    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    command = _command(config)
    # A full run into the repository's results folder also rewrites the README's Results table.
    default_out = not config.quick and out.resolve() == Path("evals/results").resolve()
    readme = Path("README.md") if default_out else None
    if config.report_only:
        return build_report(out, command=command, notes=config.notes, readme=readme)
    if config.downstream_only:
        config.suites = ()
        config.methods = ()
    _baseline_threads(config.threads)
    sizes = dict(QUICK_SIZES if config.quick else FULL_SIZES)
    sizes.update(config.n)
    load_before = _load_average()
    names = [] if config.downstream_only else _selected_methods(config)
    # A run of every suite (no --suites) leaves out those whose data was withdrawn from its registry, saying why;
    # their last figures stay in the report. A suite asked for by name still fails with the reason.
    unknown = [s for s in (*config.suites, *config.n) if s not in SUITES]
    if unknown:
        raise ConfigError(f"unknown suite {unknown[0]!r}; use one of {', '.join(SUITES)}")
    suites = list(config.suites or SUITES)
    if not config.suites:
        for name, reason in withdrawn_suites(suites).items():
            print(f"promptzip eval: skipping {name}: {reason}", file=sys.stderr)
            suites.remove(name)
    if config.downstream and not config.suites and withdrawn_suites(["squad-qa"]):
        print("promptzip eval: skipping the downstream run: it reads squad-qa", file=sys.stderr)
        config.downstream = 0
    methods = [create_method(name, seed=config.seed) for name in names]
    try:
        with torch_threads(config.threads):  # restored after: a run called in process leaves its caller's count
            for suite_name in () if config.downstream_only else suites:
                suite = build_suite(suite_name, sizes[suite_name], quick=config.quick, seed=config.seed)
                n_slow = config.n_slow_articles if suite.name == "squad-agnostic" else config.n_slow
                for method in methods:
                    if method.applies_to(suite.regime, suite.kind):
                        run_method(
                            suite,
                            method,
                            out,
                            n_slow=n_slow,
                            progress=config.progress,
                            meta={"seed": config.seed},
                            resume=config.resume,
                        )
            if config.downstream:
                from promptzip.evals.downstream import run_downstream

                suite = build_suite("squad-qa", sizes["squad-qa"], quick=config.quick, seed=config.seed)
                have = {m.name: m for m in methods}
                chosen = [have.get(n) or create_method(n, seed=config.seed) for n in DOWNSTREAM_METHODS]
                methods += [m for m in chosen if m.name not in have]
                items = downstream_items(suite.items, config.downstream, config.downstream_articles)
                run_downstream(items, chosen, out, ratio=config.downstream_ratio, progress=config.progress)
    finally:
        for method in methods:
            method.close()
    load = f"load average (1 min) before / after the run: {load_before} / {_load_average()}"
    return build_report(out, command=command, notes=[*config.notes, load], readme=readme)


def _command(config: EvalConfig) -> str:
    """The command line that reproduces this run (the options that choose what runs)."""
    parts = ["promptzip eval"] + (["--quick"] if config.quick else [])
    parts += [f"--suites {','.join(config.suites)}"] if config.suites else []
    parts += [f"--methods {','.join(config.methods)}"] if config.methods else []
    parts += [f"--n {suite}={n}" for suite, n in config.n.items()]
    parts += [f"--seed {config.seed}"] if config.seed else []
    parts += ["--baselines-only"] if config.baselines_only else (["--baselines"] if config.baselines else [])
    return " ".join(parts)


def _load_average() -> str:
    return f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "n/a"


def downstream_items(items: Sequence[Item], n: int, articles: int) -> list[Item]:
    """The first ``n`` sampled questions whose articles are among the first ``articles`` distinct ones: a uniform
    question sample within a few articles, so each method compresses (and caches) only those articles."""
    groups: list[str] = []
    chosen: list[Item] = []
    for item in items:
        if item.group not in groups:
            if len(groups) == articles:
                continue
            groups.append(item.group)
        chosen.append(item)
        if len(chosen) == n:
            break
    return chosen


def _baseline_threads(threads: int) -> None:
    """Torch threads for the baselines worker; this process runs on as many (:func:`torch_threads`). One by
    default: on a small shared CPU, two threads per process made a warm promptzip call 7x slower than one (spinning
    threads waiting on each other)."""
    if threads > 0:
        os.environ["PZ_BASELINE_THREADS"] = str(threads)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="a few real items per suite, fast methods only")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default evals/results[/quick])")
    parser.add_argument("--suites", default="", help="comma-separated suites (default: all)")
    parser.add_argument("--methods", default="", help="comma-separated methods (default: the fast ones)")
    parser.add_argument("--baselines", action="store_true", help="also run the slow third-party baselines")
    parser.add_argument("--baselines-only", action="store_true", help="run only the slow third-party baselines")
    parser.add_argument("--n", action="append", default=[], metavar="SUITE=N", help="items for a suite")
    parser.add_argument("--n-slow", type=int, default=8, help="items (distinct articles) for slow methods")
    parser.add_argument("--n-slow-articles", type=int, default=6, help="articles for slow methods, squad-agnostic")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--downstream", type=int, default=None, help="SQuAD questions for the generator (0: off)")
    parser.add_argument("--downstream-articles", type=int, default=10, help="articles those questions come from")
    parser.add_argument("--downstream-only", action="store_true", help="only the generator run (and the report)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (0: torch's default)")
    parser.add_argument(
        "--resume", action="store_true", help="keep items already recorded without failure; run the others"
    )
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from the record files")
    parser.add_argument("--note", action="append", default=[], help="a note on this run for the report (repeatable)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--list", action="store_true", help="list suites and methods, then exit")


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    n: dict[str, int] = {}
    for spec in args.n:
        suite, _, value = spec.partition("=")
        if not value.strip().isdigit() or int(value) < 1:
            raise ConfigError(f"--n takes SUITE=N with N a positive int, not {spec!r}")
        n[suite.strip()] = int(value)
    out = args.out or (Path("evals/results/quick") if args.quick else Path("evals/results"))
    # The generator run belongs to a full default run; a run of chosen methods or of the baselines asks for it.
    full_default = not (args.quick or args.methods or args.baselines_only or args.report_only) or args.downstream_only
    downstream = args.downstream if args.downstream is not None else (100 if full_default else 0)
    return EvalConfig(
        out=out,
        quick=args.quick,
        suites=tuple(s for s in args.suites.split(",") if s),
        methods=tuple(m for m in args.methods.split(",") if m),
        baselines=args.baselines,
        baselines_only=args.baselines_only,
        n=n,
        n_slow=args.n_slow,
        n_slow_articles=args.n_slow_articles,
        seed=args.seed,
        downstream=downstream,
        downstream_articles=args.downstream_articles,
        downstream_only=args.downstream_only,
        threads=args.threads,
        resume=args.resume,
        report_only=args.report_only,
        progress=not args.no_progress,
        notes=list(args.note),
    )


def run_from_args(args: argparse.Namespace, out: Any = None, err: Any = None) -> int:
    """The body of ``promptzip eval`` (``out``/``err``: text streams, default stdout/stderr)."""
    from promptzip._errors import PromptZipError

    out = out or sys.stdout
    err = err or sys.stderr
    if args.list:
        from promptzip.evals.methods import METHODS, method_names
        from promptzip.evals.suites import SUITES

        out.write("suites: " + ", ".join(SUITES) + "\n")
        for name in method_names():
            out.write(f"{name:<30} {METHODS.describe(name)}\n")
        return 0
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        results = run_eval(config_from_args(args))
    except PromptZipError as exc:
        err.write(f"promptzip eval: error: {exc}\n")
        return 2
    folder = args.out or (Path("evals/results/quick") if args.quick else Path("evals/results"))
    err.write(
        f"wrote {folder}/results.json, results.md, retention.png, latency.png ({len(results['suites'])} suites)\n"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m promptzip.evals.run", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
