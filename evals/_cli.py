"""``promptzip eval`` (``promptzip eval agent-trace``) and ``promptzip bench``: wired into the main CLI by
:func:`add_eval_commands`.

The command bodies take ``(args, out, err)`` and return an exit code, like the other ``promptzip`` commands; the
heavy modules are imported only when a command runs. Their options are read from the suites' modules, which import
much of promptzip, so other commands list them by name only (:func:`add_eval_names`): ``promptzip compress`` in a
fresh process does not pay for importing every suite.
"""

from __future__ import annotations

import argparse
from typing import Any, TextIO

__all__ = ["COMMANDS", "add_eval_commands", "add_eval_names"]

EVAL_HELP = "quality of every method on public data (retention, ratios, latency), with tables and plots"
BENCH_HELP = "latency, throughput and memory vs input length (1k-64k tokens), promptzip and llmlingua"
COMMANDS = ("eval", "bench")


def _eval(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from promptzip.evals.run import run_from_args

    return run_from_args(args, out, err)


def _bench(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from promptzip.evals.bench import run_from_args

    return run_from_args(args, out, err)


def _agent_trace(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from promptzip.evals.agent_trace import run_from_args

    return run_from_args(args, out, err, prefix="promptzip eval agent-trace")


def add_eval_commands(subparsers: Any) -> None:
    """Add ``eval`` and ``bench`` to a ``parser.add_subparsers()`` object; each sets ``func`` to its body."""
    from promptzip.evals import bench, run

    e = subparsers.add_parser(
        "eval",
        help=EVAL_HELP,
        description=run.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_arguments(e)
    e.set_defaults(func=_eval)
    # `promptzip eval agent-trace`: a suite with its own options; the bare `promptzip eval` is unchanged
    from promptzip.evals import agent_trace

    suites = e.add_subparsers(title="suites with their own options", metavar="SUITE")
    a = suites.add_parser(
        "agent-trace",
        help="multi-turn chats and agent loops: answer retention, provider cache hits, effective cost",
        description=agent_trace.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    agent_trace.add_arguments(a)
    a.set_defaults(func=_agent_trace)

    b = subparsers.add_parser(
        "bench",
        help=BENCH_HELP,
        description=bench.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_arguments(b)
    b.set_defaults(func=_bench)


def add_eval_names(subparsers: Any) -> None:
    """``eval`` and ``bench`` as names in ``promptzip --help``, without their options (see the module docstring)."""
    subparsers.add_parser("eval", help=EVAL_HELP)
    subparsers.add_parser("bench", help=BENCH_HELP)
