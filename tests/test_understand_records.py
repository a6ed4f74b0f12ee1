"""Records: documents that each open with a header line of their own (RAGFlow's ``---``/``ID: 3``, ``Document 2:``,
``[4]``), the name the model cites them by. The header goes out whenever any of its document does and leaves with it
otherwise (promptzip/_rules_records.py)."""

from __future__ import annotations

import re

import pytest
from test_understand_templates import DOCS, MORE, bm25

from promptzip._rules_lists import closes_documents
from promptzip._understand import Layout, understand

ALL = DOCS + MORE
ASKED = "When did tourism replace fishing?"

# RAGFlow's default system prompt, its knowledge filled as its kb_prompt writes it: a block per file ("Document: …",
# "Relevant fragments as following:"), each chunk after "---" and "ID: i"; the blocks joined by lines of dashes.
RAGFLOW_PROMPT = (
    "You are an intelligent assistant. Please summarize the content of the knowledge base to answer the question. "
    "Please list the data in the knowledge base and answer in detail. When all knowledge base content is irrelevant "
    "to the question, your answer must include the sentence 'The answer you are looking for is not found in the "
    "knowledge base!' Answers need to consider chat history.\nHere is the knowledge base:\n{knowledge}\n"
    "The above is the knowledge base."
)


def ragflow_block(name: str, first: int, chunks: list[str]) -> str:
    body = "".join(f"---\nID: {i}\n{chunk}\n" for i, chunk in enumerate(chunks, first))
    return f"\nDocument: {name} \nRelevant fragments as following:\n{body}"


RAGFLOW = RAGFLOW_PROMPT.replace(
    "{knowledge}",
    "\n------\n"
    + "\n\n------\n\n".join([ragflow_block("harbour.pdf", 0, ALL[:3]), ragflow_block("town.pdf", 3, ALL[3:])]),
)


def context_of(layout: Layout) -> list[str]:
    return [layout.text[layout.regions[i].start : layout.regions[i].end] for i in layout.context]


def assert_ids_travel_with_their_chunks(sent: str) -> None:
    """Each chunk in ``sent`` follows its own ``ID`` line, and no ``ID`` line is left without its chunk."""
    ids = [int(i) for i in re.findall(r"^ID: (\d+)$", sent, re.MULTILINE)]
    for i, chunk in enumerate(ALL):
        first_words = chunk.split(". ")[0]
        assert (i in ids) == (first_words in sent), (i, ids)
        if i in ids:
            assert sent.index(f"ID: {i}\n") < sent.index(first_words)
            assert f"ID: {i}\n{first_words}" in sent


def test_ragflow_chunks_are_records_under_their_files() -> None:
    layout = understand(RAGFLOW, role="system", last_user=False)
    assert context_of(layout) == ALL
    assert len(layout.elements) == len(ALL) + 2  # a record per chunk, and each file's lines around its chunks
    assert layout.fixed_text().startswith(RAGFLOW_PROMPT.split("{knowledge}")[0])
    assert layout.fixed_text().endswith("The above is the knowledge base.")


@pytest.mark.parametrize("rate", [0.5, 0.7])
def test_ragflow_ids_stay_with_their_chunks_when_compressed(rate: float) -> None:
    messages = [{"role": "system", "content": RAGFLOW}, {"role": "user", "content": ASKED}]
    out = bm25().compress_messages(messages, rate=rate).messages
    assert out is not None
    sent = out[0]["content"]
    assert len(sent) < len(RAGFLOW)
    assert "ID: 5\nTourism replaced fishing in the 1970s." in sent
    assert_ids_travel_with_their_chunks(sent)
    assert sent.endswith("\nThe above is the knowledge base.")
    # a file whose chunks all left takes its name along
    assert ("Document: harbour.pdf" in sent) == any(f"ID: {i}\n" in sent for i in range(3))


