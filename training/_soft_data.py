"""The soft-prompt projector's training data and loss: paragraphs with a question, the frozen encoder's pooled
states (cached on disk), the ridge start of the projector, the decoder-side pieces of every example and the
answer NLL (steps 1–4 of :mod:`promptzip.training.soft`)."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from promptzip.compressors.soft import SoftEncoder
from promptzip.compressors.soft_decoder import CONTEXT_PREFIX, qa_suffix

__all__ = [
    "Batches",
    "Encoded",
    "QAItem",
    "SoftTrainConfig",
    "collect_items",
    "encode_items",
    "ridge_init",
    "target_nll",
    "validate",
]

RECON_SUFFIX = "\nThe context, word for word:"
DOMAINS = ("new_wiki", "nyt", "amazon_reviews", "reddit")


@dataclass(frozen=True, slots=True)
class QAItem:
    """A paragraph with one question about it and the gold answer."""

    domain: str
    paragraph: str
    question: str
    answer: str

    @property
    def held_out(self) -> bool:
        return int(hashlib.sha256(self.paragraph.encode()).hexdigest()[:8], 16) % 10 == 0


@dataclass(frozen=True, slots=True, kw_only=True)
class SoftTrainConfig:
    """Everything that decides the artifact (recorded in the manifest)."""

    domains: tuple[str, ...] = DOMAINS
    paragraphs: int = 600
    max_segments: int = 3  # paragraphs are cut to this many encoder segments
    validation: int = 32
    segment_tokens: int = 64
    ratio: int | None = 4
    projector_hidden: int = 512
    decoder: str = "smollm2-135m"
    encoder: str = "minilm"
    max_text_tokens: int = 32
    batch_size: int = 4
    steps: int = 120
    lr: float = 2e-3
    ridge: float = 1.0
    init_norm: float = 0.05
    scale_lr: float = 2e-2
    eval_every: int = 20
    checkpoint_every: int = 10
    max_minutes: float = 18.0
    seed: int = 0
    device: str = "auto"
    threads: int | None = None


def collect_items(config: SoftTrainConfig) -> list[QAItem]:
    """A seeded sample of SQuAD-shifts paragraphs (training domains only), one question each."""
    from promptzip.training._data import load_squad_shift

    rng = random.Random(config.seed)
    share = math.ceil(config.paragraphs / max(1, len(config.domains)))
    out: list[QAItem] = []
    for domain in config.domains:
        pool: list[QAItem] = []
        for article in load_squad_shift(domain, max_paragraphs=None):
            for k, p in enumerate(article.paragraphs):
                qs = [q for q in article.questions if q.paragraph_index == k and q.answers]
                if qs and len(p.text) >= 200:
                    q = qs[rng.randrange(len(qs))]
                    pool.append(QAItem(domain, p.text, q.question, q.answers[0]))
        rng.shuffle(pool)
        out.extend(pool[:share])
    return out


# ------------------------------------------------------------------------------------------- the loss


def target_nll(decoder: Any, prefixes: Sequence[Any], targets: Sequence[Sequence[int]]) -> Any:
    """Mean NLL per target token of each ``targets[i]`` (token ids) after ``prefixes[i]`` (``[L_i, hidden]``
    embeddings), in one right-padded batch; the LM head runs only where a target token is predicted."""
    import torch

    table = decoder.get_input_embeddings()
    device = table.weight.device
    rows = []
    for prefix, target in zip(prefixes, targets, strict=True):
        ids = torch.tensor(list(target), dtype=torch.long, device=device)
        rows.append((torch.cat([prefix.to(device), table(ids)]), len(prefix), ids))
    width = max(len(r[0]) for r in rows)
    hidden = rows[0][0].shape[-1]
    embeds = torch.zeros((len(rows), width, hidden), dtype=rows[0][0].dtype, device=device)
    mask = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    for i, (e, _, _) in enumerate(rows):
        embeds[i, : len(e)] = e
        mask[i, : len(e)] = 1
    states = decoder.model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
    out = []
    for i, (_, start, ids) in enumerate(rows):
        logits = decoder.lm_head(states[i, start - 1 : start - 1 + len(ids)]).float()
        out.append(torch.nn.functional.cross_entropy(logits, ids))
    return torch.stack(out)


def _embed_text(decoder: Any, tokenizer: Any, text: str) -> Any:
    import torch

    table = decoder.get_input_embeddings()
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        return table(torch.tensor(ids, dtype=torch.long, device=table.weight.device))


# ----------------------------------------------------------------------------------------- encoder data


@dataclass(slots=True)
class Encoded:
    pooled: list[np.ndarray]  # per segment [k, 384]
    owner: list[int]  # item index of each segment
    texts: list[str]  # segment text
    group_spans: list[list[tuple[int, int]]]  # char spans (in the paragraph) of each segment's groups


def encode_items(enc: SoftEncoder, items: Sequence[QAItem], max_segments: int, cache_dir: Path, err: TextIO) -> Encoded:
    pieces = enc.segment([it.paragraph for it in items])
    counts: dict[int, int] = {}
    keep = []
    for p in pieces:
        counts[p.source] = counts.get(p.source, 0) + 1
        if counts[p.source] <= max_segments:
            keep.append(p)
    digest = hashlib.sha256(json.dumps([enc.fingerprint, [p.ids for p in keep]]).encode()).hexdigest()[:16]
    path = cache_dir / f"states-{digest}.npz"
    if path.is_file():
        loaded = np.load(path)
        pooled = [loaded[f"arr_{i}"] for i in range(len(keep))]
        err.write(f"encoder states: {len(keep)} segments from {path}\n")
    else:
        err.write(f"encoder states: {len(keep)} segments through {enc.config.encoder}\n")
        pooled = enc.pooled_states([p.ids for p in keep])
        cache_dir.mkdir(parents=True, exist_ok=True)
        np.savez(path, *pooled)
    spans = []
    for p in keep:
        b = enc.group_bounds(len(p.ids))
        spans.append([(p.offsets[a][0], p.offsets[z - 1][1]) for a, z in itertools.pairwise(b)])
    texts = [items[p.source].paragraph[p.start : p.end] for p in keep]
    return Encoded(pooled, [p.source for p in keep], texts, spans)


def ridge_init(
    projector: Any, encoded: Encoded, items: Sequence[QAItem], decoder: Any, tokenizer: Any, lam: float
) -> float:
    """Fit ``projector.linear`` so a group's pooled state maps to the mean decoder embedding of its characters;
    returns the fit's R² (on the training groups)."""
    import torch

    table = decoder.get_input_embeddings().weight.detach().float().cpu().numpy()
    enc_ids = tokenizer([it.paragraph for it in items], add_special_tokens=False, return_offsets_mapping=True)
    xs, ys = [], []
    for seg, owner, spans in zip(encoded.pooled, encoded.owner, encoded.group_spans, strict=True):
        ids = np.asarray(enc_ids["input_ids"][owner])
        offs = np.asarray(enc_ids["offset_mapping"][owner]).reshape(-1, 2)
        for vec, (a, z) in zip(seg, spans, strict=True):
            hit = (offs[:, 1] > a) & (offs[:, 0] < z)
            if hit.any():
                xs.append(vec)
                ys.append(table[ids[hit]].mean(0))
    with torch.no_grad():
        x = projector.norm(torch.from_numpy(np.stack(xs))).numpy().astype(np.float64)
    y = np.stack(ys).astype(np.float64)
    x1 = np.hstack([x, np.ones((len(x), 1))])
    w = np.linalg.solve(x1.T @ x1 + lam * np.eye(x1.shape[1]), x1.T @ y)
    pred = x1 @ w
    r2 = 1.0 - float(((pred - y) ** 2).sum() / ((y - y.mean(0)) ** 2).sum())
    with torch.no_grad():
        projector.linear.weight.copy_(torch.from_numpy(w[:-1].T).float())
        projector.linear.bias.copy_(torch.from_numpy(w[-1]).float())
        projector.fc2.weight.zero_()
        projector.fc2.bias.zero_()
    return r2


