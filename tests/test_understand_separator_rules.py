"""Request understanding of a rule on the prompt's own parts written straight under a context heading (or a line that
points at the context, ``Context information is below.``) where lines of dashes fence or separate the documents:
``Context:\\nDo not use outside knowledge.\\n{doc 1}\\n\\n-----\\n\\n{doc 2}…`` or ``-----\\nContext:\\nDo not use
outside knowledge.\\n{docs}\\n-----``. The heading is no rule, so reading rules from the paragraph's first line found
none and the rule went into context with the first document (or the whole paragraph, the first document too, was given
up). The rule is the template's and stays outside context; the documents stay context, and the question is found.

Only a rule that names the prompt's own parts (:func:`promptzip._rules_lists.part_rule`) gives a line up: a document
whose first or last line is a how-to's step ("Keep refrigerated.", "Use the context menu to save.") keeps it."""

from __future__ import annotations

import pytest
from test_understand_glued_rules import HOW_TOS, OPENINGS, assert_whole
from test_understand_verbs import BLANK, assert_inside, assert_outside
from understand_helpers import DOCS

from promptzip._understand import understand

ASK = "Who rowed the lifeboat?"
JOINED = "\n\n".join(DOCS)
HEADINGS = ["Context:", "Documents:", "Here are the documents:", "This is the context you're working with:"]
POINTER = "Context information is below."
RULES = [
    "Do not use outside knowledge.",
    "Only use the provided context.",
    "If the answer is not in the context, say you don't know.",
    "Cite the passage ids you used.",
    "Only use the provided context.\nCite the passage ids you used.",
]
TAILS = {"labelled": f"Question: {ASK}", "unlabelled": ASK}


def _separated(opening: str, joiner: str = BLANK) -> str:
    """The documents between lines of dashes, ``opening`` glued to the first one's first line."""
    return opening + "\n" + joiner.join(DOCS)


def shapes(head: str, rule: str) -> dict[str, str]:
    """``head`` then ``rule`` straight under it, where dash lines fence or separate the documents (no question)."""
    return {
        # separators between the documents, the first block glued to the heading and the rule
        "separated-glued": _separated(f"{head}\n{rule}"),
        # the rule's own paragraph under the heading, before the first document
        "separated-paragraph": _separated(f"{head}\n{rule}\n"),
        # the heading opens the block between the fences, the rule glued to the first document
        "fenced-inside-glued": f"-----\n{head}\n{rule}\n{JOINED}\n-----",
        "fenced-inside-paragraph": f"-----\n{head}\n{rule}\n\n{JOINED}\n-----",
        "fenced-inside-blank": f"-----\n\n{head}\n{rule}\n{JOINED}\n\n-----",
    }


def check(text: str, rule: str, tail: str, *, role: str = "user", last: bool = True) -> None:
    """The rule (and the heading) is not context, every document is, and the question is still found."""
    layout = understand(f"{text}\n\n{tail}" if tail else text, role=role, last_user=last)
    assert_outside(layout, [line for line in rule.split("\n") if line])
    assert_inside(layout, DOCS)
    if last and tail:
        assert layout.question == ASK


# A heading and, in a paragraph of their own, rules that open as the template's orders ("Do not…", "Cite…") were given
# up whole already; only those that read as no order on their own ("Only use…", "If the answer…") went into context.
WHOLE_ALREADY = {"Do not use outside knowledge.", "Cite the passage ids you used.", RULES[-1]}


def _held(head: str, shape: str, rule: str) -> bool:
    paragraph = shape == "fenced-inside-paragraph" or (head == POINTER and shape == "separated-paragraph")
    return paragraph and rule in WHOLE_ALREADY


ALL = [(head, name, rule) for head in [*HEADINGS, POINTER] for name in shapes(head, "") for rule in RULES]
CASES = [case for case in ALL if not _held(*case)]


@pytest.mark.parametrize(("head", "shape", "rule"), CASES)
@pytest.mark.parametrize("tail", TAILS)
def test_a_rule_under_the_heading_is_not_context(head: str, shape: str, rule: str, tail: str) -> None:
    check(shapes(head, rule)[shape], rule, TAILS[tail])


@pytest.mark.parametrize(("head", "shape", "rule"), [case for case in CASES if case[2] in RULES[:2]])
def test_a_rule_under_the_heading_in_a_system_message(head: str, shape: str, rule: str) -> None:
    check(shapes(head, rule)[shape], rule, "", role="system", last=False)


@pytest.mark.parametrize(("head", "shape", "rule"), [case for case in ALL if _held(*case)])
def test_a_rule_paragraph_read_whole_under_the_heading_stays_out(head: str, shape: str, rule: str) -> None:
    """Read so before, kept so."""
    check(shapes(head, rule)[shape], rule, TAILS["labelled"])


