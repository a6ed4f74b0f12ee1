"""The names retrieval templates give what they retrieved head the context as "Context:" and "Documents:" do: "Docs:",
"Excerpts:", "Snippets:", "Retrieved chunks:", "Knowledge base:", "Information:", "Facts:", as a label, a Markdown
heading or an introducing sentence. The names of a task's own input ("Article:", "Text:", "Transcript:") do not: that
text is what the task works on, kept whole."""

from __future__ import annotations

import pytest
from understand_helpers import DOCS

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
