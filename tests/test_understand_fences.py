"""Triple-backtick fences as delimiters around the text a prompt works on (DeepLearning.AI's "ChatGPT Prompt
Engineering for Developers": "Summarize the text delimited by triple backticks. ```{text}```"): read as the ``\"\"\"``
pair is, and only around prose; a code block a user pastes and asks about is never made compressible."""

from __future__ import annotations

import pytest
from understand_helpers import DOCS as _DOCS

from promptzip._understand import Layout, understand

DOCS = _DOCS + [d.replace("Kestrel", "Osprey") for d in _DOCS]
JOINED = "\n\n".join(DOCS)
ASK = "Who rowed the lifeboat?"
CODE = (
    "def harbour_depth(tide: float, dredged: bool) -> float:\n"
    "    # the creek silts up unless it is dredged every summer\n"
    "    base = 4.5 if dredged else 1.2\n"
    "    return base + tide * 0.8\n\n\n"
    "print(harbour_depth(2.0, True))"
)


def context_of(layout: Layout) -> list[str]:
    return [layout.text[layout.regions[i].start : layout.regions[i].end] for i in layout.context]


def question_text(layout: Layout) -> str:
    return "".join(layout.text[r.start : r.end] for r in layout.regions if r.kind == "question")


def rules_of(layout: Layout) -> set[str]:
    return {r.rule for r in layout.regions if r.kind == "context"}


# ------------------------------------------------------------------------------------------------------- delimiters
@pytest.mark.parametrize(
    "text",
    [
        f"Answer using the text delimited by triple backticks.\n```\n{JOINED}\n```\n{ASK}",
        f"Answer using the text delimited by triple backticks.\n\n```\n{JOINED}\n```\n\n{ASK}",
        f"```\n{JOINED}\n```\n{ASK}",
        f"Use the notes in triple backticks to answer.\nNotes: ```{JOINED}```\nQuestion: {ASK}",
    ],
    ids=["course", "blank-lines", "fence-first", "inline-labelled"],
)
def test_the_text_between_backtick_fences_is_context_and_the_question_is_kept(text: str) -> None:
    """Before, the layout rule read the first paragraph (the fence and the first document) as instruction and the
    last document with the question as the question."""
    layout = understand(text, role="user", last_user=True)
    assert context_of(layout) == [JOINED]
    assert rules_of(layout) == {"fence"}
    assert ASK in question_text(layout)
    assert ASK in (layout.question or "")
    assert "```" not in (layout.question or "")  # the closing fence is the text's, not the question's words


@pytest.mark.parametrize("quote", ["```", '"""'])
def test_the_question_after_a_closing_fence_is_the_question_alone(quote: str) -> None:
    layout = understand(f"Answer from the notes.\n{quote}\n{JOINED}\n{quote}\n{ASK}", role="user", last_user=True)
    assert context_of(layout) == [JOINED]
    assert layout.question == ASK


@pytest.mark.parametrize("text", [JOINED, DOCS[2]], ids=["documents", "one-paragraph"])
def test_an_inline_fence_around_the_text_to_summarise(text: str) -> None:
    """The course's inline form, ```{text}```: the request before it stays verbatim (before, the whole message was
    context when it was long, or all of it the question when it was short)."""
    request = "Summarize the text delimited by triple backticks into a single sentence."
    layout = understand(f"{request}\n```{text}```", role="user", last_user=True)
    assert context_of(layout) == [text]
    assert layout.text[layout.regions[0].start : layout.regions[0].end].startswith(request)
    assert layout.regions[0].kind != "context"


def test_several_fenced_texts_are_each_context() -> None:
    first, second = "\n\n".join(DOCS[:3]), "\n\n".join(DOCS[3:])
    text = f"Compare the two reports delimited by triple backticks.\nReport 1: ```{first}```\nReport 2: ```{second}```"
    layout = understand(text, role="user", last_user=True)
    assert context_of(layout) == [first, second]


@pytest.mark.parametrize(("role", "last"), [("system", False), ("user", False)])
def test_fenced_documents_in_a_system_prompt_or_an_earlier_turn(role: str, last: bool) -> None:
    text = f"You answer from the documents delimited by triple backticks. Be brief.\n```\n{JOINED}\n```"
    layout = understand(text, role=role, last_user=last)
    assert context_of(layout) == [JOINED]
    assert layout.regions[0].kind == "instruction"


