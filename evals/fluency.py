"""Fluency of compressed text: its mean per-token NLL under the packaged SmolLM2-135M, relative to the original.

    python -P -m promptzip.evals.fluency                          # gsm8k-qa, and squad-qa when it is fetched
    python -P -m promptzip.evals.fluency --suites gsm8k-qa --n 40 --articles 8

What is scored: the retention run's own outputs. The suite is built with the retention run's size and seed
(:data:`promptzip.evals.run.FULL_SIZES`), the items are its first ``n`` sampled questions whose articles are among
its first ``articles`` distinct ones (:func:`promptzip.evals.run.downstream_items`: a uniform question sample within
a few articles, so few originals need scoring), and every method (:func:`promptzip.evals.methods.create_method`)
compresses each item to the budget of the retention table (:func:`promptzip.evals.runner.budget_for`). Retention
is measured on the same outputs, so each row sets fluency beside what the method kept.

How a text is scored (:class:`NLLScorer`): SmolLM2 tokens, in consecutive non-overlapping windows of ``window``
tokens (1024), each window opened by ``<|endoftext|>`` (the document separator of its pre-training) so that its
first token is predicted too; the per-token NLL (nats) is averaged over every token of the text. The original (the
whole article context) is scored the same way, once per article. Per item:
``NLL(output) / NLL(original)`` and ``NLL(output) - NLL(original)``; means over items with normal 95% intervals
(items of one article are not independent: the intervals are optimistic).

A 50x output is a fiftieth of the original, so its tokens see less context than the original's (up to a window),
which alone raises its NLL. The *length-matched* reference is the original's mean NLL over the tokens at window
positions below the output's length (the original with as much context as the output had). Rows of one ratio have
the same length, so the comparison the issue asks for, each method against ``random-sentences`` at the same ratio,
is paired per item: the excess of its NLL ratio over random's, and its retention gain over random's.

Matmuls run in bfloat16 under CPU autocast (logits and NLL in float32); ``--float32`` turns that off.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from promptzip.evals.metrics import answer_retained, mean_interval

__all__ = [
    "METHODS",
    "FluencyConfig",
    "FluencyRow",
    "NLLScorer",
    "Scored",
    "TokenNLL",
    "main",
    "markdown",
    "run_fluency",
    "summarize",
]

METHODS = (
    "promptzip-fast",
    "promptzip-balanced",
    "bm25-sentences",
    "langchain-embeddings-filter",
    "random-sentences",
    "promptzip-token-classifier",
)
ANCHOR = "random-sentences"
MARKED = 0.05  # "markedly less fluent": NLL ratio at least this much above the anchor's, interval above zero
_START = "<|endoftext|>"


@dataclass(frozen=True, slots=True)
class TokenNLL:
    """Per-token NLLs (nats) of a text and each token's position in its scoring window (0: right after the
    window's start token)."""

    nll: tuple[float, ...]
    position: tuple[int, ...]

    @property
    def mean(self) -> float:
        return sum(self.nll) / len(self.nll) if self.nll else float("nan")

    def mean_below(self, length: int) -> float:
        """The mean over tokens at window positions below ``length``: the text with at most that much context."""
        kept = [x for x, p in zip(self.nll, self.position, strict=True) if p < length]
        return sum(kept) / len(kept) if kept else float("nan")


