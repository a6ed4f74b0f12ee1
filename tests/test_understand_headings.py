"""The names retrieval templates give what they retrieved head the context as "Context:" and "Documents:" do:
"Docs:", "Excerpts:", "Snippets:", "Retrieved chunks:", "Knowledge base:", as a label, a Markdown heading or an
introducing sentence. The names of a task's own input ("Article:", "Text:", "Transcript:") do not: that text is what
the task works on, kept whole."""

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