def test_ragflow_through_the_proxy() -> None:
    from understand_helpers import through_the_proxy

    sent_system, sent_user = through_the_proxy("openai", RAGFLOW, ASKED, rate="0.5")
    assert sent_user == ASKED
    assert sent_system is not None
    assert len(sent_system) < len(RAGFLOW)
    assert_ids_travel_with_their_chunks(sent_system)


def test_numbered_documents_under_a_heading_are_records() -> None:
    text = (
        "Context:\n" + "\n\n".join(f"Document {i}:\n{doc}" for i, doc in enumerate(ALL, 1)) + f"\n\nQuestion: {ASKED}"
    )
    layout = understand(text)
    assert context_of(layout) == ALL
    assert layout.question == ASKED
    result = bm25().compress_prompt(text, rate=0.3)
    assert f"Document 6:\n{ALL[5].split('. ')[0]}" in result.text
    for i in range(1, len(ALL) + 1):
        header = f"Document {i}:\n"
        assert (header in result.text) == (ALL[i - 1].split(". ")[0] in result.text)


@pytest.mark.parametrize(
    "blocks",
    [
        [f"ID: 1\n{DOCS[0]}", f"Some header\n{DOCS[1]}", DOCS[2]],  # one header alone: a document's own line
        [f"ID: 1\n{DOCS[0]}", f"Document 2:\n{DOCS[1]}"],  # headers of two kinds
        [" ".join(ALL), f"ID: 1\n{DOCS[0]}", f"ID: 2\n{DOCS[1]}"],  # a long text before them: a document itself
    ],
)
def test_header_lines_that_do_not_head_a_run_of_records_are_read_as_before(blocks: list[str]) -> None:
    text = "Context:\n" + "\n\n".join(blocks) + f"\n\nQuestion: {ASKED}"
    layout = understand(text)
    assert layout.elements == ()
    assert len(context_of(layout)) == 1


@pytest.mark.parametrize(
    ("line", "closes"),
    [
        ("The above is the knowledge base.", True),
        ("End of context.", True),
        ("The above are the search results", True),
        ("The above was a great year for the harbour.", False),
        ("End of the season.", False),
    ],
)
def test_a_line_that_closes_the_documents(line: str, closes: bool) -> None:
    assert closes_documents(line) is closes


# Onyx (formerly Danswer): each document under "DOCUMENT i: <title>" with its source and metadata lines, or in chat,
# "DOCUMENT i:" over the text in a code fence.
ONYX_TITLED = "\n\n".join(f"DOCUMENT {i}: file{i}.pdf\nSource: Web\n{doc}" for i, doc in enumerate(ALL, 1))
ONYX_FENCED = "\n".join(f"DOCUMENT {i}:\n```\n{doc}\n```\n" for i, doc in enumerate(ALL, 1))


@pytest.mark.parametrize(
    ("documents", "header"),
    [(ONYX_TITLED, "DOCUMENT {i}: file{i}.pdf\n"), (ONYX_FENCED, "DOCUMENT {i}:\n```\n")],
    ids=["titled", "fenced"],
)
def test_onyx_documents_keep_their_headers_and_leave_with_them(documents: str, header: str) -> None:
    text = f"Refer to the following documents.\n\n{documents}\n\nQuestion: {ASKED}"
    layout = understand(text)
    assert context_of(layout) == [f"Source: Web\n{doc}" for doc in ALL] if documents == ONYX_TITLED else ALL
    assert len(layout.elements) == len(ALL)
    result = bm25().compress_prompt(text, rate=0.4)
    assert result.text.startswith("Refer to the following documents.\n\n")
    assert result.text.endswith(f"\n\nQuestion: {ASKED}")
    kept = [i for i in range(1, len(ALL) + 1) if header.format(i=i) in result.text]
    assert 0 < len(kept) < len(ALL)
    assert len(re.findall(r"^DOCUMENT \d+:", result.text, re.MULTILINE)) == len(kept)  # no header without its text
    assert result.text.count("```") == 2 * len(kept) if documents == ONYX_FENCED else "```" not in result.text
    assert "Tourism replaced fishing in the 1970s." in result.text
    assert "Source: DOCUMENT" not in result.text
