"""``pasted-data``: data pasted into the turn being answered (a search API's JSON results or a service log, fenced,
bare, or after the question) or into the system prompt, sent through the running proxy's ``/v1/chat/completions``.

    python -P -m promptzip.evals.pasted_data --n 30        # evals/results/pasted_data.{json,md}
    python -P -m promptzip.evals.pasted_data --quick       # 3 items per kind, evals/results/quick/

The items are the agent-trace suite's tool outputs (:mod:`promptzip.evals._traces`, GSM8K test as the corpus):
``web_search`` results (20 per call, the gold paragraph among them, as indented JSON) and ``get_logs`` logs (200
lines, the asked-about error among them). Each is pasted into the chat in every shape of :data:`SHAPES` (one of
them three ``web_search`` tool results, the item's beside two others that do not answer) and
sent with the OpenAI SDK through one proxy (:func:`promptzip.integrations.proxy.create_app` under uvicorn on
127.0.0.1, the ``fast`` preset) to a recording fake upstream, with ``x-promptzip-budget`` = the tokens of the same
chat with the data left out plus ``floor(data tokens / ratio)`` (o200k, OpenAI's chat convention).

Measured on what the upstream received: the answer in what came from the data (the message less its question),
the question verbatim, the data still valid JSON between its fences (JSON shapes), the tokens sent against the
tokens of the request as given, tokens over the budget, and the proxy's ``x-promptzip-status`` (``fail-open``: the
request went out as given because it could not be compressed to its budget).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from promptzip.evals import rag_chat
from promptzip.evals.rag_chat import PRESET, TARGET

__all__ = ["SHAPES", "main", "markdown", "run_pasted_data"]

TOOL_RESULTS = "(tool results)"  # the question as the user's turn, then three web_search calls, the data one of them
# (kind of data, system prompt, user message): where the data is pasted; {data} the tool output, {q} the question
SHAPES: dict[str, tuple[str, str | None, str]] = {
    "json, fenced": ("json", None, "Here are the search results I got:\n\n```json\n{data}\n```\n\n{q}"),
    "json, bare": ("json", None, "Search results:\n{data}\n\n{q}"),
    "json, question first": ("json", None, "{q}\n\nUse these search results:\n```\n{data}\n```"),
    "json, in the system prompt": ("json", "Answer from these search results.\n\n```json\n{data}\n```", "{q}"),
    "json, one of three tool results": ("json", None, TOOL_RESULTS),
    "log, fenced": ("log", None, "Here is the log of the last hour:\n```\n{data}\n```\n\n{q}"),
    "log, question first": ("log", None, "{q}\n\n```log\n{data}\n```"),
}


def _chat(system: str | None, user: str, data: str, question: str) -> list[dict[str, str]]:
    chat = [{"role": "system", "content": system.format(data=data)}] if system is not None else []
    return [*chat, {"role": "user", "content": user.format(data=data, q=question)}]


def _tool_chat(question: str, results: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """The question, an assistant turn calling ``web_search`` once per (query, results), and each call's results."""
    calls = [
        {
            "id": f"call_{n}",
            "type": "function",
            "function": {"name": "web_search", "arguments": json.dumps({"query": q})},
        }
        for n, (q, _) in enumerate(results)
    ]
    tools = [{"role": "tool", "tool_call_id": f"call_{n}", "content": data} for n, (_, data) in enumerate(results)]
    return [{"role": "user", "content": question}, {"role": "assistant", "content": None, "tool_calls": calls}, *tools]


def _others(items: Sequence[tuple[str, tuple[str, ...], str]], k: int, answers: Sequence[str]) -> list[tuple[str, str]]:
    """(question, results) of the next two items whose results do not hold ``answers``: the other two calls."""
    from promptzip.evals.metrics import answer_retained

    found = [
        (q, data)
        for q, _, data in (items[(k + j) % len(items)] for j in range(1, len(items)))
        if not answer_retained(data, list(answers))
    ]
    return found[:2]


