"""Retrieval figures: gold-paragraph recall on SQuAD v1.1 dev, and FAISS at 100k+ chunks.

``python -P -m promptzip.evals.retrieval_bench`` writes ``evals/results/retrieval.json`` and ``retrieval.md``.

1. **SQuAD v1.1 dev, whole articles.** Each of the 48 articles is its own corpus: its paragraphs (2,067 in all,
   ~43 per article) are the chunks, and each question (10,565; ``--sample N`` takes a seeded sample instead) is
   asked of its own article's corpus. Reported: recall@1/3/5 of the gold paragraph, with 95% Wilson intervals,
   for ``DenseRetriever`` (packaged all-MiniLM-L6-v2, flat FAISS), ``BM25Retriever`` (bm25s, k1=1.2, b=0.75),
   and ``HybridRetriever`` over the two (RRF k=60, and min-max interpolation with equal weights). Query
   embeddings are batch-encoded once with the retriever's own encoder (``DenseScorer.embed``, normalized, as
   ``retrieve`` does one at a time) and searched with ``DenseRetriever.search_vector``, so the dense and hybrid
   rankings are those of ``retrieve`` up to float rounding; this only saves ~10k single-query forward passes.
   The SQuAD dev articles are reported-on data: nothing here was tuned on them.
2. **FAISS at scale.** ``--faiss-n`` (100,000) synthetic unit vectors of dimension 384 (MiniLM's) stand in for
   encoded chunks, indexed through ``DenseRetriever.add_vectors`` (encoding 100k texts would take many minutes
   here and measure the encoder, not the index). Two distributions: *clustered* like real embeddings (1,000
   random unit centres, each point a centre plus isotropic Gaussian noise, cosine to its centre ~0.62) and
   *uniform* on the sphere (no structure: the hardest case for HNSW). Queries are 1,000 fresh points of the same
   distribution. For flat and HNSW (M=32, efConstruction=80), each built in a fresh process: build time
   (``add_vectors`` of all chunks, bookkeeping included), index bytes (serialized), process RSS growth (index
   plus chunk records), save/load time, single-query latency p50/p95 (``search_vector``, k=10), and recall@10
   against the exact top 10.

Figures are measurements of this machine (CPU count and load average are recorded), not assertions.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["faiss_scale", "main", "squad_recall"]

KS = (1, 3, 5)


def _rss_mb() -> float:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _machine() -> dict[str, Any]:
    import faiss

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "cpu": platform.processor() or platform.machine(),
        "cpus": cpus,
        "faiss_threads": faiss.omp_get_max_threads(),
        "load_average_1m": round(load[0], 2),
        "python": platform.python_version(),
        "faiss": faiss.__version__,
    }


# ------------------------------------------------------------------------------------------------- SQuAD


def squad_recall(sample: int | None = None, *, seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Gold-paragraph recall@1/3/5 per retriever over SQuAD v1.1 dev (all questions, or a seeded sample)."""
    from promptzip import Chunk
    from promptzip._roles import Retriever
    from promptzip.evals import data
    from promptzip.evals.metrics import wilson_interval
    from promptzip.retrievers.bm25 import BM25Retriever
    from promptzip.retrievers.faiss_index import DenseRetriever
    from promptzip.retrievers.fusion import HybridRetriever, chunk_id

    class _Precomputed(Retriever):
        """``dense.search_vector`` with the question's batch-encoded embedding (see the module docstring)."""

        name = "dense"

        def __init__(self, dense: DenseRetriever, vectors: dict[str, np.ndarray]) -> None:
            self.dense, self.vectors = dense, vectors

        def _retrieve(self, query: str, k: int) -> list[Chunk]:
            return self.dense.search_vector(self.vectors[query], k)

    articles = data.load_squad_dev()
    pairs = [(a, q) for a in articles for q in a.questions]
    if sample is not None and sample < len(pairs):
        chosen = set(random.Random(seed).sample(range(len(pairs)), sample))
        pairs = [p for i, p in enumerate(pairs) if i in chosen]
    by_article: dict[str, list[Any]] = {}
    for article, question in pairs:
        by_article.setdefault(article.title, []).append(question)

    names = ("dense", "bm25", "hybrid_rrf", "hybrid_interpolate")
    hits = {name: dict.fromkeys(KS, 0) for name in names}
    timings = {"index_dense_s": 0.0, "index_bm25_s": 0.0, "encode_questions_s": 0.0}
    query_s = dict.fromkeys(names, 0.0)
    n = 0
    started = time.perf_counter()
    for index, article in enumerate(articles):
        questions = by_article.get(article.title)
        if not questions:
            continue
        chunks = [Chunk(p.text, article.title, p.start, p.end) for p in article.paragraphs]
        dense, bm25 = DenseRetriever(progress=False), BM25Retriever()
        t = time.perf_counter()
        dense.add(chunks)
        timings["index_dense_s"] += time.perf_counter() - t
        t = time.perf_counter()
        bm25.add(chunks)
        bm25.retrieve("warm up the index", 1)  # bm25s builds lazily: count the build as indexing
        timings["index_bm25_s"] += time.perf_counter() - t
        t = time.perf_counter()
        texts = [q.question for q in questions]
        vectors = dict(zip(texts, dense.encoder.embed(texts), strict=True))
        timings["encode_questions_s"] += time.perf_counter() - t
        dense_view = _Precomputed(dense, vectors)
        retrievers: dict[str, Retriever] = {
            "dense": dense_view,
            "bm25": bm25,
            "hybrid_rrf": HybridRetriever([dense_view, bm25]),
            "hybrid_interpolate": HybridRetriever([dense_view, bm25], mode="interpolate"),
        }
        for question in questions:
            gold = chunk_id(chunks[question.paragraph_index])
            for name, retriever in retrievers.items():
                t = time.perf_counter()
                ranked = [c.metadata["id"] for c in retriever.retrieve(question.question, max(KS))]
                query_s[name] += time.perf_counter() - t
                for k in KS:
                    hits[name][k] += gold in ranked[:k]
            n += 1
        if progress:
            print(f"  [{index + 1}/{len(articles)}] {article.title}: {len(chunks)} paragraphs, {len(questions)} q")
    sizes = [len(a.paragraphs) for a in articles]
    results = {}
    for name in names:
        row: dict[str, Any] = {}
        for k in KS:
            low, high = wilson_interval(hits[name][k], n)
            row[f"recall@{k}"] = hits[name][k] / n
            row[f"recall@{k}_ci95"] = [low, high]
        row["query_ms_mean"] = 1000 * query_s[name] / n
        results[name] = row
    return {
        "questions": n,
        "articles": len(by_article),
        "sample": sample,
        "seed": seed if sample is not None else None,
        "paragraphs_per_article": {"mean": statistics.fmean(sizes), "min": min(sizes), "max": max(sizes)},
        "retrievers": results,
        "timings_s": {**{k: round(v, 2) for k, v in timings.items()}, "total": time.perf_counter() - started},
        "notes": "dense query times exclude encoding (questions batch-encoded; see encode_questions_s)",
    }


