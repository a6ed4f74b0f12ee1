"""Metrics shared by evals, tests and benchmarks."""

from __future__ import annotations

import math
import re
import string
from collections.abc import Iterable

__all__ = ["answer_retained", "normalize_answer", "wilson_interval"]

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans(dict.fromkeys(string.punctuation, " "))


def normalize_answer(text: str) -> str:
    """SQuAD's answer normalization: lower case, no punctuation, no articles, single spaces."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split())


def answer_retained(context: str, answers: Iterable[str]) -> bool:
    """Whether any gold answer survives in ``context`` (both normalized, padded so "1889" ≠ "18890")."""
    haystack = f" {normalize_answer(context)} "
    return any(f" {a} " in haystack for a in map(normalize_answer, answers) if a)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))
