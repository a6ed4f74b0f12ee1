"""The names retrieval templates give what they retrieved head the context as "Context:" and "Documents:" do: "Docs:",
"Excerpts:", "Snippets:", "Retrieved chunks:", "Knowledge base:", "Information:", "Facts:", as a label, a Markdown
heading or an introducing sentence; so does "Context" alone on a line where a question line ("Question", "Question:")
follows. The names of a task's own input ("Article:", "Text:", "Transcript:") do not: that text is what the task
works on, kept whole."""

from __future__ import annotations

import pytest
from understand_helpers import DOCS, system_cut_through_the_proxy, through_the_proxy

from promptzip._understand import understand

JOINED = "\n\n".join(DOCS)
QUESTION = "Who rowed the lifeboat?"


def kinds(text: str) -> list[tuple[str, str]]:
    layout = understand(text, role="user", last_user=True)
    return [(r.kind, text[r.start : r.end]) for r in layout.regions]


@pytest.mark.parametrize(
    "heading",
    [
        "Docs:",
        "docs:",
        "Excerpts:",
        "Snippets:",
        "Chunks:",
        "Retrieved chunks:",
        "Relevant snippets:",
        "Knowledge base:",
        "## Docs",
        "**Excerpts**:",
        "Here are the docs:",
        "Information:",  # before, the label was read as the first document's first words, and could be cut
        "Relevant information:",
        "Here is some information:",
        "Facts:",
        "Relevant facts:",
    ],
)
def test_a_retrieval_name_heads_the_context(heading: str) -> None:
    text = f"{heading}\n{JOINED}\n\n{QUESTION}"
    got = kinds(text)
    context = [t for k, t in got if k == "context"]
    assert context, got
    assert "".join(context).strip() == JOINED.strip()
    assert ("question", QUESTION) in [(k, t.strip()) for k, t in got]
    assert heading.strip("#* ").rstrip(":") not in "".join(context)


@pytest.mark.parametrize("heading", ["Article:", "Text:", "Transcript:", "Essay:", "Story:"])
def test_a_task_input_is_not_cut(heading: str) -> None:
    text = f"{heading}\n{JOINED}\n\nSummarize it in three sentences."
    assert not [t for k, t in kinds(text) if k == "context"]


@pytest.mark.parametrize(
    "heading",
    [
        "**Context**",
        "**Documents**",
        "**Retrieved context**",
        "__Context__",
        "*Context*",
        "=== Context ===",
        "### Context ###",
        "-- Documents --",
        "CONTEXT",
        "RETRIEVED PASSAGES:",
        "<<Context>>",  # before, read as an element that never closed: the whole message was kept
    ],
)
def test_a_name_set_off_as_a_heading_heads_the_context(heading: str) -> None:
    """Emphasis, rules around it or capitals make a line of one name a heading, as "## Context" is; before, the first
    document was kept whole with it as an instruction."""
    text = f"{heading}\n{JOINED}\n\n{QUESTION}"
    got = kinds(text)
    assert "".join(t for k, t in got if k == "context").strip() == JOINED.strip()
    assert ("question", QUESTION) in [(k, t.strip()) for k, t in got]


@pytest.mark.parametrize(
    "text",
    [
        f"Context\n{JOINED}\n\n{QUESTION}",  # a title-case word alone may be a document's own first line
        f"**Sources**\n{JOINED}\n\n{QUESTION}",  # an article's section
        f"For more information:\n{JOINED}\n\n{QUESTION}",  # a sentence's words, no name set off
        f"Using Knowledge Distillation:\n{JOINED}\n\n{QUESTION}",  # knowledge alone is no retrieval name
        "[metadata]\nname = harbour\n\n[docs]\nsphinx = 7.2\nfuro = 2024.1\ntheme = dark\n\n" + "x = 1\n" * 300,
    ],
    ids=["title-case-word", "sources-section", "more-information", "knowledge-alone", "ini-section"],
)
def test_a_word_that_may_be_a_documents_own_heads_nothing(text: str) -> None:
    layout = understand(text, role="user", last_user=True)
    assert not any(r.rule == "heading" for r in layout.regions)


