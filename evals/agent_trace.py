"""``agent-trace``: multi-turn chats and agent loops, compressed turn by turn, billed with the providers' prompt cache.

    python -P -m promptzip.evals.agent_trace                   # evals/results/agent_trace.{json,md}
    python -P -m promptzip.evals.agent_trace --quick           # one small trace per kind, evals/results/quick/
    promptzip eval agent-trace [--quick] [--out DIR]

The traces (:mod:`promptzip.evals._traces`): RAG chats of 10-30 turns, a ``web_search`` loop with JSON results, a
``get_logs`` loop with service logs, and a coding session that reads the installed httpx package. Every request of
an agent loop (one per model call) is sent by each method of :data:`METHODS` under the same budget (a rate and a
token cap), with the ``fast`` preset, an in-memory cache of its own per run, and gpt-4o's tokenizer:

* ``none``: the original request;
* ``reselect``: ``Zipper.compress_messages`` on the whole request, every turn anew (``history="reselect"``
  where the keyword exists);
* ``stable``: ``compress_messages(history="stable", pricing=...)``, the cache-stable history (run only where
  ``Zipper.compress_messages`` takes ``history``; its decisions depend on the prices, so it runs once per provider).

Opt-in (``--methods``), the doors of :data:`DOORS`: the same requests sent through the running proxy by the real
``openai`` (``proxy-openai``) or ``anthropic`` (``proxy-anthropic``) SDK (:mod:`promptzip.evals._agent_doors`), or
by ``pz.wrap`` around those SDKs (``wrap-openai``, ``wrap-anthropic``; :mod:`promptzip.evals._agent_wrap_doors`),
to a fake upstream on 127.0.0.1, billed as the upstream received them, each for its own provider only; and through
LangChain's ``PromptZipRunnable`` on real ``langchain-core`` messages (``runnable``;
:mod:`promptzip.evals._agent_runnable_door`), once per provider, as ``stable`` runs.

A request that a method cannot compress (a :class:`PromptZipError`: budget below what must stay verbatim) is sent
uncompressed, as the proxy's fail-open does, and counted. Each request is billed by the provider cache models of
:mod:`promptzip.evals._provider_cache` (OpenAI gpt-4o, Anthropic claude-sonnet-4 with a breakpoint at the end of
every request). Per turn, against that turn's question: answer retention (a gold answer, SQuAD-normalized, in the
messages the turn added, as they were sent), the fraction of prompt tokens served from the cache, the effective
cost; per trace and method: retention %, cache-hit %, total cost and its ratio to ``none``, tokens sent, seconds.
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from promptzip._errors import PromptZipError
from promptzip._pricing import CachePricing
from promptzip._tokenizers import get_tokenizer
from promptzip._torch_threads import torch_threads
from promptzip._types import Budget
from promptzip.evals import _agent_doors as doors
from promptzip.evals import _agent_runnable_door as runnable_door
from promptzip.evals import _agent_wrap_doors as wrap_doors
from promptzip.evals._agent_report import (
    GOALS,
    MIN_TOKENS,
    goals,
    markdown,
    pooled,
    pricing_row,
    run_label,
    totals,
    with_ratios,
    write_report,
)
from promptzip.evals._provider_cache import PROVIDERS, Serializer, common_prefix
from promptzip.evals._traces import CORPORA, FULL, QUICK, Request, Trace, build_traces
from promptzip.evals.metrics import RETENTION_METRIC, answer_retained

__all__ = [
    "DOORS",
    "GOALS",
    "KNOWN",
    "METHODS",
    "Method",
    "add_arguments",
    "main",
    "markdown",
    "run_agent_trace",
    "write_report",
]

PRESET = "fast"
TARGET = "gpt-4o"
BUDGETS = {"rate=0.3": Budget(rate=0.3), "tokens=4000": Budget(tokens=4000)}
COMMAND = "python -P -m promptzip.evals.agent_trace"
Messages = list[dict[str, Any]]
Send = Callable[[Any, Messages, Budget | None, CachePricing], Messages]
Build = Callable[[str, str], Any]
Opener = Callable[[Build], AbstractContextManager[Callable[[], Any]]]


def has_history() -> bool:
    """Whether ``Zipper.compress_messages`` takes ``history=`` (the cache-stable history has landed)."""
    from promptzip._pipeline import Zipper

    return "history" in inspect.signature(Zipper.compress_messages).parameters


def _none(zipper: Any, messages: Messages, budget: Budget | None, pricing: CachePricing) -> Messages:
    return messages


def _reselect(zipper: Any, messages: Messages, budget: Budget | None, pricing: CachePricing) -> Messages:
    extra = {"history": "reselect"} if has_history() else {}
    return list(zipper.compress_messages(messages, budget=budget, **extra).messages)


def _stable(zipper: Any, messages: Messages, budget: Budget | None, pricing: CachePricing) -> Messages:
    result = zipper.compress_messages(messages, budget=budget, history="stable", conversation=None, pricing=pricing)
    return list(result.messages)


@dataclass(frozen=True, slots=True)
class Method:
    """A way to send each request: ``send(zipper, messages, budget, pricing)``; ``compresses``: it needs a Zipper
    and a budget; ``priced``: what it sends depends on the provider's prices (one run per provider).

    A door sends through a service: ``opens(build)`` is held open for the whole suite (methods with the same
    ``opens`` share it) and yields what makes each run's first argument of ``send`` in place of a Zipper; every
    request goes out (the service passes small ones through itself); ``provider``: it runs and is billed for that
    provider only (a proxy route is priced for one)."""

    name: str
    description: str
    send: Send
    compresses: bool = True
    priced: bool = False
    available: Callable[[], bool] = lambda: True
    provider: str | None = None
    opens: Opener | None = None


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("none", "the original request", _none, compresses=False),
        Method("reselect", "compress_messages on the whole request every turn (today's behaviour)", _reselect),
        Method("stable", "compress_messages(history='stable'): the sent prefix is resent byte for byte", _stable,
               priced=True, available=has_history),
    )
}  # fmt: skip

DOORS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("proxy-openai", "the openai SDK through the running proxy's /v1/chat/completions (history stable by "
               "default, budget as its header), billed as the upstream received it", doors.send_openai, priced=True,
               available=lambda: has_history() and doors.available(), provider="openai", opens=doors.open_proxy),
        Method("proxy-anthropic", "the anthropic SDK through the running proxy's /v1/messages (the chat translated "
               "to Anthropic's format and back), billed as the upstream received it", doors.send_anthropic,
               priced=True, available=lambda: has_history() and doors.available(), provider="anthropic",
               opens=doors.open_proxy),
        Method("wrap-openai", "pz.wrap(openai.OpenAI) straight to the provider (history stable by default, budget as "
               "promptzip=), billed as the upstream received it", wrap_doors.send_openai, priced=True,
               available=lambda: has_history() and doors.available(), provider="openai", opens=wrap_doors.open_wrap),
        Method("wrap-anthropic", "pz.wrap(anthropic.Anthropic) straight to the provider (the chat translated to "
               "Anthropic's format and back), billed as the upstream received it", wrap_doors.send_anthropic,
               priced=True, available=lambda: has_history() and doors.available(), provider="anthropic",
               opens=wrap_doors.open_wrap),
        Method("runnable", "LangChain's PromptZipRunnable on langchain-core messages (history stable by default, "
               "the provider's prices as pricing=), billed in the OpenAI form LangChain converts its output to",
               runnable_door.send_runnable, priced=True,
               available=lambda: has_history() and runnable_door.available()),
    )
}  # fmt: skip
KNOWN: dict[str, Method] = {**METHODS, **DOORS}


# ------------------------------------------------------------------------------------------------------ run


def _run(
    trace: Trace, method: Method, budget: str, providers: Sequence[str], zipper: Any, ser: Serializer
) -> dict[str, Any]:
    """Send every request of ``trace`` with ``method`` and bill it with each of ``providers``."""
    from promptzip._messages import chat_text, message_tokens

    caches = {p: PROVIDERS[p].new_cache() for p in providers}
    count = get_tokenizer(TARGET).count
    pricing = PROVIDERS[providers[0]].pricing
    rows: list[dict[str, Any]] = []
    previous = np.zeros(0, dtype=np.int64)
    for request in trace.requests():
        original = [dict(m) for m in request.messages]
        started, error = time.perf_counter(), None
        small = method.compresses and message_tokens(original, count) < MIN_TOKENS
        try:
            gated = small and method.opens is None
            sent = original if gated else method.send(zipper, original, BUDGETS.get(budget), pricing)
        except PromptZipError as exc:  # fail-open, as the proxy does: the original goes out
            sent, error = original, f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # a bug, not a budget: still fail-open, so one request does not end the run
            sent, error = original, f"BUG {type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - started
        tokens = ser(sent)
        now = np.asarray(tokens, dtype=np.int64)
        resent, previous_tokens, previous = common_prefix(now, previous), len(previous), now
        turn = trace.turns[request.turn]
        new = sent[-request.new :] if len(sent) == len(original) else sent
        evidence = _history_evidence(trace, request, sent) if request.measured else None
        rows.append(
            {
                "turn": request.turn,
                "measured": request.measured,
                "retained": answer_retained(chat_text(new), turn.answers) if request.measured else None,
                "history": evidence,
                "tokens_original": len(ser(original)),
                "tokens_sent": len(tokens),
                "previous_sent": previous_tokens,
                "resent": resent,
                "seconds": round(seconds, 4),
                "error": error,
                "passthrough": small,
                "billed": {p: _billed(caches[p].bill(tokens)) for p in providers},
            }
        )
    return {"method": method.name, "budget": budget if method.compresses else None, "rows": rows}


def _history_evidence(trace: Trace, request: Request, sent: Messages) -> list[int]:
    """[kept, earlier turns]: of the turns before this request's, those whose gold answer is still in the history
    as sent, outside the assistant's replies (which are the answers): the evidence a follow-up question about an
    earlier turn would need."""
    from promptzip._messages import chat_text

    history = sent[: len(sent) - request.new] if len(sent) >= request.new else []
    text = chat_text([m for m in history if m.get("role") != "assistant"])
    earlier = trace.turns[: request.turn]
    return [sum(answer_retained(text, t.answers) for t in earlier), len(earlier)]


def _billed(b: Any) -> dict[str, Any]:
    return {"cached": b.cached, "cost": b.cost}


def _factory(preset: str, target: str) -> Any:
    from promptzip._cache import MemoryCache
    from promptzip._pipeline import Zipper

    return Zipper.from_preset(preset, target=target, cache=MemoryCache(max_bytes=1 << 30))


def run_agent_trace(
    *,
    quick: bool = False,
    corpus: str = "auto",
    methods: Sequence[str] = tuple(METHODS),
    providers: Sequence[str] = tuple(PROVIDERS),
    budgets: Sequence[str] = tuple(BUDGETS),
    seed: int = 0,
    out: Path | None = None,
    command: str = COMMAND,
    zipper_factory: Callable[[str, str], Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the suite and return the report (written under ``out`` when given). ``corpus``: a name of
    :data:`~promptzip.evals._traces.CORPORA`, or ``auto`` (SQuAD dev when fetched, else GSM8K test)."""
    from promptzip.evals import data

    started, load_before = time.time(), os.getloadavg()
    notes: list[str] = []
    if corpus == "auto":
        corpus = "squad" if data.available("squad") else "gsm8k"
        if corpus != "squad":
            notes.append("SQuAD dev is not fetched on this machine (`make data`): the questions come from GSM8K test.")
    source = CORPORA[corpus]
    traces = build_traces(source.load(), site=source.site, sizes=QUICK if quick else FULL, seed=seed)
    chosen = [KNOWN[m] for m in methods]
    skipped = [m.name for m in chosen if not m.available()]
    if skipped:
        notes.append(f"not available in this promptzip, not run: {', '.join(skipped)}")
    build = zipper_factory or _factory
    ser = Serializer(get_tokenizer(TARGET).encode)
    with ExitStack() as stack:
        openers = [m.opens for m in chosen if m.opens is not None and m.available()]
        runs = {opener: stack.enter_context(opener(build)) for opener in dict.fromkeys(openers)}
        notes += [m.NOTE for m in (doors, wrap_doors) if any(o.__module__ == m.__name__ for o in runs)]
        report: dict[str, Any] = {
            "traces": [_trace_report(trace, chosen, budgets, providers, build, ser, progress, runs) for trace in traces]
        }
    report["pooled"] = pooled(report["traces"], providers)
    report["goals"] = goals(report, providers)
    report["meta"] = _meta(command, quick, corpus, source.description, seed, budgets, chosen, providers, notes)
    report["meta"].update(loadavg_before=[round(x, 2) for x in load_before], seconds=round(time.time() - started, 1))
    if out is not None:
        write_report(report, out)
    return report


