"""Request understanding: each rule on the layout it is for, the bad inputs of the RAG-requests issue, and the
invariants every layout keeps (its regions cover the text in order; rebuilding with nothing changed is the text).
Compression here runs on a BM25-only stack (no model), so these tests are fast."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import promptzip as pz
from promptzip._messages import message_tokens
from promptzip._understand import Layout, understand

DOCS = [
    f"Passage {i}. The harbour of town {i} was rebuilt in {1900 + i} after a storm. "
    f"Its lighthouse keeper, named Keeper{i}, counted {i * 7} ships that winter. " * 3
    for i in range(8)
]
DOCS = [d.strip() for d in DOCS]
CONTEXT = "\n\n".join(DOCS)
QUESTION = "In which year was the harbour of town 5 rebuilt?"
INSTRUCTION = (
    "You are an assistant for question-answering tasks. Use the following pieces of retrieved context to answer "
    "the question. If you don't know the answer, say that you don't know."
)


def kinds(layout: Layout) -> list[tuple[str, str]]:
    return [(r.kind, layout.text[r.start : r.end]) for r in layout.regions]


def context_of(layout: Layout) -> list[str]:
    return [layout.text[layout.regions[i].start : layout.regions[i].end] for i in layout.context]


def xml(docs: list[str]) -> str:
    body = "".join(
        f'<document index="{i}">\n<source>doc-{i}.txt</source>\n<document_content>\n{d}\n</document_content>\n'
        "</document>\n"
        for i, d in enumerate(docs)
    )
    return f"<documents>\n{body}</documents>\n\n{QUESTION}"


# ------------------------------------------------------------------------------------------------ the rules
def test_document_tags_each_element_is_a_source_and_short_source_tags_are_metadata() -> None:
    layout = understand(xml(DOCS[:3]))
    assert context_of(layout) == DOCS[:3]
    assert layout.question == QUESTION
    assert all("doc-" not in c for c in context_of(layout))  # <source>doc-0.txt</source> stays verbatim
    assert len(layout.elements) == 7  # <documents>, each <document> and its <document_content>


@pytest.mark.parametrize("name", ["context", "search_results", "passage", "retrieved_documents"])
def test_any_tag_that_says_context(name: str) -> None:
    text = f"Answer from this.\n<{name} id='a'>\n{CONTEXT}\n</{name}>\nQuestion: {QUESTION}"
    layout = understand(text)
    assert context_of(layout) == [CONTEXT]
    assert layout.question == QUESTION


def test_llama_index_dash_fences() -> None:
    text = (
        f"Context information is below.\n---------------------\n{CONTEXT}\n---------------------\n"
        f"Given the context information and not prior knowledge, answer the query.\nQuery: {QUESTION}\nAnswer: "
    )
    layout = understand(text)
    assert context_of(layout) == [CONTEXT]
    assert layout.question == QUESTION


def test_triple_quotes() -> None:
    layout = understand(f'Summarize the text in triple quotes for this question: {QUESTION}\n"""\n{CONTEXT}\n"""')
    assert context_of(layout) == [CONTEXT]


@pytest.mark.parametrize("heading", ["Context:", "### Context", "Documents:", "Sources:\n", "Context: "])
def test_headings(heading: str) -> None:
    sep = "" if heading.endswith((" ", "\n")) else "\n"
    layout = understand(
        f"Given the following information, answer the question.\n\n{heading}{sep}{CONTEXT}\n\n"
        f"Question: {QUESTION}\nAnswer:"
    )
    assert context_of(layout) == [CONTEXT]
    assert layout.question == QUESTION


@pytest.mark.parametrize("ask", [QUESTION, "Summarise what happened to town 5."])
def test_an_unlabelled_question_after_headed_context_is_the_question(ask: str) -> None:
    """The turn being answered asks after its documents without a label: the question is not context (it would be
    scored as a passage and could be dropped), and relevance is scored against it, not against the heading."""
    text = f"Documents:\n{CONTEXT}\n\n{ask}"
    layout = understand(text, role="user", last_user=True)
    assert context_of(layout) == [CONTEXT]
    assert layout.question == ask
    assert kinds(layout)[-1] == ("question", ask)
    # elsewhere the same text is the documents' own to the end: a system prompt, or an earlier turn
    assert context_of(understand(text, role="system", last_user=False)) == [f"{CONTEXT}\n\n{ask}"]
    assert context_of(understand(text, role="user", last_user=False)) == [f"{CONTEXT}\n\n{ask}"]
    # and a long last paragraph is a document, not a question
    last = f"{DOCS[0]} {DOCS[1]}?"
    assert context_of(understand(f"Documents:\n{CONTEXT}\n\n{last}")) == [f"{CONTEXT}\n\n{last}"]


def test_question_before_context_as_in_langchains_rag_prompt() -> None:
    text = f"{INSTRUCTION}\nQuestion: {QUESTION} \nContext: {CONTEXT} \nAnswer:"
    layout = understand(text)
    assert context_of(layout) == [CONTEXT]
    assert layout.question == QUESTION


def test_json_is_protected_and_pz_tags_are_context() -> None:
    payload = json.dumps({"context": CONTEXT, "items": list(range(5))})
    assert [k for k, _ in kinds(understand(payload, role="tool", last_user=False, history=True))] == ["protected"]
    tagged = f"<pz keep>{INSTRUCTION}</pz>\n\n{CONTEXT}"
    assert context_of(understand(tagged)) == [tagged]
    assert [k for k, _ in kinds(understand("<pz keep>never closed " + CONTEXT))] == ["protected"]


def test_layout_rule_for_a_long_system_message_and_a_long_user_turn() -> None:
    system = understand(f"{INSTRUCTION}\n\n{CONTEXT}", role="system", last_user=False)
    assert kinds(system)[0] == ("instruction", INSTRUCTION + "\n\n")
    assert context_of(system) == [CONTEXT]
    user = understand(f"Here are some documents:\n\n{CONTEXT}\n\nBased on them, {QUESTION.lower()}")
    assert context_of(user) == [CONTEXT]
    assert user.question == f"Based on them, {QUESTION.lower()}"


def test_a_question_asked_before_unmarked_documents_is_the_question() -> None:
    """The turn being answered may ask first and paste its documents after: the question is not the documents'
    first paragraph (it would be scored as a passage and could be dropped)."""
    layout = understand(f"{QUESTION}\n\n{CONTEXT}", role="user", last_user=True)
    assert context_of(layout) == [CONTEXT]
    assert layout.question == QUESTION
    assert kinds(layout)[0] == ("question", QUESTION)
    # in an earlier turn or a system prompt, the opening question is the documents' own text, as before
    for role, last in (("user", False), ("system", False)):
        assert context_of(understand(f"{QUESTION}\n\n{CONTEXT}", role=role, last_user=last)) == [
            f"{QUESTION}\n\n{CONTEXT}"
        ]


@pytest.mark.parametrize("label", ["Current Task:", "Task:", "**Task**:"])
@pytest.mark.parametrize("indent", ["", "\n", "  ", "\t", "\n    "], ids=["none", "newline", "spaces", "tab", "both"])
def test_a_task_label_over_the_question_is_trimmed_as_a_question_label_is(label: str, indent: str) -> None:
    """CrewAI opens its task prompt with ``Current Task: …?``: relevance is scored against what is asked, without the
    label and without the criteria line under it, as ``Question: …?`` gives what follows the label; the label stays
    in the question region, as a question label does. An indented label line is the same label (a template built
    from an indented triple-quoted string)."""
    text = (
        f"{indent}{label} {QUESTION}\nThis is the expected criteria for your final answer: One sentence.\n\n"
        f"This is the context you're working with:\n{CONTEXT}"
    )
    layout = understand(text)
    assert context_of(layout) == [CONTEXT]
    assert layout.question == QUESTION
    assert ("question", f"{label} {QUESTION}") in kinds(layout)
    assert (
        understand(f"{indent}{label} Summarise the history of the harbour.").question
        == "Summarise the history of the harbour."
    )


def test_short_texts_have_no_context() -> None:
    assert understand(QUESTION).question == QUESTION
    assert understand("Be brief.", role="system", last_user=False).context == []
    assert understand(CONTEXT, role="assistant", last_user=False, history=True).context == [0]


# ------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "text",
    [
        f"<document>\n{CONTEXT}\n\nQuestion: {QUESTION}",  # never closed
        f"{CONTEXT}\n</context>\nQuestion: {QUESTION}",  # closes nothing
        f"<documents><document>{DOCS[0]}</documents>\nQuestion: {QUESTION}",  # the inner one never closed
        "<context></context>\n<context>   </context>\n" + QUESTION,  # empty regions
        QUESTION,  # the question is the whole message
        "<document>" + "\x07\x1b\ufffd\u00ff" * 50 + DOCS[0] + "</document>\n" + QUESTION,  # junk in a document
        "<<<>>></><document<</document>>" * 20,
    ],
)
def test_bad_structure_still_gives_a_layout_that_covers_the_text(text: str) -> None:
    layout = understand(text)
    assert layout.rebuild({}) == text
    assert all(layout.text[layout.regions[i].start : layout.regions[i].end].strip() for i in layout.context)


def test_ten_thousand_tiny_documents(bm25: pz.Zipper) -> None:
    text = xml([f"Fact {i}: item {i} weighs {i} kg." for i in range(10_000)])
    messages = [{"role": "user", "content": text}]
    r = bm25.compress_messages(messages, budget=600)
    assert r.regions == 10_000
    assert r.messages is not None
    out = r.messages[0]["content"]
    assert r.tokens_out == message_tokens(list(r.messages), bm25.tokenizer.count) <= 600
    assert out.startswith("<documents>\n")
    assert out.endswith(f"</documents>\n\n{QUESTION}")
    assert out.count("<document ") == out.count("</document>") < 10_000  # dropped documents leave whole


def test_a_tag_that_opens_in_one_message_and_closes_in_another(bm25: pz.Zipper) -> None:
    messages = [
        {"role": "system", "content": f"{INSTRUCTION}\n<context>\n{CONTEXT}"},
        {"role": "user", "content": f"{DOCS[0]}\n</context>\n{QUESTION}"},
    ]
    # Neither message's structure is clear on its own: both are kept whole (the proxy then fails open).
    assert understand(messages[0]["content"], role="system", last_user=False).context == []
    assert understand(messages[1]["content"]).context == []
    with pytest.raises(pz.BudgetError, match=r"messages\[0\] \(system\)"):
        bm25.compress_messages(messages, budget=200)
    assert bm25.compress_messages(messages, budget=2000).messages == tuple(messages)


# -------------------------------------------------------------------------------------------- whole requests
def test_compress_prompt_keeps_its_instruction_and_question(bm25: pz.Zipper) -> None:
    head = "Given the following information, answer the question.\n\nContext:\n"
    tail = f"\n\nQuestion: {QUESTION}\nAnswer:"
    r = bm25.compress_prompt(head + CONTEXT + tail, budget=120)
    assert r.text.startswith(head)
    assert r.text.endswith(tail)
    assert "1905" in r.text
    assert bm25.tokenizer.count(r.text) == r.tokens_out <= 120
    assert r.regions == r.regions_compressed == 1


def test_context_that_fits_is_never_dropped_for_low_relevance() -> None:
    r = pz.compress("The meeting is on Tuesday at 3pm in room 4B.", question="Where is it?", budget=50)
    assert r.decision == "kept_all"
    assert "room 4B" in r.context


def test_budget_error_names_the_message(bm25: pz.Zipper) -> None:
    messages = [{"role": "system", "content": INSTRUCTION * 20}, {"role": "user", "content": QUESTION}]
    with pytest.raises(pz.BudgetError, match=r"messages\[0\] \(system\)"):
        bm25.compress_messages(messages, budget=60)


# ------------------------------------------------------------------------------------------------ invariants
_PIECES = st.sampled_from(
    [
        "<document>",
        "</document>",
        "<context a='1'>",
        "</context>",
        "-----",
        "---------\n",
        '"""',
        "Context:",
        "Question: ",
        "Query:",
        "\n",
        "\n\n",
        "Answer:",
        "### Context\n",
        "<pz keep>",
        "</pz>",
        "{",
        "}",
        "[1, 2]",
        "word ",
        "Some sentence. ",
        "Why? ",
        "<source>x</source>",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES, max_size=40), st.sampled_from(["system", "user", "assistant", "tool"]), st.booleans())
