"""``rag-chat``: RAG requests rendered by real framework templates, compressed by the running proxy.

    python -P -m promptzip.evals.rag_chat --n 100                   # evals/results/rag_chat.{json,md}
    python -P -m promptzip.evals.rag_chat --quick                   # 2 items per suite, evals/results/quick/

The SQuAD-dev, Quoref and DROP items of the query-aware suites (:func:`promptzip.evals.suites.build_suite`) are
rendered through every template of :mod:`promptzip.evals.rag_templates` (the context wherever that framework
puts it: system message, one user message, XML tags) and sent with the OpenAI SDK through the proxy
(:func:`promptzip.integrations.proxy.create_app` under uvicorn on 127.0.0.1) to a recording fake upstream
(:class:`promptzip.integrations.proxy.testing.FakeUpstream`). Per (item, ratio) the request carries
``x-promptzip-budget`` = the tokens of the same request with the context replaced by ``""`` plus
``floor(context tokens / ratio)`` (o200k, OpenAI's chat token convention), so the context gets the allowance the
direct call gets: ``Zipper.from_preset("fast").compress(documents, query=question, budget=floor(tokens / ratio))``
on the same items (its context is the documents joined by a blank line).

Measured on what the upstream received: answer retention (only in what came from the context: the template's
fixed text and the question are cut out first, :func:`promptzip.evals.rag_templates.context_part`), tokens over
the request budget, whether every fixed piece and the question arrived verbatim and in order, and the proxy's
``x-promptzip-status``.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptzip.evals.rag_templates import TEMPLATES, Rendered, context_part, message_texts

__all__ = ["RULE", "Harness", "RagChatConfig", "default_factory", "main", "markdown", "run_rag_chat", "write_report"]

SUITES = ("squad-qa", "quoref-qa", "drop-qa")
RATIOS = (10.0, 20.0, 50.0)
QUICK_ITEMS = 2
PRESET = "fast"
TARGET = "gpt-4o"
STATUSES = ("compressed", "passthrough", "fail-open")
_TAG = "x-rag-chat-request"
TAGS_ROW = "tags of kept documents as template"
RULE = (
    "Answer retention is measured only in what came from the context: the message texts the upstream received "
    "are joined, the template's fixed pieces and the question are looked up in order (each first match after "
    "the previous one) and cut out, and a gold answer must occur in the rest (SQuAD-normalized, "
    "`answer_retained`). Tokens over budget: the received request's tokens (o200k, OpenAI chat convention: 3 per "
    "message + role + text, 3 for the reply) minus the request budget, at least 0, summed. Intact: every fixed "
    "piece of the template and the question occur verbatim and in order in the received messages."
)

ZipperFactory = Callable[[str, str, Any], Any]


@dataclass(slots=True)
class RagChatConfig:
    """What to run; ``zipper_factory`` (preset, target, cache) builds the Zipper for the proxy and the direct call
    (default ``Zipper.from_preset``); ``out=None`` writes nothing."""

    n: int = 100
    quick: bool = False
    suites: tuple[str, ...] = SUITES
    templates: tuple[str, ...] = tuple(TEMPLATES)
    ratios: tuple[float, ...] = RATIOS
    seed: int = 0
    out: Path | None = None
    command: str = "python -P -m promptzip.evals.rag_chat"
    zipper_factory: ZipperFactory | None = None
    progress: bool = True
    notes: list[str] = field(default_factory=list)


def _ratio_key(ratio: float) -> str:
    return f"{ratio:g}x"


def _cell() -> dict[str, Any]:
    return {
        "requests": 0,
        "retained": 0,
        "intact": 0,
        "over_budget_tokens": 0,
        "over_budget_requests": 0,
        "budget_tokens": 0,
        "received_tokens": 0,
        "original_tokens": 0,
        "status": Counter(),
        "reasons": Counter(),
    }


class Harness:
    """The fake upstream, the proxy under uvicorn and an OpenAI client, for one run (a context manager)."""

    def __init__(self, factory: ZipperFactory) -> None:
        from contextlib import ExitStack

        self.factory = factory
        self._stack = ExitStack()
        self.sent = 0

    def __enter__(self) -> Harness:
        import openai

        from promptzip.integrations.proxy import ProxySettings, create_app
        from promptzip.integrations.proxy.testing import FakeUpstream, live_server

        self.upstream = self._stack.enter_context(FakeUpstream())
        # min_tokens=0: every request is held to its budget header, however small. The deadline is the request
        # timeout's: this suite measures what reaches the model, not latency (the first request loads the models).
        settings = ProxySettings(
            upstream=self.upstream.url,
            cache="memory",
            min_tokens=0,
            preset=PRESET,
            target=TARGET,
            compression_deadline=600,
        )
        url = self._stack.enter_context(live_server(create_app(settings, zipper_factory=self.factory)))
        self.client = openai.OpenAI(base_url=url + "/v1", api_key="sk-rag-chat-fake", max_retries=0, timeout=600)
        self._stack.callback(self.client.close)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def exchange(self, create: Callable[[dict[str, str]], Any], budget: int) -> tuple[Mapping[str, str], Any]:
        """``create(headers)`` (an SDK call's raw response, sent with the budget and a tag of its own): the proxy's
        answer headers and the JSON body the upstream received under that tag (``None`` if none)."""
        import openai

        self.sent += 1
        tag = str(self.sent)
        try:
            answer: Mapping[str, str] = create({"x-promptzip-budget": str(budget), _TAG: tag}).headers
        except openai.APIStatusError as exc:
            answer = {**exc.response.headers, "x-promptzip-status": f"http-{exc.status_code}"}
        for i, rec in enumerate(self.upstream.requests):
            if rec.header(_TAG) == tag:
                del self.upstream.requests[i]
                return answer, rec.json()
        return answer, None

    def send(self, messages: list[Any], budget: int) -> tuple[Mapping[str, str], list[dict[str, Any]]]:
        """Send one chat; the proxy's answer headers and the messages the upstream received ([] if none)."""
        answer, body = self.exchange(
            lambda headers: self.client.chat.completions.with_raw_response.create(
                model=TARGET, messages=messages, extra_headers=headers
            ),
            budget,
        )
        return answer, list(body.get("messages", [])) if body is not None else []


def default_factory(preset: str, target: str, cache: Any) -> Any:
    from promptzip._pipeline import Zipper

    return Zipper.from_preset(preset, target=target, cache=cache)


def run_rag_chat(config: RagChatConfig) -> dict[str, Any]:
    """Run the suite and return the report (also written under ``config.out`` when set)."""
    from promptzip._cache import MemoryCache
    from promptzip.evals.metrics import RETENTION_METRIC

    started = time.time()
    build = config.zipper_factory or default_factory
    # One score cache for the proxy's Zipper and the direct one (scores are cached by content, so this saves
    # time and changes nothing); the proxy's whole-request result cache stays its own.
    scores = MemoryCache(max_bytes=1 << 30)

    def factory(preset: str, target: str, cache: Any) -> Any:
        return build(preset, target, scores)

    direct = factory(PRESET, TARGET, None)
    report: dict[str, Any] = {"suites": {}}
    with Harness(factory) as harness:
        for suite_name in config.suites:
            report["suites"][suite_name] = _run_suite(config, suite_name, direct, harness)
    report["meta"] = {
        "command": config.command,
        "quick": config.quick,
        "n": config.n,
        "seed": config.seed,
        "ratios": list(config.ratios),
        "preset": PRESET,
        "target": TARGET,
        "tokenizer": "o200k_base",
        "zipper": repr(direct),
        "proxy": {"min_tokens": 0, "cache": "memory", "fail_mode": "open", "score_cache": "shared with direct"},
        "templates": {t: TEMPLATES[t].origin for t in config.templates},
        "retention_metric": RETENTION_METRIC,
        "rule": RULE,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "seconds": round(time.time() - started, 1),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "notes": list(config.notes),
    }
    report["totals"] = _totals(report)
    if config.out is not None:
        write_report(report, config.out)
    return report


def _run_suite(config: RagChatConfig, suite_name: str, direct: Any, harness: Harness) -> dict[str, Any]:
    """One suite's cells: the direct call, each template through the proxy, and (for templates that wrap each
    document in tags) the same requests with the kept documents' tags outside the context allowance."""
    from promptzip.evals.suites import build_suite

    suite = build_suite(suite_name, config.n, quick=config.quick, seed=config.seed)
    items = suite.items[:QUICK_ITEMS] if config.quick else suite.items
    cells = {t: {_ratio_key(r): _cell() for r in config.ratios} for t in config.templates}
    direct_cells = {_ratio_key(r): _cell() for r in config.ratios}
    wrapped = [t for t in config.templates if TEMPLATES[t].wrapper is not None]
    matched = {t: {_ratio_key(r): _cell() for r in config.ratios} for t in wrapped}
    for k, item in enumerate(items, 1):
        docs, question = item.document_texts(), item.question or ""
        answers = [a for target in item.targets for a in target.answers]
        kept = _direct_item(config, direct, docs, question, answers, direct_cells)
        for name in config.templates:
            by_ratio = (cells[name], matched.get(name))
            _proxied_item(config, direct, harness, name, docs, question, answers, kept, by_ratio)
        if config.progress:
            print(f"rag-chat {suite_name}: {k}/{len(items)} items", file=sys.stderr, flush=True)
    return {
        "items": len(items),
        "description": suite.description,
        "direct": direct_cells,
        "templates": cells,
        "tags_as_template": matched,
    }


def _direct_item(
    config: RagChatConfig,
    direct: Any,
    docs: Sequence[str],
    question: str,
    answers: Sequence[str],
    cells: dict[str, dict[str, Any]],
) -> dict[float, list[int]]:
    """Measure the direct call on one item; per ratio, the (1-based) documents it kept."""
    from promptzip.evals.metrics import answer_retained
    from promptzip.evals.runner import budget_for

    count = direct.tokenizer.count
    plain_tokens = count("\n\n".join(docs))
    kept: dict[float, list[int]] = {}
    for ratio in config.ratios:
        budget = budget_for(plain_tokens, ratio)
        result = direct.compress(list(docs), query=question, budget=budget)
        kept[ratio] = [i for i, s in enumerate(result.sources, 1) if result.outputs.get(s.id)]
        retained = answer_retained(result.context, answers)
        _add(cells[_ratio_key(ratio)], budget, plain_tokens, count(result.context), retained)
    return kept


def _proxied_item(
    config: RagChatConfig,
    direct: Any,
    harness: Harness,
    name: str,
    docs: Sequence[str],
    question: str,
    answers: Sequence[str],
    kept: Mapping[float, list[int]],
    by_ratio: tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]] | None],
) -> None:
    """Send one item rendered by template ``name`` through the proxy at each ratio (and again with the kept
    documents' tags outside the allowance, when the template has them)."""
    from promptzip._messages import message_tokens
    from promptzip.evals.runner import budget_for

    count = direct.tokenizer.count
    template = TEMPLATES[name]
    full = template.render(docs, question)
    frame = message_tokens(template.render(None, question, context="").chat(), count)
    tokens_in = message_tokens(full.chat(), count)
    plain_tokens = count("\n\n".join(docs))
    cells, matched = by_ratio
    for ratio in config.ratios:
        budget = frame + budget_for(count(full.context), ratio)
        answer, received = harness.send(full.chat(), budget)
        _measure(cells[_ratio_key(ratio)], full, answer, received, answers, budget, tokens_in)
        if matched is not None and template.wrapper is not None:
            # The same allowance as the direct call plus the tags of the documents it kept.
            tags = sum(count(template.wrapper(i)) for i in kept[ratio])
            budget = frame + budget_for(plain_tokens, ratio) + tags
            answer, received = harness.send(full.chat(), budget)
            _measure(matched[_ratio_key(ratio)], full, answer, received, answers, budget, tokens_in)