PLAIN_PAIRS = [  # the name line, and what opens the question: its own line, or a label
    ("Context", "Question\n"),
    ("Documents", "Question\n"),
    ("Retrieved passages", "Query\n"),
    ("Context", "User question\n"),
    ("context", "question\n"),
    ("CONTEXT", "QUESTION\n"),  # a heading before; its question's query held the label line
    ("Context", "Question:\n"),
    ("Documents", "Query: "),
]


@pytest.mark.parametrize(("name", "ask"), PLAIN_PAIRS)
def test_a_plain_name_line_heads_the_context_where_a_question_line_follows(name: str, ask: str) -> None:
    """A name alone on a line, then the question set off by a line of its own or a label: the template's two
    headings. Before, the whole message was read as the question, and nothing was compressed."""
    instruction = "Answer the question using only the context."
    text = f"{instruction}\n\n{name}\n{JOINED}\n\n{ask}{QUESTION}"
    got = kinds(text)
    assert "".join(t for k, t in got if k == "context").strip() == JOINED.strip(), got
    assert QUESTION in "".join(t for k, t in got if k == "question")
    assert instruction in "".join(t for k, t in got if k == "instruction")
    assert understand(text).question == QUESTION  # relevance is scored against its words, not the label line


@pytest.mark.parametrize(
    "text",
    [
        f"Documents\n{JOINED}\n\nQuestions about the harbour are answered by the harbour master.",
        f"Question\n{QUESTION}\n\nContext\n{JOINED}",  # the question line comes first: no pair after the name
    ],
    ids=["no-question-line", "question-before"],
)
def test_a_plain_name_line_without_a_question_line_after_it_heads_nothing(text: str) -> None:
    layout = understand(text, role="user", last_user=True)
    assert not any(r.rule == "heading" for r in layout.regions)


@pytest.mark.parametrize(
    "lead",
    [
        "You are a helpful assistant. Answer the user's question using the context.",
        "Use the documents to answer.",
        "Answer only from the provided passages, and say so when they do not say.",
    ],
)
@pytest.mark.parametrize("name", ["Context", "Documents", "Retrieved passages"])
def test_a_plain_name_line_heads_the_context_after_words_that_send_the_model_to_it(lead: str, name: str) -> None:
    """A system message that ends in its documents under a plain name line, the question in the user's turn: before,
    the whole message was kept as the template's words, and nothing was compressed."""
    for text in (f"{lead}\n\n{name}\n{JOINED}", f"{lead}\n{name}\n{JOINED}"):
        layout = understand(text, role="system", last_user=False)
        got = [(r.kind, text[r.start : r.end]) for r in layout.regions]
        assert "".join(t for k, t in got if k == "context").strip() == JOINED.strip(), got
        assert lead in "".join(t for k, t in got if k == "instruction")


