"""Soft-prompt bench: does the soft context help the decoder, and what does it save in time-to-first-token?

    python -P -m promptzip.evals.soft_bench [--n 200] [--projector FOLDER]   # → evals/results/soft.{json,md}

On ``--n`` SQuAD v1.1 dev questions (never seen in training: the projector trains on SQuAD-shifts), the frozen
decoder's mean negative log-likelihood per token of the gold answer, after the same QA template
(``Context: … / Question: … / Answer:``) with as context:

* ``none`` — nothing (the template only);
* ``soft`` — the gold paragraph's soft vectors (:class:`~promptzip.compressors.soft.SoftEncoder`);
* ``soft_other`` — the soft vectors of a random paragraph of another article: a control that separates what the
  paragraph's content adds from what the mere presence of trained vectors (a format prior) adds;
* ``extractive`` — the paragraph's sentences ranked by content words shared with the question, cut to as many
  decoder tokens as the soft prompt has vectors (the same prompt cost);
* ``full`` — the whole paragraph as text.

The soft-vs-none, soft-vs-control and soft-vs-extractive differences carry paired bootstrap 95% intervals. Then
time-to-first-token (one forward pass up to the first generated token) of full text vs soft context, at 1, 2 and
4 paragraphs, median of ``--repeats``; the soft time counts the encoder run (uncached) and, separately, the decoder
alone (a cached soft prompt).
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

__all__ = ["bootstrap_ci", "extractive_context", "main", "run"]

CONDITIONS = ("none", "soft", "soft_other", "extractive", "full")


def bootstrap_ci(diffs: Sequence[float], *, resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of paired differences and its 95% percentile-bootstrap interval."""
    values = np.asarray(diffs, dtype=np.float64)
    if not len(values):
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(1)
    return float(values.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def extractive_context(paragraph: str, question: str, tokens: int, tokenizer: Any) -> str:
    """The paragraph's sentences by content words shared with the question, cut to ``tokens`` decoder tokens."""
    from promptzip.evals.metrics import content_words

    wanted = set(content_words(question))
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", paragraph) if s.strip()]
    ranked = sorted(range(len(sentences)), key=lambda i: (-len(wanted & set(content_words(sentences[i]))), i))
    text = " ".join(sentences[i] for i in ranked)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][: max(0, tokens)]
    return str(tokenizer.decode(ids)).strip()


def _items(n: int, seed: int) -> list[tuple[str, str, str, str]]:
    """``(paragraph, question, answer, other article's paragraph)`` for ``n`` dev questions."""
    from promptzip.evals import data

    articles = data.load_squad_dev()
    rng = np.random.default_rng(seed)
    out = []
    for article, q in data.sample_questions(articles, n, seed=seed):
        others = [a for a in articles if a.title != article.title]
        other = others[int(rng.integers(len(others)))]
        out.append(
            (
                article.gold_paragraph(q).text,
                q.question,
                q.answers[0],
                other.paragraphs[int(rng.integers(len(other.paragraphs)))].text,
            )
        )
    return out


def _nll_rows(
    enc: Any, decoder: Any, tokenizer: Any, items: Sequence[tuple[str, str, str, str]], err: TextIO
) -> list[dict[str, Any]]:
    import torch
    from tqdm import tqdm

    from promptzip.compressors.soft_decoder import CONTEXT_PREFIX, inputs_embeds, qa_suffix
    from promptzip.training.soft import target_nll

    rows = []
    for paragraph, question, answer, other in tqdm(items, desc="answer NLL", file=err):
        after = qa_suffix(question)
        soft = enc.encode(paragraph)
        extract = extractive_context(paragraph, question, soft.n_vectors, tokenizer)
        prefixes = {
            "none": inputs_embeds(None, decoder, tokenizer, after=after)[0][0],
            "soft": inputs_embeds(soft, decoder, tokenizer, after=after)[0][0],
            "soft_other": inputs_embeds(enc.encode(other), decoder, tokenizer, after=after)[0][0],
            "extractive": inputs_embeds(None, decoder, tokenizer, before=f"{CONTEXT_PREFIX} {extract}", after=after)[0][
                0
            ],
            "full": inputs_embeds(None, decoder, tokenizer, before=f"{CONTEXT_PREFIX} {paragraph}", after=after)[0][0],
        }
        target = tokenizer(" " + answer, add_special_tokens=False)["input_ids"][:32]
        short = [c for c in prefixes if c != "full"]  # similar lengths in one padded batch, the long one alone
        with torch.no_grad():
            values = target_nll(decoder, [prefixes[c] for c in short], [target] * len(short)).tolist()
            values += target_nll(decoder, [prefixes["full"]], [target]).tolist()
        nll = [dict(zip([*short, "full"], values, strict=True))[c] for c in prefixes]
        rows.append(
            {
                **dict(zip(prefixes, (round(v, 5) for v in nll), strict=True)),
                "soft_vectors": soft.n_vectors,
                "full_tokens": len(prefixes["full"]),
                "answer_tokens": len(target),
            }
        )
    return rows


