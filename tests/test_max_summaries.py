"""The `max` check (evals/max_summaries.py): balanced and max with its summaries on, on the same GSM8K question and
budgets, with the real SmolLM2 summarizer; the report counts what became of every summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import require_data

from promptzip.evals.max_summaries import main


@pytest.mark.slow
@pytest.mark.data
def test_the_max_check_runs_both_presets_on_the_same_items_and_counts_the_summaries(tmp_path: Path) -> None:
    require_data("gsm8k")
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    # torch's own thread count (--threads 0), not the check's default one thread: a test needs no quiet machine
    assert main(["--suite", "gsm8k-qa", "--n", "1", "--out", str(tmp_path), "--threads", "0"]) == 0
    assert torch.get_num_threads() == threads
    report = json.loads((tmp_path / "max_summaries.json").read_text())
    assert report["meta"]["threads"] == threads
    assert report["items"] == 1
    balanced, summarizing = report["methods"]["promptzip-balanced"], report["methods"]["promptzip-max-summaries"]
    assert balanced["summaries"] == {}  # balanced never summarizes
    tally = dict(summarizing["summaries"])
    generated, accepted = tally.pop("generated", 0), tally.pop("accepted", 0)
    assert generated > 0  # max with summaries=True asked the model
    assert all(reason.startswith("rejected:") for reason in tally)
    assert accepted + sum(tally.values()) == generated  # every summary got a verdict
    assert 0 <= summarizing["summaries_chosen"] <= accepted  # only an accepted summary can be chosen
    for row in (balanced, summarizing):
        assert set(row["retention"]) == {"10x", "20x", "50x"}
        assert all(0.0 <= v <= 1.0 for v in row["retention"].values())
    text = (tmp_path / "max_summaries.md").read_text()
    assert "| promptzip-max-summaries |" in text
    assert "python -P -m promptzip.evals.max_summaries --suite gsm8k-qa --n 1 --threads 0" in text
    assert ("one torch thread." if threads == 1 else f"{threads} torch threads.") in text
