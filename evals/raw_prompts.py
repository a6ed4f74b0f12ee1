"""``raw-prompts``: RAG requests as raw prompts in a chat template, sent through the proxy's ``/v1/completions``,
side by side in one run with the same requests as chat messages through ``/v1/chat/completions``.

    python -P -m promptzip.evals.raw_prompts --n 50                 # evals/results/raw_prompts.{json,md}
    python -P -m promptzip.evals.raw_prompts --quick                # 2 items per suite, evals/results/quick/

Each item of the suites (SQuAD dev, the held-out forum domain of SQuAD-shifts, and GSM8K's problems as context; a
suite whose data can no longer be fetched is skipped and named in the report) is rendered by every template of
:mod:`promptzip.evals.rag_templates`; the chat door sends its messages with the OpenAI SDK's
``chat.completions.create``, and each raw door renders the same messages into one prompt in a chat template
(:data:`FORMATS`: ChatML, Llama 3, Llama 2, Vicuna's role lines, Human/Assistant, Alpaca) and sends it with
``completions.create``, through one proxy (:func:`promptzip.integrations.proxy.create_app` under uvicorn on
127.0.0.1, the ``fast`` preset) to a recording fake upstream. Per (item, ratio) a request carries
``x-promptzip-budget`` = the tokens of the same request with the context replaced by ``""`` plus
``floor(context tokens / ratio)``, counted as the route counts (o200k, OpenAI's chat convention; a raw prompt is one
user message), so every door gets the same allowance for the context.

Measured on what the upstream received: answer retention in what came from the context (the template's fixed text
and the question cut out first, :func:`promptzip.evals.rag_templates.context_part`), whether every fixed piece and
the question arrived verbatim and in order, whether the template's markers arrived exactly (the same markers in the
same order), the tokens sent against the tokens of the request as given, and the proxy's ``x-promptzip-status``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptzip.evals import rag_chat
from promptzip.evals.rag_chat import PRESET, TARGET
from promptzip.evals.rag_templates import RAW_FORMATS as FORMATS
from promptzip.evals.rag_templates import TEMPLATES, Rendered, context_part, message_texts, raw_prompt

__all__ = ["FORMATS", "RawPromptsConfig", "main", "markdown", "render_raw", "run_raw_prompts", "write_report"]

SUITES = ("squad-qa", "shifts-reddit-qa", "gsm8k-qa")
RATIOS = (10.0, 20.0)
QUICK_ITEMS = 2
CHAT = "chat messages"
# The markers of the formats below, as they must reach the model.
MARKERS = re.compile(
    r"<\|[a-z_]+\|>|\[/?INST\]|<</?SYS>>|</?s>"  # special tokens
    r"|^(?:USER|ASSISTANT|Human|Assistant):|^### (?:Instruction|Input|Response):$",  # role lines, Alpaca's headers
    re.MULTILINE,
)


def render_raw(fmt: str, rendered: Rendered) -> str:
    """``rendered``'s messages as one prompt in the chat template ``fmt``."""
    return raw_prompt(fmt, rendered.messages)


@dataclass(slots=True)
class RawPromptsConfig:
    """What to run; ``zipper_factory`` (preset, target, cache) builds the proxy's Zipper (default
    ``Zipper.from_preset``); ``out=None`` writes nothing."""

    n: int = 50
    quick: bool = False
    suites: tuple[str, ...] = SUITES
    templates: tuple[str, ...] = tuple(TEMPLATES)
    formats: tuple[str, ...] = tuple(FORMATS)
    ratios: tuple[float, ...] = RATIOS
    seed: int = 0
    out: Path | None = None
    command: str = "python -P -m promptzip.evals.raw_prompts"
    zipper_factory: Callable[[str, str, Any], Any] | None = None
    progress: bool = True


def _cell() -> dict[str, Any]:
    return {
        "requests": 0,
        "retained": 0,
        "intact": 0,
        "markers_intact": 0,
        "original_tokens": 0,
        "received_tokens": 0,
        "over_budget_tokens": 0,
        "status": Counter(),
    }