def test_regions_cover_the_text_in_order(pieces: list[str], role: str, last: bool) -> None:
    text = "".join(pieces)
    layout = understand(text, role=role, last_user=last, history=role in ("assistant", "tool"))
    pos = 0
    for r in layout.regions:
        assert r.start == pos
        assert r.end >= r.start
        pos = r.end
    assert pos == len(text)
    assert layout.rebuild({}) == text
    emptied = layout.rebuild(dict.fromkeys(layout.context, ""))
    for r in layout.regions:  # everything but context and the tags of emptied elements survives, in order
        if r.kind in ("instruction", "question") and not layout.elements:
            assert text[r.start : r.end] in emptied


def test_random_junk_never_raises() -> None:
    rng = random.Random(0)
    alphabet = "<>/\"'-=:#\n abcdocumentcontextQ?{}[]\x00\x07\ufffd"
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 400)))
        for role in ("system", "user", "tool"):
            assert understand(text, role=role).rebuild({}) == text


@pytest.mark.parametrize("line", ["Sources:", "Background:", "References", "### Notes", "-----", '"""'])
def test_a_heading_or_fence_deep_inside_a_document_is_the_documents_own(line: str) -> None:
    """Passages with their own "Sources:" line or a rule of dashes (Quoref has them): the system message's
    documents are still all context, not instruction up to that line."""
    docs = [*DOCS[:4], f"{line}\n{DOCS[4]}", *DOCS[5:]] * 2
    system = f"{INSTRUCTION}\n\n" + "\n\n".join(docs)
    layout = understand(system, role="system", last_user=False)
    assert kinds(layout)[0] == ("instruction", INSTRUCTION + "\n\n")
    assert sum(len(c) for c in context_of(layout)) >= len(system) - len(INSTRUCTION) - len(line) - 4


