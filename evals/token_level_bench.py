"""Token-level figures: answer retention and speed of task-agnostic word pruning on SQuAD v1.1 dev.

``python -P -m promptzip.evals.token_level_bench`` writes ``evals/results/token_level.json`` and
``token_level.md``.

1. **Retention.** ``--articles`` (4) SQuAD v1.1 dev articles drawn with a seed, ``--per-article`` (50) seeded
   questions from each (≥ 200 in all); each article, whole (~7–8k tokens), is the context. Task-agnostic: the
   question is never shown to the compressor. Every method scores each article once (token scores are
   query-agnostic) and prunes it at rate 0.5 and 0.33 (the kept fraction of o200k tokens, exact); a question
   counts as retained when a gold answer string survives in the pruned text (SQuAD normalization, the same test
   as :func:`promptzip.evals.metrics.answer_retained`). Methods: our distilled classifier (``minilm-tc``), its
   teacher (SmolLM2-135M self-information), random pruning at the same rate (mean of 3 seeds), and the
   word-length heuristic. 95% Wilson intervals. The force-keep rules (numbers, IDs, ...) apply to every method
   alike, random included, so the gaps between methods are the scorers' own.
2. **Speed.** Input o200k tokens per second of scoring (cold: an empty cache, models loaded beforehand), per
   method, on this machine (CPU count and load average recorded); and a paired measurement (``--speed-rounds``):
   the classifier and the teacher alternate on the same article, so a shared machine's changing load hits both
   alike, and the speed ratio is the median of the per-round ratios.
3. **Profile.** ``--profile-tokens`` (50,000) tokens of concatenated dev articles scored by the distilled
   classifier under cProfile: the share of time spent inside the model's forward pass versus everything else
   (tokenization, windowing, word grouping, pruning).

``llmlingua`` in the same table (``--methods ... llmlingua2-path llmlingua``; they need ``.venv-baselines``, see
``scripts/baselines_venv.sh``): ``llmlingua2-path`` is llmlingua's LLMLingua-2 ``compress_prompt`` on our distilled
classifier exported (:func:`~promptzip.compressors.token_classifier.export_distilled`) to a folder whose name
llmlingua accepts (``…bert-base-multilingual-cased…``; our student is a BERT), so the two rows differ only in the
runtime; ``llmlingua`` is LLMLingua-1 on the same SmolLM2 folder as the teacher. Same articles, questions, rates and
metric; their speed is the first rate's compress calls, and they join the paired speed rounds.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from promptzip.evals.metrics import RETENTION_METRIC, scored_with_current_metric

__all__ = ["main", "profile_classifier", "retention_of", "sample"]

RATES = (0.5, 0.33)


def sample(articles: int, per_article: int, seed: int = 0) -> list[tuple[Any, list[Any]]]:
    """``articles`` seeded SQuAD dev articles with ``per_article`` seeded questions each (answers in context)."""
    from promptzip.evals import data

    dev = data.load_squad_dev()
    rng = random.Random(seed)
    picked = rng.sample(range(len(dev)), articles)
    out: list[tuple[Any, list[Any]]] = []
    for a in picked:
        article = dev[a]
        questions = [q for q in article.questions if any(s >= 0 for s in q.answer_starts)]
        out.append((article, rng.sample(questions, min(per_article, len(questions)))))
    return out


def retention_of(
    compress: Callable[[str, float], str], items: Sequence[tuple[Any, list[Any]]], rates: Sequence[float] = RATES
) -> dict[str, Any]:
    """Retention of any ``compress(text, rate) -> text`` on the sampled items, per rate."""
    from promptzip._tokenizers import get_tokenizer
    from promptzip.evals.metrics import answer_retained, wilson_interval

    tok = get_tokenizer("o200k_base")
    out: dict[str, Any] = {}
    for rate in rates:
        hits = n = kept = total = 0
        for article, questions in items:
            text = compress(article.context, rate)
            kept += tok.count(text)
            total += tok.count(article.context)
            for q in questions:
                hits += answer_retained(text, q.answers)
                n += 1
        lo, hi = wilson_interval(hits, n)
        out[f"{rate:g}"] = {"retention": hits / n, "ci95": [lo, hi], "n": n, "achieved_rate": kept / total}
    return out


def _method(name: str) -> Any:
    from promptzip.compressors.self_information import SelfInformationScorer
    from promptzip.compressors.token_classifier import TokenClassifierScorer
    from promptzip.compressors.token_scores import RandomTokenScorer, WordLengthScorer

    factories: dict[str, Callable[[], Any]] = {
        "minilm-tc": TokenClassifierScorer,
        "minilm-tc-fp32": lambda: TokenClassifierScorer(int8=False),
        "self-information": SelfInformationScorer,
        "random": lambda: RandomTokenScorer(0),
        "word-length": WordLengthScorer,
    }
    return factories[name]()


def _evaluate(name: str, items: Sequence[tuple[Any, list[Any]]], log: Callable[[str], None]) -> dict[str, Any]:
    from promptzip._cache import MemoryCache
    from promptzip._tokenizers import get_tokenizer
    from promptzip.compressors.token_prune import TokenPruneCompressor
    from promptzip.compressors.token_scores import RandomTokenScorer

    tok = get_tokenizer("o200k_base")
    scorer = _method(name)
    pruner = TokenPruneCompressor(scorer, cache=MemoryCache(max_bytes=1 << 30))
    pruner.token_scores(["Models load once, before the clock starts."])  # load outside the timing
    texts = [a.context for a, _ in items]
    started = time.perf_counter()
    pruner.token_scores(texts)
    seconds = time.perf_counter() - started
    tokens = sum(tok.count(t) for t in texts)
    log(f"{name}: scored {tokens} tokens in {seconds:.1f} s ({tokens / seconds:.0f} tokens/s)")

    def compress(text: str, rate: float) -> str:
        return pruner.prune(text, rate=rate, tokenizer=tok).text

    row: dict[str, Any] = {"tokens": tokens, "seconds": round(seconds, 2), "tokens_per_s": tokens / seconds}
    row["rates"] = retention_of(compress, items)
    if name == "random":  # average over three seeds
        runs = [row["rates"]]
        for seed in (1, 2):
            other = TokenPruneCompressor(RandomTokenScorer(seed), cache=MemoryCache(max_bytes=1 << 30))
            runs.append(retention_of(lambda t, r, p=other: p.prune(t, rate=r, tokenizer=tok).text, items))  # type: ignore[misc]
        for rate in row["rates"]:
            seeds = [r[rate]["retention"] for r in runs]
            row["rates"][rate]["seeds"] = seeds
            row["rates"][rate]["retention"] = sum(seeds) / len(seeds)  # the interval stays seed 0's
    return row


# llmlingua's own paths, driven in .venv-baselines through the baselines worker (see promptzip.evals.baselines):
# "llmlingua2-path" is LLMLingua-2's compress_prompt on *our* distilled classifier exported to a folder whose name
# llmlingua accepts (same weights, float32: the speed gap is the runtime's), "llmlingua" is LLMLingua-1 on SmolLM2.
LLMLINGUA_METHODS = {"llmlingua2-path": "llmlingua2", "llmlingua": "llmlingua"}


class _LLMLinguaPath:
    """``compress(text, rate)`` through the baselines worker; ``seconds``/``tokens`` add up the first rate's calls
    (the ones that pay for the model passes)."""

    def __init__(self, name: str, worker: Any) -> None:
        self.method = LLMLINGUA_METHODS[name]
        from promptzip.compressors.token_classifier import exported_classifier

        self.model = str(exported_classifier()) if self.method == "llmlingua2" else None
        self.worker = worker
        self.seconds = 0.0
        self.tokens = 0
        worker.ask({"op": "load", "method": self.method, "model": self.model})
        self.compress("Models load once, before the clock starts. " * 20, RATES[0], timed=False)

    def compress(self, text: str, rate: float, *, timed: bool = True) -> str:
        from promptzip._tokenizers import get_tokenizer

        n = get_tokenizer("o200k_base").count(text)
        request = {"op": "compress", "method": self.method, "model": self.model, "contexts": [text]}
        answer = self.worker.ask({**request, "question": None, "budget": max(1, round(rate * n))})
        if timed and rate == RATES[0]:
            self.seconds += float(answer["seconds"])
            self.tokens += n
        return str(answer["text"])


def _evaluate_llmlingua(name: str, items: Sequence[tuple[Any, list[Any]]], worker: Any) -> dict[str, Any]:
    path = _LLMLinguaPath(name, worker)
    rates = retention_of(path.compress, items)
    return {
        "tokens": path.tokens,
        "seconds": round(path.seconds, 2),
        "tokens_per_s": path.tokens / path.seconds if path.seconds else None,
        "rates": rates,
        "environment": worker.versions,
    }


def paired_speed(
    items: Sequence[tuple[Any, list[Any]]], methods: Sequence[str], rounds: int, worker: Any = None
) -> dict[str, Any]:
    """Tokens/s of each model-based method on the same article, alternating methods round by round so that a
    changing machine load hits all of them alike; the ratio to the first method is taken per round."""
    from promptzip._cache import NullCache
    from promptzip._tokenizers import get_tokenizer
    from promptzip.compressors.token_scores import cached_token_scores

    tok = get_tokenizer("o200k_base")
    text = items[0][0].context
    tokens = tok.count(text)
    runs: dict[str, Callable[[], Any]] = {}
    for name in methods:
        if name in LLMLINGUA_METHODS:
            path = _LLMLinguaPath(name, worker)
            runs[name] = lambda p=path: p.compress(text, RATES[0], timed=False)  # type: ignore[misc]
        else:
            scorer = _method(name)
            cached_token_scores(scorer, ["warm up"], NullCache())
            runs[name] = lambda sc=scorer: cached_token_scores(sc, [text], NullCache())  # type: ignore[misc]
    for run in runs.values():
        run()  # warm-up: lazy loads, first-call allocations
    rows: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(rounds):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            rows[name].append(tokens / (time.perf_counter() - started))
    first = methods[0]
    out: dict[str, Any] = {"tokens": tokens, "rounds": rounds, "tokens_per_s": {}, "ratio_to_" + first: {}}
    for name, speeds in rows.items():
        out["tokens_per_s"][name] = sorted(speeds)[len(speeds) // 2]
        ratios = sorted(a / b for a, b in zip(rows[first], speeds, strict=True))
        out["ratio_to_" + first][name] = ratios[len(ratios) // 2]
    return out


def profile_classifier(tokens: int = 50_000) -> dict[str, Any]:
    """Score ~``tokens`` o200k tokens of concatenated dev articles with the distilled classifier under cProfile."""
    from promptzip._cache import MemoryCache
    from promptzip._tokenizers import get_tokenizer
    from promptzip.compressors.token_classifier import TokenClassifierScorer
    from promptzip.compressors.token_prune import TokenPruneCompressor
    from promptzip.evals import data

    tok = get_tokenizer("o200k_base")
    parts: list[str] = []
    used = 0
    for article in data.load_squad_dev():
        parts.append(article.context)
        used += tok.count(article.context)
        if used >= tokens:
            break
    text = "\n\n".join(parts)
    pruner = TokenPruneCompressor(TokenClassifierScorer(), cache=MemoryCache(max_bytes=1 << 30))
    pruner.token_scores(["warm up"])
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    result = pruner.prune(text, rate=0.33, tokenizer=tok)
    profiler.disable()
    total = time.perf_counter() - started
    table: dict[tuple[str, int, str], tuple[Any, ...]] = getattr(pstats.Stats(profiler), "stats", {})
    # the outermost forward of the token-classification model (the modules inside it are counted in it)
    outer = max((v[3] for k, v in table.items() if k[2] == "forward" and "modeling_bert" in k[0]), default=0.0)
    top = sorted(table.items(), key=lambda kv: -kv[1][3])[:12]
    return {
        "input_tokens": tok.count(text),
        "seconds": round(total, 2),
        "model_forward_seconds": round(outer, 2),
        "forward_share": round(outer / total, 3) if total else None,
        "kept_tokens": result.tokens,
        "top_cumulative": [
            {"function": f"{k[0].rsplit('/', 1)[-1]}:{k[2]}", "seconds": round(v[3], 2)} for k, v in top
        ],
    }


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Token-level pruning on SQuAD v1.1 dev (task-agnostic)",
        "",
        f"{report['questions']} questions from {report['articles']} whole articles"
        f" (~{report['mean_article_tokens']:.0f} o200k tokens each); a question is retained when a gold answer"
        f" survives the pruning (retention metric v{report.get('retention_metric', 1)}, see"
        " `promptzip.evals.metrics.RETENTION_METRIC`).",
        f"Machine: {report['machine']['cpus']} CPUs, load average {report['machine']['load']}, torch threads"
        f" {report['machine']['torch_threads']}.",
        "",
        "| method | retention @0.5 | retention @0.33 | achieved rate @0.5 / @0.33 | tokens/s |",
        "|---|---|---|---|---|",
    ]
    for name, row in report["methods"].items():
        r5, r3 = row["rates"]["0.5"], row["rates"]["0.33"]
        lines.append(
            f"| {name} | {100 * r5['retention']:.1f}% [{100 * r5['ci95'][0]:.0f}, {100 * r5['ci95'][1]:.0f}]"
            f" | {100 * r3['retention']:.1f}% [{100 * r3['ci95'][0]:.0f}, {100 * r3['ci95'][1]:.0f}]"
            f" | {r5['achieved_rate']:.2f} / {r3['achieved_rate']:.2f} | {row['tokens_per_s'] or 0:.0f} |"
        )
    if "paired_speed" in report:
        ps = report["paired_speed"]
        speeds = ", ".join(f"{k} {v:.0f}" for k, v in ps["tokens_per_s"].items())
        ratios = ", ".join(f"{v:.1f}x {k}" for k, v in ps.get("ratio_to_minilm-tc", {}).items() if k != "minilm-tc")
        lines += [
            "",
            f"Paired speed ({ps['rounds']} alternating rounds on one {ps['tokens']}-token article, medians):"
            f" {speeds} tokens/s; the distilled classifier (int8) runs {ratios}.",
        ]
    if "profile" in report:
        p = report["profile"]
        lines += [
            "",
            f"Profile: {p['input_tokens']} tokens scored and pruned by the distilled classifier in {p['seconds']} s;"
            f" {100 * (p['forward_share'] or 0):.0f}% of it inside the model's forward pass.",
        ]
    lines += [
        "",
        "`minilm-tc` is the distilled classifier as promptzip runs it (int8 linear layers on the CPU);"
        " `minilm-tc-fp32` the same weights in float32; `llmlingua2-path` the same weights through llmlingua 0.2.2's"
        " LLMLingua-2 `compress_prompt` (float32, its own windowing and post-processing; it lowercases an uncased"
        " model's output); `llmlingua` is LLMLingua-1 on SmolLM2-135M. The llmlingua rows run in `.venv-baselines`"
        " (transformers 4.46.3) and budget in their own tokenizer; achieved rates are measured in o200k.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m promptzip.evals.token_level_bench", description=__doc__)
    parser.add_argument("--articles", type=int, default=4)
    parser.add_argument("--per-article", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--methods",
        nargs="*",
        default=["minilm-tc", "minilm-tc-fp32", "self-information", "random", "word-length"],
        help=f"also: {', '.join(LLMLINGUA_METHODS)} (need .venv-baselines: scripts/baselines_venv.sh)",
    )
    parser.add_argument("--profile-tokens", type=int, default=50_000, help="0: no profile")
    parser.add_argument("--speed-rounds", type=int, default=3, help="paired speed rounds on one article (0: none)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument(
        "--merge", action="store_true", help="keep the other methods' rows of an existing report of the same sample"
    )
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    def log(message: str) -> None:
        print(message, flush=True)

    items = sample(args.articles, args.per_article, args.seed)
    from promptzip._tokenizers import get_tokenizer

    tok = get_tokenizer("o200k_base")
    report: dict[str, Any] = {
        "articles": len(items),
        "article_titles": [a.title for a, _ in items],
        "questions": sum(len(q) for _, q in items),
        "mean_article_tokens": sum(tok.count(a.context) for a, _ in items) / len(items),
        "seed": args.seed,
        "machine": {
            "cpus": os.cpu_count(),
            "load": [round(x, 1) for x in os.getloadavg()],
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
        },
        "retention_metric": RETENTION_METRIC,
        "methods": {},
    }
    previous = args.out / "token_level.json"
    if args.merge and previous.is_file():
        old = json.loads(previous.read_text(encoding="utf-8"))
        same_sample = all(old.get(k) == report[k] for k in ("article_titles", "questions"))
        if same_sample and scored_with_current_metric(old):
            report["methods"] = old.get("methods", {})
            report.update({k: old[k] for k in ("profile", "paired_speed") if k in old})
    worker = None
    if any(m in LLMLINGUA_METHODS for m in args.methods):
        from promptzip.evals.baselines import BaselineWorker

        worker = BaselineWorker(threads=torch.get_num_threads())
    try:
        for name in args.methods:
            if name in LLMLINGUA_METHODS:
                report["methods"][name] = _evaluate_llmlingua(name, items, worker)
            else:
                report["methods"][name] = _evaluate(name, items, log)
            log(json.dumps({name: report["methods"][name]["rates"]}))
        speed_methods = [
            m for m in ("minilm-tc", "minilm-tc-fp32", "llmlingua2-path", "self-information") if m in args.methods
        ]
        if args.speed_rounds and len(speed_methods) >= 2 and speed_methods[0] == "minilm-tc":
            report["paired_speed"] = paired_speed(items, speed_methods, args.speed_rounds, worker)
            log(json.dumps(report["paired_speed"]))
    finally:
        if worker is not None:
            worker.close()
    if args.profile_tokens:
        report["profile"] = profile_classifier(args.profile_tokens)
        log(json.dumps(report["profile"]))
    report["machine"]["load_after"] = [round(x, 1) for x in os.getloadavg()]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "token_level.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (args.out / "token_level.md").write_text(_markdown(report), encoding="utf-8")
    print(_markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
