"""Document tags (promptzip/_rules_tags.py): a template that names a tag in its own sentences (Open WebUI's default
RAG prompt: "… only when the <source> tag includes an explicit id attribute (e.g., <source id="1">)") still has its
documents read; tags that do not pair up for any other reason, or nest deeper than documents do, keep the text
whole; pairing is linear in the number of tags; and a question wrapped in tags or a bold label is scored by its
words."""

from __future__ import annotations

import time

import pytest
from understand_helpers import DOCS, system_cut_through_the_proxy

from promptzip._rules_tags import _MAX_DEPTH, _MENTIONS, tagged
from promptzip._understand import understand

QUESTION = "Who rowed the lifeboat?"
SOURCES = "\n".join(f'<source id="{i}">{doc}</source>' for i, doc in enumerate(DOCS, 1))
# Open WebUI's default RAG template (its `DEFAULT_RAG_TEMPLATE`, abridged), which ends in its documents
OPEN_WEBUI = (
    "### Task:\nRespond to the user query using the provided context, incorporating inline citations in the format "
    '[id] **only when the <source> tag includes an explicit id attribute** (e.g., <source id="1">).\n\n'
    "### Guidelines:\n- If you don't know the answer, clearly state that.\n- Respond in the same language as the "
    "user's query.\n\n### Output:\nProvide a clear and direct response to the user's query.\n\n"
    f"<context>\n{SOURCES}\n</context>\n"
)


def _context(text: str, role: str = "system") -> list[str]:
    layout = understand(text, role=role, last_user=role == "user")
    return [text[r.start : r.end] for r in layout.regions if r.kind == "context"]


@pytest.mark.parametrize(
    ("text", "role"),
    [
        (OPEN_WEBUI, "system"),
        (f"Cite a document by the id of its <source> tag.\n\n{SOURCES}\n\n{QUESTION}", "user"),
        (f"End every quote you take with </source> and the id.\n\n{SOURCES}\n\n{QUESTION}", "user"),
        (f"<context>\n{SOURCES}\n</context>\n\nQuestion: Which <source> says who rowed the lifeboat?", "user"),
    ],
    ids=["open-webui-system", "opening-tag-in-a-rule", "closing-tag-in-a-rule", "tag-in-the-question"],
)
def test_a_tag_named_in_the_templates_words_leaves_the_documents_readable(text: str, role: str) -> None:
    # before, the mention paired with nothing and the whole message was kept as it came ("unclear")
    assert _context(text, role) == DOCS
    layout = understand(text, role=role, last_user=role == "user")
    mention = text.index("source>") if "</source> and" in text else text.index("<source")
    assert any(r.kind != "context" and r.start <= mention < r.end for r in layout.regions)


@pytest.mark.parametrize("opening", ["> Quoting the harbour master: ", ">>> harbour.dredged\n1871\n"])
def test_a_document_that_opens_with_a_quote_mark_is_read(opening: str) -> None:
    """A forum post that opens with a quoted reply, or a doctest, right after its tag: before, the tag was not seen
    (a guard against "<<Context>>" refused any tag followed by ">"), its closing tag closed nothing, and the whole
    message was kept."""
    doc = opening + DOCS[0]
    text = f'Answer from the sources.\n\n<context>\n<source id="1">{doc}</source>\n</context>\n\n{QUESTION}'
    assert _context(text, "user") == [doc]


@pytest.mark.parametrize(
    "text",
    [
        # a document opened at the start of its line and never closed, beside a mention: the structure is unclear
        f"Cite a document by the id of its <source> tag.\n\n<document>\n{DOCS[0]}\n\n{SOURCES}",
        # the tag alone on its line, never closed: a document's edge, not a word in a sentence
        f"Use these.\n<source>\n{SOURCES}",
        # more unpaired tags than a template names
        " ".join(["Mind the <source> tag."] * (_MENTIONS + 1)) + f"\n\n{SOURCES}",
    ],
    ids=["unclosed-document", "tag-on-its-own-line", "many-mentions"],
)
def test_tags_that_do_not_pair_up_for_another_reason_keep_the_text_whole(text: str) -> None:
    layout = understand(text, role="system", last_user=False)
    assert [(r.kind, r.rule) for r in layout.regions] == [("protected", "unclear")]