def _ttft(enc: Any, decoder: Any, tokenizer: Any, repeats: int) -> list[dict[str, Any]]:
    """Time to the first token of full text vs soft context at 1, 2 and 4 paragraphs of one dev article."""
    import torch

    from promptzip._cache import NullCache
    from promptzip.compressors.soft import SoftEncoder
    from promptzip.compressors.soft_decoder import CONTEXT_PREFIX, inputs_embeds, qa_suffix
    from promptzip.evals import data

    article = next(a for a in data.load_squad_dev() if len(a.paragraphs) >= 4)
    after = qa_suffix(article.questions[0].question)
    fresh = SoftEncoder(enc.config, enc.projector_path, cache=NullCache())

    def first_token(embeds: Any, mask: Any) -> int:
        with torch.inference_mode():
            logits = decoder(inputs_embeds=embeds, attention_mask=mask, logits_to_keep=1).logits
        return int(logits[0, -1].argmax())

    out = []
    for k in (1, 2, 4):
        text = "\n\n".join(p.text for p in article.paragraphs[:k])
        timings: dict[str, list[float]] = {"full": [], "soft": [], "soft_cached": []}
        for _ in range(repeats + 1):  # the first round warms up
            t0 = time.perf_counter()
            first_token(*inputs_embeds(None, decoder, tokenizer, before=f"{CONTEXT_PREFIX} {text}", after=after))
            t1 = time.perf_counter()
            soft = fresh.encode(text)
            t2 = time.perf_counter()
            first_token(*inputs_embeds(soft, decoder, tokenizer, after=after))
            t3 = time.perf_counter()
            timings["full"].append(t1 - t0)
            timings["soft"].append(t3 - t1)
            timings["soft_cached"].append(t3 - t2)
        full_len = inputs_embeds(None, decoder, tokenizer, before=f"{CONTEXT_PREFIX} {text}", after=after)[0].shape[1]
        soft_len = inputs_embeds(soft, decoder, tokenizer, after=after)[0].shape[1]
        out.append(
            {
                "paragraphs": k,
                "full_prompt_tokens": int(full_len),
                "soft_prompt_positions": int(soft_len),
                **{f"{name}_ms": round(1000 * statistics.median(v[1:]), 1) for name, v in timings.items()},
            }
        )
    return out