# --------------------------------------------------------------------------------------------------- pasted data
_ROWS = "\n".join(f"Year {i}: Oslo harbour handled {i * 7} ships, {i * 3} storms, {i * 1200} t." for i in range(1, 61))
_CSV = "year,port,ships,storms\n" + "\n".join(f"{1900 + i},Oslo,{i * 7},{i * 3}" for i in range(100))
_LOG = "\n".join(f"2024-05-01 12:{i:02d}:00 INFO worker-{i % 4} processed batch {i} in {i * 13} ms" for i in range(50))


@pytest.mark.parametrize(
    ("block", "intro"),
    [(_ROWS, "Harbour records:\n"), (_CSV, "Here is the harbour table:\n"), (_LOG, ""), (_CSV, "")],
)
def test_data_pasted_before_the_question_is_context(block: str, intro: str) -> None:
    """One long block of records (no blank line inside, no heading) then the question, in the turn being answered:
    the records are context, a short introduction line stays, and the question is the question."""
    text = f"{intro}{block}\n\nWhich year had 84 ships?"
    layout = understand(text)
    assert [(r.kind, text[r.start : r.end]) for r in layout.regions if r.kind != "instruction"] == [
        ("context", block),
        ("question", "Which year had 84 ships?"),
    ]
    assert text.startswith(intro)
    assert understand(text, role="system", last_user=False).context == []  # a system prompt keeps it, as before


