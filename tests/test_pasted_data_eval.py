"""The ``pasted-data`` eval: a quick run end to end through a real proxy (uvicorn on 127.0.0.1,
``/v1/chat/completions`` with the ``openai`` SDK) to a recording fake upstream, with a BM25-only stack (no model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import require_data
from proxy_helpers import bm25

from promptzip.evals.pasted_data import SHAPES, markdown, run_pasted_data


@pytest.mark.slow
@pytest.mark.data
def test_quick_run_compresses_every_shape_within_its_budget(tmp_path: Path) -> None:
    require_data("gsm8k")
    report = run_pasted_data(quick=True, ratios=(10.0,), zipper_factory=bm25, out=tmp_path, progress=False)
    saved = json.loads((tmp_path / "pasted_data.json").read_text(encoding="utf-8"))
    assert set(saved["shapes"]) == set(SHAPES)
    for shape, by_ratio in saved["shapes"].items():
        cell = by_ratio["10x"]
        assert cell["requests"] == report["meta"]["n"] == 3
        assert cell["status"] == {"compressed": 3}, (shape, cell["status"])
        assert cell["question_intact"] == 3
        assert cell["over_budget_tokens"] == 0
        assert cell["received_tokens"] * 5 < cell["original_tokens"]
        if SHAPES[shape][0] == "json":
            assert cell["valid_json"] == 3
    assert (tmp_path / "pasted_data.md").read_text(encoding="utf-8") == markdown(saved)
