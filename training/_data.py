"""The trainers' one door to :mod:`promptzip.evals`: the public data sets they train on and the answer
normalisation their targets use. No other module of :mod:`promptzip.training` imports ``promptzip.evals``, and the
runtime imports neither (a test checks both), so where training data comes from is decided here alone.
"""

from __future__ import annotations

from promptzip.evals.data import (
    SQUAD_SHIFT_DOMAINS,
    archive_record,
    load_passage_qa,
    load_squad_shift,
    load_summary_pairs,
    sample_questions,
)
from promptzip.evals.metrics import content_words, normalize_answer
from promptzip.evals.records import Question, SquadArticle

__all__ = [
    "SQUAD_SHIFT_DOMAINS",
    "Question",
    "SquadArticle",
    "archive_record",
    "content_words",
    "load_passage_qa",
    "load_squad_shift",
    "load_summary_pairs",
    "normalize_answer",
    "sample_questions",
]