def _add(cell: dict[str, Any], budget: int, original: int, received: int, retained: bool) -> None:
    cell["requests"] += 1
    cell["retained"] += int(retained)
    cell["budget_tokens"] += budget
    cell["original_tokens"] += original
    cell["received_tokens"] += received
    over = max(0, received - budget)
    cell["over_budget_tokens"] += over
    cell["over_budget_requests"] += int(over > 0)


def _measure(
    cell: dict[str, Any],
    sent: Rendered,
    answer: Mapping[str, str],
    received: list[dict[str, Any]],
    answers: Sequence[str],
    budget: int,
    tokens_in: int,
) -> None:
    from promptzip._messages import message_tokens
    from promptzip._tokenizers import get_tokenizer
    from promptzip.evals.metrics import answer_retained

    status = answer.get("x-promptzip-status", "missing")
    cell["status"][status] += 1
    reason = answer.get("x-promptzip-error") or answer.get("x-promptzip-reason")
    if reason:
        cell["reasons"][f"{status}: {reason}"] += 1
    if not received:  # the upstream got nothing: lost, not intact, no tokens
        _add(cell, budget, tokens_in, 0, False)
        return
    intact, rest = context_part(message_texts(received), sent.fixed)
    tokens = message_tokens(received, get_tokenizer(TARGET).count)
    _add(cell, budget, tokens_in, tokens, answer_retained(rest, answers))
    cell["intact"] += int(intact)