def test_tags_nested_deeper_than_documents_nest_keep_the_text_whole_and_are_not_recursed_into() -> None:
    shallow = "<source>" * 3 + DOCS[0] + "</source>" * 3
    assert _context(shallow) == [DOCS[0]]
    for depth in (_MAX_DEPTH + 1, 5000):  # 5,000 raised RecursionError out of compress_messages
        text = "<source>" * depth + DOCS[0] + "</source>" * depth
        layout = understand(text, role="system", last_user=False)
        assert [(r.kind, r.rule) for r in layout.regions] == [("protected", "unclear")]


def test_pairing_looks_down_a_bounded_number_of_open_elements(monkeypatch: pytest.MonkeyPatch) -> None:
    """A closing tag looks down the open elements for its own; with no bound, 20,000 unclosed tags then 20,000
    closing tags of another name took 19 s to read, a stall any client could send. Past ``_MAX_DEPTH`` open at once,
    the text is kept whole."""
    from promptzip import _rules_tags

    reads = []

    class Counted(_rules_tags._Node):  # type: ignore[misc]
        __slots__ = ()

        def __getattribute__(self, attr: str) -> object:
            if attr == "name":
                reads.append(1)
            return object.__getattribute__(self, attr)

    monkeypatch.setattr(_rules_tags, "_Node", Counted)
    n = 2000
    for text in ("<source></document>" * n, "<source> " * n + "</document> " * n):
        reads.clear()
        assert tagged(text) == ([], [], True)
        assert len(reads) <= _MAX_DEPTH**2


@pytest.mark.parametrize(
    "text",
    [
        f"<context>\n{SOURCES}\n</context>\n<question>{QUESTION}</question>",
        f'<context>\n{SOURCES}\n</context>\n\n<question id="q1">\n{QUESTION}\n</question>\n<answer>',
        f"**Context:**\n{SOURCES}\n\n**Question:** {QUESTION}",
        f"CONTEXT:\n{SOURCES}\n\n**Question:**\n**{QUESTION}**",
    ],
    ids=["question-tags", "question-tags-and-answer-slot", "bold-label", "bold-question"],
)
def test_a_question_is_scored_by_its_words_without_what_wraps_it(text: str) -> None:
    # before: "</context>\n<question>Who rowed the lifeboat?</question>", "** Who rowed the lifeboat?"
    assert understand(text).question == QUESTION


@pytest.mark.parametrize(
    "question",
    [
        "What does the <source> tag of a document hold?",
        "**Why** did the collier drag her anchors?",
        "How do I center a <div>",
        "</div> tags: when are they needed?",
    ],
)
def test_tags_and_bold_words_inside_a_question_are_its_words(question: str) -> None:
    assert understand(f"Context:\n{SOURCES}\n\nQuestion: {question}").question == question


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_through_the_proxy_open_webuis_sources_are_cut_and_its_words_arrive_whole(sdk: str) -> None:
    """Open WebUI's system message through the real SDKs and a running proxy (BM25 stack, rate 0.4): before, it went
    out as it came."""
    more = " ".join(DOCS)  # each source a retrieved chunk of the article, the three paragraphs in another order
    chunks = [f"{doc} {more}" for doc in reversed(DOCS)]
    system = OPEN_WEBUI.replace(SOURCES, "\n".join(f'<source id="{i}">{c}</source>' for i, c in enumerate(chunks, 1)))
    head = system[: system.index("<context>")] + "<context>\n<source id="  # the rule naming <source id="1"> too
    sent = system_cut_through_the_proxy(sdk, system, head, QUESTION, rate="0.4", share=0.7)
    assert sent.rstrip().endswith("</source>\n</context>")
    assert "lifeboat" in sent


def test_many_document_elements_are_mapped_to_their_regions_in_linear_time() -> None:
    # Each element used to copy the list of context regions after it: 32,000 documents took a second there, and a
    # text with ten times as many a hundred times as long. The guard is a timeout, not a figure.
    from promptzip._understand import Layout, Region, _map_elements

    n = 200_000
    regions = tuple(Region("context", 10 * i + 2, 10 * i + 8) for i in range(n))
    elements = [(10 * i, 10 * i + 10, [(10 * i + 2, 10 * i + 8)]) for i in range(n)]
    started = time.perf_counter()
    mapped = _map_elements(Layout("x" * 10 * n, regions), elements)
    assert time.perf_counter() - started < 20
    assert [e.regions for e in mapped[:3]] == [(0,), (1,), (2,)]
    assert mapped[-1].regions == (n - 1,)
