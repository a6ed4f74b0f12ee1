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
3. **Model** — the packaged encoder frozen, rank-16 LoRA (peft) on every attention and feed-forward projection,
   mean pooling and L2 normalisation as sentence-transformers does, softmax cross-entropy over the batch's
   sentences at scale 20 (InfoNCE), AdamW with warm-up and linear decay, dropout on. The adapter is saved in the
   layout :func:`promptzip.retrievers.qa_encoder.merge_adapter` merges (:mod:`promptzip.training._lora`).
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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from promptzip._errors import ConfigError
from promptzip.training._qa import (
    EncoderTrainConfig,
    QuestionGroup,
    batch_loss,
    batches,
    collect_groups,
    rank_answer_sentences,
)

__all__ = [
    "EncoderFit",
    "EncoderTrainConfig",
    "QuestionGroup",
    "collect_groups",
    "fit_encoder",
    "held_out_metrics",
    "rank_answer_sentences",
    "train_encoder",
    "write_artifact",
]

PREFIX = "bert."  # the runtime's adapter names the layers as in a BertFor... model; we train a bare BertModel


@dataclass(frozen=True, slots=True)
class EncoderFit:
    """A trained encoder: ``model`` is the peft-wrapped ``BertModel`` (in eval mode), ``losses`` one per step."""

    model: Any
    tokenizer: Any
    losses: tuple[float, ...]
    planned_steps: int
    seconds: float


def _check(config: EncoderTrainConfig) -> None:
    if min(config.steps, config.stop_after or 1, config.questions_per_batch, config.lora_rank) < 1:
        raise ConfigError("steps, stop_after, questions_per_batch and lora_rank must be at least 1")
    unknown = sorted(set(config.held_out) - set(config.domains))
    if unknown:
        raise ConfigError(f"cannot hold out {', '.join(unknown)}: the domains are {', '.join(config.domains)}")
    if not set(config.domains) - set(config.held_out):
        raise ConfigError("every domain is held out: nothing is left to train on")


def _encoder(model: Any, tokenizer: Any) -> Callable[[list[str], int], Any]:
    import torch

    def encode(texts: list[str], max_length: int) -> torch.Tensor:
        batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        return torch.nn.functional.normalize(pooled, dim=-1)

    return encode


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


def _lora_model(config: EncoderTrainConfig) -> tuple[Any, Any]:
    from transformers import AutoTokenizer, BertModel

    from promptzip._models import resolve_model
    from promptzip.compressors.token_classifier import _hf_quiet
    from promptzip.training._lora import with_lora

    _hf_quiet()
    base = resolve_model(config.base).path
    bert = BertModel.from_pretrained(str(base), add_pooling_layer=False)
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = with_lora(
        bert, rank=config.lora_rank, alpha=config.lora_alpha, targets=config.lora_targets, seed=config.seed
    )
    return model, tokenizer


def fit_encoder(
    config: EncoderTrainConfig, groups: Sequence[QuestionGroup], *, progress: bool = False, err: TextIO = sys.stderr
) -> EncoderFit:
    """Train LoRA on the base encoder over ``groups`` (steps 2–3 of the module doc), seeded by ``config.seed``."""
    import torch
    from tqdm import tqdm

    _check(config)
    if not groups:
        raise ConfigError("no training questions (no answer could be located in any article)")
    started = time.perf_counter()
    rng = random.Random(config.seed)
    planned = batches(groups, config, rng)
    err.write(f"{len(groups)} groups, {sum(len(g.questions) for g in groups):,} questions, {len(planned)} batches\n")
    total = min(len(planned), config.steps)
    run = min(total, config.stop_after or total)
    losses: list[float] = []
    model, tokenizer = _lora_model(config)
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)  # dropout draws from the global generator: seeded for this run only
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
        warm = max(1, config.warmup)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: min(1.0, (s + 1) / warm) * max(0.05, 1 - s / total)
        )
        encode = _encoder(model, tokenizer)
        deadline = time.perf_counter() + config.max_minutes * 60
        bar = tqdm(total=run, desc="training qa-encoder", disable=not progress, file=err)
        model.train()
        for batch in planned[:run]:
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
    return EncoderFit(model, tokenizer, tuple(losses), total, time.perf_counter() - started)


