"""A sentence on its own line that names the retrieved documents before what points at them ("Use the documents
below:", "Refer to the docs that follow:", "Consider these sources:", "The documents below:") heads the context as
"Documents:" does, when it is in a prompt's words. A document's own line of the same shape ("The sources below show:",
"Use the menu below:", "See the table below:") does not, nor does numpydoc's parameter line ("docs : list of str")."""

from __future__ import annotations

import pytest
from understand_helpers import DOCS, system_cut_through_the_proxy

from promptzip._understand import understand

JOINED = "\n\n".join(DOCS)
QUESTION = "Who rowed the lifeboat?"


def kinds(text: str, role: str = "user", last_user: bool = True) -> list[tuple[str, str]]:
    layout = understand(text, role=role, last_user=last_user)
    return [(r.kind, text[r.start : r.end]) for r in layout.regions]


def context(got: list[tuple[str, str]]) -> str:
    return "".join(t for k, t in got if k == "context")


INTROS = [
    "Use the documents below:",
    "Answer using the passages below:",
    "Use the context below to answer:",
    "Read the documents below.",
    "Read the passage below and answer the question that follows.",
    "Consider the sources provided below:",
    "Refer to the docs that follow:",
    "Answer from the search results below:",
    "Base your answer on the documents below:",
    "Please use the sources provided:",
    "Use these documents:",
    "**Use the documents below:**",
    "The documents below:",
    "Documents below:",
    "Relevant passages below:",
    "**Excerpts:**",
]


@pytest.mark.parametrize("intro", INTROS)
def test_an_intro_naming_the_documents_first_heads_the_context(intro: str) -> None:
    text = f"{intro}\n{JOINED}\n\n{QUESTION}"
    got = kinds(text)
    assert context(got).strip() == JOINED.strip(), got
    assert ("question", QUESTION) in [(k, t.strip()) for k, t in got]
    assert intro.strip("* ") in "".join(t for k, t in got if k == "instruction")


@pytest.mark.parametrize("intro", ["Use the documents below:", "Read the documents below.", "Documents below:"])
def test_an_intro_heads_the_context_of_a_system_message(intro: str) -> None:
    text = f"You answer questions about Kestrel Bay.\n\n{intro}\n{JOINED}"
    got = kinds(text, role="system", last_user=False)
    assert context(got).strip() == JOINED.strip(), got


@pytest.mark.parametrize(
    "line",
    [
        "The sources below show:",  # a document's sentence, going on after the pointer
        "The documents below are from the archive:",
        "Use the menu below:",  # a how-to's: no retrieval noun
        "Read the instructions below:",
        "See the table below:",
        "See the references below.",  # not a verb that sends the model to documents
        "Use the context manager below:",  # a program's thing named after the noun
        "Use the passages above:",  # pointing back, at nothing that follows
        "Summarize the documents below.",  # a task on its input, which is not cut
        "docs : list of str",  # numpydoc's parameter
    ],
)
def test_a_document_line_of_the_same_shape_heads_nothing(line: str) -> None:
    text = f"{line}\n{JOINED}\n\n{QUESTION}"
    got = kinds(text)
    assert not context(got), got


def test_a_rule_that_points_below_is_no_heading_but_the_layout_reads_what_follows() -> None:
    # a rule, often the first of several, not an intro: it heads nothing; as the first line of a message, glued to
    # the documents it sends the model to, the layout rule keeps it and reads them as context
    text = f"Use only the documents below.\n{JOINED}\n\n{QUESTION}"
    layout = understand(text, role="user", last_user=True)
    assert [r.rule for r in layout.regions if r.kind == "context"] == ["layout"]
    assert context(kinds(text)) == JOINED


@pytest.mark.parametrize("line", ["The sources below show:", "Use the menu below:", "See the references below."])
def test_a_document_line_inside_the_context_does_not_split_it(line: str) -> None:
    docs = f"{DOCS[0]}\n\n{DOCS[1]}\n{line}\nThe new head was finished in 1913.\n\n{DOCS[2]}"
    text = f"Documents:\n{docs}\n\n{QUESTION}"
    got = kinds(text)
    assert context(got).strip() == docs, got
    assert ("question", QUESTION) in [(k, t.strip()) for k, t in got]


def test_a_numpydoc_parameter_is_no_heading() -> None:
    docstring = (
        "Parameters\n----------\ndocs : list of str\n    The documents to rank.\n"
        "context : dict\n    What the ranker knows.\n"
    )
    got = kinds(f"What type should the first parameter be?\n\n{docstring}")
    assert not context(got), got
    # under a heading of its own, the docstring is one context, not cut at "docs :"
    text = f"Context:\n{docstring}\nQuestion: How do I use it?"
    got = kinds(text)
    assert context(got).strip() == docstring.strip(), got


@pytest.mark.parametrize("heading", ["Context : ", "Context :", "context:"])
def test_a_spaced_colon_label_still_heads_the_context(heading: str) -> None:
    text = f"{heading}\n{JOINED}\n\n{QUESTION}"
    assert context(kinds(text)).strip() == JOINED.strip()


ONE_LINE = " ".join(DOCS)  # documents an f-string joined on one line


@pytest.mark.parametrize(
    ("text", "role"),
    [
        (f"Here is the context: {ONE_LINE}\n\nHere is the question: {QUESTION}", "user"),
        (f"You are a helpful assistant. Use this context to answer: {ONE_LINE}", "system"),
        (f"You are a helpful assistant. Use this context to answer:\n{ONE_LINE}", "system"),
        (f"Answer using these documents: {ONE_LINE}", "system"),
        (f"Given these documents: {ONE_LINE}", "system"),
        (f"Given these documents:\n{ONE_LINE}", "system"),
        (f"You are a helpful assistant. Based on this context: {ONE_LINE}", "system"),
        (f"Using these sources: {ONE_LINE}", "system"),
    ],
    ids=[
        "here-is-inline",
        "this-context-inline",
        "this-context-next-line",
        "these-documents-inline",
        "given-these-inline",
        "given-these-next-line",
        "based-on-this-inline",
        "using-these-inline",
    ],
)
def test_an_intro_with_the_documents_on_its_own_line_heads_them(text: str, role: str) -> None:
    """Before, the user's message was read whole as its question and the system messages kept whole as the
    template's words: nothing was cut."""
    got = kinds(text, role=role, last_user=role == "user")
    assert context(got) == ONE_LINE, got
    if role == "user":
        assert [t for k, t in got if k == "question"] == [f"Here is the question: {QUESTION}"]
        assert understand(text).question == QUESTION  # scored by its words, without "Here is the question:"


@pytest.mark.parametrize(
    "line", ["Use this menu: File, Edit, View.", "Use this context manager: with open(path) as f: pass"]
)
def test_a_line_that_names_no_retrieved_documents_heads_nothing_inline(line: str) -> None:
    got = kinds(f"{line}\n\n{ONE_LINE}", role="system", last_user=False)
    assert not context(got), got


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_through_the_proxy_documents_on_the_intros_line_are_cut(sdk: str) -> None:
    lead = "You are a helpful assistant. Use this context to answer: "
    system = lead + ONE_LINE  # before, sent as it came
    sent = system_cut_through_the_proxy(sdk, system, lead, QUESTION, rate="0.6", share=0.8)
    assert "lifeboat" in sent
