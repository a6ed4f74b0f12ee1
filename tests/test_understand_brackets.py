"""Sections in square brackets (``[CONTEXT]…[/CONTEXT]``, ``[DOCUMENTS]``, ``[QUESTION]``): read as document tags
are, when they pair up; brackets that do not (a Markdown link's text, a citation) are text, as before."""

from __future__ import annotations

from test_understand_templates import CONTEXT, DOCS, MORE, Q, bm25

from promptzip._understand import Layout, understand

ALL = DOCS + MORE


def context_of(layout: Layout) -> list[str]:
    return [layout.text[layout.regions[i].start : layout.regions[i].end] for i in layout.context]


def kept_whole(layout: Layout) -> str:
    """What no context region holds: the template's words, the question and the tags (a tag leaves with its
    element only when nothing of it is kept)."""
    return "".join(layout.text[r.start : r.end] for r in layout.regions if r.kind != "context")


def test_a_bracketed_context_and_question_are_read_as_tags() -> None:
    text = f"[CONTEXT]\n{CONTEXT}\n[/CONTEXT]\n\n[QUESTION]\n{Q}\n[/QUESTION]"
    layout = understand(text)
    assert context_of(layout) == [CONTEXT]
    assert layout.question == Q
    assert kept_whole(layout) == f"[CONTEXT]\n\n[/CONTEXT]\n\n[QUESTION]\n{Q}\n[/QUESTION]"


def test_an_instruction_section_and_a_question_label_in_brackets() -> None:
    text = (
        "[INSTRUCTIONS]\nAnswer from the documents.\n[/INSTRUCTIONS]\n"
        f"[DOCUMENTS]\n{CONTEXT}\n[/DOCUMENTS]\n[QUESTION] {Q}"
    )
    layout = understand(text)
    assert context_of(layout) == [CONTEXT]
    assert layout.question == Q
    assert kept_whole(layout).startswith("[INSTRUCTIONS]\nAnswer from the documents.\n[/INSTRUCTIONS]\n[DOCUMENTS]\n")


def test_each_bracketed_document_is_its_own_element_and_leaves_whole_when_dropped() -> None:
    text = "Answer from the documents.\n\n" + "\n".join(
        f"[DOCUMENT {i}]\n{doc}\n[/DOCUMENT {i}]" for i, doc in enumerate(ALL, 1)
    )
    text += f"\n\nQuestion: {Q}"
    layout = understand(text)
    assert context_of(layout) == ALL
    assert len(layout.elements) == len(ALL)
    result = bm25().compress_prompt(text, rate=0.3)
    assert f"[DOCUMENT 2]\n{DOCS[1]}\n[/DOCUMENT 2]" in result.text
    assert "[DOCUMENT 1]" not in result.text  # a dropped document leaves with its tags
    assert result.text.startswith("Answer from the documents.\n\n")
    assert result.text.endswith(f"\n\nQuestion: {Q}")


def test_compressing_keeps_the_brackets_and_the_question() -> None:
    text = f"You answer from the context.\n\n[CONTEXT]\n{CONTEXT}\n[/CONTEXT]\n\n[QUESTION]\n{Q}\n[/QUESTION]"
    result = bm25().compress_prompt(text, rate=0.3)
    assert result.text.startswith("You answer from the context.\n\n[CONTEXT]\n")
    assert result.text.endswith(f"\n[/CONTEXT]\n\n[QUESTION]\n{Q}\n[/QUESTION]")
    assert DOCS[1] in result.text
    assert DOCS[0] not in result.text


def test_brackets_that_do_not_pair_are_text() -> None:
    linked = f"See [Context](https://example.com/context) for how we work.\n\n{CONTEXT}\n\n{Q}"
    cited = "\n\n".join(f"[Source {i}] {doc}" for i, doc in enumerate(ALL, 1)) + f"\n\n{Q}"
    for text in (linked, cited):
        layout = understand(text)
        assert all(r.rule != "tag" for r in layout.regions)
        assert layout.question == Q
        assert DOCS[1] in "".join(context_of(layout))


def test_xml_document_tags_win_over_brackets_inside_them() -> None:
    text = f"<documents>\n[CONTEXT]\n{CONTEXT}\n[/CONTEXT]\n</documents>\n\n{Q}"
    layout = understand(text)
    assert context_of(layout) == [f"[CONTEXT]\n{CONTEXT}\n[/CONTEXT]"]


# AnythingLLM's system message: its default prompt, then each retrieved text between "[CONTEXT i]:" and
# "[END CONTEXT i]" (server/utils/AiProviders/*: #appendContext).
ANYTHINGLLM_PROMPT = (
    "Given the following conversation, relevant context, and a follow up question, reply with an answer to the "
    "current question the user is asking. Return only your response to the question given the above information "
    "following the users instructions as needed."
)
ANYTHINGLLM = (
    ANYTHINGLLM_PROMPT
    + "\nContext:\n"
    + "".join(f"[CONTEXT {i}]:\n{doc}\n[END CONTEXT {i}]\n\n" for i, doc in enumerate(ALL))
)
ASKED = "When did tourism replace fishing?"


def assert_each_context_whole_or_gone(sent: str) -> None:
    """Every document in ``sent`` keeps both of its markers, a dropped one leaves with them, and no blank lines pile
    up where documents left."""
    assert sent.startswith(ANYTHINGLLM_PROMPT + "\nContext:\n")
    kept = [i for i in range(len(ALL)) if f"[CONTEXT {i}]:\n" in sent]
    assert kept
    assert len(kept) < len(ALL)
    for i in range(len(ALL)):
        assert (f"[CONTEXT {i}]:\n" in sent) == (f"\n[END CONTEXT {i}]" in sent) == (i in kept)
    assert "\n\n\n" not in sent
    assert "Tourism replaced fishing in the 1970s." in sent


def test_anythingllm_contexts_are_elements_kept_or_dropped_with_their_markers() -> None:
    layout = understand(ANYTHINGLLM, role="system", last_user=False)
    assert context_of(layout) == ALL
    assert len(layout.elements) == len(ALL)
    messages = [{"role": "system", "content": ANYTHINGLLM}, {"role": "user", "content": ASKED}]
    out = bm25().compress_messages(messages, rate=0.3).messages
    assert out is not None
    assert_each_context_whole_or_gone(out[0]["content"])
    assert out[1]["content"] == ASKED


def test_anythingllm_contexts_through_the_proxy() -> None:
    from understand_helpers import through_the_proxy

    sent_system, sent_user = through_the_proxy("openai", ANYTHINGLLM, ASKED, rate="0.3")
    assert sent_system is not None
    assert_each_context_whole_or_gone(sent_system)
    assert sent_user == ASKED
