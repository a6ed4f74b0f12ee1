"""The token classifier's training data: texts, the teacher's labels, soft keep-targets and token segments
(steps 1–3 of :mod:`promptzip.training.classifier`)."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from promptzip._errors import ConfigError
from promptzip.compressors.pruning import FloatArray, IntArray, word_units
from promptzip.training._lora import LORA_TARGETS

__all__ = [
    "SOURCES",
    "TRAINING_SOURCES",
    "TrainConfig",
    "TrainingText",
    "collect_texts",
    "segments",
    "targets_for",
    "teacher_nats",
    "training_sources",
]

SOURCES = ("cnn_dm", "xsum", "quoref", "drop", "new_wiki", "nyt", "amazon_reviews", "reddit")
# What is trained on unless asked otherwise: SQuAD-shifts, the training text. CNN/DM, XSum, Quoref and DROP are the
# texts the eval suites report on (the shipped minilm-tc was trained on a sample of them, which its manifest shows);
# they stay selectable for experiments, never the default.
TRAINING_SOURCES = ("new_wiki", "nyt", "amazon_reviews", "reddit")


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
    sources: tuple[str, ...] = TRAINING_SOURCES
    # Sources left out entirely, so that an eval on one of them is a cross-domain figure.
    held_out: tuple[str, ...] = ()
    seed: int = 0
    beta: float = 0.25
    teacher: str = "smollm2-135m"
    teacher_window: int = 512
    teacher_context: int = 128
    base: str = "minilm"
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_targets: tuple[str, ...] = field(default=LORA_TARGETS)
    segment: int = 256
    batch_size: int = 8
    epochs: int = 4
    lr: float = 2e-3
    weight_decay: float = 0.01
    max_minutes: float = 20.0
    threads: int | None = None


def _collect_source(name: str) -> list[TrainingText]:
    from promptzip.training import _data

    if name in ("cnn_dm", "xsum"):
        return [TrainingText(name, p.document.strip(), (p.summary,)) for p in _data.load_summary_pairs(name)]
    if name in ("quoref", "drop"):
        by_passage: dict[str, list[str]] = {}
        for item in _data.load_passage_qa(name):
            by_passage.setdefault(item.passage.strip(), []).extend(item.answers)
        return [TrainingText(name, p, tuple(dict.fromkeys(a))) for p, a in by_passage.items()]
    if name in _data.SQUAD_SHIFT_DOMAINS:
        out: list[TrainingText] = []
        for article in _data.load_squad_shift(name):
            answers: dict[int, list[str]] = {}
            for q in article.questions:
                answers.setdefault(q.paragraph_index, []).extend(q.answers)
            for k, paragraph in enumerate(article.paragraphs):
                out.append(TrainingText(name, paragraph.text, tuple(dict.fromkeys(answers.get(k, ())))))
        return out
    raise ConfigError(f"unknown training source {name!r}; known: {', '.join(SOURCES)}")


def training_sources(config: TrainConfig) -> tuple[str, ...]:
    """The sources ``config`` trains on: its ``sources`` less its ``held_out`` ones; a :class:`ConfigError` for an
    unknown name or when nothing is left."""
    unknown = sorted(set(config.sources) - set(SOURCES))
    if unknown:
        raise ConfigError(f"unknown training source {', '.join(unknown)}; known: {', '.join(SOURCES)}")
    stray = sorted(set(config.held_out) - set(config.sources))
    if stray:
        raise ConfigError(f"cannot hold out {', '.join(stray)}: the sources are {', '.join(config.sources)}")
    kept = tuple(s for s in config.sources if s not in config.held_out)
    if not kept:
        raise ConfigError("every source is held out: nothing is left to train on")
    return kept


def collect_texts(config: TrainConfig) -> list[TrainingText]:
    """A seeded sample of every source trained on (:func:`training_sources`), about ``config.chars`` characters
    in all, in equal shares."""
    sources = training_sources(config)
    share = config.chars // max(1, len(sources))
    rng = random.Random(config.seed)
    picked: list[TrainingText] = []
    seen: set[str] = set()
    for source in sources:
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
    """Soft keep-targets of a text's units: ``(1 − β) · percentile(nats) + β · aligned`` (see the classifier)."""
    from promptzip.training._data import content_words, normalize_answer

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


def segments(
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
