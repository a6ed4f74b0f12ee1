"""The cross-domain suites: SQuAD-shifts domains as whole contexts, one question each (query-aware, 10x-50x).

``shifts-reddit-qa`` is the protocol's held-out domain (informal forum text, the weakest kind on the held-out
multi-domain set); ``shifts-new_wiki-qa`` is its in-domain reference (Wikipedia written after SQuAD, as SQuAD
dev is). A reddit "article" is a block of up to :data:`BLOCK` consecutive comments, the size of a SQuAD dev
article; the new_wiki contexts are the articles over :data:`TUNING_MIN_CHARS` characters, the ones ``promptzip
train qa-encoder`` never trains on (they are the presets' tuning text, so new_wiki is, if anything, flattered).

A figure on a domain is cross-domain only when every trained model in the run held that domain out: the shipped
``minilm-qa`` and ``minilm-tc`` were trained on all four domains. ``make heldout`` trains both with
``--hold-out reddit`` and runs these suites with ``$PROMPTZIP_MINILM_QA_DIR`` / ``$PROMPTZIP_MINILM_TC_DIR`` set to
them; every suite built here says in its notes which adapters were in effect and whether they held the domain out.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from promptzip._types import Span
from promptzip.evals import data
from promptzip.evals.records import SquadArticle
from promptzip.evals.suites import QUERY_RATIOS, Item, Suite, Target

__all__ = ["BLOCK", "SHIFT_SUITES", "TUNING_MIN_CHARS", "adapter_notes", "shift_suite"]

BLOCK = 64  # comments per reddit context: about a SQuAD dev article's size
TUNING_MIN_CHARS = 12_000  # training.encoder's EncoderTrainConfig.tuning_min_chars (tests hold them equal)
SHIFT_SUITES = {"shifts-reddit-qa": "reddit", "shifts-new_wiki-qa": "new_wiki"}


def _articles(domain: str) -> list[SquadArticle]:
    if domain == "new_wiki":
        whole = data.load_squad_shift(domain, max_paragraphs=None)
        return [a for a in whole if len(a.context) > TUNING_MIN_CHARS]
    return data.load_squad_shift(domain, max_paragraphs=BLOCK)


def shift_suite(name: str, n: int, *, quick: bool = False, seed: int = 0) -> Suite:
    """The suite ``name`` (a key of :data:`SHIFT_SUITES`) with at most ``n`` questions."""
    domain = SHIFT_SUITES[name]
    articles = _articles(domain)
    if quick:  # the two shortest contexts: small and fast, still real
        articles = sorted(articles, key=lambda a: len(a.context))[:2]
    pairs = data.sample_questions(articles, min(n, sum(len(a.questions) for a in articles)), seed=seed)
    items = []
    for a, q in pairs:
        gold = a.gold_paragraph(q)
        items.append(
            Item(
                id=q.id,
                context=a.context,
                question=q.question,
                targets=(Target(q.answers, Span(gold.start, gold.end)),),
                documents=tuple(Span(p.start, p.end) for p in a.paragraphs),
                group=a.title,
            )
        )
    what = f"blocks of {BLOCK} comments" if domain == "reddit" else f"articles over {TUNING_MIN_CHARS:,} characters"
    return Suite(
        name,
        "query-aware",
        "qa",
        QUERY_RATIOS,
        tuple(items),
        f"SQuAD-shifts {domain} ({what}) as context, one question",
        adapter_notes(domain),
    )


def adapter_notes(domain: str) -> tuple[str, ...]:
    """Which ``minilm-qa`` and ``minilm-tc`` adapters are in effect, and whether each held ``domain`` out."""
    from promptzip.compressors.token_classifier import DISTILLED, DISTILLED_ENV, distilled_dir
    from promptzip.retrievers.qa_encoder import QA_ENCODER, QA_ENCODER_ENV, qa_encoder_dir

    notes = []
    for name, env, folder in (
        (QA_ENCODER, QA_ENCODER_ENV, qa_encoder_dir()),
        (DISTILLED, DISTILLED_ENV, distilled_dir()),
    ):
        held = _held_out(folder)
        source = f"${env}={folder}" if held is not None and _overridden(env) else "the shipped adapter"
        if held is None:
            notes.append(f"{name}: no readable manifest under {folder}")
        elif domain in held:
            notes.append(f"{name}: {source}, trained with {domain} held out (cross-domain)")
        else:
            notes.append(f"{name}: {source}, trained on {domain} too (in-domain, not a cross-domain figure)")
    return tuple(notes)


def _overridden(env: str) -> bool:
    return bool(os.environ.get(env))


def _held_out(folder: Path) -> tuple[str, ...] | None:
    """The domains an adapter's manifest says were held out (empty when none), or None without a manifest."""
    try:
        manifest: dict[str, Any] = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    held = manifest.get("hyperparameters", {}).get("held_out") or []
    return tuple(str(d) for d in held)