# ------------------------------------------------------------------------------------------------------- code blocks
@pytest.mark.parametrize(
    "text",
    [
        f"Why does this print the wrong depth?\n```\n{CODE}\n```",
        f"```\n{CODE}\n```\nWhy does this print the wrong depth?",
        f"Here is my script:\n```\n{CODE}\n```\n\nIt prints 6.1. Why?",
        "Review this.\n```\nimport harbour\ndepth = harbour.depth(2.0)\nprint(depth)\n```\nIs it right?",
        "Fix the error:\n```\n$ python harbour.py --tide 2\nError: no such tide table\n```\nWhat is wrong?",
    ],
    ids=["question-first", "question-after", "intro", "short-code", "shell"],
)
def test_a_bare_fence_around_code_stays_the_question(text: str) -> None:
    """A user pasting code between bare fences and asking about it: nothing is context, as before."""
    layout = understand(text, role="user", last_user=True)
    assert context_of(layout) == []
    assert [r.kind for r in layout.regions] == ["question"]


@pytest.mark.parametrize("tag", ["text", "markdown", "python", "json"])
def test_a_fence_with_a_language_tag_is_a_code_block_however_it_reads(tag: str) -> None:
    text = f"Answer using the text below.\n```{tag}\n{DOCS[0]}\n```\n{ASK}"
    layout = understand(text, role="user", last_user=True)
    assert context_of(layout) == []
    layout = understand(f"Answer using the text below.\n```{tag}\n{JOINED}\n```\n{ASK}", role="user", last_user=True)
    assert "fence" not in rules_of(layout)


@pytest.mark.parametrize("example", [CODE, DOCS[0]], ids=["code", "prose"])
def test_a_markdown_document_with_a_fenced_example_deep_inside_is_read_as_before(example: str) -> None:
    """A long document's own fence (past the lead allowed to a delimiter) is the document's, whatever it holds: the
    layout rule reads the message, and the example stays inside the document's context."""
    doc = "\n\n".join(DOCS * 2) + f"\n\nFor example:\n\n```\n{example}\n```\n\n" + "\n\n".join(DOCS)
    text = f"Answer from the guide below.\n\n{doc}"
    layout = understand(text, role="system", last_user=False)
    assert rules_of(layout) == {"layout"}
    assert len(context_of(layout)) == 1
    assert example in context_of(layout)[0]


def test_a_markdown_document_with_a_code_example_near_its_start_is_read_as_before() -> None:
    doc = f"{DOCS[0]}\n\n```\n{CODE}\n```\n\n" + "\n\n".join(DOCS)
    layout = understand(f"Answer from the guide below.\n\n{doc}", role="system", last_user=False)
    assert rules_of(layout) == {"layout"}
    assert len(context_of(layout)) == 1
    assert CODE in context_of(layout)[0]


@pytest.mark.parametrize(
    "text",
    [
        # a chunk that starts inside one code block and ends inside another: its fences pair up the wrong way round
        f"Context:\nprint(harbour_depth(2.0, True))\n```\n\n{DOCS[0]}\n\n```\nimport harbour\n\nQuestion: {ASK}",
        f"Context:\nprint(harbour_depth(2.0, True))\n```\n\n{DOCS[0]}\n\n```python\nimport harbour\n\nQuestion: {ASK}",
        # prose between fences in a document that also holds code
        f"Read this.\n```\n{DOCS[0]}\n```\n\nThen run:\n```\n{CODE}\n```\n{ASK}",
        # a fence alone, or four backticks (Markdown's way to show a fence), or a fence mentioned in the request
        f"Wrap the answer in ``` please.\n{DOCS[0]}\n{ASK}",
        f"Answer from this.\n````\n{DOCS[0]}\n````\n{ASK}",
    ],
    ids=["chunk-inside-code", "chunk-inside-tagged-code", "prose-and-code", "lone-fence", "four-backticks"],
)
def test_fences_that_are_not_a_pair_around_prose_are_left_alone(text: str) -> None:
    layout = understand(text, role="user", last_user=True)
    assert "fence" not in rules_of(layout)


@pytest.mark.parametrize(
    "block",
    [
        # LlamaIndex's ReAct system header: the output format to follow, in labelled lines
        "Thought: The current language of the user is: (user's language). I need to use a tool to help me answer "
        "the question.\nAction: tool name (one of {tool_names}) if using a tool.\nAction Input: the input to the "
        'tool, in a JSON format representing the kwargs (e.g. {"input": "hello world", "num_beams": 5})',
        # a diagram drawn in box characters
        "request (question, instruction, chunks, budget)\n  │\n  ├─ understand   a request becomes regions, each "
        "with its source.\n  ├─ split        text becomes chunks, keeping offsets and source ids.",
    ],
    ids=["react-format", "diagram"],
)
def test_a_fenced_format_or_diagram_in_a_system_prompt_stays_instruction(block: str) -> None:
    text = f"You are a helpful assistant.\n\n## Output Format\nUse the following format:\n\n```\n{block}\n```\n"
    layout = understand(text, role="system", last_user=False)
    assert context_of(layout) == []
