"""Request understanding at the start of a context block: the template's rules placed straight after a context
heading (``Context:\\n\\nNever invent facts.\\n\\n…``) or after a long message's introduction stay outside context,
while a document whose first paragraph merely opens as an instruction may ("According to the 2010 census…", "Given its
height…", "You can reach…", "Based on the 2019 figures…") stays context.

Rules that are taken for context can be dropped by compression: that is the worse error, so a paragraph in the
template's words at the start of the block is kept verbatim; one that opens as a document's may is the template's only
when it points at the prompt's own parts or tells the model what it must do."""

from __future__ import annotations

import pytest
from understand_helpers import DOCS, ROLES, Q

from promptzip._understand import Layout, understand

HEADINGS = {
    "context": "Context:\n\n",
    "context-tight": "Context:\n",
    "documents": "Documents:\n",
    "markdown": "## Context\n\n",
    "sources": "Sources:\n",
    "here-is": "Here is the context:\n\n",
    "background": "Background information:\n",
}
RULES = {
    "never": ["Never invent facts."],
    "always": ["Always cite the source."],
    "use-only": ["Use only the notes below."],
    "answer-in": ["Answer in English."],
    "two": ["You must cite each source by number.", "Do not use outside knowledge."],
    "one-paragraph": ["You must cite each source by number.\nDo not use outside knowledge."],
    "list": ["1. Cite each note by its number.\n2. Never invent facts."],
    "based-on": ["Based on the context below, answer in one sentence."],
    "according": ["According to the notes, answer briefly.", "Be brief."],
    "if-you": ["If you don't know the answer, say so."],
    "your": ["Your answer must quote the source."],
}


def context_text(layout: Layout) -> str:
    return "\n".join(layout.text[r.start : r.end] for r in layout.regions if r.kind == "context")


def assert_outside(layout: Layout, pieces: list[str]) -> None:
    inside = context_text(layout)
    for piece in pieces:
        for line in piece.split("\n"):
            assert line not in inside, (line, layout.regions)


def assert_inside(layout: Layout, pieces: list[str]) -> None:
    inside = context_text(layout)
    for piece in pieces:
        assert piece in inside, (piece, layout.regions)


# ------------------------------------------------------------------------------------------------------ headings
@pytest.mark.parametrize("rules", RULES)
@pytest.mark.parametrize("heading", HEADINGS)
@pytest.mark.parametrize(("role", "last"), ROLES, ids=["system", "user"])
def test_rules_straight_after_a_context_heading_are_not_context(
    rules: str, heading: str, role: str, last: bool
) -> None:
    text = HEADINGS[heading] + "\n\n".join([*RULES[rules], *DOCS]) + f"\n\nQuestion: {Q}"
    layout = understand(text, role=role, last_user=last)
    assert_outside(layout, RULES[rules])
    assert_inside(layout, DOCS)
    if last:
        assert layout.question == Q


@pytest.mark.parametrize("rules", ["never", "two", "list", "based-on"])
@pytest.mark.parametrize(("role", "last"), ROLES, ids=["system", "user"])
def test_rules_after_a_heading_and_before_an_unlabelled_question_are_not_context(
    rules: str, role: str, last: bool
) -> None:
    text = "Documents:\n" + "\n\n".join([*RULES[rules], *DOCS]) + f"\n\n{Q}"
    layout = understand(text, role=role, last_user=last)
    assert_outside(layout, RULES[rules])
    assert_inside(layout, DOCS)


@pytest.mark.parametrize("rules", ["never", "two", "answer-in"])
@pytest.mark.parametrize(("role", "last"), ROLES, ids=["system", "user"])
def test_rules_inside_llama_index_fences_are_not_context(rules: str, role: str, last: bool) -> None:
    text = (
        "Context information is below.\n---------------------\n"
        + "\n\n".join([*RULES[rules], *DOCS])
        + "\n---------------------\nGiven the context information and not prior knowledge, answer the query.\n"
        + f"Query: {Q}\nAnswer: "
    )
    layout = understand(text, role=role, last_user=last)
    assert_outside(layout, RULES[rules])
    assert_inside(layout, DOCS)


@pytest.mark.parametrize(
    "lead",
    [
        ["Here are the notes:", "Answer in English."],
        ["You are a harbour historian.", "Never invent facts.", "Answer in English."],
        ["Never invent facts.", "Always cite the note you use."],
    ],
    ids=["intro", "persona", "bare"],
)
@pytest.mark.parametrize(("role", "last"), ROLES, ids=["system", "user"])
def test_rules_before_long_unmarked_documents_are_not_context(lead: list[str], role: str, last: bool) -> None:
    """No heading: the layout rule keeps the rules at the start of a long message as it keeps those at its end."""
    text = "\n\n".join([*lead, *DOCS, *DOCS]) + (f"\n\n{Q}" if last else "")
    layout = understand(text, role=role, last_user=last)
    assert_outside(layout, lead)
    assert_inside(layout, DOCS)


# ----------------------------------------------------------------------------------------------------- documents
OPENINGS = [
    "According to the 2010 census, Kestrel Bay had 2,200 residents within the parish limits.",
    "Given its length of 400 metres, the breakwater was the longest on the coast until 1930.",
    "You can reach the head of the breakwater on foot at low tide; the path is closed in a gale.",
    "Based on the 1911 figures, the herring fleet landed more fish than in any year before.",
    "Your guide to the harbour: the breakwater, the lifeboat house and the old ropewalk.",
    "If you visit in winter, the lifeboat house opens only at weekends.",
    "You can reach the head of the breakwater on foot at low tide.\nThe path is closed in a gale.",
    "The path to the head of the breakwater is open at low tide.\nYou can walk it in twenty minutes.",
]


@pytest.mark.parametrize("opening", OPENINGS)
@pytest.mark.parametrize("heading", ["context", "documents", "markdown", "here-is"])
@pytest.mark.parametrize(("role", "last"), ROLES, ids=["system", "user"])
def test_a_document_that_opens_as_an_instruction_may_stays_context(
    opening: str, heading: str, role: str, last: bool
) -> None:
    docs = [opening, *DOCS]
    text = HEADINGS[heading] + "\n\n".join(docs) + f"\n\nQuestion: {Q}"
    assert_inside(understand(text, role=role, last_user=last), docs)


@pytest.mark.parametrize("opening", [*OPENINGS[:4], "Always popular with visitors, the harbour saw 7,000 in 1911."])
@pytest.mark.parametrize(("role", "last"), ROLES, ids=["system", "user"])
def test_a_heading_over_one_short_paragraph_keeps_it_as_context(opening: str, role: str, last: bool) -> None:
    """Never all of the block: one paragraph under the heading is its document, whatever its words."""
    text = f"Context:\n{opening}\n\nQuestion: {Q}"
    assert_inside(understand(text, role=role, last_user=last), [opening])


@pytest.mark.parametrize("opener", ["According to the harbour master", "Given the records", "You will find that"])
def test_a_long_first_paragraph_that_opens_as_an_instruction_is_a_document(opener: str) -> None:
    long = f"{opener}, " + " ".join(DOCS)
    text = f"Context:\n\n{long}\n\n{DOCS[0]}\n\nQuestion: {Q}"
    assert_inside(understand(text), [long, DOCS[0]])