# ------------------------------------------------------------------------------------------------- FAISS


_DATA = {
    "clustered": "1,000-centre Gaussian mixture on the unit sphere (cosine to its centre ~0.62)",
    "uniform": (
        "uniform on the unit sphere: no structure, and a fresh query has no true near neighbour (its top 10 sit"
        " barely above the rest), so this bounds the worst case of any approximate index; it is not a realistic"
        " workload"
    ),
}


def _synthetic(data: str, n: int, queries: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` corpus vectors and ``queries`` fresh query vectors from the same distribution, unit-normalized."""
    rng = np.random.default_rng(seed)
    if data == "uniform":
        x = rng.standard_normal((n + queries, dim)).astype(np.float32)
    else:
        centres = rng.standard_normal((1000, dim)).astype(np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        labels = rng.integers(0, len(centres), size=n + queries)
        noise = 0.065  # per coordinate: ‖noise‖ ≈ 0.065·√384 ≈ 1.27, so cosine to the centre ≈ 0.62
        x = centres[labels] + rng.standard_normal((n + queries, dim)).astype(np.float32) * noise
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x[:n], x[n:]


def _exact_top(vectors: np.ndarray, probes: np.ndarray, k: int) -> list[set[int]]:
    out: list[set[int]] = []
    for start in range(0, len(probes), 100):
        sims = probes[start : start + 100] @ vectors.T
        out.extend(set(row.tolist()) for row in np.argpartition(-sims, k, axis=1)[:, :k])
    return out


def _measure(kind: str, data: str, n: int, dim: int, queries: int, seed: int, query_threads: int) -> dict[str, Any]:
    """One index over one data set, in a fresh process (so RSS growth is this index's and its records' alone)."""
    import faiss

    from promptzip import Chunk
    from promptzip.retrievers.faiss_index import DenseRetriever, IndexSpec

    vectors, probes = _synthetic(data, n, queries, dim, seed)
    chunks = [Chunk(f"synthetic chunk {i}", "synthetic", 0, len(f"synthetic chunk {i}"), {"id": i}) for i in range(n)]
    gc.collect()
    rss0 = _rss_mb()
    retriever = DenseRetriever(index=IndexSpec(kind=kind), progress=False)
    t = time.perf_counter()
    retriever.add_vectors(chunks, vectors)
    build_s = time.perf_counter() - t
    del chunks
    gc.collect()
    rss_growth = _rss_mb() - rss0
    index_bytes = len(faiss.serialize_index(retriever._index))
    with tempfile.TemporaryDirectory(prefix="promptzip-bench-") as tmp:
        t = time.perf_counter()
        folder = retriever.save(Path(tmp) / kind)
        save_s = time.perf_counter() - t
        folder_bytes = sum(p.stat().st_size for p in folder.iterdir())
        t = time.perf_counter()
        DenseRetriever.load(folder)
        load_s = time.perf_counter() - t
    exact = _exact_top(vectors, probes, 10)
    row: dict[str, Any] = {
        "index": type(faiss.downcast_index(retriever._index.index)).__name__,
        "build_s": build_s,
        "index_mb": index_bytes / 2**20,
        "rss_growth_mb": rss_growth,
        "saved_folder_mb": folder_bytes / 2**20,
        "save_s": save_s,
        "load_s": load_s,
    }
    faiss.omp_set_num_threads(query_threads)
    for ef in [retriever.spec.ef_search] if kind == "flat" else [32, 64, 128, 256]:
        retriever.spec = dataclasses.replace(retriever.spec, ef_search=ef)
        for q in probes[:20]:  # warm-up
            retriever.search_vector(q, 10)
        latencies, recalls = [], []
        for q, truth in zip(probes, exact, strict=True):
            t = time.perf_counter()
            hits = retriever.search_vector(q, 10)
            latencies.append(time.perf_counter() - t)
            recalls.append(len({int(c.metadata["id"]) for c in hits} & truth) / 10)
        row["query" if kind == "flat" else f"query_ef{ef}"] = {
            "p50_ms": 1000 * statistics.median(latencies),
            "p95_ms": 1000 * float(np.percentile(latencies, 95)),
            "recall@10_vs_exact": float(np.mean(recalls)),
        }
    return row


def faiss_scale(
    n: int = 100_000,
    *,
    dim: int = 384,
    queries: int = 1000,
    seed: int = 0,
    query_threads: int = 1,
    datasets: Sequence[str] = ("clustered", "uniform"),
) -> dict[str, Any]:
    """Build time, memory, save/load and query latency of flat and HNSW indexes over ``n`` synthetic chunks.

    Each (data set, index) runs in a fresh process. Indexes build with FAISS's default OpenMP threads; single
    queries run with ``query_threads`` (1: a server parallelizes across requests, and on a shared machine OpenMP
    threads spin-waiting for each other cost more than they gain on one query). Recall@10 is against the exact
    top 10 (numpy brute force).
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from promptzip.evals import retrieval_bench  # by name, so the spawned process finds _measure (not __main__)
    from promptzip.retrievers.faiss_index import IndexSpec

    rows: dict[str, Any] = {}
    context = multiprocessing.get_context("spawn")
    for data in datasets:
        for kind in ("flat", "hnsw"):
            with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
                rows.setdefault(data, {})[kind] = pool.submit(
                    retrieval_bench._measure, kind, data, n, dim, queries, seed, query_threads
                ).result()
            print(f"  {data} {kind}: built in {rows[data][kind]['build_s']:.1f} s")
    return {
        "chunks": n,
        "dimension": dim,
        "queries": queries,
        "query_threads": query_threads,
        "seed": seed,
        "data": {name: _DATA[name] for name in datasets},
        "hnsw": dataclasses.asdict(IndexSpec(kind="hnsw")),
        "results": rows,
    }


# ------------------------------------------------------------------------------------------------ report


def _markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        "# Retrieval figures",
        "",
        f"Machine: {m['cpus']} CPUs ({m['cpu']}), FAISS {m['faiss']} with {m['faiss_threads']} threads, "
        f"load average {m['load_average_1m']} at the start (other work shares this machine: timings are noisy). "
        "Produced by `python -P -m promptzip.evals.retrieval_bench`.",
        "",
    ]
    squad = report.get("squad")
    if squad:
        ppa = squad["paragraphs_per_article"]
        lines += [
            "## SQuAD v1.1 dev: gold paragraph recall, each whole article as the corpus",
            "",
            f"{squad['questions']:,} questions over {squad['articles']} articles"
            + (f" (seeded sample, seed {squad['seed']})" if squad["sample"] else " (all)")
            + f"; {ppa['mean']:.0f} paragraphs per article ({ppa['min']}–{ppa['max']}). 95% Wilson intervals.",
            "",
            "| retriever | recall@1 | recall@3 | recall@5 | ms/query |",
            "|---|---|---|---|---|",
        ]
        labels = {
            "dense": "dense (MiniLM + FAISS flat)",
            "bm25": "BM25 (bm25s)",
            "hybrid_rrf": "hybrid, RRF k=60",
            "hybrid_interpolate": "hybrid, min-max interpolation",
        }
        for name, row in squad["retrievers"].items():
            cells = [
                f"{row[f'recall@{k}']:.3f} ({row[f'recall@{k}_ci95'][0]:.3f}–{row[f'recall@{k}_ci95'][1]:.3f})"
                for k in KS
            ]
            lines.append(f"| {labels.get(name, name)} | {' | '.join(cells)} | {row['query_ms_mean']:.2f} |")
        t = squad["timings_s"]
        lines += [
            "",
            "Dense ms/query excludes query encoding: the questions were batch-encoded in "
            f"{t['encode_questions_s']:.0f} s ({1000 * t['encode_questions_s'] / squad['questions']:.1f} ms each). "
            "Indexing all articles: dense "
            f"{t['index_dense_s']:.0f} s (encoding), BM25 {t['index_bm25_s']:.1f} s.",
            "",
        ]
    scale = report.get("faiss")
    if scale:
        lines += [
            f"## FAISS at {scale['chunks']:,} chunks (dimension {scale['dimension']})",
            "",
            f"Synthetic unit vectors stand in for encoded chunks (seed {scale['seed']}): "
            + "; ".join(f"**{name}**: {text}" for name, text in scale["data"].items())
            + f". {scale['queries']:,} single queries (fresh points of the same distribution), k=10, through "
            f"`DenseRetriever` (`add_vectors`, `search_vector`), FAISS at {scale['query_threads']} thread(s) for "
            f"queries; each index built in a fresh process. HNSW: M={scale['hnsw']['hnsw_m']}, "
            f"efConstruction={scale['hnsw']['ef_construction']}. Recall@10 is against the exact top 10.",
            "",
            "| data | index | build s | index MB | RSS growth MB | save s | load s | efSearch | query p50 ms "
            "| p95 ms | recall@10 |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for data, kinds in scale["results"].items():
            for row in kinds.values():
                queries = [(k, v) for k, v in row.items() if k.startswith("query")]
                for i, (key, q) in enumerate(queries):
                    ef = "—" if key == "query" else key.removeprefix("query_ef")
                    head = (
                        f"| {data} | {row['index']} | {row['build_s']:.1f} | {row['index_mb']:.0f} | "
                        f"{row['rss_growth_mb']:.0f} | {row['save_s']:.1f} | {row['load_s']:.1f}"
                        if i == 0
                        else "| | | | | | |"
                    )
                    lines.append(
                        f"{head} | {ef} | {q['p50_ms']:.3f} | {q['p95_ms']:.3f} | {q['recall@10_vs_exact']:.3f} |"
                    )
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -P -m promptzip.evals.retrieval_bench", description=__doc__)
    parser.add_argument("--sample", type=int, default=None, help="seeded sample of SQuAD questions (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--faiss-n", type=int, default=100_000)
    parser.add_argument("--query-threads", type=int, default=1, help="FAISS threads for single queries")
    parser.add_argument("--skip-squad", action="store_true")
    parser.add_argument("--skip-faiss", action="store_true")
    parser.add_argument("--out", default="evals/results/retrieval.json")
    parser.add_argument("--update", action="store_true", help="keep the parts of an existing --out not re-run")
    parser.add_argument("--markdown-only", action="store_true", help="re-render the .md from an existing --out")
    args = parser.parse_args(argv)
    out = Path(args.out)
    report: dict[str, Any] = {}
    if (args.update or args.markdown_only) and out.is_file():
        report = json.loads(out.read_text(encoding="utf-8"))
    if args.markdown_only:
        out.with_suffix(".md").write_text(_markdown(report), encoding="utf-8")
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    report["machine"] = _machine()
    started = time.perf_counter()
    if not args.skip_squad:
        from promptzip.evals import data

        if data.available("squad"):
            print("SQuAD v1.1 dev recall ...")
            report["squad"] = squad_recall(args.sample, seed=args.seed)
        else:
            print("SQuAD data not fetched (run `make data`): skipping the recall figures")
    if not args.skip_faiss:
        print(f"FAISS at {args.faiss_n:,} chunks ...")
        report["faiss"] = faiss_scale(args.faiss_n, seed=args.seed, query_threads=args.query_threads)
    report["machine"]["load_average_1m_end"] = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    report["wall_s"] = time.perf_counter() - started
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    markdown = _markdown(report)
    out.with_suffix(".md").write_text(markdown, encoding="utf-8")
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