@pytest.mark.parametrize(
    "text",
    [
        f"Historians disagree about the context of the treaty.\n\nContext\n{JOINED}",  # prose names a context
        f"Use the harbour charts.\n\nContext\n{JOINED}",  # an order, but not to the prompt's own parts
        "You are a helpful assistant. Use the context to answer.\n\nContext\n",  # nothing under it
        "question\nanswer\ncontext\ndocuments\nquestion\nquery\nreply\n" * 3,  # a word list
    ],
    ids=["prose", "other-order", "empty", "word-list"],
)
def test_a_plain_name_line_without_a_template_around_it_heads_nothing(text: str) -> None:
    for role, last in (("system", False), ("user", True)):
        layout = understand(text, role=role, last_user=last)
        assert not any(r.rule == "heading" for r in layout.regions)


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_through_the_proxy_the_documents_under_a_plain_context_line_are_cut(sdk: str) -> None:
    """The same request through the real SDKs and a running proxy (BM25 stack): every door reads it the same way."""
    instruction = "Answer the question using only the context."
    # a short request: before, read whole as the question and sent as it came (a long one was cut by its layout)
    text = f"{instruction}\n\nContext\n{JOINED}\n\nQuestion\n{QUESTION}"
    _, sent = through_the_proxy(sdk, None, text)
    assert sent.startswith(f"{instruction}\n\nContext\n")
    assert sent.endswith(f"Question\n{QUESTION}")
    assert len(sent) < len(text) * 0.7  # the documents were cut
    assert "lifeboat" in sent


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_through_the_proxy_a_system_messages_documents_under_a_plain_name_line_are_cut(sdk: str) -> None:
    lead = "You are a helpful assistant. Answer the user's question using the context."
    system = f"{lead}\n\nContext\n{JOINED}"  # before, kept whole as the template's words
    sent_system, sent_user = through_the_proxy(sdk, system, QUESTION)
    assert sent_user == QUESTION
    assert sent_system is not None
    assert sent_system.startswith(f"{lead}\n\nContext\n")
    assert len(sent_system) < len(system) * 0.7  # the documents were cut
    assert "lifeboat" in sent_system


