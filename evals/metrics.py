"""Metrics shared by evals, tests and benchmarks.

* Answer retention: does a gold answer string survive in the compressed context (SQuAD-normalized)?
* Gold hit: does any kept source span overlap the gold paragraph?
* Summary content: how much of a reference summary's content survives in a compressed article (recall only; see
  :func:`summary_recall` for why not ROUGE of the article against the summary).
* Downstream QA: SQuAD exact match and token F1 of a generated answer.
* Intervals: Wilson for proportions, a normal interval for means.
"""

from __future__ import annotations

import math
import re
import statistics
import string
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from promptzip._types import Span

__all__ = [
    "answer_retained",
    "content_words",
    "exact_match",
    "lcs_length",
    "mean_interval",
    "normalize_answer",
    "normalize_text",
    "scored_with_current_metric",
    "spans_overlap",
    "squad_f1",
    "summary_recall",
    "wilson_interval",
]

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans(dict.fromkeys(string.punctuation, " "))
_NOT_WORD = re.compile(r"[^\w\s]|_")

RETENTION_METRIC = 2
"""Version of :func:`answer_retained`; record files carry it so a report never mixes versions unmarked.
1: :func:`normalize_answer` on both sides (ASCII punctuation only), so an answer kept verbatim between curly quotes
or em-dashes (“…”, —) counted as lost. 2: :func:`normalize_text` on both sides (all punctuation and symbols)."""
_STOPWORDS = frozenset(
    "a an and are as at be been being but by can could did do does for from had has have he her hers him his how i"
    " if in into is it its me my no not of on or our she so than that the their them then there these they this"
    " those to too us was we were what when where which while who whom why will with would you your also am any"
    " each more most other some such only own same very just s t said says says mr mrs ms".split()
)


def _without_articles(text: str) -> str:
    return " ".join(_ARTICLES.sub(" ", text).split())


def normalize_answer(text: str) -> str:
    """SQuAD's answer normalization: lower case, no punctuation, no articles, single spaces."""
    return _without_articles(text.lower().translate(_PUNCT))


def normalize_text(text: str) -> str:
    """:func:`normalize_answer` with every non-word character as punctuation, not only ASCII's: “…”, —, « » and
    ¿ separate words as " and - do. For matching answers inside text; SQuAD's EM and F1 keep the official one."""
    return _without_articles(_NOT_WORD.sub(" ", text.lower()))


def scored_with_current_metric(meta: Mapping[str, Any]) -> bool:
    """Whether a results header (a record file's meta, ``downstream.json``, ``token_level.json``) was scored with
    this :data:`RETENTION_METRIC`; a header without the field predates it and is version 1."""
    return bool(meta.get("retention_metric", 1) == RETENTION_METRIC)


def answer_retained(context: str, answers: Iterable[str]) -> bool:
    """Whether any gold answer survives in ``context`` (both :func:`normalize_text`-ed, padded so "1889" ≠
    "18890"); see :data:`RETENTION_METRIC`."""
    haystack = f" {normalize_text(context)} "
    return any(f" {a} " in haystack for a in map(normalize_text, answers) if a)


def spans_overlap(kept: Iterable[Span], target: Span) -> bool:
    """Whether any kept span shares at least one character with ``target``."""
    return any(s.start < target.end and s.end > target.start for s in kept)


def exact_match(prediction: str, answers: Iterable[str]) -> float:
    """SQuAD exact match (1.0 or 0.0) against the best gold answer."""
    p = normalize_answer(prediction)
    return float(any(p == normalize_answer(a) for a in answers))


def squad_f1(prediction: str, answers: Iterable[str]) -> float:
    """SQuAD token F1 against the best gold answer."""
    pred = normalize_answer(prediction).split()
    best = 0.0
    for answer in answers:
        gold = normalize_answer(answer).split()
        common = sum((Counter(pred) & Counter(gold)).values())
        if not pred or not gold or not common:
            best = max(best, float(pred == gold))
            continue
        precision, recall = common / len(pred), common / len(gold)
        best = max(best, 2 * precision * recall / (precision + recall))
    return best


def content_words(text: str) -> list[str]:
    """Normalized words of ``text`` without stop words (order and repeats kept)."""
    return [w for w in normalize_answer(text).split() if w not in _STOPWORDS]


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two word lists (O(len(a)·len(b)) time, O(len(b)) memory)."""
    if not a or not b:
        return 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, 1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def summary_recall(compressed: str, reference: str) -> dict[str, float]:
    """How much of a reference summary survives in a compressed article, as recalls in [0, 1].

    * ``content``: distinct content words of the summary that occur in the compressed text;
    * ``rouge1``: ROUGE-1 recall of the summary against the compressed text (clipped unigram counts);
    * ``rougeL``: ROUGE-L recall, the longest common subsequence over the summary's length.

    ROUGE of the *compressed article* scored as if it were a summary (precision, F1) is not meaningful: it rewards
    short outputs and punishes every kept sentence that is not in the summary, which is the point of keeping
    context. What a compressor must do is keep the content the summary needs, so only recall is reported.
    """
    ref = normalize_answer(reference).split()
    hyp = normalize_answer(compressed).split()
    ref_content = set(content_words(reference))
    hyp_set = set(hyp)
    content = len(ref_content & hyp_set) / len(ref_content) if ref_content else 0.0
    overlap = sum((Counter(ref) & Counter(hyp)).values())
    rouge1 = overlap / len(ref) if ref else 0.0
    rouge_l = lcs_length(ref, hyp) / len(ref) if ref else 0.0
    return {"content": content, "rouge1": rouge1, "rougeL": rouge_l}


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def mean_interval(values: Sequence[float], z: float = 1.96) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean and a normal-approximation 95% interval (``z`` standard errors)."""
    if not values:
        return (math.nan, math.nan, math.nan)
    mean = statistics.fmean(values)
    if len(values) < 2:
        return (mean, mean, mean)
    half = z * statistics.stdev(values) / math.sqrt(len(values))
    return (mean, mean - half, mean + half)
