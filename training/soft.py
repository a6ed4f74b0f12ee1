"""``promptzip train soft-encoder``: train the MiniLM → SmolLM2 soft-prompt projector of
:mod:`promptzip.compressors.soft`.

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
import json
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from promptzip._errors import ConfigError
from promptzip.compressors.soft import SOFT_DEFAULT, SoftConfig, SoftEncoder
from promptzip.training._soft_data import (
    Batches,
    Encoded,
    QAItem,
    SoftTrainConfig,
    collect_items,
    encode_items,
    ridge_init,
    target_nll,
    validate,
)

__all__ = ["QAItem", "SoftTrainConfig", "collect_items", "target_nll", "train_soft"]


@dataclass(frozen=True, slots=True)
class _Setup:
    """The data and the frozen models of a run."""

    corpus: list[QAItem]
    train_idx: list[int]
    val_idx: list[int]
    decoder: Any
    tokenizer: Any
    soft_config: SoftConfig
    encoded: Encoded
    encode_seconds: float


@dataclass(slots=True)
class _Run:
    """What a checkpoint holds: the projector, its optimizer, the record of the run and the best state so far."""

    projector: Any
    optimizer: Any
    record: dict[str, Any]
    best_state: dict[str, Any] | None
    checkpoint: Path

    def snapshot(self) -> None:
        self.best_state = {k: v.detach().cpu().clone() for k, v in self.projector.state_dict().items()}

    def save(self) -> None:
        import torch

        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.checkpoint.with_suffix(".tmp")
        state = {k: v.detach().cpu() for k, v in self.projector.state_dict().items()}
        torch.save(
            {
                "projector": state,
                "optimizer": self.optimizer.state_dict(),
                "record": json.dumps(self.record),
                "best_state": self.best_state,
            },
            tmp,
        )
        tmp.replace(self.checkpoint)


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: no CUDA device is available")
    return name


def _prepare(config: SoftTrainConfig, items: Sequence[QAItem] | None, work: Path, err: TextIO) -> _Setup:
    """Steps 1–2: the paragraphs, their split, the frozen decoder and the cached encoder states."""
    from promptzip._causal_lm import load_causal_lm

    corpus = list(items) if items is not None else collect_items(config)
    if not corpus:
        raise ConfigError("no training text")
    train_idx = [i for i, it in enumerate(corpus) if not it.held_out] or list(range(len(corpus)))
    val_idx = ([i for i, it in enumerate(corpus) if it.held_out] or train_idx[:2])[: config.validation]
    decoder, tokenizer = load_causal_lm(config.decoder)
    soft_config = SoftConfig(
        encoder=config.encoder,
        decoder=config.decoder,
        segment_tokens=config.segment_tokens,
        ratio=config.ratio,
        hidden_size=int(decoder.get_input_embeddings().embedding_dim),
        projector_hidden=config.projector_hidden,
        init_norm=config.init_norm,
    )
    t0 = time.perf_counter()
    encoded = encode_items(SoftEncoder(soft_config), corpus, config.max_segments, work, err)
    encode_s = time.perf_counter() - t0
    return _Setup(corpus, train_idx, val_idx, decoder, tokenizer, soft_config, encoded, encode_s)


def _start(config: SoftTrainConfig, setup: _Setup, device: str, checkpoint: Path, resume: bool, err: TextIO) -> _Run:
    """Step 3, or the checkpoint's state when resuming: the projector and its optimizer, on ``device``."""
    import torch

    from promptzip.compressors.soft import build_projector

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        projector = build_projector(setup.soft_config)
    record: dict[str, Any] = {"step": 0, "history": [], "losses": [], "best": None, "ridge_r2": None}
    saved: dict[str, Any] | None = None
    if resume and checkpoint.is_file():
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
        projector.load_state_dict(saved["projector"])
        record = json.loads(saved["record"])
        err.write(f"resuming from {checkpoint} at step {record['step']}\n")
    else:
        r2 = ridge_init(projector, setup.encoded, setup.corpus, setup.decoder, setup.tokenizer, config.ridge)
        record["ridge_r2"] = round(r2, 4)
    projector.to(device)
    rest = [p for n, p in projector.named_parameters() if n != "log_scale"]
    optimizer = torch.optim.AdamW(
        [
            {"params": rest, "lr": config.lr},
            {"params": [projector.log_scale], "lr": config.scale_lr, "weight_decay": 0.0},
        ],
        weight_decay=0.01,
    )
    if saved is not None:
        optimizer.load_state_dict(saved["optimizer"])
    best = (saved.get("best_state") or None) if saved is not None else None
    return _Run(projector, optimizer, record, best, checkpoint)


