"""Documents inside LangChain messages through ``PromptZipRunnable``: the standard ``text-plain`` block and
Anthropic's ``document`` / ``search_result`` blocks (which a LangChain message carries through to ``ChatAnthropic``)
are passages, compressed as context as a whole and written back into their own blocks; titles stay; a block with
citations enabled comes back as it went in; an image block is untouched."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from proxy_helpers import REPORT

import promptzip as pz
from promptzip.integrations.langchain import PromptZipRunnable

QUESTION = "How many ships did the harbour handle in year 12?"
KINDS = ["sweet", "green", "red", "tiny", "wild", "old", "new", "rare", "plain", "cheap"]
BANANAS = " ".join(f"Bananas of the {k} kind are yellow fruit grown in warm countries." for k in KINDS * 2)
IMAGE = {"type": "image", "url": "https://example.com/harbour.png"}


def text_plain(text: str, title: str) -> dict[str, Any]:
    return {"type": "text-plain", "text": text, "mime_type": "text/plain", "title": title}


def test_text_plain_blocks_shrink_in_place(bm25: pz.Zipper, gpt4o: pz.Tokenizer) -> None:
    content = [
        text_plain(REPORT, "Harbour report"),
        text_plain(BANANAS, "Fruit"),
        IMAGE,
        {"type": "text", "text": QUESTION},
    ]
    messages = [SystemMessage("Answer from the documents."), HumanMessage(content=content)]
    out = PromptZipRunnable(budget=150, zipper=bm25).invoke(messages)
    assert out[0] == messages[0]
    sent = out[1].content
    assert [b["type"] for b in sent] == ["text-plain", "text-plain", "image", "text"]
    report = sent[0]["text"]
    assert "Sentence 12 of the report says the harbour handled 84 ships" in report
    assert len(report) < len(REPORT) / 3
    assert "<pz" not in report
    assert (sent[0]["title"], sent[0]["mime_type"], sent[1]["title"]) == ("Harbour report", "text/plain", "Fruit")
    assert sent[2] == IMAGE
    assert sent[3] == {"type": "text", "text": QUESTION}
    counted = [sent[0]["text"], sent[1]["text"], "Harbour report", "Fruit", QUESTION, "Answer from the documents."]
    assert sum(gpt4o.count(t) for t in counted) <= 150
    assert content[0]["text"] == REPORT  # the caller's blocks are not changed in place


def test_a_short_off_topic_document_can_go(bm25: pz.Zipper) -> None:
    """Read as a document, not as an instruction of the turn: a short passage that opens with a question."""
    short = "Do apples grow on trees? Bananas are yellow."
    content = [text_plain(short, "Off topic"), text_plain(REPORT, "Harbour report"), {"type": "text", "text": QUESTION}]
    out = PromptZipRunnable(budget=80, zipper=bm25).invoke([HumanMessage(content=content)])
    assert out[0].content[0]["text"] != short
    assert "Sentence 12 " in out[0].content[1]["text"]


def test_anthropic_blocks_in_a_tool_message_and_cited_documents(bm25: pz.Zipper) -> None:
    results = [
        {
            "type": "search_result",
            "source": "https://harbour.example/report",
            "title": "Harbour report",
            "content": [{"type": "text", "text": REPORT}],
        },
        {
            "type": "search_result",
            "source": "https://fruit.example",
            "title": "Fruit",
            "content": [{"type": "text", "text": BANANAS}, {"type": "text", "text": "Bananas ripen after picking."}],
        },
    ]
    cited = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": BANANAS},
        "title": "Cited",
        "citations": {"enabled": True},
    }
    call = {"name": "search", "args": {"query": "harbour ships"}, "id": "toolu_1", "type": "tool_call"}
    messages = [
        HumanMessage(content=[cited, {"type": "text", "text": QUESTION}]),
        AIMessage(content="", tool_calls=[call]),
        ToolMessage(content=results, tool_call_id="toolu_1"),
    ]
    out = PromptZipRunnable(budget=500, zipper=bm25).invoke(messages)
    assert out[0] == messages[0]  # citations point into the document: it stays whole
    sent = out[2].content
    assert [(r["type"], r["source"], r["title"]) for r in sent] == [
        (r["type"], r["source"], r["title"]) for r in results
    ]
    assert "Sentence 12 of the report" in sent[0]["content"][0]["text"]
    assert len(sent[0]["content"][0]["text"]) < len(REPORT)
    assert 1 <= len(sent[1]["content"]) <= 2  # an emptied passage leaves, never the last one
    assert all(b["text"] for b in sent[1]["content"])