@pytest.mark.parametrize(
    "block",
    [
        "\n".join(f"{i}. Check the harbour logbook before you answer a question about ships." for i in range(1, 30)),
        "\n".join("- Never guess; cite the record you used and the port it came from, in full." for _ in range(30)),
        "def score(ships, weights):\n    total = 0\n"
        + "\n".join(f"    total += ships[{i}] * weights[{i}]  # year {i}" for i in range(40))
        + "\n    return total",
    ],
    ids=["numbered-steps", "bullet-rules", "code"],
)
def test_steps_rules_and_code_before_the_question_stay_whole(block: str) -> None:
    """Lines that hold no figure once their list marker is gone are instructions, and code is asked about whole:
    neither becomes context."""
    text = f"Follow these:\n{block}\n\nWhich year had 84 ships?"
    assert understand(text).context == []


@pytest.mark.parametrize("asked", ["{q}", "<question>{q}</question>", "<query>\n{q}\n</query>"])
def test_a_question_before_tagged_documents_is_the_question_not_their_closing_tag(asked: str) -> None:
    # The closing tag after the last document read as the unlabelled question (relevance scored against
    # "</documents>"): a paragraph of tags alone asks nothing, so the question before the documents is found.
    q = "What is the vault access code for building C?"
    docs = [f"Passage {i} talks about building {i} and its history in the town." for i in range(5)]
    docs.append("The vault access code for building C was changed to 7741-QX on 3 March.")
    tagged = "".join(f'<document index="{i + 1}">\n{d}\n</document>\n' for i, d in enumerate(docs))
    for wrapped in (f"<documents>\n{tagged}</documents>", "<context>\n" + "\n".join(docs) + "\n</context>"):
        layout = understand(asked.format(q=q) + "\n\n" + wrapped)
        assert layout.question == q
        assert any("7741-QX" in layout.text[r.start : r.end] for r in layout.regions if r.kind == "context")