@pytest.mark.parametrize("head", ["Context:", POINTER])
def test_only_the_rule_leaves_the_first_document(head: str) -> None:
    """The first document's lines after the rule are one context region on their own, from its first word."""
    rule = "Do not use outside knowledge."
    text = f"-----\n{head}\n{rule}\n{JOINED}\n-----\nQuestion: {ASK}"
    layout = understand(text)
    spans = [text[r.start : r.end] for r in layout.regions if r.kind == "context"]
    assert spans == [JOINED]
    assert layout.question == ASK


# A document that opens or ends with an order of its own, next to the heading or the lines: no rule on the prompt's
# parts. Such a how-to may be read whole as the template's words, as it was before (`test_understand_glued_rules`);
# it is never split, and one read as a document keeps its first line.
def _how_to_first(head: str, doc: str) -> dict[str, str]:
    return {
        "separated": f"{head}\n{doc}\n\n-----\n\n" + BLANK.join(DOCS[1:]) + f"\n\nQuestion: {ASK}",
        "fenced-inside": f"-----\n{head}\n{doc}\n\n" + "\n\n".join(DOCS[1:]) + f"\n-----\nQuestion: {ASK}",
    }


@pytest.mark.parametrize("doc", OPENINGS)
@pytest.mark.parametrize("head", ["Context:", "Documents:", "Here are the documents:"])
@pytest.mark.parametrize("shape", ["separated", "fenced-inside"])
def test_a_documents_own_first_line_is_never_split_from_it(doc: str, head: str, shape: str) -> None:
    layout = understand(_how_to_first(head, OPENINGS[doc])[shape])
    assert_whole(layout, OPENINGS[doc])
    assert_inside(layout, DOCS[1:])
    assert layout.question == ASK


@pytest.mark.parametrize("head", ["Context:", "Documents:"])
@pytest.mark.parametrize("shape", ["separated", "fenced-inside"])
def test_a_how_to_read_as_a_document_keeps_its_first_line(head: str, shape: str) -> None:
    """ "Only use the provided charger." names no part of a prompt: it stays the handset leaflet's first line."""
    layout = understand(_how_to_first(head, OPENINGS["handset"])[shape])
    assert_inside(layout, [OPENINGS["handset"]])


@pytest.mark.parametrize("doc", HOW_TOS)
@pytest.mark.parametrize("shape", ["separated", "fenced-inside"])
def test_a_documents_own_last_line_is_never_split_from_it(doc: str, shape: str) -> None:
    body = BLANK.join(DOCS[:2]) if shape == "separated" else "\n\n".join(DOCS[:2])
    text = (
        f"Context:\n{body}{BLANK}{HOW_TOS[doc]}\n\nQuestion: {ASK}"
        if shape == "separated"
        else f"-----\nContext:\n{body}\n\n{HOW_TOS[doc]}\n-----\nQuestion: {ASK}"
    )
    layout = understand(text)
    assert_whole(layout, HOW_TOS[doc])
    assert_inside(layout, DOCS[:2])
    assert layout.question == ASK


def test_the_heading_and_rule_with_a_request_glued_stay_the_templates() -> None:
    """A heading, a rule and an order of the template's after it: the paragraph reads as the template's, no
    document's, and none of it is context."""
    text = f"-----\nContext:\nOnly use the provided context.\nAnswer in one sentence.\n\n{JOINED}\n-----\n{ASK}"
    layout = understand(text)
    assert_outside(layout, ["Only use the provided context.", "Answer in one sentence."])
    assert_inside(layout, DOCS)
    assert layout.question == ASK


@pytest.mark.parametrize(
    "text",
    [
        # LlamaIndex's layout: the pointer line above the fence, the rule glued to the first document
        f"{POINTER}\n---------------------\nDo not use outside knowledge.\n{JOINED}\n---------------------\n"
        f"Given the context information and not prior knowledge, answer the query.\nQuery: {ASK}\nAnswer: ",
        f"Documents:\n-----\nOnly use the provided context.\n\n{JOINED}\n-----\nQuestion: {ASK}",
        f"Context:\n-----\n{JOINED}\nOnly use the provided context.\n-----\nQuestion: {ASK}",
    ],
    ids=["llamaindex", "fence-after-heading", "rule-at-the-end"],
)
def test_a_rule_inside_a_fence_after_the_heading(text: str) -> None:
    """A rule at the fenced block's edge with the heading above the fence (read so before, kept so)."""
    layout = understand(text)
    assert_outside(layout, ["outside knowledge", "Only use the provided context."])
    assert_inside(layout, DOCS)
    assert layout.question == ASK
