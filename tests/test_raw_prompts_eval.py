"""The ``raw-prompts`` eval: chats rendered into raw prompts as each family's chat template writes them, and a quick run
end to end through a real proxy (uvicorn on 127.0.0.1, ``/v1/completions`` and ``/v1/chat/completions``) to a
recording fake upstream, with a BM25-only stack (no model)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import require_data
from proxy_helpers import bm25

from promptzip._rules_role_lines import role_line_turns, section_headers
from promptzip._rules_templates import template_turns
from promptzip.evals.rag_templates import TEMPLATES
from promptzip.evals.raw_prompts import CHAT, FORMATS, MARKERS, RawPromptsConfig, markdown, render_raw, run_raw_prompts

DOCS = ["The Eiffel Tower is 330 metres tall.", "Bananas are yellow."]
QUESTION = "How tall is the Eiffel Tower?"


def test_each_format_writes_the_chat_as_its_family_does() -> None:
    rendered = TEMPLATES["system-context"].render(DOCS, QUESTION)
    system = rendered.messages[0][1]
    assert render_raw("chatml", rendered) == (
        f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
    )
    assert render_raw("llama3", rendered) == (
        f"<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>"
        f"<|start_header_id|>user<|end_header_id|>\n\n{QUESTION}<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert render_raw("llama2", rendered) == f"<s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{QUESTION} [/INST]"
    one = TEMPLATES["plain-user"].render(DOCS, QUESTION)
    assert render_raw("llama2", one) == f"<s>[INST] {one.messages[0][1]} [/INST]"


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_rendered_prompt_reads_as_a_template_with_its_markers(fmt: str) -> None:
    for template in TEMPLATES.values():
        prompt = render_raw(fmt, template.render(DOCS, QUESTION))
        turns = template_turns(prompt) or role_line_turns(prompt)  # special tokens, or role lines
        spans = [(t.start, t.end) for t in turns or [] if t.role == "marker"] or section_headers(prompt)  # Alpaca's
        found = list(MARKERS.finditer(prompt))
        assert len(found) >= 2
        assert all(any(a <= m.start() and m.end() <= b for a, b in spans) for m in found)


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    require_data("gsm8k")
    out = tmp_path_factory.mktemp("raw_prompts")
    config = RawPromptsConfig(quick=True, suites=("gsm8k-qa",), zipper_factory=bm25, out=out, progress=False)
    report = run_raw_prompts(config)
    report["_out"] = out
    return report


@pytest.mark.slow
@pytest.mark.data
def test_quick_run_sends_every_door_compressed_with_markers_and_template_intact(quick: dict[str, Any]) -> None:
    out: Path = quick["_out"]
    saved = json.loads((out / "raw_prompts.json").read_text(encoding="utf-8"))
    suite = saved["suites"]["gsm8k-qa"]
    assert set(suite["doors"]) == {CHAT, *FORMATS}
    for door, by_ratio in suite["doors"].items():
        assert set(by_ratio) == {"10x", "20x"}
        for cell in by_ratio.values():
            assert cell["requests"] == suite["items"] * len(TEMPLATES)
            assert cell["status"] == {"compressed": cell["requests"]}, (door, cell["status"])
            assert cell["intact"] == cell["requests"]
            assert cell["markers_intact"] == cell["requests"]
            assert cell["over_budget_tokens"] == 0
            assert cell["received_tokens"] * 5 < cell["original_tokens"]
    assert (out / "raw_prompts.md").read_text(encoding="utf-8") == markdown(saved)