def _totals(report: Mapping[str, Any]) -> dict[str, Any]:
    status: Counter[str] = Counter()
    over = requests = intact = 0
    for suite in report["suites"].values():
        rows = [*suite["templates"].values(), *suite.get("tags_as_template", {}).values()]
        for by_ratio in rows:
            for cell in by_ratio.values():
                status.update(cell["status"])
                over += cell["over_budget_tokens"]
                requests += cell["requests"]
                intact += cell["intact"]
    return {"requests": requests, "over_budget_tokens": over, "intact": intact, "status": dict(status)}


# ---------------------------------------------------------------------------------------------------- report


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}% ({part}/{whole})" if whole else "n/a"


def _row(label: str, by_ratio: Mapping[str, Mapping[str, Any]], ratios: Sequence[str], *, proxy: bool) -> str:
    cells = list(by_ratio.values())
    cols = [_pct(by_ratio[r]["retained"], by_ratio[r]["requests"]) for r in ratios]
    cols.append(str(sum(c["over_budget_tokens"] for c in cells)))
    if proxy:
        status: Counter[str] = Counter()
        for c in cells:
            status.update(c["status"])
        cols.append(_pct(sum(c["intact"] for c in cells), sum(c["requests"] for c in cells)))
        other = sum(v for k, v in status.items() if k not in STATUSES)
        cols.append(" / ".join(str(status.get(s, 0)) for s in STATUSES) + (f" (+{other} other)" if other else ""))
    else:
        cols += ["n/a", "n/a"]
    return f"| {label} | " + " | ".join(cols) + " |"