class _Harness(rag_chat.Harness):
    """rag-chat's fake upstream, proxy and OpenAI client, sending raw prompts too (a context manager)."""

    def send(  # type: ignore[override]
        self, request: list[dict[str, str]] | str, budget: int
    ) -> tuple[Mapping[str, str], list[str] | None]:
        """Send a chat (a list of messages) or a raw prompt (a string); the proxy's answer headers and the texts
        the upstream received (its messages' texts, or its one prompt; ``None`` when it received nothing)."""
        if not isinstance(request, str):
            headers, received = super().send(request, budget)
            return headers, (message_texts(received) if received else None)
        answer, body = self.exchange(
            lambda headers: self.client.completions.with_raw_response.create(
                model=TARGET, prompt=request, max_tokens=16, extra_headers=headers
            ),
            budget,
        )
        return answer, None if body is None else [body["prompt"]]


def _as_user(prompt: str) -> list[dict[str, str]]:
    """A raw prompt as the completions route counts it: one user message."""
    return [{"role": "user", "content": prompt}]


def run_raw_prompts(config: RawPromptsConfig) -> dict[str, Any]:
    """Run the suites and return the report (also written under ``config.out`` when set)."""
    from promptzip._cache import MemoryCache
    from promptzip.evals.suites import build_suite, withdrawn_suites

    started = time.time()
    build = config.zipper_factory or rag_chat.default_factory
    scores = MemoryCache(max_bytes=1 << 30)  # one score cache for every door: scores are cached by content

    def factory(preset: str, target: str, cache: Any) -> Any:
        return build(preset, target, scores)

    doors = (CHAT, *config.formats)
    withdrawn = withdrawn_suites(config.suites)
    report: dict[str, Any] = {"suites": {}, "withdrawn": withdrawn}
    harness = _Harness(factory)
    with harness:
        for suite_name in (s for s in config.suites if s not in withdrawn):
            suite = build_suite(suite_name, config.n, quick=config.quick, seed=config.seed)
            items = suite.items[:QUICK_ITEMS] if config.quick else suite.items
            cells = {d: {f"{r:g}x": _cell() for r in config.ratios} for d in doors}
            for k, item in enumerate(items, 1):
                answers = [a for target in item.targets for a in target.answers]
                for name in config.templates:
                    _item(config, harness, TEMPLATES[name], item.document_texts(), item.question or "", answers, cells)
                if config.progress:
                    print(f"raw-prompts {suite_name}: {k}/{len(items)} items", file=sys.stderr, flush=True)
            report["suites"][suite_name] = {"items": len(items), "description": suite.description, "doors": cells}
    report["meta"] = {
        "command": config.command,
        "quick": config.quick,
        "n": config.n,
        "seed": config.seed,
        "ratios": list(config.ratios),
        "templates": list(config.templates),
        "formats": list(config.formats),
        "preset": PRESET,
        "target": TARGET,
        "tokenizer": "o200k_base",
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "seconds": round(time.time() - started, 1),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    if config.out is not None:
        write_report(report, config.out)
    return report


def _item(
    config: RawPromptsConfig,
    harness: _Harness,
    template: Any,
    docs: Sequence[str],
    question: str,
    answers: Sequence[str],
    cells: Mapping[str, dict[str, dict[str, Any]]],
) -> None:
    """Send one item rendered by ``template`` through every door at every ratio."""
    from promptzip._messages import message_tokens
    from promptzip._tokenizers import get_tokenizer
    from promptzip.evals.runner import budget_for

    count = get_tokenizer(TARGET).count
    full = template.render(docs, question)
    empty = template.render(None, question, context="")
    context_tokens = count(full.context)
    for door in cells:
        if door == CHAT:
            request: list[dict[str, str]] | str = full.chat()
            frame = message_tokens(empty.chat(), count)
            original = message_tokens(full.chat(), count)
        else:
            request = render_raw(door, full)
            frame = message_tokens(_as_user(render_raw(door, empty)), count)
            original = message_tokens(_as_user(request), count)
        for ratio in config.ratios:
            budget = frame + budget_for(context_tokens, ratio)
            answer, received = harness.send(request, budget)
            _measure(cells[door][f"{ratio:g}x"], door, full, request, answer, received, answers, budget, original)


def _measure(
    cell: dict[str, Any],
    door: str,
    sent: Rendered,
    request: list[dict[str, str]] | str,
    answer: Mapping[str, str],
    received: list[str] | None,
    answers: Sequence[str],
    budget: int,
    original: int,
) -> None:
    from promptzip._messages import message_tokens
    from promptzip._tokenizers import get_tokenizer
    from promptzip.evals.metrics import answer_retained

    cell["requests"] += 1
    cell["original_tokens"] += original
    cell["status"][answer.get("x-promptzip-status", "missing")] += 1
    if received is None:  # nothing reached the upstream: lost
        return
    count = get_tokenizer(TARGET).count
    if door == CHAT:
        tokens = message_tokens([{"role": "user", "content": t} for t in received], count)
        markers = True
    else:
        tokens = message_tokens(_as_user(received[0]), count)
        assert isinstance(request, str)
        markers = MARKERS.findall(received[0]) == MARKERS.findall(request)
    intact, rest = context_part(received, sent.fixed)
    cell["retained"] += int(answer_retained(rest, answers))
    cell["intact"] += int(intact)
    cell["markers_intact"] += int(markers)
    cell["received_tokens"] += tokens
    cell["over_budget_tokens"] += max(0, tokens - budget)


# ------------------------------------------------------------------------------------------------- report
def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}" if whole else "–"


