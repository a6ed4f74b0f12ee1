"""Raw prompts of role lines (Vicuna's ``USER: … ASSISTANT:``, ``Human: … Assistant:``): the role words are the
template's markers and survive compression, each turn is read by its role, and the question before the closing
``ASSISTANT:`` is found (promptzip/_rules_role_lines.py). Before, the whole text was read as one question and
compressed as one block, role words and question included."""

from __future__ import annotations

import bisect
import re

import pytest
from test_understand_templates import CONTEXT, DOCS, MORE, SYSTEM, bm25
from understand_helpers import Q

from promptzip._rules_role_lines import role_line_turns
from promptzip._rules_templates import template_turns
from promptzip._understand import understand

PREAMBLE = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant answers from the context."
)
PROMPTS = {
    "vicuna": f"{PREAMBLE}\n\nUSER: Context:\n{CONTEXT}\n\nQuestion: {Q}\nASSISTANT:",
    "anthropic-legacy": f"\n\nHuman: {SYSTEM}\n\nContext:\n{CONTEXT}\n\nQuestion: {Q}\n\nAssistant:",
    "hashes": f"{PREAMBLE}\n### Human: Context:\n{CONTEXT}\n\nQuestion: {Q}\n### Assistant:",
    "user-assistant": f"System: {SYSTEM}\nUser: Context:\n{CONTEXT}\n\nQuestion: {Q}\nAssistant: ",
}
WORDS = {
    "vicuna": ["USER:", "ASSISTANT:"],
    "anthropic-legacy": ["Human:", "Assistant:"],
    "hashes": ["### Human:", "### Assistant:"],
    "user-assistant": ["System:", "User:", "Assistant:"],
}


@pytest.mark.parametrize("family", list(PROMPTS))
def test_role_words_are_markers_and_the_last_user_turn_is_answered(family: str) -> None:
    text = PROMPTS[family]
    turns = role_line_turns(text)
    assert turns is not None
    assert [text[t.start : t.end].strip() for t in turns if t.role == "marker"] == WORDS[family]
    layout = understand(text)
    assert [r.start for r in layout.regions[1:]] == [r.end for r in layout.regions[:-1]]
    assert layout.question == Q
    context = "".join(text[layout.regions[i].start : layout.regions[i].end] for i in layout.context)
    assert all(doc in context for doc in DOCS + MORE)
    fixed = layout.fixed_text()
    assert all(word in fixed for word in WORDS[family])
    assert (PREAMBLE if PREAMBLE in text else SYSTEM) in fixed


@pytest.mark.parametrize("family", list(PROMPTS))
def test_compression_keeps_the_role_words_the_question_and_the_answer(family: str) -> None:
    text = PROMPTS[family]
    out = bm25().compress_prompt(text, rate=0.3).text
    assert len(out) < len(text) * 0.6
    assert [w for w in WORDS[family] if w in out] == WORDS[family]
    assert out.rstrip().endswith(WORDS[family][-1])
    assert Q in out
    assert "lengthened by sixty metres in 1911" in out


def test_earlier_turns_are_history() -> None:
    text = (
        f"{PREAMBLE}\n\nUSER: What happened to fishing?\n\n{MORE[1]}\nASSISTANT: It declined after the war.</s>"
        f"USER: Context:\n{CONTEXT}\n\nQuestion: {Q}\nASSISTANT:"
    )
    layout = understand(text)
    assert layout.question == Q
    context = [text[layout.regions[i].start : layout.regions[i].end] for i in layout.context]
    assert any(MORE[1] in c for c in context)  # an earlier user turn is context as a whole


def test_a_quoted_role_line_inside_the_user_turn_stays_in_its_document() -> None:
    ticket = "Ticket 4471 (transcript):\nUSER: my login fails since the update\nAgent: reset the token, please."
    text = f"{PREAMBLE}\n\nUSER: Context:\n{CONTEXT}\n\n{ticket}\n\nQuestion: {Q}\nASSISTANT:"
    turns = role_line_turns(text)
    assert turns is not None
    assert [text[t.start : t.end].strip() for t in turns if t.role == "marker"] == ["USER:", "ASSISTANT:"]
    assert understand(text).question == Q


@pytest.mark.parametrize(
    "text",
    [
        f"Context:\n{CONTEXT}\n\nQuestion: {Q}\nAssistant:",  # no user line: not a conversation
        f"USER: {Q}\nASSISTANT: In 1911.\n\nThat is how the log reads.",  # does not end with the assistant's word
        f"Assistant: Hello.\nUser: {Q}\nAssistant:",  # the assistant speaks before any user
    ],
)
def test_texts_that_are_not_role_line_prompts_are_read_as_before(text: str) -> None:
    assert role_line_turns(text) is None
    assert all(r.rule != "template" for r in understand(text).regions)