class NLLScorer:
    """Per-token NLL of texts under a causal LM (:func:`promptzip._causal_lm.load_causal_lm`), loaded on first use;
    each distinct text is scored once per scorer."""

    def __init__(self, model: str = "smollm2-135m", *, window: int = 1024, bf16: bool = True) -> None:
        if window < 2:
            raise ValueError(f"window must be at least 2 tokens, not {window}")
        self.model_name = model
        self.window = window
        self.bf16 = bf16
        self._loaded: tuple[Any, Any, int] | None = None
        self._memo: dict[str, TokenNLL] = {}

    def _model(self) -> tuple[Any, Any, int]:
        """``(model, tokenizer, id of the token that opens each window)``."""
        if self._loaded is None:
            from promptzip._causal_lm import load_causal_lm

            model, tokenizer = load_causal_lm(self.model_name)
            start = tokenizer.get_vocab().get(_START)
            if start is None:  # another model: its own start-of-text token
                start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
            self._loaded = (model, tokenizer, int(start))
        return self._loaded

    def tokens(self, text: str) -> list[int]:
        _, tokenizer, _ = self._model()
        ids: list[int] = tokenizer(text, add_special_tokens=False).input_ids
        return ids

    def score(self, text: str) -> TokenNLL:
        """The per-token NLLs of ``text`` (empty for an empty text)."""
        found = self._memo.get(text)
        if found is not None:
            return found
        import torch

        model, _, start = self._model()
        ids = self.tokens(text)
        step = self.window - 1
        nll: list[float] = []
        position: list[int] = []
        for at in range(0, len(ids), step):
            chunk = ids[at : at + step]
            inputs = torch.tensor([[start, *chunk]])
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
                logits = model(inputs).logits
            logp = torch.log_softmax(logits[0, :-1].float(), dim=-1)
            picked = -logp.gather(1, inputs[0, 1:].unsqueeze(1)).squeeze(1)
            nll += [float(x) for x in picked]
            position += list(range(len(chunk)))
        scored = TokenNLL(tuple(nll), tuple(position))
        self._memo[text] = scored
        return scored

    def mean_nll(self, text: str) -> float:
        """Mean per-token NLL of ``text`` (nats/token; NaN for an empty text)."""
        return self.score(text).mean


# ---------------------------------------------------------------------------------------------------- the run


@dataclass(frozen=True, slots=True)
class Scored:
    """One method's output for one item at one ratio: NLLs (NaN when empty) and whether the answer survived."""

    method: str
    ratio: float
    item: str
    tokens: int
    nll: float
    original: float
    matched: float
    retained: bool


@dataclass(frozen=True, slots=True)
class FluencyRow:
    """One method at one ratio: means over items with 95% intervals ``[low, high]``."""

    method: str
    ratio: float
    items: int
    empty: int
    retention: float
    nll: float
    nll_original: float
    ratio_to_original: tuple[float, float, float]
    difference: tuple[float, float, float]
    ratio_to_matched: tuple[float, float, float]
    excess_over_anchor: tuple[float, float, float] | None = None
    retention_gain: tuple[float, float, float] | None = None
    verdict: str = ""


def _verdict(excess: tuple[float, float, float], gain: tuple[float, float, float]) -> str:
    if not excess[0] >= MARKED or not excess[1] > 0:
        return "not markedly less fluent"
    if gain[1] > 0:
        return f"less fluent, retention gain {100 * gain[0]:+.1f} pts"
    return "less fluent without a retention gain"


def summarize(scored: Sequence[Scored]) -> list[FluencyRow]:
    """Rows per (method, ratio), with the paired comparison against :data:`ANCHOR` on the same items."""
    by_key: dict[tuple[str, float], list[Scored]] = {}
    for s in scored:
        by_key.setdefault((s.method, s.ratio), []).append(s)
    rows = []
    for (method, ratio), group in by_key.items():
        ok = [s for s in group if s.tokens > 0]
        rel = {s.item: s.nll / s.original for s in ok}
        anchor = {s.item: s for s in by_key.get((ANCHOR, ratio), []) if s.tokens > 0}
        excess = gain = None
        verdict = ""
        if method != ANCHOR and anchor:
            paired = [i for i in rel if i in anchor]
            excess = mean_interval([rel[i] - anchor[i].nll / anchor[i].original for i in paired])
            mine = {s.item: s.retained for s in group}
            theirs = {s.item: s.retained for s in by_key.get((ANCHOR, ratio), [])}
            mean, low, high = mean_interval([float(mine[i]) - float(theirs[i]) for i in mine if i in theirs])
            gain = (mean, max(-1.0, low), min(1.0, high))
            verdict = _verdict(excess, gain)
        rows.append(
            FluencyRow(
                method=method,
                ratio=ratio,
                items=len(group),
                empty=len(group) - len(ok),
                retention=sum(s.retained for s in group) / len(group),
                nll=mean_interval([s.nll for s in ok])[0],
                nll_original=mean_interval([s.original for s in ok])[0],
                ratio_to_original=mean_interval(list(rel.values())),
                difference=mean_interval([s.nll - s.original for s in ok]),
                ratio_to_matched=mean_interval([s.nll / s.matched for s in ok]),
                excess_over_anchor=excess,
                retention_gain=gain,
                verdict=verdict,
            )
        )
    order = {m: i for i, m in enumerate(METHODS)}
    return sorted(rows, key=lambda r: (r.ratio, order.get(r.method, len(order)), r.method))


