"""Raw prompts in a chat template (what a completions endpoint or a string-prompt LLM class receives): the markers are
the model's special tokens and survive compression in order, and each turn's content is read as a message of its
role would be (promptzip/_rules_templates.py)."""

from __future__ import annotations

import re

import pytest
from understand_helpers import DOCS, Q

from promptzip._pipeline import Zipper
from promptzip._rules_templates import template_turns
from promptzip._understand import understand
from promptzip.compressors.extractive import ExtractiveCompressor
from promptzip.retrievers.sparse import BM25Scorer

MORE = [
    "The lighthouse on the south pier was built in 1890 by the Northern Lights board. Its lamp was converted to "
    "electricity in 1936 and automated in 1982, when the last keeper left for the mainland.",
    "Fishing declined after the Second World War as the herring shoals moved north. By 1960 only six boats worked "
    "from the harbour, and the fish market closed two years later.",
    "Tourism replaced fishing in the 1970s. The old net lofts became holiday cottages, and the council built a marina "
    "inside the breakwater in 1988 with space for two hundred yachts.",
]
CONTEXT = "\n\n".join(DOCS + MORE)
SYSTEM = "You are a careful assistant. Answer using only the context."
ANSWER_DOC = DOCS[1]

# (family, prompt, its markers in order): the system prompt, the documents and the question in each template
TEMPLATES = {
    "chatml": (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\nContext:\n{CONTEXT}\n\nQuestion: {Q}<|im_end|>\n"
        "<|im_start|>assistant\n"
    ),
    "llama3": (
        f"<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n{SYSTEM}<|eot_id|>"
        f"<|start_header_id|>user<|end_header_id|>\n\n{CONTEXT}\n\n{Q}<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
    "llama2": f"<s>[INST] <<SYS>>\n{SYSTEM}\n<</SYS>>\n\n{CONTEXT}\n\n{Q} [/INST]",
    "mistral": f"<s>[SYSTEM_PROMPT]{SYSTEM}[/SYSTEM_PROMPT][INST]Context:\n{CONTEXT}\n\nQuestion: {Q}[/INST]",
    "gemma": f"<bos><start_of_turn>user\n{SYSTEM}\n\n{CONTEXT}\n\n{Q}<end_of_turn>\n<start_of_turn>model\n",
    "phi3": f"<|system|>\n{SYSTEM}<|end|>\n<|user|>\nContext:\n{CONTEXT}\n\nQuestion: {Q}<|end|>\n<|assistant|>\n",
    "zephyr": f"<|system|>\n{SYSTEM}</s>\n<|user|>\n{CONTEXT}\n\n{Q}</s>\n<|assistant|>\n",
    "granite": (
        f"<|start_of_role|>system<|end_of_role|>{SYSTEM}<|end_of_text|>\n<|start_of_role|>user<|end_of_role|>"
        f"Context:\n{CONTEXT}\n\nQuestion: {Q}<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>"
    ),
    "command-r": (
        f"<BOS_TOKEN><|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>{SYSTEM}<|END_OF_TURN_TOKEN|>"
        f"<|START_OF_TURN_TOKEN|><|USER_TOKEN|>Context:\n{CONTEXT}\n\nQuestion: {Q}<|END_OF_TURN_TOKEN|>"
        "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>"
    ),
    "deepseek": f"<｜begin▁of▁sentence｜>{SYSTEM}<｜User｜>Context:\n{CONTEXT}\n\nQuestion: {Q}<｜Assistant｜>",
}
MARKER = re.compile(
    r"<\|[A-Za-z_]+\|>|\[/?(?:INST|SYSTEM_PROMPT)\]|<</?SYS>>|</?s>|<bos>|<BOS_TOKEN>|<(?:start|end)_of_turn>|<｜[^｜]+｜>"
)


def bm25() -> Zipper:
    return Zipper(ExtractiveCompressor(BM25Scorer(), min_relevance=None), target="gpt-4o")


@pytest.mark.parametrize("family", list(TEMPLATES))
def test_a_templated_prompt_has_its_markers_protected_and_each_turn_read_by_its_role(family: str) -> None:
    text = TEMPLATES[family]
    layout = understand(text)
    regions = layout.regions
    assert [r.start for r in regions[1:]] == [r.end for r in regions[:-1]]
    assert regions[-1].end == len(text)
    fixed = layout.fixed_text()
    for m in MARKER.finditer(text):
        assert any(r.kind != "context" and r.start <= m.start() and m.end() <= r.end for r in regions), m.group()
    assert SYSTEM in fixed  # the system turn (or the first user turn's opening words) is kept
    assert layout.question == Q
    context = "".join(text[regions[i].start : regions[i].end] for i in layout.context)
    assert all(doc in context for doc in DOCS + MORE)
    assert not MARKER.search(context)


@pytest.mark.parametrize("family", list(TEMPLATES))
def test_compressing_a_templated_prompt_keeps_every_marker_in_order_and_the_answer(family: str) -> None:
    text = TEMPLATES[family]
    result = bm25().compress_prompt(text, rate=0.3)
    assert [m.group() for m in MARKER.finditer(result.text)] == [m.group() for m in MARKER.finditer(text)]
    assert SYSTEM in result.text
    assert Q in result.text
    assert "lengthened by sixty metres in 1911" in result.text
    assert len(result.text) < len(text) * 0.6
    dropped = "".join(d.text for d in result.dropped)
    assert DOCS[0] in dropped
    assert not MARKER.search(dropped)


def test_earlier_turns_are_history_and_the_last_user_turn_is_answered() -> None:
    text = (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n"
        f"<|im_start|>user\nWhat happened to fishing?\n\n{MORE[1]}<|im_end|>\n"
        f"<|im_start|>assistant\nIt declined after the war; the fish market closed around 1962.<|im_end|>\n"
        f"<|im_start|>user\nContext:\n{CONTEXT}\n\nQuestion: {Q}<|im_end|>\n<|im_start|>assistant\n"
    )
    layout = understand(text)
    assert layout.question == Q
    context = [text[layout.regions[i].start : layout.regions[i].end] for i in layout.context]
    assert "What happened to fishing?\n\n" + MORE[1] in context  # an earlier user turn: context as a whole
    assert "It declined after the war; the fish market closed around 1962." in context
    assert SYSTEM in layout.fixed_text()


def test_an_open_assistant_turn_at_the_end_is_a_prefill_and_kept_as_written() -> None:
    prefill = "Based on the documents, the breakwater was lengthened in"
    text = f"<|im_start|>user\nContext:\n{CONTEXT}\n\nQuestion: {Q}<|im_end|>\n<|im_start|>assistant\n{prefill}"
    layout = understand(text)
    assert layout.fixed_text().endswith("<|im_start|>assistant\n" + prefill)
    result = bm25().compress_prompt(text, rate=0.3)
    assert result.text.endswith("<|im_end|>\n<|im_start|>assistant\n" + prefill)


def test_a_turn_of_a_role_the_rule_does_not_know_is_kept_as_written() -> None:
    critique = "Critic notes: " + CONTEXT
    text = f"<|im_start|>critic\n{critique}<|im_end|>\n<|im_start|>user\nContext:\n{CONTEXT}\n\nQuestion: {Q}<|im_end|>"
    layout = understand(text)
    assert critique in layout.fixed_text()
    assert layout.question == Q


def test_a_json_tool_turn_stays_whole_and_a_user_turn_of_the_template_is_still_compressed() -> None:
    tool = '{"rows": [{"year": 1911, "event": "breakwater lengthened"}]}'
    text = (
        f"<|start_header_id|>user<|end_header_id|>\n\n{CONTEXT}\n\n{Q}<|eot_id|>"
        f"<|start_header_id|>ipython<|end_header_id|>\n\n{tool}<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    layout = understand(text)
    assert tool in layout.fixed_text()
    assert layout.question == Q
    assert layout.context


@pytest.mark.parametrize(
    "text",
    [
        f"A note on prompt formats: Llama 2 wraps each user turn in [INST] and [/INST].\n\n{CONTEXT}\n\n{Q}",
        f"Context:\n{CONTEXT}\n\nThe tokenizer adds <|im_start|>user before a turn.\n\nQuestion: {Q}",
    ],
)
def test_a_text_that_only_mentions_markers_further_in_is_read_as_before(text: str) -> None:
    layout = understand(text)
    assert all(r.rule != "template" for r in layout.regions)
    assert layout.question == Q
    assert layout.context


@pytest.mark.parametrize("blanks", [" \t ", "\n\n\n"])
def test_blanks_before_a_closing_marker_go_with_it(blanks: str) -> None:
    text = f"<s>[INST] <<SYS>>\n{SYSTEM}{blanks}<</SYS>>\n\n{CONTEXT}\n\n{Q}{blanks}[/INST]"
    turns = template_turns(text)
    assert turns is not None
    markers = [text[t.start : t.end] for t in turns if t.role == "marker"]
    closing = "\n\n\n<</SYS>>\n\n" if blanks.startswith("\n") else "<</SYS>>\n\n"
    assert closing in markers
    assert (f"{blanks}[/INST]" if " " in blanks else "[/INST]") in markers
    assert understand(text).question == Q


# Each blank used to start a try of the markers that take the blanks before them, each try reading the rest of its
# run: 300 KB of spaces took a minute and a half, a few megabytes hours (one client stalled the proxy's interpreter).
# The guard is a timeout, not a figure.
@pytest.mark.timeout(30)
@pytest.mark.parametrize("blank", [" ", "\t", "\n"])
@pytest.mark.parametrize("family", ["chatml", "llama2"])
def test_a_raw_prompt_with_long_runs_of_blanks_is_read_in_one_pass(blank: str, family: str) -> None:
    run = blank * 300_000
    text = {
        "chatml": f"<|im_start|>system\n{SYSTEM}{run}<|im_end|>\n<|im_start|>user\n{run}Question: {Q}{run}<|im_end|>",
        "llama2": f"<s>[INST] <<SYS>>\n{SYSTEM}{run}<</SYS>>\n\n{run}Question: {Q}{run}[/INST]",
    }[family]
    turns = template_turns(text)
    assert turns is not None
    markers = [text[t.start : t.end].strip() for t in turns if t.role == "marker"]
    assert (
        markers
        == {
            "chatml": ["<|im_start|>system", "<|im_end|>", "<|im_start|>user", "<|im_end|>"],
            "llama2": ["<s>", "[INST]", "<<SYS>>", "<</SYS>>", "[/INST]"],
        }[family]
    )
    assert understand(text).question == Q


def test_a_templated_text_in_an_earlier_turn_is_history_throughout() -> None:
    text = f"<|im_start|>user\n{CONTEXT}\n\n{Q}<|im_end|>"
    layout = understand(text, role="user", last_user=False, history=True)
    assert layout.question is None
    assert [r.kind for r in layout.regions] == ["protected", "context", "protected"]


def test_a_langchain_string_prompt_in_a_chat_template_keeps_its_markers_through_the_runnable() -> None:
    """A ``PromptTemplate`` written in ChatML (what a string-prompt LLM such as ``VLLMOpenAI`` is given), through
    the real ``PromptZipRunnable``: the same text as ``compress_prompt`` gives, markers and turns intact."""
    from langchain_core.prompt_values import StringPromptValue
    from langchain_core.prompts import PromptTemplate

    from promptzip.integrations.langchain import PromptZipRunnable

    template = PromptTemplate.from_template(
        "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\nContext:\n{context}\n\nQuestion: {question}"
        "<|im_end|>\n<|im_start|>assistant\n"
    )
    zipper = bm25()
    chain = template | PromptZipRunnable(rate=0.3, zipper=zipper)
    out = chain.invoke({"system": SYSTEM, "context": CONTEXT, "question": Q})
    assert isinstance(out, StringPromptValue)
    text = TEMPLATES["chatml"]
    assert out.text == zipper.compress_prompt(text, rate=0.3).text
    assert out.text.startswith(f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\nContext:\n")
    assert out.text.endswith(f"Question: {Q}<|im_end|>\n<|im_start|>assistant\n")
    assert len(out.text) < len(text) * 0.6