def markdown(report: Mapping[str, Any]) -> str:
    """The report as a Markdown page: one table per suite."""
    meta = report["meta"]
    ratios = [_ratio_key(r) for r in meta["ratios"]]
    load = ", ".join(f"{x:.2f}" for x in meta["loadavg"])
    totals = report["totals"]
    lines = [
        "# rag-chat: RAG templates through the proxy",
        "",
        f"Command: `{meta['command']}` · preset `{meta['preset']}`, target `{meta['target']}` (o200k) · "
        f"{meta['date']} · {meta['seconds']} s · load average {load} on {meta['cpus']} CPUs.",
        "",
        "Each item is rendered by each template and sent with the OpenAI SDK through the proxy (uvicorn, "
        "127.0.0.1, `min_tokens=0`, fail-open) to a recording fake upstream, with `x-promptzip-budget` = the "
        "tokens of the same request with an empty context + floor(context tokens / ratio), the context being the "
        "documents joined as the template joins them (for `anthropic-xml` each document's tags are inside it). "
        "The direct row is `Zipper.compress(documents, query=question, budget=floor(tokens / ratio))` on the same "
        "items (tokens of the documents joined by a blank line). A fail-open request reaches the upstream "
        "uncompressed, so its retention is that of the whole context and its tokens count over budget. "
        f"The row '{TAGS_ROW}' sends the same request again with the direct call's allowance plus the tokens of "
        "the tags (empty document element) of each document the direct call kept: it measures the understanding "
        "step apart from the price of the layout's per-document markup.",
        "",
        RULE,
        "",
        f"Totals: {totals['requests']} proxied requests, {totals['over_budget_tokens']} tokens over budget, "
        f"{_pct(totals['intact'], totals['requests'])} intact, status "
        + ", ".join(f"{k} {v}" for k, v in sorted(totals["status"].items())),
        "",
    ]
    header = "| template | " + " | ".join(f"retained {r}" for r in ratios)
    header += " | tokens over budget | instruction + question intact | compressed / passthrough / fail-open |"
    for name, suite in report["suites"].items():
        lines += [f"## {name} ({suite['items']} items: {suite['description']})", "", header]
        lines.append("|" + " --- |" * (len(ratios) + 4))
        for template, by_ratio in suite["templates"].items():
            lines.append(_row(template, by_ratio, ratios, proxy=True))
        for template, by_ratio in suite.get("tags_as_template", {}).items():
            lines.append(_row(f"{template}, {TAGS_ROW}", by_ratio, ratios, proxy=True))
        lines.append(_row("direct `Zipper.compress`", suite["direct"], ratios, proxy=False))
        reasons: Counter[str] = Counter()
        for by_ratio in suite["templates"].values():
            for cell in by_ratio.values():
                reasons.update(cell["reasons"])
        if reasons:
            lines += ["", "Proxy reasons: " + "; ".join(f"{k} ×{v}" for k, v in sorted(reasons.items()))]
        lines.append("")
    lines += ["Templates:", ""] + [f"- `{k}`: {v}" for k, v in meta["templates"].items()]
    lines += [f"- note: {n}" for n in meta["notes"]]
    return "\n".join(lines) + "\n"