@dataclass(slots=True)
class FluencyConfig:
    suites: tuple[str, ...] = ("gsm8k-qa", "squad-qa")
    methods: tuple[str, ...] = METHODS
    n: int = 80
    articles: int = 10
    seed: int = 0
    window: int = 1024
    bf16: bool = True
    threads: int = 1
    out: Path = Path("evals/results")
    progress: bool = True
    command: str = "python -P -m promptzip.evals.fluency"


def _suite_outputs(suite_name: str, config: FluencyConfig, scorer: NLLScorer) -> dict[str, Any]:
    from tqdm import tqdm

    from promptzip._tokenizers import get_tokenizer
    from promptzip.evals.data import DataError
    from promptzip.evals.methods import TOKENIZER, create_method
    from promptzip.evals.run import FULL_SIZES, downstream_items
    from promptzip.evals.runner import budget_for
    from promptzip.evals.suites import build_suite

    suite = build_suite(suite_name, FULL_SIZES[suite_name], seed=config.seed)
    if suite.kind != "qa":
        raise DataError(f"{suite_name} has no answers to retain (a {suite.kind} suite)")
    items = downstream_items(suite.items, config.n, config.articles)
    tok = get_tokenizer(TOKENIZER)
    budgets = {i.id: {r: budget_for(tok.count(i.context), r) for r in suite.ratios} for i in items}
    outputs: list[tuple[str, float, Any, str]] = []
    started = time.perf_counter()
    for name in config.methods:
        method = create_method(name, seed=config.seed)
        try:
            if not method.applies_to(suite.regime, suite.kind):
                continue
            method.prepare()
            for item in tqdm(items, desc=f"{suite_name} · {name}", disable=not config.progress, file=sys.stderr):
                for ratio in suite.ratios:
                    outputs.append((name, ratio, item, method.compress(item, budgets[item.id][ratio]).text))
        finally:
            method.close()
    compress_s = time.perf_counter() - started
    started = time.perf_counter()
    scored: list[Scored] = []
    for name, ratio, item, text in tqdm(outputs, desc=f"{suite_name} · NLL", disable=not config.progress):
        original = scorer.score(item.context)
        mine = scorer.score(text)
        length = min(len(mine.nll), config.window - 1)
        retained = any(answer_retained(text, t.answers) for t in item.targets)
        scored.append(
            Scored(name, ratio, item.id, len(mine.nll), mine.mean, original.mean, original.mean_below(length), retained)
        )
    return {
        "suite": suite_name,
        "description": suite.description,
        "items": len(items),
        "articles": len({i.group for i in items}),
        "original_nll_mean": mean_interval([scorer.mean_nll(c) for c in {i.context for i in items}])[0],
        "compress_s": round(compress_s, 1),
        "score_s": round(time.perf_counter() - started, 1),
        "rows": [asdict(r) for r in summarize(scored)],
    }


def run_fluency(config: FluencyConfig) -> dict[str, Any]:
    """Score every method's outputs on every available suite; write ``fluency.json`` and ``fluency.md``."""
    import torch

    from promptzip.evals.data import DataError

    threads = torch.get_num_threads()
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    scorer = NLLScorer(window=config.window, bf16=config.bf16)
    suites: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    try:
        for name in config.suites:
            try:
                suites[name] = _suite_outputs(name, config, scorer)
            except DataError as exc:  # a withdrawn or unfetched data set: said in the results, never dropped
                skipped[name] = str(exc)
    finally:
        torch.set_num_threads(threads)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    results = {
        "meta": {
            "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "command": config.command,
            "machine": f"{platform.machine()} CPU, {cpus} cores, Python {platform.python_version()}",
            "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "wall_s": round(time.perf_counter() - started, 1),
            "model": scorer.model_name,
            "window": config.window,
            "dtype": "bfloat16 autocast" if config.bf16 else "float32",
            "torch_threads": config.threads,
            "n": config.n,
            "articles": config.articles,
            "seed": config.seed,
            "anchor": ANCHOR,
            "marked": MARKED,
            "skipped": skipped,
        },
        "suites": suites,
    }
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / "fluency.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    (config.out / "fluency.md").write_text(markdown(results), encoding="utf-8")
    return results


