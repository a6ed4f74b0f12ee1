"""The ``rag-chat`` eval: framework RAG templates rendered as their frameworks do, and the quick run end to end
through a real proxy (uvicorn on 127.0.0.1) to a recording fake upstream, with a BM25-only stack (no model)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import require_data
from proxy_helpers import bm25

from promptzip.evals.rag_chat import STATUSES, RagChatConfig, markdown, run_rag_chat
from promptzip.evals.rag_templates import (
    HAYSTACK_RAG,
    LANGCHAIN_HUB_RAG_PROMPT,
    SYSTEM_INSTRUCTION,
    TEMPLATES,
    context_part,
    message_texts,
)

DOCS = ["The Eiffel Tower is 330 metres tall.", "Bananas are yellow.\nThey grow in bunches."]
QUESTION = "How tall is the Eiffel Tower?"


# ------------------------------------------------------------------------------------------------ templates
def test_every_template_places_documents_and_question_once() -> None:
    for name, template in TEMPLATES.items():
        r = template.render(DOCS, QUESTION)
        text = "\n".join(content for _, content in r.messages)
        assert text.count(QUESTION) == 1, name
        assert r.context, name
        assert r.context in text, name
        for doc in DOCS:
            assert doc in r.context, name
        assert r.context.index(DOCS[0]) < r.context.index(DOCS[1]), name
        assert QUESTION in r.fixed, name
        # the fixed pieces and the context make up the messages, nothing else
        rest = text
        for piece in (*r.fixed, r.context):
            rest = rest.replace(piece, "", 1)
        assert rest.strip() == "", (name, rest)
        empty = template.render(None, QUESTION, context="")
        assert empty.fixed == r.fixed, name
        assert sum(len(c) for _, c in empty.messages) == sum(len(c) for _, c in r.messages) - len(r.context)


def test_langchain_tutorial_puts_context_in_system_and_question_as_user() -> None:
    r = TEMPLATES["langchain-rag-tutorial"].render(DOCS, QUESTION)
    assert r.chat() == [
        {
            "role": "system",
            "content": "You are an assistant for question-answering tasks. Use the following pieces of retrieved "
            "context to answer the question. If you don't know the answer, say that you don't know. Use three "
            "sentences maximum and keep the answer concise.\n\n" + "\n\n".join(DOCS),
        },
        {"role": "user", "content": QUESTION},
    ]


def test_single_message_templates_render_as_shipped() -> None:
    hub = TEMPLATES["langchain-hub-rag-prompt"].render(DOCS, QUESTION)
    assert hub.chat() == [
        {"role": "user", "content": LANGCHAIN_HUB_RAG_PROMPT.format(question=QUESTION, context="\n\n".join(DOCS))}
    ]
    llama = TEMPLATES["llamaindex-text-qa"].render(DOCS, QUESTION)
    assert llama.messages == (
        (
            "user",
            "Context information is below.\n---------------------\n" + "\n\n".join(DOCS) + "\n---------------------\n"
            "Given the context information and not prior knowledge, answer the query.\nQuery: " + QUESTION + "\n"
            "Answer: ",
        ),
    )
    plain = TEMPLATES["plain-user"].render(DOCS, QUESTION)
    assert plain.messages == (("user", f"Context:\n{DOCS[0]}\n\n{DOCS[1]}\n\nQuestion: {QUESTION}"),)
    system = TEMPLATES["system-context"].render(DOCS, QUESTION)
    assert system.messages == (("system", SYSTEM_INSTRUCTION + "\n\n" + "\n\n".join(DOCS)), ("user", QUESTION))


def test_anthropic_xml_wraps_each_document() -> None:
    r = TEMPLATES["anthropic-xml"].render(DOCS, QUESTION)
    assert r.messages == (
        (
            "user",
            '<documents>\n<document index="1">\n<source>doc-1</source>\n<document_content>\n'
            f"{DOCS[0]}\n</document_content>\n</document>\n"
            '<document index="2">\n<source>doc-2</source>\n<document_content>\n'
            f"{DOCS[1]}\n</document_content>\n</document>\n</documents>\n\n{QUESTION}",
        ),
    )


def test_haystack_hand_rendering_matches_jinja() -> None:
    jinja2 = pytest.importorskip("jinja2")
    expected = jinja2.Template(HAYSTACK_RAG).render(documents=[{"content": d} for d in DOCS], question=QUESTION)
    assert TEMPLATES["haystack-rag"].render(DOCS, QUESTION).messages == (("user", expected),)


# --------------------------------------------------------------------------------------------- measurement
def test_context_part_cuts_fixed_pieces_in_order() -> None:
    r = TEMPLATES["langchain-hub-rag-prompt"].render(DOCS, QUESTION)
    intact, rest = context_part(message_texts(r.chat()), r.fixed)
    assert intact
    assert QUESTION not in rest
    assert "assistant for question-answering" not in rest
    assert DOCS[0] in rest
    # an instruction that lost a byte is not intact; the question alone still is cut out
    changed = [{"role": "user", "content": r.messages[0][1].replace("three sentences", "3 sentences")}]
    intact, rest = context_part(message_texts(changed), r.fixed)
    assert not intact
    assert QUESTION not in rest
    # a question moved before the instruction is out of order
    swapped = [{"role": "user", "content": QUESTION}, {"role": "system", "content": "".join(r.fixed[:1])}]
    assert not context_part(message_texts(swapped), (r.fixed[0], QUESTION))[0]
    parts = [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {}}]}]
    assert message_texts(parts) == ["a"]


# ----------------------------------------------------------------------------------------------- quick run
@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    require_data("squad", "quoref", "drop")
    out = tmp_path_factory.mktemp("rag_chat")
    report = run_rag_chat(RagChatConfig(quick=True, zipper_factory=bm25, out=out, progress=False))
    report["_out"] = out
    return report


@pytest.mark.slow
@pytest.mark.data
def test_quick_run_reports_every_template_suite_and_ratio(quick: dict[str, Any]) -> None:
    out: Path = quick["_out"]
    saved = json.loads((out / "rag_chat.json").read_text(encoding="utf-8"))
    assert set(saved["suites"]) == {"squad-qa", "quoref-qa", "drop-qa"}
    for key in ("rule", "loadavg", "command"):
        assert saved["meta"][key], key
    requests = 0
    for suite in saved["suites"].values():
        assert suite["items"] > 0
        assert set(suite["templates"]) == set(TEMPLATES)
        assert set(suite["direct"]) == {"10x", "20x", "50x"}
        for by_ratio in suite["templates"].values():
            assert set(by_ratio) == {"10x", "20x", "50x"}
            for cell in by_ratio.values():
                assert cell["requests"] == suite["items"]
                assert sum(cell["status"].values()) == cell["requests"]
                assert set(cell["status"]) <= set(STATUSES), cell["status"]  # the upstream answered every one
                assert 0 <= cell["retained"] <= cell["requests"]
                assert 0 <= cell["intact"] <= cell["requests"]
                requests += cell["requests"]
        # The XML layout is measured a second time with its kept documents' tags outside the context allowance.
        assert set(suite["tags_as_template"]) == {"anthropic-xml"}
        for by_ratio in suite["tags_as_template"].values():
            assert set(by_ratio) == {"10x", "20x", "50x"}
            for cell in by_ratio.values():
                assert cell["requests"] == suite["items"]
                assert set(cell["status"]) <= set(STATUSES), cell["status"]
                requests += cell["requests"]
        for cell in suite["direct"].values():
            assert cell["requests"] == suite["items"]
            assert cell["over_budget_tokens"] == 0  # Zipper.compress always meets its budget
    assert saved["totals"]["requests"] == requests
    text = (out / "rag_chat.md").read_text(encoding="utf-8")
    assert text == markdown(saved)
    for name in TEMPLATES:
        assert f"| {name} |" in text
    assert "| direct `Zipper.compress` |" in text
    assert "| anthropic-xml, tags of kept documents as template |" in text


@pytest.mark.slow
@pytest.mark.data
def test_quick_run_keeps_instruction_and_question_bytes(quick: dict[str, Any]) -> None:
    totals = quick["totals"]
    assert totals["intact"] == totals["requests"]


@pytest.mark.slow
@pytest.mark.data
def test_quick_run_compresses_every_request_within_its_budget(quick: dict[str, Any]) -> None:
    # the context is found wherever the template put it (system, last user turn, XML tags): no fail-open
    assert quick["totals"]["status"].get("fail-open", 0) == 0, quick["totals"]["status"]
    assert quick["totals"]["over_budget_tokens"] == 0