def write_report(report: Mapping[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "rag_chat.json").write_text(json.dumps(report, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    (out / "rag_chat.md").write_text(markdown(report), encoding="utf-8")


# ------------------------------------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -P -m promptzip.evals.rag_chat", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100, help="items per suite (default 100)")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ITEMS} short items per suite")
    parser.add_argument("--suites", default=",".join(SUITES), help="comma-separated, of " + ", ".join(SUITES))
    parser.add_argument("--templates", default="", help="comma-separated (default: all)")
    parser.add_argument("--out", type=Path, default=None, help="folder (default evals/results[/quick])")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    suites = tuple(s for s in args.suites.split(",") if s)
    templates = tuple(t for t in args.templates.split(",") if t) or tuple(TEMPLATES)
    unknown = [s for s in suites if s not in SUITES] + [t for t in templates if t not in TEMPLATES]
    if unknown:
        parser.error(f"unknown suite or template: {', '.join(unknown)}")
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    out = args.out or (Path("evals/results/quick") if args.quick else Path("evals/results"))
    given = list(sys.argv[1:] if argv is None else argv)
    config = RagChatConfig(
        n=args.n,
        quick=args.quick,
        suites=suites,
        templates=templates,
        seed=args.seed,
        out=out,
        command=" ".join(["python -P -m promptzip.evals.rag_chat", *given]),
        progress=not args.no_progress,
    )
    report = run_rag_chat(config)
    totals = report["totals"]
    print(
        f"rag-chat: {totals['requests']} requests, over budget {totals['over_budget_tokens']} tokens, status "
        + ", ".join(f"{k} {v}" for k, v in sorted(totals["status"].items())),
        file=sys.stderr,
    )
    print(markdown(report))
    print(f"wrote {out}/rag_chat.json, {out}/rag_chat.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
