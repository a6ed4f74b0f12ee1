"""``promptzip train soft-encoder``: train the MiniLM → SmolLM2 soft-prompt projector of :mod:`.soft`.

Frozen decoder (SmolLM2-135M by default), frozen packaged MiniLM, trainable projector only::

    promptzip train soft-encoder   # → compressors/models/soft-minilm-smollm2/{projector.safetensors,manifest.json}

1. **Text** — SQuAD-shifts paragraphs and their questions (new_wiki, nyt, amazon_reviews, reddit): a seeded sample
   of ``--paragraphs``, never the SQuAD v1.1 dev articles the soft bench reports on. 10% of the paragraphs (by a
   hash of the text) are held out for validation and for choosing the best checkpoint.
2. **Encoder states** — every paragraph's segments through the frozen MiniLM once, mean-pooled into the projector's
   input groups, cached on disk (``.npz`` keyed by the config and the texts), so a resumed run skips it.
3. **Alignment start** — the projector's linear map is fitted in closed form (ridge regression) from each group's
   pooled MiniLM state to the mean of the decoder's token embeddings over the same characters, so training starts
   from soft vectors that already sit among the decoder's own embeddings (a cheap stand-in for xRAG's paraphrase
   pre-training, which needs many decoder passes).
4. **Training** — AdamW on two objectives, alternating in every batch: *reconstruction* (soft(segment) →
   the decoder continues with the segment's first ``max_text_tokens`` tokens) and *QA* (soft(paragraph) + question
   → the gold answer's NLL). Sequences are the soft vectors plus ≤ ``max_text_tokens`` text tokens, so a CPU step
   stays short. Progress bar, checkpoints every ``checkpoint_every`` steps (projector + optimizer + best state),
   ``--resume``, ``--max-minutes``; CUDA when present (``--device auto``).
5. **Manifest** — config, sha256 of ``projector.safetensors``, the data record, validation NLL per answer token
   (no context vs soft context, before and after training), timings, machine.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import platform
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from promptzip._errors import ConfigError
from promptzip.compressors.soft import SOFT_DEFAULT, SoftConfig, SoftEncoder
from promptzip.compressors.soft_decoder import CONTEXT_PREFIX, qa_suffix

__all__ = ["QAItem", "SoftTrainConfig", "collect_items", "target_nll", "train_soft"]

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
    from promptzip.evals import data

    rng = random.Random(config.seed)
    share = math.ceil(config.paragraphs / max(1, len(config.domains)))
    out: list[QAItem] = []
    for domain in config.domains:
        pool: list[QAItem] = []
        for article in data.load_squad_shift(domain, max_paragraphs=None):
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
class _Encoded:
    pooled: list[np.ndarray]  # per segment [k, 384]
    owner: list[int]  # item index of each segment
    texts: list[str]  # segment text
    group_spans: list[list[tuple[int, int]]]  # char spans (in the paragraph) of each segment's groups


def _encode_items(
    enc: SoftEncoder, items: Sequence[QAItem], max_segments: int, cache_dir: Path, err: TextIO
) -> _Encoded:
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
    return _Encoded(pooled, [p.source for p in keep], texts, spans)


def _ridge_init(
    projector: Any, encoded: _Encoded, items: Sequence[QAItem], decoder: Any, tokenizer: Any, lam: float
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


# ---------------------------------------------------------------------------------------------- training


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: no CUDA device is available")
    return name


class _Batches:
    """The decoder-side pieces of every example, built once: prefix text embeddings and target ids."""

    def __init__(self, decoder: Any, tokenizer: Any, items: Sequence[QAItem], encoded: _Encoded, limit: int) -> None:
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


def _validate(decoder: Any, batches: _Batches, projector: Any | None, items: Sequence[int]) -> float:
    import torch

    values: list[float] = []
    with torch.no_grad():
        for b in range(0, len(items), 8):
            rows = [batches.qa(projector, i) for i in items[b : b + 8] if i in batches.segments]
            if rows:
                values.extend(target_nll(decoder, [r[0] for r in rows], [r[1] for r in rows]).tolist())
    return round(float(np.mean(values)), 5) if values else float("nan")


def train_soft(
    config: SoftTrainConfig,
    out: Path,
    *,
    work_dir: Path | None = None,
    resume: bool = False,
    progress: bool = True,
    err: TextIO = sys.stderr,
    items: Sequence[QAItem] | None = None,
) -> dict[str, Any]:
    """Run the recipe (module docstring) and write ``out/projector.safetensors`` and ``out/manifest.json``.

    ``items`` replaces the data (tests use a few paragraphs); ``work_dir`` holds the encoder-state cache and the
    checkpoint (``resume=True`` continues from it).
    """
    import torch
    from safetensors.torch import save_file
    from tqdm import tqdm

    from promptzip._causal_lm import load_causal_lm
    from promptzip.compressors.soft import build_projector

    started = time.perf_counter()
    if config.threads:
        torch.set_num_threads(config.threads)
    device = _device(config.device)
    corpus = list(items) if items is not None else collect_items(config)
    if not corpus:
        raise ConfigError("no training text")
    train_idx = [i for i, it in enumerate(corpus) if not it.held_out] or list(range(len(corpus)))
    val_idx = ([i for i, it in enumerate(corpus) if it.held_out] or train_idx[:2])[: config.validation]
    decoder, tokenizer = load_causal_lm(config.decoder)
    table = decoder.get_input_embeddings()
    soft_config = SoftConfig(
        encoder=config.encoder,
        decoder=config.decoder,
        segment_tokens=config.segment_tokens,
        ratio=config.ratio,
        hidden_size=int(table.embedding_dim),
        projector_hidden=config.projector_hidden,
        init_norm=config.init_norm,
    )
    enc = SoftEncoder(soft_config)
    work = work_dir or _default_work_dir()
    t0 = time.perf_counter()
    encoded = _encode_items(enc, corpus, config.max_segments, work, err)
    encode_s = time.perf_counter() - t0
    decoder.to(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        projector = build_projector(soft_config)
    checkpoint = work / "checkpoint.pt"
    record: dict[str, Any] = {"step": 0, "history": [], "losses": [], "best": None, "ridge_r2": None}
    best_state: dict[str, Any] | None = None
    saved: dict[str, Any] | None = None
    if resume and checkpoint.is_file():
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
        projector.load_state_dict(saved["projector"])
        record = json.loads(saved["record"])
        best_state = saved.get("best_state") or None
        err.write(f"resuming from {checkpoint} at step {record['step']}\n")
    else:
        record["ridge_r2"] = round(_ridge_init(projector, encoded, corpus, decoder, tokenizer, config.ridge), 4)
    projector.to(device)
    scale = [projector.log_scale]
    rest = [p for n, p in projector.named_parameters() if n != "log_scale"]
    optimizer = torch.optim.AdamW(
        [{"params": rest, "lr": config.lr}, {"params": scale, "lr": config.scale_lr, "weight_decay": 0.0}],
        weight_decay=0.01,
    )
    base_lrs = [config.lr, config.scale_lr]
    if saved is not None:
        optimizer.load_state_dict(saved["optimizer"])
    batches = _Batches(decoder, tokenizer, corpus, encoded, config.max_text_tokens)
    train_items = [i for i in train_idx if i in batches.segments]
    train_segments = [s for s, o in enumerate(encoded.owner) if o in set(train_items)]
    if record["step"] == 0 and not record["history"]:
        none = _validate(decoder, batches, None, val_idx)
        init = _validate(decoder, batches, projector, val_idx)
        record["history"].append({"step": 0, "val_nll_soft": init})
        record.update(val_nll_none=none, val_nll_soft_init=init, best={"step": 0, "val_nll_soft": init})
        best_state = {k: v.detach().cpu().clone() for k, v in projector.state_dict().items()}
    deadline = time.perf_counter() + config.max_minutes * 60
    bar = tqdm(total=config.steps, initial=record["step"], desc="training projector", disable=not progress, file=err)
    t1 = time.perf_counter()
    stopped_early = False

    def save_checkpoint() -> None:
        work.mkdir(parents=True, exist_ok=True)
        tmp = checkpoint.with_suffix(".tmp")
        state = {k: v.detach().cpu() for k, v in projector.state_dict().items()}
        torch.save(
            {
                "projector": state,
                "optimizer": optimizer.state_dict(),
                "record": json.dumps(record),
                "best_state": best_state,
            },
            tmp,
        )
        tmp.replace(checkpoint)

    projector.train()
    while record["step"] < config.steps:
        step = record["step"]
        rng = np.random.default_rng([config.seed, step])
        half = max(1, config.batch_size // 2)
        rows = [batches.qa(projector, int(i)) for i in rng.choice(train_items, size=half)]
        rows += [batches.reconstruction(projector, int(s)) for s in rng.choice(train_segments, size=half)]
        for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
            group["lr"] = base * min(1.0, (step + 1) / 10) * max(0.1, 1 - step / max(1, config.steps))
        loss = target_nll(decoder, [r[0] for r in rows], [r[1] for r in rows]).mean()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(projector.parameters(), 1.0)
        optimizer.step()
        record["losses"].append(round(float(loss.item()), 5))
        record["step"] = step + 1
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(record['losses'][-20:]):.3f}")
        last = record["step"] == config.steps or time.perf_counter() > deadline
        if record["step"] % config.eval_every == 0 or last:
            value = _validate(decoder, batches, projector, val_idx)
            record["history"].append({"step": record["step"], "val_nll_soft": value})
            if value < record["best"]["val_nll_soft"]:
                record["best"] = {"step": record["step"], "val_nll_soft": value}
                best_state = {k: v.detach().cpu().clone() for k, v in projector.state_dict().items()}
        if record["step"] % config.checkpoint_every == 0 or last:
            save_checkpoint()
        if time.perf_counter() > deadline and record["step"] < config.steps:
            stopped_early = True
            break
    bar.close()
    train_s = time.perf_counter() - t1
    if best_state is not None:
        projector.load_state_dict(best_state)
    record["output_norm"] = round(float(projector.log_scale.detach().exp()), 4)
    record["decoder_token_norm"] = round(float(table.weight.norm(dim=-1).mean()), 4)

    out.mkdir(parents=True, exist_ok=True)
    weights = out / "projector.safetensors"
    save_file({k: v.detach().cpu().contiguous() for k, v in projector.state_dict().items()}, str(weights))
    weights.chmod(0o644)
    manifest = _manifest(config, soft_config, corpus, train_idx, val_idx, encoded, record, weights)
    manifest["training"].update(
        stopped_early=stopped_early,
        encode_seconds=round(encode_s, 1),
        train_seconds=round(train_s, 1),
        total_seconds=round(time.perf_counter() - started, 1),
        device=device,
        threads=torch.get_num_threads(),
        torch=torch.__version__,
    )
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def _manifest(
    config: SoftTrainConfig,
    soft_config: SoftConfig,
    corpus: Sequence[QAItem],
    train_idx: list[int],
    val_idx: list[int],
    encoded: _Encoded,
    record: dict[str, Any],
    weights: Path,
) -> dict[str, Any]:
    from promptzip._models import resolve_model
    from promptzip.retrievers.dense import weights_fingerprint

    digest = hashlib.sha256()
    per_domain: dict[str, int] = {}
    for it in corpus:
        digest.update(hashlib.sha256(it.paragraph.encode()).hexdigest().encode())
        per_domain[it.domain] = per_domain.get(it.domain, 0) + 1
    history = record["history"]
    losses = record["losses"]
    return {
        "name": SOFT_DEFAULT,
        "created_with": "promptzip train soft-encoder",
        "config": soft_config.to_json(),
        "encoder": {"model": config.encoder, "weights_sha16": weights_fingerprint(resolve_model(config.encoder).path)},
        "decoder": {"model": config.decoder, "frozen": True},
        "data": {
            "source": "SQuAD-shifts (bigbench squad_shifts), paragraphs with one question each",
            "paragraphs_per_domain": per_domain,
            "train_paragraphs": len(train_idx),
            "validation_paragraphs": len(val_idx),
            "segments": len(encoded.pooled),
            "texts_sha256": digest.hexdigest(),
            "never_used": "SQuAD v1.1 dev (the reported eval set)",
        },
        "hyperparameters": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()},
        "training": {
            "steps": record["step"],
            "final_loss": round(float(np.mean(losses[-20:])), 5) if losses else None,
            "python": platform.python_version(),
            "machine": platform.machine(),
        },
        "metrics": {
            "validation": "mean NLL per gold-answer token on held-out SQuAD-shifts paragraphs (training domains)",
            "val_nll_none": record.get("val_nll_none"),
            "val_nll_soft_init": record.get("val_nll_soft_init"),
            "val_nll_soft": record["best"]["val_nll_soft"] if record["best"] else None,
            "best_step": record["best"]["step"] if record["best"] else None,
            "ridge_r2": record.get("ridge_r2"),
            "output_norm": record.get("output_norm"),
            "decoder_token_norm": record.get("decoder_token_norm"),
            "history": history,
        },
        "files": {"projector.safetensors": hashlib.sha256(weights.read_bytes()).hexdigest()},
    }


def _default_work_dir() -> Path:
    from promptzip._cache import default_cache_path

    return default_cache_path().parent / "train" / "soft-encoder"