def _loop(
    config: SoftTrainConfig, setup: _Setup, run: _Run, batches: Batches, *, progress: bool, err: TextIO
) -> tuple[bool, float]:
    """Step 4 from the run's current step to ``config.steps`` or the deadline: (stopped early, seconds)."""
    import torch
    from tqdm import tqdm

    record, projector = run.record, run.projector
    train_items = [i for i in setup.train_idx if i in batches.segments]
    train_segments = [s for s, o in enumerate(setup.encoded.owner) if o in set(train_items)]
    deadline = time.perf_counter() + config.max_minutes * 60
    bar = tqdm(total=config.steps, initial=record["step"], desc="training projector", disable=not progress, file=err)
    t1 = time.perf_counter()
    base_lrs = [config.lr, config.scale_lr]
    projector.train()
    while record["step"] < config.steps:
        step = record["step"]
        rng = np.random.default_rng([config.seed, step])
        half = max(1, config.batch_size // 2)
        rows = [batches.qa(projector, int(i)) for i in rng.choice(train_items, size=half)]
        rows += [batches.reconstruction(projector, int(s)) for s in rng.choice(train_segments, size=half)]
        for group, base in zip(run.optimizer.param_groups, base_lrs, strict=True):
            group["lr"] = base * min(1.0, (step + 1) / 10) * max(0.1, 1 - step / max(1, config.steps))
        loss = target_nll(setup.decoder, [r[0] for r in rows], [r[1] for r in rows]).mean()
        run.optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(projector.parameters(), 1.0)
        run.optimizer.step()
        record["losses"].append(round(float(loss.item()), 5))
        record["step"] = step + 1
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(record['losses'][-20:]):.3f}")
        last = record["step"] == config.steps or time.perf_counter() > deadline
        if record["step"] % config.eval_every == 0 or last:
            value = validate(setup.decoder, batches, projector, setup.val_idx)
            record["history"].append({"step": record["step"], "val_nll_soft": value})
            if value < record["best"]["val_nll_soft"]:
                record["best"] = {"step": record["step"], "val_nll_soft": value}
                run.snapshot()
        if record["step"] % config.checkpoint_every == 0 or last:
            run.save()
        if time.perf_counter() > deadline and record["step"] < config.steps:
            bar.close()
            return True, time.perf_counter() - t1
    bar.close()
    return False, time.perf_counter() - t1


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

    started = time.perf_counter()
    if config.threads:
        torch.set_num_threads(config.threads)
    device = _device(config.device)
    work = work_dir or _default_work_dir()
    setup = _prepare(config, items, work, err)
    setup.decoder.to(device)
    run = _start(config, setup, device, work / "checkpoint.pt", resume, err)
    batches = Batches(setup.decoder, setup.tokenizer, setup.corpus, setup.encoded, config.max_text_tokens)
    record = run.record
    if record["step"] == 0 and not record["history"]:
        none = validate(setup.decoder, batches, None, setup.val_idx)
        init = validate(setup.decoder, batches, run.projector, setup.val_idx)
        record["history"].append({"step": 0, "val_nll_soft": init})
        record.update(val_nll_none=none, val_nll_soft_init=init, best={"step": 0, "val_nll_soft": init})
        run.snapshot()
    stopped_early, train_s = _loop(config, setup, run, batches, progress=progress, err=err)
    if run.best_state is not None:
        run.projector.load_state_dict(run.best_state)
    record["output_norm"] = round(float(run.projector.log_scale.detach().exp()), 4)
    record["decoder_token_norm"] = round(float(setup.decoder.get_input_embeddings().weight.norm(dim=-1).mean()), 4)
    weights = _save_projector(run.projector, out)
    manifest = _manifest(config, setup, record, weights)
    manifest["training"].update(
        stopped_early=stopped_early,
        encode_seconds=round(setup.encode_seconds, 1),
        train_seconds=round(train_s, 1),
        total_seconds=round(time.perf_counter() - started, 1),
        device=device,
        threads=torch.get_num_threads(),
        torch=torch.__version__,
    )
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def _save_projector(projector: Any, out: Path) -> Path:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    weights = out / "projector.safetensors"
    save_file({k: v.detach().cpu().contiguous() for k, v in projector.state_dict().items()}, str(weights))
    weights.chmod(0o644)
    return weights


def _manifest(config: SoftTrainConfig, setup: _Setup, record: dict[str, Any], weights: Path) -> dict[str, Any]:
    from promptzip._models import resolve_model
    from promptzip.retrievers.dense import weights_fingerprint

    digest = hashlib.sha256()
    per_domain: dict[str, int] = {}
    for it in setup.corpus:
        digest.update(hashlib.sha256(it.paragraph.encode()).hexdigest().encode())
        per_domain[it.domain] = per_domain.get(it.domain, 0) + 1
    losses, best = record["losses"], record["best"]
    return {
        "name": SOFT_DEFAULT,
        "created_with": "promptzip train soft-encoder",
        "config": setup.soft_config.to_json(),
        "encoder": {"model": config.encoder, "weights_sha16": weights_fingerprint(resolve_model(config.encoder).path)},
        "decoder": {"model": config.decoder, "frozen": True},
        "data": {
            "source": "SQuAD-shifts (bigbench squad_shifts), paragraphs with one question each",
            "paragraphs_per_domain": per_domain,
            "train_paragraphs": len(setup.train_idx),
            "validation_paragraphs": len(setup.val_idx),
            "segments": len(setup.encoded.pooled),
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
            "val_nll_soft": best["val_nll_soft"] if best else None,
            "best_step": best["step"] if best else None,
            "ridge_r2": record.get("ridge_r2"),
            "output_norm": record.get("output_norm"),
            "decoder_token_norm": record.get("decoder_token_norm"),
            "history": record["history"],
        },
        "files": {"projector.safetensors": hashlib.sha256(weights.read_bytes()).hexdigest()},
    }


def _default_work_dir() -> Path:
    from promptzip._cache import default_cache_path

    return default_cache_path().parent / "train" / "soft-encoder"