def held_out_metrics(fit: EncoderFit, config: EncoderTrainConfig, articles: Sequence[Any]) -> dict[str, Any]:
    """The answer sentence's rank in whole held-out articles, for the tuned encoder and for the packaged one (the
    same model with its adapter switched off)."""
    embed = _embedder(fit.model, fit.tokenizer, config.sentence_tokens)
    tuned = rank_answer_sentences(embed, articles, config.eval_questions, config.seed)
    with fit.model.disable_adapter():
        packaged = rank_answer_sentences(embed, articles, config.eval_questions, config.seed)
    return {"held_out": "new_wiki tuning articles (whole)", "packaged": packaged, "tuned": tuned}


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

    _check(config)  # before the data sets load
    started = time.perf_counter()
    if config.threads:
        torch.set_num_threads(config.threads)
    given = list(articles) if articles is not None else _load_articles(config)
    groups = collect_groups([(domain, a) for domain, a in given if domain not in config.held_out], config)
    fit = fit_encoder(config, groups, progress=progress, err=err)
    metrics: dict[str, Any] = {}
    if config.eval_questions > 0:
        held_out = list(eval_articles) if eval_articles is not None else _tuning_articles(config)
        metrics = held_out_metrics(fit, config, held_out)
    return write_artifact(fit, config, groups, metrics, out, total_seconds=time.perf_counter() - started)


def write_artifact(
    fit: EncoderFit,
    config: EncoderTrainConfig,
    groups: Sequence[QuestionGroup],
    metrics: dict[str, Any],
    out: Path,
    *,
    total_seconds: float,
) -> dict[str, Any]:
    """``out/adapter.safetensors`` (peft's LoRA in the runtime's layout) and ``out/manifest.json``; the manifest."""
    from promptzip._models import resolve_model
    from promptzip.training._artifacts import base_record, runtime_record, save_adapter
    from promptzip.training._lora import runtime_adapter

    state = runtime_adapter(fit.model, rank=config.lora_rank, alpha=config.lora_alpha, prefix=PREFIX)
    adapter = save_adapter(state, out)
    losses = fit.losses
    manifest = {
        "name": "minilm-qa",
        "created_with": "promptzip train qa-encoder",
        "base": base_record(config.base, resolve_model(config.base).path),
        "data": _data_record(groups, config),
        "hyperparameters": {
            **{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()},
            "lora_targets": list(config.lora_targets),
        },
        "training": {
            "steps": len(losses),
            "planned_steps": fit.planned_steps,
            # The run's own account of where it stopped: the schedule's end, stop_after, or the max_minutes limit.
            "stopped_early": len(losses) < fit.planned_steps,
            "stop_reason": _stop_reason(len(losses), fit.planned_steps, config.stop_after),
            "first_loss": round(float(np.mean(losses[:50])), 4),
            "final_loss": round(float(np.mean(losses[-50:])), 4),
            "loss_every_100": [round(float(np.mean(losses[i : i + 100])), 4) for i in range(0, len(losses), 100)],
            "train_seconds": round(fit.seconds, 1),
            "total_seconds": round(total_seconds, 1),
            **runtime_record(),
        },
        "metrics": metrics,
        "files": {"adapter.safetensors": hashlib.sha256(adapter.read_bytes()).hexdigest()},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def _load_articles(config: EncoderTrainConfig) -> list[tuple[str, Any]]:
    from promptzip.training._data import load_squad_shift

    out: list[tuple[str, Any]] = []
    for domain in config.domains:
        if domain in config.held_out:
            continue  # never read: a held-out domain is evaluation text
        for article in load_squad_shift(domain, max_paragraphs=None):
            if domain == "new_wiki" and len(article.context) > config.tuning_min_chars:
                continue
            out.append((domain, article))
    return out


def _tuning_articles(config: EncoderTrainConfig) -> list[Any]:
    from promptzip.training._data import load_squad_shift

    return [a for a in load_squad_shift("new_wiki", max_paragraphs=None) if len(a.context) > config.tuning_min_chars]


def _data_record(groups: Sequence[QuestionGroup], config: EncoderTrainConfig) -> dict[str, Any]:
    from promptzip.training._data import archive_record

    digest = hashlib.sha256()
    per_domain: dict[str, int] = {}
    for g in groups:
        per_domain[g.domain] = per_domain.get(g.domain, 0) + len(g.questions)
        for q in g.questions:
            digest.update(q.encode())
    return {
        "questions": per_domain,
        "questions_sha256": digest.hexdigest(),
        "archives_sha256": archive_record(),
        "left_out": f"new_wiki articles over {config.tuning_min_chars:,} characters (tuning text)",
        "held_out_domains": list(config.held_out),
        "never_used": "SQuAD v1.1 dev (the reported eval set)",
    }


def _stop_reason(steps: int, planned: int, stop_after: int | None) -> str | None:
    if steps >= planned:
        return None
    if stop_after is not None and steps >= stop_after:
        return f"stop_after={stop_after}"
    return "max_minutes"