def test_a_text_of_many_plain_name_lines_is_read_in_one_scan_and_heads_a_few_times_at_most(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each plain name line asks whether a question follows: the text is scanned for its questions once, not once per
    line (a body of 40,000 such lines took minutes before the scan was shared), and a list of them is not a template:
    at most a few of its lines head anything."""
    from promptzip import _rules_headings as headings

    scans = []
    question = headings._PlainName._QUESTION

    class Counting:
        def finditer(self, text: str) -> object:
            scans.append(len(text))
            return question.finditer(text)

        def search(self, text: str, pos: int = 0) -> object:
            raise AssertionError("a per-line search of the rest of the text")

    monkeypatch.setattr(headings._PlainName, "_QUESTION", Counting())
    text = "Context\n\n" * 5000 + "Question\nWho rowed the lifeboat?"
    found = list(headings._PlainName().finditer(text))
    assert 0 < len(found) <= headings._MOST_HEADS
    assert len(scans) == 1
    understand(text)  # the whole reading, every rule: still one scan of this text
    assert len(scans) == 1


# LangChain's system prompts that head their documents on the template's own lines: the chat prompt of its "stuff"
# document chains (RetrievalQA, ConversationalRetrievalChain with chat models), a line of dashes under words that send
# the model to the documents, and create_retrieval_chain's example, a name label after such sentences on one line
STUFF_LEAD = (
    "Use the following pieces of context to answer the user's question. \nIf you don't know the answer, just say "
    "that you don't know, don't try to make up an answer.\n----------------\n"
)
RETRIEVAL_CHAIN_LEAD = (
    "Use the given context to answer the question. If you don't know the answer, say you don't know. Use three "
    "sentence maximum and keep the answer concise. Context: "
)
LANGCHAIN_LEADS = pytest.mark.parametrize("lead", [STUFF_LEAD, RETRIEVAL_CHAIN_LEAD], ids=["dashes", "inline-label"])


@pytest.mark.parametrize("copies", [1, 3], ids=["short", "long"])
@LANGCHAIN_LEADS
def test_langchains_system_lead_heads_the_documents_after_it(lead: str, copies: int) -> None:
    """Before, a short one was kept whole as the template's words; a long one's context began with the line of dashes,
    or lost its first document to the template's line."""
    docs = "\n\n".join(DOCS * copies)
    text = lead + docs
    layout = understand(text, role="system", last_user=False)
    assert [(r.rule, text[r.start : r.end]) for r in layout.regions if r.kind == "context"] == [("heading", docs)]
    assert text[layout.regions[0].start : layout.regions[0].end] == lead


@pytest.mark.parametrize(
    "text",
    [
        f"The harbour records end here.\n----------------\n{JOINED}",  # prose above, not an order
        f"Use the following pieces of context to answer.\n\n----------------\n{JOINED}",  # not glued to the line
        f"{JOINED}\n\nUse the following pieces of context to answer.\n----------------\n",  # nothing under it
    ],
    ids=["prose-above", "blank-line-between", "nothing-under"],
)
def test_a_line_of_dashes_without_an_order_glued_above_it_heads_nothing(text: str) -> None:
    layout = understand(text, role="system", last_user=False)
    assert not any(r.rule == "heading" for r in layout.regions)


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
@LANGCHAIN_LEADS
def test_through_the_proxy_the_documents_after_langchains_system_lead_are_cut(sdk: str, lead: str) -> None:
    system = lead + JOINED  # before, sent as it came (a short message of the template's words)
    sent = system_cut_through_the_proxy(sdk, system, lead, QUESTION, rate="0.6", share=0.8)
    assert "lifeboat" in sent


@pytest.mark.parametrize(
    "line",
    [
        "The fort fell in 1648. Sources: the parish chronicle and two letters.",  # a document's own line
        "Answer the question. Documents: see the archive.",  # sentences that send the model nowhere
        "You said the harbour was closed. Sources: the paper.",  # speaks to someone, gives no persona
        "The records end here.\nYou are a helpful assistant. Context: the archive.",  # a persona, not the opening
    ],
)
def test_a_name_label_after_other_sentences_heads_nothing(line: str) -> None:
    text = f"{line}\n{JOINED}"
    layout = understand(text, role="system", last_user=False)
    assert not any(r.rule == "heading" for r in layout.regions)


@pytest.mark.parametrize("copies", [1, 3], ids=["short", "long"])
@pytest.mark.parametrize(
    "lead",
    ["You are a helpful assistant. Context: ", "You're a harbour historian. Your task is to answer. Documents: "],
)
def test_a_name_label_after_the_opening_persona_heads_the_documents(lead: str, copies: int) -> None:
    """A hand-written f-string's system message; before, a short one was kept whole, and a long one's first document
    was kept with the template's line."""
    docs = "\n\n".join(DOCS * copies)
    text = lead + docs
    layout = understand(text, role="system", last_user=False)
    assert [(r.rule, text[r.start : r.end]) for r in layout.regions if r.kind == "context"] == [("heading", docs)]


def test_a_documents_own_inline_label_inside_a_headed_context_leaves_it_whole() -> None:
    docs = f"{DOCS[0]}\n\nThe fort fell in 1648. Sources: the parish chronicle.\n\n{DOCS[1]}"
    text = f"Documents:\n{docs}\n\nQuestion: {QUESTION}"
    assert "".join(t for k, t in kinds(text) if k == "context").strip() == docs


# The line patterns that read a bounded run of a line's words after its indent. Their indent is possessive: on a line
# of a million spaces, giving the indent back one space at a time would retry that run at every one of them (a 1 MB
# body of spaces before a few lines took seconds to read). Each still finds its line, however deep the indent.
_INDENTED = [
    ("FIELD_LINE", "Question:"),
    ("_INTRO", "Here are the documents:"),
    ("_POINTED", "Use the documents below:"),
    ("_POINTED", "You are a helpful assistant. Use this context to answer: x"),
    ("_InlineName._LINE", "Use the given context to answer. Context: x"),
]


@pytest.mark.parametrize(("name", "line"), _INDENTED)
def test_a_line_pattern_reads_its_indent_once(name: str, line: str) -> None:
    import promptzip._rules as rules
    import promptzip._rules_headings as headings

    owner, _, attr = name.rpartition(".")
    pattern = getattr(rules, name, None) or getattr(headings, name, None)
    if owner:
        pattern = getattr(getattr(headings, owner), attr)
    assert pattern is not None
    assert r"^[ \t]*(" not in pattern.pattern  # no indent that gives itself back
    assert r"^[ \t]*+" in pattern.pattern
    indented = " " * 100_000 + line
    found = pattern.search(indented)
    assert found is not None
    assert found.start() == 0