def markdown(report: Mapping[str, Any]) -> str:
    meta = report["meta"]
    ratios = [f"{r:g}x" for r in meta["ratios"]]
    lines = [
        "# raw-prompts: RAG requests as raw prompts in a chat template, through `/v1/completions`",
        "",
        f"`{meta['command']}` · {meta['date']} · preset `{meta['preset']}`, target `{meta['target']}` "
        f"({meta['tokenizer']}) · {meta['cpus']} CPUs, load average {' / '.join(map(str, meta['loadavg']))} at "
        f"the end · {meta['seconds']} s",
        "",
        "Each item is rendered by every template of `rag_templates` "
        f"({', '.join(f'`{t}`' for t in meta['templates'])}) and sent through one running proxy: as chat messages "
        "(`chat.completions.create`) and as one raw prompt in each chat template (`completions.create`). "
        "Retention: a gold answer in what the upstream received of the context. Intact: every fixed piece of the "
        "template and the question arrived verbatim and in order. Markers: the raw prompt's template markers "
        "arrived exactly. Ratio: the tokens of the request as given over the tokens sent (a raw prompt counted as "
        "one user message, as the route counts it).",
        "",
    ]
    for name, suite in report["suites"].items():
        lines += [f"## {name} ({suite['items']} items)", ""]
        header = "| door | " + " | ".join(f"retained {r} % | ratio {r}" for r in ratios)
        lines += [header + " | intact % | markers intact % | over budget (tokens) | status |"]
        lines += ["|---|" + "---:|---:|" * len(ratios) + "---:|---:|---:|---|"]
        for door, by_ratio in suite["doors"].items():
            cells = list(by_ratio.values())
            row = [door if door == CHAT else f"raw `{door}`"]
            for c in cells:
                row += [
                    _pct(c["retained"], c["requests"]),
                    f"{c['original_tokens'] / max(1, c['received_tokens']):.1f}x",
                ]
            requests = sum(c["requests"] for c in cells)
            status: Counter[str] = Counter()
            for c in cells:
                status.update(c["status"])
            row += [
                _pct(sum(c["intact"] for c in cells), requests),
                "–" if door == CHAT else _pct(sum(c["markers_intact"] for c in cells), requests),
                str(sum(c["over_budget_tokens"] for c in cells)),
                ", ".join(f"{k} {v}" for k, v in sorted(status.items())),
            ]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    for name, reason in report.get("withdrawn", {}).items():
        lines.append(f"Not run: `{name}`, its data can no longer be fetched here ({reason}).")
    return "\n".join(lines) + "\n"


def write_report(report: Mapping[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "raw_prompts.json").write_text(json.dumps(report, indent=2, default=dict) + "\n")
    (out / "raw_prompts.md").write_text(markdown(report))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -P -m promptzip.evals.raw_prompts", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--n", type=int, default=50, help="items per suite (default 50)")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ITEMS} items per suite, into results/quick/")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default evals/results[/quick])")
    args = parser.parse_args(argv)
    out = args.out or (Path("evals/results/quick") if args.quick else Path("evals/results"))
    command = "python -P -m promptzip.evals.raw_prompts" + (" --quick" if args.quick else f" --n {args.n}")
    report = run_raw_prompts(RawPromptsConfig(n=args.n, quick=args.quick, out=out, command=command))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
