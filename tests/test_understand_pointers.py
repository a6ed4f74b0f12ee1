"""A template's first line glued to the first document, no blank line between ("Use the following pieces of context to
answer the question at the end.\\n<documents>"), that speaks to the model and points at the documents: the line is the
template's, kept verbatim, and the documents after it are context. Before, the paragraph was read whole by its first
words: kept verbatim with the first document in it, or compressed whole with the line that says what to do in it."""

from __future__ import annotations

import pytest
from understand_helpers import DOCS

from promptzip import Zipper
from promptzip._understand import understand

# Long enough for the layout rule: nothing else marks the context.
LONG = "\n\n".join(DOCS + [d.replace("Kestrel Bay", "Gull Point") for d in DOCS])
QUESTION = "When was the breakwater lengthened?"

POINTERS = [
    "Use the following pieces of context to answer the question at the end.",
    "Read the following passages and answer the question.",
    "Given the following extracted parts of a long document and a question, create a final answer.",
    "You are a helpful assistant. Use the context below to answer.",
    "Answer the question based on the context below.",
    "Use the documents below to answer the question.",
    "Using only the information in the passages provided, answer the question.",
    "Based on the following documents, answer the user's question.",
    "Please refer to the retrieved context below when you answer.",
]


def kinds(text: str, role: str = "user", last_user: bool = True) -> list[tuple[str, str]]:
    layout = understand(text, role=role, last_user=last_user)
    return [(r.kind, text[r.start : r.end]) for r in layout.regions]


def part(got: list[tuple[str, str]], kind: str) -> str:
    return "".join(t for k, t in got if k == kind)


@pytest.mark.parametrize("pointer", POINTERS)
@pytest.mark.parametrize("ask", [f"Question: {QUESTION}", QUESTION])
def test_a_glued_pointer_line_is_kept_and_the_documents_after_it_are_context(pointer: str, ask: str) -> None:
    text = f"{pointer}\n{LONG}\n\n{ask}"
    got = kinds(text)
    assert part(got, "context").strip() == LONG, got
    assert pointer in part(got, "instruction")
    assert part(got, "question").strip() == ask


@pytest.mark.parametrize("pointer", POINTERS[:3])
def test_in_a_system_message_and_after_its_opening_paragraph(pointer: str) -> None:
    for text in (f"{pointer}\n{LONG}", f"You answer questions about harbours.\n\n{pointer}\n{LONG}"):
        got = kinds(text, role="system", last_user=False)
        assert part(got, "context").strip() == LONG, got
        assert pointer in part(got, "instruction")


def test_rules_glued_after_the_pointer_line_are_kept_too() -> None:
    rule = "Only use the provided context. If the answer is not there, say you don't know."
    text = f"{POINTERS[0]}\n{rule}\n{LONG}\n\n{QUESTION}"
    got = kinds(text)
    assert part(got, "context").strip() == LONG, got
    assert POINTERS[0] in part(got, "instruction")
    assert rule in part(got, "instruction")


def test_a_pointer_line_over_a_paragraph_of_rules_leaves_that_paragraph_the_templates() -> None:
    rules = "Be brief.\nCite the passage numbers you used.\nDo not use outside knowledge."
    text = f"{POINTERS[0]}\n{rules}\n\n{LONG}\n\n{QUESTION}"
    got = kinds(text)
    assert rules not in part(got, "context")
    assert part(got, "context").strip() == LONG, got


@pytest.mark.parametrize(
    "opening",
    [
        "The following passages describe the harbour and its breakwater.",  # a document's own words: no order
        "Use caution near the breakwater at low tide, as the harbour below dries out.",  # an order, but no pointer
        "Harbour records below were kept by the council from 1871.",
    ],
)
def test_a_documents_own_first_line_stays_with_its_document(opening: str) -> None:
    text = f"{opening}\n{LONG}\n\n{QUESTION}"
    assert together(kinds(text), opening), kinds(text)


def test_a_long_first_line_is_a_documents_not_a_pointer() -> None:
    opening = "Use the following account, " + "which the harbour master wrote down over many winters, " * 6 + "well."
    text = f"{opening}\n{LONG}\n\n{QUESTION}"
    assert together(kinds(text), opening)


def together(got: list[tuple[str, str]], opening: str) -> bool:
    """Whether ``opening`` is read in one region with the first document's start, as it was before the rule."""
    return any(opening in t and DOCS[0][:40] in t for _, t in got)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("pointer", "first"),
    [
        (POINTERS[0], DOCS[0]),  # was kept verbatim with the line, as the template's words
        (POINTERS[1], f"{DOCS[0]} {DOCS[0].replace('1871', '1872')}"),  # was compressed with the line in it
    ],
)
def test_compression_keeps_the_pointer_line_and_cuts_the_documents(pointer: str, first: str) -> None:
    zipper = Zipper.from_preset("fast", target="gpt-4o")
    docs = LONG.replace(DOCS[0], first, 1)
    text = f"{pointer}\n{docs}\n\nQuestion: {QUESTION}"
    result = zipper.compress_messages([{"role": "user", "content": text}], rate=0.3)
    sent = result.messages[0]["content"]
    assert sent.startswith(pointer + "\n")
    assert sent.endswith(f"Question: {QUESTION}")
    assert first not in sent  # the first document is compressed like the others
    assert "1911" in sent


def test_a_pointer_line_over_pasted_records_is_kept() -> None:
    rows = "\n".join(f"2024-03-{d:02d} harbour depth {4 + d / 10:.1f} m, {d * 3} boats moored" for d in range(1, 31))
    pointer = "Read the following records and answer the question."
    text = f"{pointer}\n{rows}\n\n{QUESTION}"
    got = kinds(text)
    assert part(got, "context").strip() == rows, got
    assert pointer in part(got, "instruction")


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_through_the_proxy_the_pointer_line_reaches_the_provider_and_the_first_document_is_cut(sdk: str) -> None:
    """The same request through the real SDKs and a running proxy (BM25 stack): every door reads it the same way."""
    from proxy_helpers import bm25, last_body, settings

    from promptzip.integrations.proxy import create_app
    from promptzip.integrations.proxy.testing import FakeUpstream, live_server

    text = f"{POINTERS[0]}\n{LONG}\n\nQuestion: {QUESTION}"
    with FakeUpstream() as upstream, live_server(create_app(settings(upstream.url), zipper_factory=bm25)) as proxy:
        if sdk == "openai":
            import openai

            with openai.OpenAI(base_url=proxy + "/v1", api_key="sk-test", max_retries=0) as client:
                client.chat.completions.create(
                    model="gpt-4o",
                    messages=[{"role": "user", "content": text}],
                    extra_headers={"x-promptzip-rate": "0.4"},
                )
            sent = last_body(upstream, "/v1/chat/completions")["messages"][0]["content"]
        else:
            import anthropic

            with anthropic.Anthropic(base_url=proxy, api_key="sk-ant-test", max_retries=0) as claude:
                claude.messages.create(
                    model="claude-sonnet-4-5",
                    max_tokens=100,
                    messages=[{"role": "user", "content": text}],
                    extra_headers={"x-promptzip-rate": "0.4"},
                )
            sent = last_body(upstream, "/v1/messages")["messages"][0]["content"]
    sent = sent if isinstance(sent, str) else "".join(block["text"] for block in sent)
    assert sent.startswith(POINTERS[0] + "\n")
    assert sent.endswith(f"Question: {QUESTION}")
    assert DOCS[0] not in sent  # compressed like the other documents, not kept with the line
    assert "sixty metres in 1911" in sent