def run(
    *, n: int = 200, seed: int = 0, repeats: int = 3, projector: Path | None = None, err: TextIO = sys.stderr
) -> dict[str, Any]:
    """Run both parts and return the report (see the module docstring)."""
    import torch

    from promptzip._cache import MemoryCache
    from promptzip._causal_lm import load_causal_lm
    from promptzip.compressors.soft import SoftEncoder

    started = time.perf_counter()
    enc = SoftEncoder.from_pretrained(projector, cache=MemoryCache())
    decoder, tokenizer = load_causal_lm(enc.config.decoder)
    rows = _nll_rows(enc, decoder, tokenizer, _items(n, seed), err)
    means = {c: round(float(np.mean([r[c] for r in rows])), 4) for c in CONDITIONS}
    paired = {}
    for name, (a, b) in {
        "soft - none": ("soft", "none"),
        "soft - soft_other": ("soft", "soft_other"),
        "soft - extractive": ("soft", "extractive"),
        "full - none": ("full", "none"),
    }.items():
        mean, lo, hi = bootstrap_ci([r[a] - r[b] for r in rows], seed=seed)
        paired[name] = {"mean": round(mean, 4), "ci95": [round(lo, 4), round(hi, 4)]}
    return {
        "task": "SQuAD v1.1 dev, gold paragraph; mean NLL per gold-answer token (lower is better)",
        "n": len(rows),
        "seed": seed,
        "projector": str(enc.projector_path),
        "fingerprint": enc.fingerprint,
        "mean_nll": means,
        "paired": paired,
        "mean_soft_vectors": round(float(np.mean([r["soft_vectors"] for r in rows])), 1),
        "mean_full_tokens": round(float(np.mean([r["full_tokens"] for r in rows])), 1),
        "ttft": _ttft(enc, decoder, tokenizer, repeats),
        "machine": {"threads": torch.get_num_threads(), "torch": torch.__version__, "cpu": platform.machine()},
        "seconds": round(time.perf_counter() - started, 1),
        "rows": rows,
    }


def ttft_only(projector: Path | None, repeats: int) -> list[dict[str, Any]]:
    """Only the time-to-first-token part (e.g. again with one thread on a busy machine)."""
    import torch

    from promptzip._cache import MemoryCache
    from promptzip._causal_lm import load_causal_lm
    from promptzip.compressors.soft import SoftEncoder

    enc = SoftEncoder.from_pretrained(projector, cache=MemoryCache())
    decoder, tokenizer = load_causal_lm(enc.config.decoder)
    rows = _ttft(enc, decoder, tokenizer, repeats)
    return [{**r, "threads": torch.get_num_threads()} for r in rows]


def markdown(report: dict[str, Any], command: str) -> str:
    lines = [
        "# Soft prompts: answer NLL and time-to-first-token",
        "",
        f"`{command}` — {report['task']}; n = {report['n']}, decoder frozen, "
        f"{report['mean_soft_vectors']} soft vectors vs {report['mean_full_tokens']} full-text prompt positions.",
        "",
        "| context | mean NLL / answer token |",
        "|---|---|",
        *(f"| {c} | {v:.3f} |" for c, v in report["mean_nll"].items()),
        "",
        "| paired difference | mean | 95% bootstrap CI |",
        "|---|---|---|",
        *(
            f"| {k} | {v['mean']:+.3f} | [{v['ci95'][0]:+.3f}, {v['ci95'][1]:+.3f}] |"
            for k, v in report["paired"].items()
        ),
        "",
        "| paragraphs | full-text tokens | soft positions | TTFT full (ms) | TTFT soft incl. encoder (ms) | "
        "TTFT soft cached (ms) |",
        "|---|---|---|---|---|---|",
        *(
            f"| {t['paragraphs']} | {t['full_prompt_tokens']} | {t['soft_prompt_positions']} | {t['full_ms']} | "
            f"{t['soft_ms']} | {t['soft_cached_ms']} |"
            for t in report["ttft"]
        ),
        "",
        f"Machine: {report['machine']}; {report['seconds']} s in all."
        + (f" Timings: `{report['ttft_command']}`." if "ttft_command" in report else ""),
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m promptzip.evals.soft_bench", description=__doc__)
    parser.add_argument("--n", type=int, default=200, help="dev questions")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats per length")
    parser.add_argument("--projector", type=Path, default=None, help="projector folder (default: the packaged one)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("evals/results"))
    parser.add_argument(
        "--ttft-only", action="store_true", help="re-measure only the timings, into the existing soft.json"
    )
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    command = "python -P -m promptzip.evals.soft_bench " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.ttft_only:
        report = json.loads((args.out / "soft.json").read_text(encoding="utf-8"))
        report["ttft"] = ttft_only(args.projector, args.repeats)
        report["ttft_command"] = command.strip()
        command = report.get("command", command)
    else:
        report = run(n=args.n, seed=args.seed, repeats=args.repeats, projector=args.projector)
        report["command"] = command.strip()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soft.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (args.out / "soft.md").write_text(markdown(report, command.strip()), encoding="utf-8")
    sys.stdout.write(markdown(report, command.strip()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
