"""Without a question, a line dense with facts (an ID, an amount, a date, a phone number, a URL) is not dropped for
boilerplate that merely resembles the rest of the text (real presets on the bundled speech)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import promptzip as pz
from promptzip.compressors.extractive import ExtractiveCompressor
from promptzip.compressors.pruning import fact_density
from promptzip.retrievers.sparse import BM25Scorer

SPEECH = (Path(pz.__file__).parent / "_sample" / "sotu.txt").read_text()
INVOICE = (
    "Invoice INV-2024-0042: amount due $1,284.50 by 2024-07-15; questions to +1 (415) 555-0199 or "
    "https://billing.example.com/inv/0042."
)
FACTS = ("INV-2024-0042", "$1,284.50", "2024-07-15", "555-0199", "https://billing.example.com/inv/0042")


def test_fact_density_ranks_facts_above_headings_list_numbers_and_prose() -> None:
    texts = [
        INVOICE,
        "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION",
        "1.",
        "The people of this nation have shown great courage in hard times.",
        "Version 2.0, January 2004",
    ]
    density = fact_density(texts)
    assert int(np.argmax(density)) == 0
    assert density[1] == density[2] == density[3] == 0.0
    assert 0.0 < density[4] < density[0]


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["fast", "balanced"])
def test_an_invoice_line_survives_query_less_compression(preset: str) -> None:
    zipper = pz.Zipper.from_preset(preset, cache="memory")
    text = SPEECH[:12000] + "\n\n" + INVOICE + "\n"
    r = zipper.compress(text, rate=0.33)
    assert r.tokens_out <= r.budget
    assert all(fact in r.text for fact in FACTS)


def test_the_weight_is_an_option_and_zero_turns_it_off() -> None:
    with pytest.raises(pz.ConfigError, match="fact_weight"):
        ExtractiveCompressor(BM25Scorer(), fact_weight=1.5)
    text = SPEECH[:6000] + "\n\n" + INVOICE + "\n"
    off = pz.Zipper(ExtractiveCompressor(BM25Scorer(), fact_weight=0.0), target="gpt-4o").compress(text, rate=0.2)
    on = pz.Zipper(ExtractiveCompressor(BM25Scorer()), target="gpt-4o").compress(text, rate=0.2)
    assert INVOICE in on.text
    assert INVOICE not in off.text  # centrality alone drops the one line unlike the rest