def _trace_report(
    trace: Trace,
    chosen: Sequence[Method],
    budgets: Sequence[str],
    providers: Sequence[str],
    build: Callable[[str, str], Any],
    ser: Serializer,
    progress: bool,
    sessions: dict[Any, Callable[[], Any]],
) -> dict[str, Any]:
    """Every available method on ``trace``: per budget when it compresses, per provider when its choices depend on
    the prices (a door: its own provider only, when chosen); a door's runs get a session of ``sessions``."""
    runs = []
    for method in (m for m in chosen if m.available()):
        mine = [p for p in providers if method.provider in (None, p)]
        for budget in budgets if method.compresses else (None,):
            for group in [[p] for p in mine] if method.priced else [mine] if mine else []:
                if method.opens is not None:
                    zipper = sessions[method.opens]()
                else:
                    zipper = build(PRESET, TARGET) if method.compresses else None
                run = _run(trace, method, budget or "", group, zipper, ser)
                run["totals"] = {p: totals(run["rows"], p) for p in group}
                runs.append(run)
                if progress:
                    print(f"agent-trace {trace.id}: {run_label(run)} {'/'.join(group)} done", file=sys.stderr)
    return {
        "id": trace.id,
        "kind": trace.kind,
        "description": trace.description,
        "turns": len(trace.turns),
        "runs": with_ratios(runs, providers),
    }


