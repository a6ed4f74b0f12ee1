"""The integrations eval (``promptzip.evals.integrations``) on a tiny request with the model-free BM25 stack: every
door sends it, each exercised mode is held to its budget, and the report and README table come from the rows."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

# Before litellm and haystack are imported: no cost-map download, no telemetry.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ["HAYSTACK_TELEMETRY_ENABLED"] = "False"

import promptzip as pz
from promptzip.evals.integrations import (
    DOORS,
    Request,
    markdown,
    markdown_table,
    run_doors,
    sample_request,
    write_report,
)

# litellm's own types make pydantic warn (a ReadOnly TypedDict item) when a Router builds its schemas; not ours.
pytestmark = pytest.mark.filterwarnings("ignore:Item.*the `ReadOnly` qualifier:UserWarning")


def test_every_door_sends_the_request_within_its_budget(article: str, bm25: pz.Zipper, tmp_path: Path) -> None:
    request = Request(tuple(article.split("\n\n")), "How tall is the Eiffel Tower?", budget=60)
    report = run_doors(request, zipper=bm25, warmup=False)
    rows = report["rows"]
    assert [r["door"] for r in rows] == [d.name for d in DOORS]
    budgets = report["meta"]["budgets"]
    assert budgets["context"] == 60 < budgets["prompt"] < budgets["request"]
    for row in rows:
        assert row["budget"] == budgets[row["scope"]]
        assert 0 < row["tokens_out"] <= row["budget"] < row["tokens_in"], row["door"]
        assert all(0 < run["tokens_out"] <= row["budget"] for run in row["runs"].values()), row["door"]
        assert row["packages"], row["door"]
        assert all(v[:1].isdigit() for v in row["packages"].values()), row["door"]
        assert set(row["runs"]) <= {m for m, v in row["support"].items() if v == "yes"}, row["door"]
        if row["reported"] is not None:  # what the door says agrees with what reached the model
            assert row["reported"][1] <= row["budget"]
    table = markdown_table(report)
    assert len(table.strip().splitlines()) == 2 + len(DOORS)
    assert all(f"{r['tokens_in']:,} → {r['tokens_out']:,}" in table for r in rows)
    write_report(report, tmp_path)
    assert json.loads((tmp_path / "integrations.json").read_text(encoding="utf-8")) == json.loads(json.dumps(report))
    assert table in (tmp_path / "integrations.md").read_text(encoding="utf-8") == markdown(report)


def test_the_sample_request_is_the_bundled_one() -> None:
    request = sample_request(documents=8, budget=400)
    assert len(request.documents) == 8
    assert "22 billion" in request.context
    assert request.question.startswith("How much private-sector capital")
    assert request.messages("")[1] == {"role": "user", "content": request.question}
