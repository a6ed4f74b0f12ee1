"""``promptzip train``: the command line of the trainers that produce promptzip's packaged models.

* ``promptzip train token-classifier`` → :func:`promptzip.training.classifier.train`
* ``promptzip train soft-encoder`` → :func:`promptzip.training.soft.train_soft`
* ``promptzip train qa-encoder`` → :func:`promptzip.training.encoder.train_encoder`

Each sub-command turns its flags into the trainer's config dataclass, runs it, and prints the manifest's metrics
as JSON; the trainers themselves import torch and peft lazily, so building the parser stays cheap. The same
commands run as ``python -m promptzip.training token-classifier|soft-encoder|qa-encoder [...]``; the ``promptzip``
CLI hands ``promptzip train ...`` to :func:`run`, so nothing of this package loads for its other commands.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from promptzip._errors import PromptZipError
from promptzip.compressors.soft import packaged_dir
from promptzip.compressors.token_classifier import distilled_dir
from promptzip.retrievers.qa_encoder import qa_encoder_dir
from promptzip.training._distill import SOURCES
from promptzip.training.classifier import TrainConfig, train
from promptzip.training.encoder import EncoderTrainConfig, train_encoder
from promptzip.training.soft import SoftTrainConfig, train_soft

__all__ = ["add_soft_encoder_command", "add_train_command", "main", "run"]


def add_train_command(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``train`` (``token-classifier``, ``soft-encoder``, ``qa-encoder``) to the ``promptzip`` CLI; handlers
    take the CLI's ``(args, out, err)``."""
    train_parser: argparse.ArgumentParser = subparsers.add_parser("train", help="train promptzip's own models")
    kinds = train_parser.add_subparsers(dest="train_command", required=True)
    p = kinds.add_parser("token-classifier", help="distil the self-information teacher into MiniLM + LoRA")
    defaults = TrainConfig()
    p.add_argument("--out", type=Path, default=None, help="artifact folder (default: the packaged minilm-tc)")
    p.add_argument("--chars", type=int, default=defaults.chars, help="training text, in characters")
    p.add_argument("--epochs", type=int, default=defaults.epochs)
    p.add_argument("--beta", type=float, default=defaults.beta, help="weight of the summary/answer alignment signal")
    p.add_argument("--max-minutes", type=float, default=defaults.max_minutes, help="stop training after this long")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--cache", type=Path, default=None, help="teacher-label cache (SQLite file)")
    p.add_argument(
        "--sources",
        type=_names,
        default=defaults.sources,
        help=f"comma-separated, of {', '.join(SOURCES)} (default: {','.join(defaults.sources)}; the rest is eval text)",
    )
    p.add_argument("--hold-out", type=_names, default=(), help="comma-separated sources never read (cross-domain)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_run_token_classifier)
    add_soft_encoder_command(kinds)
    add_qa_encoder_command(kinds)
    return p


def _run_token_classifier(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    config = TrainConfig(
        chars=args.chars,
        epochs=args.epochs,
        beta=args.beta,
        max_minutes=args.max_minutes,
        seed=args.seed,
        threads=args.threads,
        sources=args.sources,
        held_out=args.hold_out,
    )
    manifest = train(config, args.out or distilled_dir(), cache_path=args.cache, progress=not args.quiet, err=err)
    out.write(json.dumps({"metrics": manifest["metrics"], "training": manifest["training"]}, indent=2) + "\n")
    return 0


def add_soft_encoder_command(kinds: Any) -> argparse.ArgumentParser:
    """Add ``soft-encoder`` to the ``promptzip train`` sub-commands."""
    p: argparse.ArgumentParser = kinds.add_parser(
        "soft-encoder", help="train the MiniLM → SmolLM2 soft-prompt projector (frozen encoder and decoder)"
    )
    d = SoftTrainConfig()
    p.add_argument("--out", type=Path, default=None, help="artifact folder (default: the packaged projector)")
    p.add_argument("--paragraphs", type=int, default=d.paragraphs, help="SQuAD-shifts training paragraphs")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--ratio", type=int, default=d.ratio, help="encoder tokens per vector (0: one per segment)")
    p.add_argument("--segment-tokens", type=int, default=d.segment_tokens)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--max-minutes", type=float, default=d.max_minutes, help="stop training after this long")
    p.add_argument("--device", default=d.device, help="auto (CUDA when present), cpu, cuda, cuda:1 ...")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--work-dir", type=Path, default=None, help="encoder-state cache and checkpoint folder")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --work-dir")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_run_soft_encoder)
    return p