RATIOS = (10.0, 20.0)
QUICK_ITEMS = 3


def _items(n: int, seed: int) -> dict[str, list[tuple[str, tuple[str, ...], str]]]:
    """(question, answers, data) per kind of data, from the agent-trace suite's generators."""
    from promptzip.evals._traces import CORPORA, log_trace, search_trace

    corpus = CORPORA["gsm8k"]
    articles = corpus.load()
    search = search_trace(articles, turns=n, items=20, seed=seed, site=corpus.site)
    logs = log_trace(articles, turns=n, lines=200, seed=seed)
    return {
        kind: [(t.question, t.answers, str(t.messages[-1]["content"])) for t in trace.turns]
        for kind, trace in (("json", search), ("log", logs))
    }


def _cell() -> dict[str, Any]:
    return {
        "requests": 0,
        "retained": 0,
        "question_intact": 0,
        "valid_json": 0,
        "original_tokens": 0,
        "received_tokens": 0,
        "over_budget_tokens": 0,
        "status": Counter(),
    }


def run_pasted_data(
    n: int = 30,
    *,
    quick: bool = False,
    ratios: Sequence[float] = RATIOS,
    seed: int = 0,
    out: Path | None = None,
    command: str = "python -P -m promptzip.evals.pasted_data",
    zipper_factory: Callable[[str, str, Any], Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Send every item in every shape at every ratio; the report (also written under ``out`` when set)."""
    from promptzip._messages import message_tokens
    from promptzip._tokenizers import get_tokenizer
    from promptzip.evals.runner import budget_for

    started = time.time()
    count = get_tokenizer(TARGET).count
    items = _items(QUICK_ITEMS if quick else n, seed)
    cells = {shape: {f"{r:g}x": _cell() for r in ratios} for shape in SHAPES}
    with rag_chat.Harness(zipper_factory or rag_chat.default_factory) as harness:
        for shape, (kind, system, user) in SHAPES.items():
            for k, (question, answers, data) in enumerate(items[kind], 1):
                if user == TOOL_RESULTS:  # the answering results first, second or third
                    results = _others(items[kind], k - 1, answers)
                    results.insert(k % (len(results) + 1), (question, data))
                    request = _tool_chat(question, results)
                    frame = message_tokens(_tool_chat(question, [(q, "") for q, _ in results]), count)
                    pasted = sum(count(d) for _, d in results)
                else:
                    request = _chat(system, user, data, question)
                    frame = message_tokens(_chat(system, user, "", question), count)
                    pasted = count(data)
                original = message_tokens(request, count)
                for ratio in ratios:
                    budget = frame + budget_for(pasted, ratio)
                    headers, received = harness.send(request, budget)
                    cell = cells[shape][f"{ratio:g}x"]
                    _measure(cell, kind, question, answers, headers, received, budget, original, count)
                if progress:
                    print(f"pasted-data {shape}: {k}/{len(items[kind])}", file=sys.stderr, flush=True)
    report: dict[str, Any] = {"shapes": cells}
    report["meta"] = {
        "command": command,
        "quick": quick,
        "n": len(items["json"]),
        "seed": seed,
        "ratios": list(ratios),
        "corpus": "GSM8K test (the agent-trace suite's web_search results and get_logs logs)",
        "preset": PRESET,
        "target": TARGET,
        "tokenizer": "o200k_base",
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "seconds": round(time.time() - started, 1),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "pasted_data.json").write_text(json.dumps(report, indent=2, default=dict) + "\n", encoding="utf-8")
        (out / "pasted_data.md").write_text(markdown(report), encoding="utf-8")
    return report


def _measure(
    cell: dict[str, Any],
    kind: str,
    question: str,
    answers: Sequence[str],
    headers: Mapping[str, str],
    received: list[dict[str, Any]],
    budget: int,
    original: int,
    count: Callable[[str], int],
) -> None:
    from promptzip._messages import message_tokens
    from promptzip.evals.metrics import answer_retained

    cell["requests"] += 1
    cell["original_tokens"] += original
    cell["status"][headers.get("x-promptzip-status", "missing")] += 1
    if not received:  # nothing reached the upstream: lost
        return
    texts = [str(m.get("content") or "") for m in received]
    tokens = message_tokens(received, count)
    cell["received_tokens"] += tokens
    cell["over_budget_tokens"] += max(0, tokens - budget)
    asked = [t for m, t in zip(received, texts, strict=True) if m.get("role") == "user"]
    cell["question_intact"] += int(bool(asked) and question in asked[-1])
    cell["retained"] += int(answer_retained("\n".join(texts).replace(question, ""), list(answers)))
    tools = [t for m, t in zip(received, texts, strict=True) if m.get("role") == "tool"]
    if kind == "json":
        cell["valid_json"] += int(all(map(_parses, tools)) if tools else _valid_json(texts[0]))


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _valid_json(text: str) -> bool:
    """Whether the data in ``text`` (between fences, or from the first line that opens an array) parses."""
    if "```" in text:
        data = text.split("```", 2)[1].partition("\n")[2]
    else:
        start = text.find("\n[")
        data = text[start + 1 : text.rfind("]") + 1] if start >= 0 else ""
    return _parses(data)


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "–"


def markdown(report: Mapping[str, Any]) -> str:
    meta = report["meta"]
    load = ", ".join(f"{x:.2f}" for x in meta["loadavg"])
    lines = [
        "# pasted-data: JSON and logs pasted into the question's message or the system prompt, through the proxy",
        "",
        f"Command: `{meta['command']}` · {meta['n']} items per kind of data · {meta['corpus']} · preset "
        f"`{meta['preset']}`, target `{meta['target']}` ({meta['tokenizer']}) · {meta['date']} · {meta['seconds']} s "
        f"· load average {load} at the end, {meta['cpus']} CPUs · Python {meta['python']}.",
        "",
        "Each request is one user message with the data pasted in the shape named (the question before or after it), "
        "or a system prompt holding the data and the question as the user message, or (one of three tool results) the "
        "question, an assistant turn with three web_search calls and their results: the item's and two other "
        "items' results that do not hold its answer, the item's first, second or third in turn; with a budget of the "
        "chat's other tokens plus the data's tokens over the ratio. Retained: the gold "
        "answer in what the upstream received, less the question. Question intact: the question arrived verbatim. "
        "Valid JSON: the pasted results (each tool result) still parse. Ratio: tokens of the requests as given over "
        "tokens received. "
        "fail-open: the proxy forwarded the request as given (it could not meet the budget).",
        "",
        "| shape | ratio asked | requests | retained | question intact | valid JSON | ratio | over budget | statuses |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for shape, by_ratio in report["shapes"].items():
        for ratio, c in by_ratio.items():
            n = c["requests"]
            valid = _pct(c["valid_json"], n) if shape.startswith("json") else "–"
            achieved = f"{c['original_tokens'] / c['received_tokens']:.1f}x" if c["received_tokens"] else "–"
            statuses = ", ".join(f"{k} {v}" for k, v in sorted(c["status"].items()))
            lines.append(
                f"| {shape} | {ratio} | {n} | {_pct(c['retained'], n)} | {_pct(c['question_intact'], n)} | {valid} "
                f"| {achieved} | {c['over_budget_tokens']} | {statuses} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -P -m promptzip.evals.pasted_data", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--n", type=int, default=30, help="items per kind of data (default 30)")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ITEMS} items per kind, into results/quick/")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="folder for pasted_data.{json,md}")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    results = Path(__file__).resolve().parent / "results"
    out = args.out or (results / "quick" if args.quick else results)
    command = "python -P -m promptzip.evals.pasted_data " + " ".join(argv if argv is not None else sys.argv[1:])
    report = run_pasted_data(
        args.n, quick=args.quick, seed=args.seed, out=out, command=command.strip(), progress=not args.no_progress
    )
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
