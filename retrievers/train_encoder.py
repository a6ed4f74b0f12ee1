"""``promptzip train qa-encoder``: tune the packaged MiniLM bi-encoder to rank the sentence that answers a question.

Reproducible from one command (seeded; progress bar)::

    promptzip train qa-encoder   # → retrievers/models/minilm-qa/{adapter.safetensors,manifest.json}

1. **Data** — SQuAD-shifts only (nyt, amazon_reviews, reddit, new_wiki), never SQuAD v1.1 dev, the reported set.
   new_wiki articles longer than ``tuning_min_chars`` are the tuning text of ``promptzip.evals.tune`` and are left
   out. Articles are split into sentences by the pipeline's own splitter; a question's positive is the sentence
   where its first located answer starts.
2. **Batches** — up to 16 questions of one article (blocks of 64 paragraphs for the long reddit and amazon
   "articles"), their answer sentences and 16 more sentences of the same article: every other sentence of the batch
   is a negative from the same text, which is what sentence selection inside a long article has to tell apart.
   A sentence that also contains the question's answer string is masked, never a negative.
3. **Model** — the packaged encoder frozen, rank-16 LoRA on every attention and feed-forward projection
   (:func:`promptzip.compressors.token_classifier.attach_lora`), mean pooling and L2 normalisation as
   sentence-transformers does, softmax cross-entropy over the batch's sentences at scale 20 (InfoNCE), AdamW with
   warm-up and linear decay, dropout on.
4. **Manifest** — data (domains, questions, sha256 of the question ids, the archive's sha256), base weights,
   hyper-parameters, time, and held-out metrics: on new_wiki tuning articles, the rank of the answer sentence
   among all sentences of its whole article, for the packaged encoder and the tuned one.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from promptzip._errors import ConfigError
from promptzip.compressors.token_classifier import LORA_TARGETS

__all__ = ["EncoderTrainConfig", "QuestionGroup", "collect_groups", "rank_answer_sentences", "train_encoder"]


@dataclass(frozen=True, slots=True)
class EncoderTrainConfig:
    base: str = "minilm"
    domains: tuple[str, ...] = ("nyt", "amazon_reviews", "reddit", "new_wiki")
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
    lora_targets: tuple[str, ...] = field(default_factory=lambda: LORA_TARGETS)
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
    """``(domain, SquadArticle)`` pairs → question groups (see the module doc)."""
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


def _load_articles(config: EncoderTrainConfig) -> list[tuple[str, Any]]:
    from promptzip.evals import data

    out: list[tuple[str, Any]] = []
    for domain in config.domains:
        for article in data.load_squad_shift(domain, max_paragraphs=None):
            if domain == "new_wiki" and len(article.context) > config.tuning_min_chars:
                continue
            out.append((domain, article))
    return out


_Batch = tuple[QuestionGroup, list[int]]  # a group and the indices of its questions in this batch


def _batches(groups: Sequence[QuestionGroup], config: EncoderTrainConfig, rng: random.Random) -> list[_Batch]:
    batches: list[_Batch] = []
    k = config.questions_per_batch
    for group in groups:
        order = list(range(len(group.questions)))
        rng.shuffle(order)
        batches.extend((group, order[i : i + k]) for i in range(0, len(order), k))
    rng.shuffle(batches)
    return batches


def _encoder(model: Any, tokenizer: Any) -> Callable[[list[str], int], Any]:
    import torch

    def encode(texts: list[str], max_length: int) -> torch.Tensor:
        batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        hidden = model.bert(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        return torch.nn.functional.normalize(pooled, dim=-1)

    return encode


def batch_loss(
    encode: Callable[[list[str], int], Any], batch: _Batch, config: EncoderTrainConfig, rng: random.Random
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
    from promptzip.evals import data

    ranks: list[int] = []
    split: dict[int, tuple[list[tuple[int, int]], np.ndarray]] = {}  # per article: its sentences, split and encoded
    for article, question in data.sample_questions(list(articles), n, seed):
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


def _embedder(model: Any, tokenizer: Any, max_length: int) -> Callable[[list[str]], np.ndarray]:
    import torch

    encode = _encoder(model, tokenizer)

    def embed(texts: list[str]) -> np.ndarray:
        rows = []
        with torch.inference_mode():
            for i in range(0, len(texts), 64):
                rows.append(encode(texts[i : i + 64], max_length).float().numpy())
        return np.concatenate(rows) if rows else np.zeros((0, 1), dtype=np.float32)

    return embed


def train_encoder(
    config: EncoderTrainConfig,
    out: Path,
    *,
    progress: bool = True,
    err: TextIO = sys.stderr,
    articles: Sequence[tuple[str, Any]] | None = None,
    eval_articles: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """Run the recipe; write ``out/adapter.safetensors`` and ``out/manifest.json``; return the manifest.

    ``articles`` (``(domain, SquadArticle)`` pairs) and ``eval_articles`` replace the data sets (tests)."""
    import torch
    from tqdm import tqdm
    from transformers import AutoTokenizer, BertModel

    from promptzip._artifacts import base_record, runtime_record, save_adapter
    from promptzip._models import resolve_model
    from promptzip.compressors.token_classifier import _hf_quiet, attach_lora

    if min(config.steps, config.stop_after or 1, config.questions_per_batch, config.lora_rank) < 1:
        raise ConfigError("steps, stop_after, questions_per_batch and lora_rank must be at least 1")
    started = time.perf_counter()
    if config.threads:
        torch.set_num_threads(config.threads)
    pairs = list(articles) if articles is not None else _load_articles(config)
    groups = collect_groups(pairs, config)
    if not groups:
        raise ConfigError("no training questions (no answer could be located in any article)")
    rng = random.Random(config.seed)
    batches = _batches(groups, config, rng)
    total = min(len(batches), config.steps)
    err.write(f"{len(groups)} groups, {sum(len(g.questions) for g in groups):,} questions, {len(batches)} batches\n")
    _hf_quiet()
    base = resolve_model(config.base)
    losses: list[float] = []
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)  # dropout draws from the global generator: seeded for this run only
        model = _wrap(BertModel.from_pretrained(str(base.path), add_pooling_layer=False))
        tokenizer = AutoTokenizer.from_pretrained(str(base.path))
        attach_lora(model, rank=config.lora_rank, alpha=config.lora_alpha, targets=config.lora_targets)
        model.classifier.requires_grad_(False)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
        warm = max(1, config.warmup)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: min(1.0, (s + 1) / warm) * max(0.05, 1 - s / total)
        )
        encode = _encoder(model, tokenizer)
        deadline = time.perf_counter() + config.max_minutes * 60
        bar = tqdm(
            total=min(total, config.stop_after or total), desc="training qa-encoder", disable=not progress, file=err
        )
        model.train()
        for batch in batches[: min(total, config.stop_after or total)]:
            loss = batch_loss(encode, batch, config, rng)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.item()))
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
            if time.perf_counter() > deadline:
                break
        bar.close()
    model.eval()
    train_s = time.perf_counter() - started
    state = {
        f"lora.{name}.{p}": getattr(module, p).detach().contiguous().clone()
        for name, module in model.named_modules()
        if hasattr(module, "A") and hasattr(module, "B")
        for p in ("A", "B")
    }
    metrics: dict[str, Any] = {}
    if config.eval_questions > 0:
        held_out = list(eval_articles) if eval_articles is not None else _tuning_articles(config)
        tuned = rank_answer_sentences(
            _embedder(model, tokenizer, config.sentence_tokens), held_out, config.eval_questions, config.seed
        )
        plain = _WithoutLoRA(model)
        with plain:
            packaged = rank_answer_sentences(
                _embedder(model, tokenizer, config.sentence_tokens), held_out, config.eval_questions, config.seed
            )
        metrics = {"held_out": "new_wiki tuning articles (whole)", "packaged": packaged, "tuned": tuned}
    adapter = save_adapter(state, out)
    manifest = {
        "name": "minilm-qa",
        "created_with": "promptzip train qa-encoder",
        "base": base_record(config.base, base.path),
        "data": _data_record(groups, config),
        "hyperparameters": {
            **{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()},
            "lora_targets": list(config.lora_targets),
        },
        "training": {
            "steps": len(losses),
            "planned_steps": total,
            "stopped_early": len(losses) < min(total, config.stop_after or total),
            "first_loss": round(float(np.mean(losses[:50])), 4),
            "final_loss": round(float(np.mean(losses[-50:])), 4),
            "loss_every_100": [round(float(np.mean(losses[i : i + 100])), 4) for i in range(0, len(losses), 100)],
            "train_seconds": round(train_s, 1),
            "total_seconds": round(time.perf_counter() - started, 1),
            **runtime_record(),
        },
        "metrics": metrics,
        "files": {"adapter.safetensors": hashlib.sha256(adapter.read_bytes()).hexdigest()},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def _wrap(bert: Any) -> Any:
    """What :func:`attach_lora` expects: a module with the encoder at ``.bert`` and a ``.classifier`` (unused)."""
    import torch

    class QAStudent(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert
            self.classifier = torch.nn.Linear(1, 1)

    return QAStudent()


class _WithoutLoRA:
    """Context manager: the LoRA deltas of a model set to zero, and restored on exit (the packaged encoder)."""

    def __init__(self, model: Any) -> None:
        self.modules = [m for m in model.modules() if hasattr(m, "A") and hasattr(m, "B")]
        self.saved: list[Any] = []

    def __enter__(self) -> None:
        import torch

        with torch.no_grad():
            for m in self.modules:
                self.saved.append(m.B.detach().clone())
                m.B.zero_()

    def __exit__(self, *exc: object) -> None:
        import torch

        with torch.no_grad():
            for m, b in zip(self.modules, self.saved, strict=True):
                m.B.copy_(b)


def _tuning_articles(config: EncoderTrainConfig) -> list[Any]:
    from promptzip.evals import data

    return [
        a for a in data.load_squad_shift("new_wiki", max_paragraphs=None) if len(a.context) > config.tuning_min_chars
    ]


def _data_record(groups: Sequence[QuestionGroup], config: EncoderTrainConfig) -> dict[str, Any]:
    digest = hashlib.sha256()
    per_domain: dict[str, int] = {}
    for g in groups:
        per_domain[g.domain] = per_domain.get(g.domain, 0) + len(g.questions)
        for q in g.questions:
            digest.update(q.encode())
    from promptzip.evals.data import archive_record

    return {
        "questions": per_domain,
        "questions_sha256": digest.hexdigest(),
        "archives_sha256": archive_record(),
        "left_out": f"new_wiki articles over {config.tuning_min_chars:,} characters (tuning text)",
        "never_used": "SQuAD v1.1 dev (the reported eval set)",
    }