class Batches:
    """The decoder-side pieces of every example, built once: prefix text embeddings and target ids."""

    def __init__(self, decoder: Any, tokenizer: Any, items: Sequence[QAItem], encoded: Encoded, limit: int) -> None:
        import torch

        self.device = decoder.get_input_embeddings().weight.device
        self.before = _embed_text(decoder, tokenizer, CONTEXT_PREFIX)
        self.recon_after = _embed_text(decoder, tokenizer, RECON_SUFFIX)
        self.empty = self.before[:0]
        self.segments: dict[int, list[int]] = {}
        for s, owner in enumerate(encoded.owner):
            self.segments.setdefault(owner, []).append(s)
        self.pooled = [torch.from_numpy(a).to(self.device) for a in encoded.pooled]
        self.qa_after = [_embed_text(decoder, tokenizer, qa_suffix(it.question)) for it in items]
        self.answers = [tokenizer(" " + it.answer, add_special_tokens=False)["input_ids"][:limit] for it in items]
        self.recon = [tokenizer(" " + t, add_special_tokens=False)["input_ids"][:limit] for t in encoded.texts]

    def qa(self, projector: Any | None, item: int) -> tuple[Any, list[int]]:
        import torch

        soft = self.empty
        if projector is not None:
            soft = projector(torch.cat([self.pooled[s] for s in self.segments[item]]))
        return torch.cat([self.before, soft, self.qa_after[item]]), self.answers[item]

    def reconstruction(self, projector: Any, segment: int) -> tuple[Any, list[int]]:
        import torch

        return torch.cat([self.before, projector(self.pooled[segment]), self.recon_after]), self.recon[segment]


def validate(decoder: Any, batches: Batches, projector: Any | None, items: Sequence[int]) -> float:
    import torch

    values: list[float] = []
    with torch.no_grad():
        for b in range(0, len(items), 8):
            rows = [batches.qa(projector, i) for i in items[b : b + 8] if i in batches.segments]
            if rows:
                values.extend(target_nll(decoder, [r[0] for r in rows], [r[1] for r in rows]).tolist())
    return round(float(np.mean(values)), 5) if values else float("nan")