@pytest.mark.parametrize(
    "text",
    [
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\nUse these.\n\n{DOCS[0]}\n\n{Q}<|im_end|>\n"
        "<|im_start|>assistant\n",
        f"\n\nHuman: Use these.\n\n{DOCS[0]}\n\n{DOCS[1]}\n\n{Q}\n\nAssistant:",
    ],
    ids=["chatml", "human"],
)
def test_a_short_raw_prompt_compressed_as_one_block_keeps_its_markers(text: str) -> None:
    """A turn too short to find context in is read whole; compress_prompt then compresses the turns, not the
    template's markers (it used to take the whole prompt, markers included, as one block)."""
    turns = template_turns(text) or role_line_turns(text)
    assert turns is not None
    markers = [text[t.start : t.end] for t in turns if t.role == "marker"]
    out = bm25().compress_prompt(text, rate=0.5).text
    assert len(out) < len(text)
    pos = 0
    for m in markers:
        pos = out.index(m, pos) + len(m)


ALPACA = (
    "Below is an instruction that describes a task, paired with an input that provides further context. Write a "
    "response that appropriately completes the request.\n\n"
)
HEADERS = ["### Instruction:", "### Input:", "### Response:"]


@pytest.mark.parametrize(
    "text",
    [
        f"{ALPACA}### Instruction:\n{Q}\n\n### Input:\n{CONTEXT}\n\n### Response:\n",
        f"{ALPACA}### Instruction:\nAnswer from the documents.\n\n### Input:\n{CONTEXT}\n\nQuestion: {Q}\n\n"
        "### Response:\n",
    ],
    ids=["question-as-instruction", "question-in-input"],
)
def test_alpacas_section_headers_survive_compression(text: str) -> None:
    """``### Input:`` opens the documents, so the layout rule put it in the context, where it was dropped."""
    layout = understand(text)
    assert layout.question == Q
    fixed = layout.fixed_text()
    assert all(h in fixed for h in HEADERS)
    out = bm25().compress_prompt(text, rate=0.3).text
    assert [h for h in HEADERS if h in out] == HEADERS
    assert out.endswith("### Response:\n")
    assert "lengthened by sixty metres in 1911" in out


def test_an_alpaca_input_that_is_the_question_alone_is_the_question() -> None:
    """A chat rendered into Alpaca: the system prompt and its documents as the instruction, the user's question (a
    word problem of several sentences) as the input; the rules used to take the instruction's first line for it."""
    question = f"The harbour log has two entries for the breakwater. {Q} Give the year only."
    text = f"{ALPACA}### Instruction:\n{SYSTEM}\n\nContext:\n{CONTEXT}\n\n### Input:\n{question}\n\n### Response:\n"
    layout = understand(text)
    assert layout.question == question
    assert SYSTEM in layout.fixed_text()
    out = bm25().compress_prompt(text, rate=0.5).text
    assert [h for h in HEADERS if h in out] == HEADERS
    assert out.endswith(f"### Input:\n{question}\n\n### Response:\n")
    assert "lengthened by sixty metres in 1911" in out


def test_section_headers_count_only_in_a_prompt_that_ends_with_the_response_header() -> None:
    text = f"Release notes\n\n### Input:\n{CONTEXT}\n\n### Response:\nThe parser now reads tabs.\n\nQuestion: {Q}"
    assert all(r.rule != "template" for r in understand(text).regions)


# Each region was once cut against every header line: 8,000 of each took 2.2 s, 30,000 about a minute. A guard.
@pytest.mark.timeout(30)
def test_an_alpaca_prompt_with_thousands_of_documents_and_headers_is_read_in_one_pass() -> None:
    doc = "<document>The port opened in 1912.</document>"
    text = f"{ALPACA}### Instruction:\n{SYSTEM}\n\n" + f"### Input:\n{doc}\n\n{doc}\n" * 30_000 + "### Response:\n"
    layout = understand(text)
    assert len(layout.elements) == 60_000
    for e in layout.elements[::997]:
        assert e.regions
        assert all(layout.regions[k].kind == "context" and e.start <= layout.regions[k].start for k in e.regions)
        assert all(layout.regions[k].end <= e.end for k in e.regions)
    kept = [(r.start, r.end) for r in layout.regions if r.kind != "context"]
    headers = [m.start() for m in re.finditer(r"^### Input:$", text, re.MULTILINE)]
    assert len(headers) == 30_000
    assert all(kept[bisect.bisect_right(kept, (h, len(text))) - 1][1] > h for h in headers)  # each in a kept region