def _run_soft_encoder(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    config = replace(
        SoftTrainConfig(),
        paragraphs=args.paragraphs,
        steps=args.steps,
        batch_size=args.batch_size,
        ratio=args.ratio or None,
        segment_tokens=args.segment_tokens,
        lr=args.lr,
        max_minutes=args.max_minutes,
        device=args.device,
        seed=args.seed,
        threads=args.threads,
    )
    manifest = train_soft(
        config,
        args.out or packaged_dir(),
        work_dir=args.work_dir,
        resume=args.resume,
        progress=not args.quiet,
        err=err,
    )
    metrics = {k: v for k, v in manifest["metrics"].items() if k != "history"}
    out.write(json.dumps({"metrics": metrics, "training": manifest["training"]}, indent=2) + "\n")
    return 0


def add_qa_encoder_command(kinds: Any) -> argparse.ArgumentParser:
    """Add ``qa-encoder`` to the ``promptzip train`` sub-commands."""
    p: argparse.ArgumentParser = kinds.add_parser(
        "qa-encoder", help="tune the MiniLM bi-encoder (LoRA) to rank a question's answer sentence first"
    )
    d = EncoderTrainConfig()
    p.add_argument("--out", type=Path, default=None, help="artifact folder (default: the packaged minilm-qa)")
    p.add_argument("--steps", type=int, default=d.steps, help="batches of up to 16 questions")
    p.add_argument(
        "--stop-after", type=int, default=d.stop_after, help="train only this many steps of the schedule (0: all)"
    )
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--rank", type=int, default=d.lora_rank, help="LoRA rank")
    p.add_argument("--max-minutes", type=float, default=d.max_minutes, help="stop training after this long")
    p.add_argument("--eval-questions", type=int, default=d.eval_questions, help="held-out questions (0: none)")
    p.add_argument(
        "--hold-out", type=_names, default=(), help="comma-separated SQuAD-shifts domains never read (cross-domain)"
    )
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_run_qa_encoder)
    return p


def _run_qa_encoder(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    config = replace(
        EncoderTrainConfig(),
        steps=args.steps,
        stop_after=args.stop_after or None,
        lr=args.lr,
        lora_rank=args.rank,
        lora_alpha=2.0 * args.rank,
        max_minutes=args.max_minutes,
        eval_questions=args.eval_questions,
        seed=args.seed,
        threads=args.threads,
        held_out=args.hold_out,
    )
    manifest = train_encoder(config, args.out or qa_encoder_dir(), progress=not args.quiet, err=err)
    training = {k: v for k, v in manifest["training"].items() if k != "loss_every_100"}
    out.write(json.dumps({"metrics": manifest["metrics"], "training": training}, indent=2) + "\n")
    return 0


def _names(value: str) -> tuple[str, ...]:
    """A comma-separated list of names, as a tuple (empty entries dropped)."""
    return tuple(name.strip() for name in value.split(",") if name.strip())


def run(argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    """``promptzip train <argv...>`` with the CLI's streams: parse, run the trainer, print its metrics. A
    :class:`~promptzip.PromptZipError` propagates (the caller reports it); a bad flag exits as argparse does."""
    parser = argparse.ArgumentParser(prog="promptzip")
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_command(sub)
    args = parser.parse_args(["train", *argv])
    func: Callable[[argparse.Namespace, TextIO, TextIO], int] = args.func
    return func(args, out, err)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m promptzip.training token-classifier|soft-encoder|qa-encoder [...]`` (same as ``promptzip
    train``)."""
    try:
        return run(list(argv) if argv is not None else sys.argv[1:], sys.stdout, sys.stderr)
    except PromptZipError as exc:
        sys.stderr.write(f"promptzip: error: {exc}\n")
        return 2
