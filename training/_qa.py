"""The QA encoder's config, data and loss: questions grouped with the sentences of their article, batches of them, the
in-batch InfoNCE, and the held-out ranking metric (steps 1–2 and 4 of :mod:`promptzip.training.encoder`)."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from promptzip.training._lora import LORA_TARGETS

__all__ = [
    "Batch",
    "EncoderTrainConfig",
    "QuestionGroup",
    "batch_loss",
    "batches",
    "collect_groups",
    "rank_answer_sentences",
]


@dataclass(frozen=True, slots=True)
class EncoderTrainConfig:
    """Everything that decides the artifact (recorded in the manifest)."""

    base: str = "minilm"
    domains: tuple[str, ...] = ("nyt", "amazon_reviews", "reddit", "new_wiki")
    # Domains left out entirely (not trained on, not tuned on), so that an eval on one is a cross-domain figure.
    held_out: tuple[str, ...] = ()
    tuning_min_chars: int = 12_000  # new_wiki articles this long are promptzip.evals.tune's text: not trained on
    block_paragraphs: int = 64
    questions_per_batch: int = 16
    extra_sentences: int = 16
    steps: int = 1800  # length of the learning-rate schedule (warm-up, then linear decay to 5 %)
    stop_after: int | None = 1150  # train only this many steps of that schedule (None: all of it)
    lr: float = 2e-4
    warmup: int = 50
    scale: float = 20.0
    lora_rank: int = 16
    lora_alpha: float = 32.0
    lora_targets: tuple[str, ...] = field(default=LORA_TARGETS)
    question_tokens: int = 64
    sentence_tokens: int = 128
    max_minutes: float = 120.0
    eval_questions: int = 300
    seed: int = 0
    threads: int | None = None


@dataclass(frozen=True, slots=True)
class QuestionGroup:
    """Questions of one article block, with the article's sentences; ``positives[i]`` indexes ``sentences``."""

    domain: str
    questions: tuple[str, ...]
    positives: tuple[int, ...]
    answers: tuple[tuple[str, ...], ...]
    sentences: tuple[str, ...]
    pool: tuple[int, ...]  # the sentences of this block (negatives are drawn from them)


Batch = tuple[QuestionGroup, list[int]]  # a group and the indices of its questions in this batch


def _article_sentences(article: Any) -> tuple[list[tuple[int, int]], list[int]]:
    from promptzip._split import sentence_spans

    spans: list[tuple[int, int]] = []
    owner: list[int] = []
    for index, paragraph in enumerate(article.paragraphs):
        for span in sentence_spans(article.context, paragraph.start, paragraph.end):
            spans.append(span)
            owner.append(index)
    return spans, owner


def _answer_sentence(spans: Sequence[tuple[int, int]], question: Any) -> int | None:
    """Index of the sentence where the question's first located answer starts (``None``: no answer located)."""
    start = next((s for s in question.answer_starts if s >= 0), None)
    if start is None:
        return None
    return next((i for i, (a, b) in enumerate(spans) if a <= start < b), None)


def collect_groups(articles: Sequence[tuple[str, Any]], config: EncoderTrainConfig) -> list[QuestionGroup]:
    """``(domain, SquadArticle)`` pairs → question groups (see the encoder's module doc)."""
    groups: list[QuestionGroup] = []
    for domain, article in articles:
        spans, owner = _article_sentences(article)
        sentences = tuple(article.context[a:b] for a, b in spans)
        blocks: dict[int, list[tuple[str, int, tuple[str, ...]]]] = {}
        for q in article.questions:
            idx = _answer_sentence(spans, q)
            if idx is None:
                continue
            item = (q.question, idx, tuple(a.lower() for a in q.answers))
            blocks.setdefault(owner[idx] // config.block_paragraphs, []).append(item)
        for block, items in blocks.items():
            pool = tuple(i for i, o in enumerate(owner) if o // config.block_paragraphs == block)
            groups.append(
                QuestionGroup(
                    domain,
                    tuple(i[0] for i in items),
                    tuple(i[1] for i in items),
                    tuple(i[2] for i in items),
                    sentences,
                    pool,
                )
            )
    return groups


def batches(groups: Sequence[QuestionGroup], config: EncoderTrainConfig, rng: random.Random) -> list[Batch]:
    """Every group's questions in shuffled batches of up to ``questions_per_batch``, the batches shuffled."""
    out: list[Batch] = []
    k = config.questions_per_batch
    for group in groups:
        order = list(range(len(group.questions)))
        rng.shuffle(order)
        out.extend((group, order[i : i + k]) for i in range(0, len(order), k))
    rng.shuffle(out)
    return out


def batch_loss(
    encode: Callable[[list[str], int], Any], batch: Batch, config: EncoderTrainConfig, rng: random.Random
) -> Any:
    """InfoNCE of a batch's questions over its answer sentences and ``extra_sentences`` more of the same block."""
    import torch

    group, rows = batch
    chosen = list(dict.fromkeys(group.positives[r] for r in rows))
    drawn = rng.sample(group.pool, min(len(group.pool), config.extra_sentences + len(chosen)))
    idxs = chosen + [i for i in drawn if i not in chosen][: config.extra_sentences]
    texts = [group.sentences[i] for i in idxs]
    q = encode([group.questions[r] for r in rows], config.question_tokens)
    s = encode(texts, config.sentence_tokens)
    logits = q @ s.T * config.scale
    target = torch.tensor([idxs.index(group.positives[r]) for r in rows])
    lowered = [t.lower() for t in texts]
    mask = torch.zeros_like(logits, dtype=torch.bool)
    for i, r in enumerate(rows):
        for j, text in enumerate(lowered):
            if j != int(target[i]) and any(a and a in text for a in group.answers[r]):
                mask[i, j] = True
    return torch.nn.functional.cross_entropy(logits.masked_fill(mask, -1e4), target)


def rank_answer_sentences(
    embed: Callable[[list[str]], np.ndarray], articles: Sequence[Any], n: int, seed: int
) -> dict[str, float]:
    """Rank of each sampled question's answer sentence among all sentences of its whole article, by cosine under
    ``embed`` (texts → L2-normalised rows): mean reciprocal rank and recall at 1 / 5 / 10 (in %)."""
    from promptzip.training._data import sample_questions

    ranks: list[int] = []
    split: dict[int, tuple[list[tuple[int, int]], np.ndarray]] = {}  # per article: its sentences, split and encoded
    for article, question in sample_questions(list(articles), n, seed):
        if id(article) not in split:
            spans, _ = _article_sentences(article)
            split[id(article)] = spans, embed([article.context[a:b] for a, b in spans])
        spans, vectors = split[id(article)]
        gold = _answer_sentence(spans, question)
        if gold is None:
            continue
        scores = vectors @ embed([question.question])[0]
        ranks.append(int((scores > scores[gold]).sum()) + 1)
    r = np.array(ranks or [10**9])
    return {
        "questions": len(ranks),
        "mrr": round(float((1 / r).mean()), 4),
        **{f"recall@{k}": round(100 * float((r <= k).mean()), 2) for k in (1, 5, 10)},
    }
