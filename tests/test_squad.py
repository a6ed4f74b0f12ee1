"""The extractive compressor on a real SQuAD v1.1 dev article (whole article as context) with the real models.

The threshold was measured (see the closing note of the foundation issue) and set with a margin below it; the
article is reported-on data, so nothing was tuned on it.
"""

from __future__ import annotations

import pytest
from conftest import require_data

import promptzip as pz
from promptzip.evals import data
from promptzip.evals.metrics import answer_retained

pytestmark = [pytest.mark.slow, pytest.mark.data]

ARTICLE = "Normans"


@pytest.fixture(scope="module")
def normans() -> data.SquadArticle:
    require_data("squad")
    return next(a for a in data.load_squad_dev() if a.title == ARTICLE)


def test_answers_survive_4x_compression(fast: pz.Zipper, normans: data.SquadArticle) -> None:
    tokens = fast.tokenizer.count(normans.context)
    budget = tokens // 4
    kept = gold = 0
    for q in normans.questions:
        r = fast.compress(normans.context, question=q.question, budget=budget)
        assert r.tokens_out <= budget
        kept += answer_retained(r.context, q.answers)
        para = normans.paragraphs[q.paragraph_index]
        gold += any(span.start < para.end and span.end > para.start for c in r.chunks for span in c.kept)
    retention = kept / len(normans.questions)
    print(f"{ARTICLE}: {len(normans.questions)} questions, {tokens} tokens, budget {budget}: retention {retention:.3f}")
    assert retention >= 0.90
    assert gold / len(normans.questions) >= 0.90
