"""Tuning on training text: answer retention of a preset (with option overrides) on SQuAD-shifts questions.

The reported eval set (SQuAD v1.1 dev) is never touched here; settings are chosen on a SQuAD-shifts domain
(``new_wiki`` by default: Wikipedia like SQuAD, but other articles) and then reported once by ``promptzip eval``.
Each article over ``--min-chars`` is a whole context; ``--n`` questions are drawn with ``--seed``
(:func:`~promptzip.evals.data.sample_questions`); the budget at ratio r is ``tokens // r`` plus the question's tokens.

    python -P -m promptzip.evals.tune --n 200 --seed 1 --config base='{}' --config single09='{"clause_single": 0.9}'
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["main", "retention"]

RATIOS = (10, 20, 50)


def retention(
    options: Mapping[str, Any],
    *,
    preset: str = "fast",
    domain: str = "new_wiki",
    n: int = 200,
    seed: int = 1,
    min_chars: int = 12_000,
    ratios: Sequence[int] = RATIOS,
) -> dict[int, float]:
    """Share of sampled questions whose gold answer survives compression at each ratio (in %)."""
    import promptzip as pz
    from promptzip._tokenizers import get_tokenizer
    from promptzip.evals import data
    from promptzip.evals.metrics import answer_retained

    tok = get_tokenizer("o200k_base")
    articles = [a for a in data.load_squad_shift(domain, max_paragraphs=None) if len(a.context) > min_chars]
    items = data.sample_questions(articles, n, seed)
    zipper = pz.Zipper.from_preset(preset, target="o200k_base", cache="memory", **dict(options))
    hits = dict.fromkeys(ratios, 0)
    for article, question in items:
        tokens, asked = tok.count(article.context), tok.count(question.question)
        for ratio in ratios:
            result = zipper.compress(article.context, question=question.question, budget=tokens // ratio + asked + 1)
            hits[ratio] += answer_retained(result.text, question.answers)
    return {ratio: 100 * h / max(1, len(items)) for ratio, h in hits.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m promptzip.evals.tune", description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--domain", default="new_wiki")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--min-chars", type=int, default=12_000)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument(
        "--config", action="append", default=[], metavar="NAME=JSON", help="preset options to try (repeatable)"
    )
    args = parser.parse_args(argv)
    configs: dict[str, dict[str, Any]] = {}
    for spec in args.config or ["default={}"]:
        name, _, raw = spec.partition("=")
        try:
            configs[name] = json.loads(raw or "{}")
        except json.JSONDecodeError as exc:
            parser.error(f"--config {spec!r}: {exc}")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    for name, options in configs.items():
        started = time.perf_counter()
        got = retention(
            options, preset=args.preset, domain=args.domain, n=args.n, seed=args.seed, min_chars=args.min_chars
        )
        shown = "  ".join(f"{r}x {v:.1f}" for r, v in got.items())
        print(f"{name}: {shown}  ({time.perf_counter() - started:.0f} s, n={args.n}, seed={args.seed})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