def _ci(values: Sequence[float] | None, scale: float = 1.0, fmt: str = ".3f") -> str:
    if values is None:
        return "–"
    mean, low, high = (scale * v for v in values)
    return f"{mean:{fmt}} [{low:{fmt}}, {high:{fmt}}]"


def markdown(results: dict[str, Any]) -> str:
    """``fluency.md``: how it was measured, then one table per suite."""
    meta = results["meta"]
    before, after = meta["load_average_before_after"]
    out = [
        "# Fluency of compressed text",
        "",
        f"Generated {meta['generated']} by `{meta['command']}` on {meta['machine']}; load average (1 min) before / "
        f"after: {before} / {after}; {meta['wall_s']:.0f} s in all, {meta['torch_threads']} torch thread(s).",
        "",
        f"Mean per-token NLL (nats) under the packaged SmolLM2-135M ({meta['dtype']}), each text in consecutive "
        f"windows of {meta['window']} tokens opened by `<|endoftext|>`. The outputs are the retention run's: the "
        f"same methods, suite sample (seed {meta['seed']}) and budgets `floor(o200k tokens / ratio)`; retention is "
        "measured "
        "on these outputs. Per item, the output's NLL is divided by (and subtracted from) the NLL of the original "
        "context it came from; *length-matched* divides by the original's NLL over tokens with no more context than "
        "the output had. Means over items, 95% normal intervals (items of one article are not independent: "
        f"optimistic). Against `{meta['anchor']}` at the same ratio, paired per item: the excess of the NLL ratio "
        "and the retention gain. Verdict (the issue's rule): *less fluent* when the excess is at least "
        f"{meta['marked']:.2f} with its interval above 0; then a retention gain counts when its interval is above 0.",
        "",
    ]
    for name, reason in meta.get("skipped", {}).items():
        out += [f"- `{name}` skipped: {reason}", ""]
    for name, suite in results["suites"].items():
        out += [
            f"## {name}: {suite['description']}",
            "",
            f"n = {suite['items']} questions from {suite['articles']} articles; the originals' mean NLL is "
            f"{suite['original_nll_mean']:.3f} nats/token. Compression {suite['compress_s']:.0f} s, scoring "
            f"{suite['score_s']:.0f} s.",
            "",
            "| method | ratio | n | retention % | NLL | NLL / original [95% CI] | NLL − original | NLL / length-"
            f"matched | Δ NLL ratio vs {meta['anchor']} [95% CI] | Δ retention vs {meta['anchor']}, pts [95% CI] "
            "| verdict |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in suite["rows"]:
            empty = f" ({r['empty']} empty)" if r["empty"] else ""
            out.append(
                f"| {r['method']} | {r['ratio']:g}x | {r['items']}{empty} | {100 * r['retention']:.1f} | "
                f"{r['nll']:.3f} | {_ci(r['ratio_to_original'])} | {r['difference'][0]:+.3f} | "
                f"{r['ratio_to_matched'][0]:.3f} | {_ci(r['excess_over_anchor'])} | "
                f"{_ci(r['retention_gain'], 100, '+.1f')} | {r['verdict'] or '–'} |"
            )
        out.append("")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -P -m promptzip.evals.fluency", description=__doc__.split("\n")[0])
    parser.add_argument("--suites", default="gsm8k-qa,squad-qa", help="comma-separated (a suite without data skips)")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--n", type=int, default=80, help="items (questions) per suite")
    parser.add_argument("--articles", type=int, default=10, help="distinct articles those items come from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--window", type=int, default=1024, help="scoring window, in SmolLM2 tokens")
    parser.add_argument("--float32", action="store_true", help="no bfloat16 autocast")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--out", type=Path, default=Path("evals/results"))
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    given = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    config = FluencyConfig(
        suites=tuple(s for s in args.suites.split(",") if s),
        methods=tuple(m for m in args.methods.split(",") if m),
        n=args.n,
        articles=args.articles,
        seed=args.seed,
        window=args.window,
        bf16=not args.float32,
        threads=args.threads,
        out=args.out,
        progress=not args.no_progress,
        command=" ".join(["python -P -m promptzip.evals.fluency", *given]),
    )
    results = run_fluency(config)
    sys.stderr.write(f"wrote {args.out}/fluency.json, fluency.md ({len(results['suites'])} suites)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