def _meta(
    command: str,
    quick: bool,
    corpus: str,
    corpus_description: str,
    seed: int,
    budgets: Sequence[str],
    chosen: Sequence[Method],
    providers: Sequence[str],
    notes: list[str],
) -> dict[str, Any]:
    """What a report was made with, and on what machine."""
    return {
        "command": command,
        "quick": quick,
        "corpus": corpus,
        "corpus_description": corpus_description,
        "seed": seed,
        "preset": PRESET,
        "target": TARGET,
        "cache": "memory (a new MemoryCache per trace, method, budget and provider)",
        "budgets": list(budgets),
        "methods": {m.name: m.description for m in chosen},
        "providers": {p: {"target": PROVIDERS[p].target, **pricing_row(PROVIDERS[p].pricing)} for p in providers},
        "serialization": "gpt-4o tokens of each message's role, name, text, tool calls (JSON), tool-call id",
        "retention_metric": RETENTION_METRIC,
        "promptzip": metadata.version("promptzip"),
        "httpx": metadata.version("httpx"),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "notes": notes,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="one small trace per kind (CI-sized)")
    parser.add_argument("--out", type=Path, default=None, help="folder (default evals/results[/quick])")
    parser.add_argument("--corpus", default="auto", choices=["auto", *CORPORA], help="where the questions come from")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated, of " + ", ".join(KNOWN))
    parser.add_argument("--budgets", default=",".join(BUDGETS), help="comma-separated, of " + ", ".join(BUDGETS))
    parser.add_argument("--providers", default=",".join(PROVIDERS), help="comma-separated, of " + ", ".join(PROVIDERS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--no-progress", action="store_true")


def run_from_args(
    args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None, *, prefix: str = COMMAND
) -> int:
    """The body of ``promptzip eval agent-trace`` and of this module's ``main``; the report's command is ``prefix``
    and the options that differ from their defaults."""
    out, err = out or sys.stdout, err or sys.stderr
    chosen = {
        "methods": [m for m in args.methods.split(",") if m],
        "budgets": [b for b in args.budgets.split(",") if b],
        "providers": [p for p in args.providers.split(",") if p],
    }
    known: dict[str, list[str]] = {"methods": list(KNOWN), "budgets": list(BUDGETS), "providers": list(PROVIDERS)}
    for what, names in chosen.items():
        unknown = [n for n in names if n not in known[what]]
        if unknown or not names:
            err.write(
                f"agent-trace: error: unknown or no {what}: {', '.join(unknown)}; known: {', '.join(known[what])}\n"
            )
            return 2
    compresses = any(KNOWN[m].compresses for m in chosen["methods"])
    folder = args.out or (Path("evals/results/quick") if args.quick else Path("evals/results"))
    try:
        with torch_threads(args.threads if compresses else 0):  # the caller's count is restored after
            report = run_agent_trace(
                quick=args.quick,
                corpus=args.corpus,
                methods=chosen["methods"],
                providers=chosen["providers"],
                budgets=chosen["budgets"],
                seed=args.seed,
                out=folder,
                command=_command(args, prefix),
                progress=not args.no_progress,
            )
    except PromptZipError as exc:  # data not fetched, a package missing
        err.write(f"agent-trace: error: {exc}\n")
        return 2
    out.write(markdown(report))
    err.write(f"wrote {folder}/agent_trace.json, {folder}/agent_trace.md\n")
    return 0


def _command(args: argparse.Namespace, prefix: str) -> str:
    defaults = argparse.ArgumentParser()
    add_arguments(defaults)
    given = [prefix]
    for key, default in vars(defaults.parse_args([])).items():
        value = getattr(args, key, default)
        if value != default:
            given.append(f"--{key.replace('_', '-')}" + ("" if value is True else f" {value}"))
    return " ".join(given)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
