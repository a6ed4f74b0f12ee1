"""Request understanding of a rule on the prompt's own parts glued to the documents: written on the line right after
the last document's last line, or right before the first one's first line, with no blank line between
(``…by the lifeboat.\\nOnly use the provided context.``). The rule is the template's and stays outside context, so
compression cannot drop it; the document's lines stay context.

Only a rule that names the prompt's own parts as no document does gives a line up ("the provided context", "the
documents above", "outside knowledge", "the passage ids", "say you don't know" when they lack the answer): a how-to,
a recipe or a leaflet ends (or opens) with an order of its own ("Keep refrigerated.", "Restart the service.", "Only use
the provided charger.", "Use the context menu to save."), and that line stays the document's."""

from __future__ import annotations

import pytest
from test_understand_verbs import BLANK, assert_inside, assert_outside, context_text
from understand_helpers import DOCS, Q

from promptzip._rules_lists import part_rule
from promptzip._understand import Layout, understand


def _lines(rule: str) -> list[str]:
    return [line.strip() for line in rule.split("\n") if line.strip()]


def _glue(rule: str, doc: str, *, at_end: bool) -> str:
    if not rule:
        return doc
    return f"{doc}\n{rule}" if at_end else f"{rule}\n{doc}"


Place = tuple[str, str, bool, list[str]]


def after(docs: list[str], rule: str) -> dict[str, Place]:
    """``docs`` where a template puts them, ``rule`` glued to the last one's last line: (text, role, whether it is the
    turn being answered, the documents as the text shows them)."""
    numbered = [f"[{i}] {d}" for i, d in enumerate(docs, 1)]
    # the layout rule reads long texts only: the harbour's documents go first, each shown once
    long = [f"Doc {i}: {d}" for i, d in enumerate(DOCS + docs, 1)]
    xml = "\n".join(f'<document index="{i}">\n{d}\n</document>' for i, d in enumerate(docs, 1))

    def glued(shown: list[str], joiner: str) -> str:
        return joiner.join([*shown[:-1], _glue(rule, shown[-1], at_end=True)])

    return {
        "user-context-lines": ("Context:\n" + glued(docs, "\n") + f"\n\nQuestion: {Q}", "user", True, docs),
        "user-context-paragraphs": ("Context:\n" + glued(docs, "\n\n") + f"\n\nQuestion: {Q}", "user", True, docs),
        "user-context-unlabelled": ("Context:\n" + glued(docs, "\n\n") + f"\n\n{Q}", "user", True, docs),
        "system-headed": ("Documents:\n" + glued(docs, "\n\n"), "system", False, docs),
        "system-numbered": ("Sources:\n" + glued(numbered, "\n"), "system", False, numbered),
        "user-numbered": ("Sources:\n" + glued(numbered, "\n") + f"\n\nQuestion: {Q}", "user", True, numbered),
        "system-layout": ("You are a harbour historian.\n\n" + glued(long, "\n\n"), "system", False, long),
        "user-layout": (glued(long, "\n\n") + f"\n\n{Q}", "user", True, long),
        "user-xml": ("<documents>\n" + xml + "\n</documents>\n" + rule + f"\n\n{Q}", "user", True, docs),
        "user-dashes": (glued(docs, BLANK) + f"{BLANK}Question: {Q}", "user", True, docs),
        "user-dashes-open": (glued(docs, BLANK) + f"\n\nQuestion: {Q}", "user", True, docs),
        "user-fenced": (
            "Context information is below.\n-----\n" + glued(docs, "\n\n") + f"\n-----\nAnswer the query.\nQuery: {Q}",
            "user",
            True,
            docs,
        ),
    }


def before(docs: list[str], rule: str) -> dict[str, Place]:
    """``docs`` where a template puts them, ``rule`` glued to the first one's first line."""
    numbered = [f"[{i}] {d}" for i, d in enumerate(docs, 1)]

    def glued(shown: list[str], joiner: str) -> str:
        return joiner.join([_glue(rule, shown[0], at_end=False), *shown[1:]])

    return {
        "user-context-lines": ("Context:\n" + glued(docs, "\n") + f"\n\nQuestion: {Q}", "user", True, docs),
        "user-context-paragraphs": ("Context:\n" + glued(docs, "\n\n") + f"\n\nQuestion: {Q}", "user", True, docs),
        "system-headed": ("Documents:\n" + glued(docs, "\n\n"), "system", False, docs),
        "user-numbered": ("Sources:\n" + glued(numbered, "\n") + f"\n\nQuestion: {Q}", "user", True, numbered),
        "user-dashes": (BLANK.join(["Notes:", glued(docs, BLANK)]) + f"{BLANK}Question: {Q}", "user", True, docs),
        "user-dashes-open": (glued(docs, BLANK) + f"{BLANK}Question: {Q}", "user", True, docs),
        "user-fenced": (
            "Context information is below.\n-----\n" + glued(docs, "\n\n") + f"\n-----\nAnswer the query.\nQuery: {Q}",
            "user",
            True,
            docs,
        ),
    }


AFTER, BEFORE = list(after(DOCS, "")), list(before(DOCS, ""))
JOINED = "\n\n".join(DOCS)


def check(place: Place, rule: str) -> None:
    """The rule is not context, the documents are, and the question is still found."""
    text, role, last, shown = place
    layout = understand(text, role=role, last_user=last)
    assert_outside(layout, _lines(rule))
    assert_inside(layout, shown)
    if last:
        assert layout.question == Q


# -------------------------------------------------------------------------- rules glued after the documents
GLUED_AFTER = [
    "Only use the provided context.",
    "Answer only from the documents above.",
    "If the answer is not in the context, say you don't know.",
    "Cite the passage ids you used.",
    "Do not use outside knowledge.",
    "Only rely on the sources provided.",
    'If the documents do not contain the answer, say "I don\'t know".',
    "Use the passages above to answer the question.",
    "only use the provided context.",
    "Only use the provided context.\nCite the passage ids you used.",
]


@pytest.mark.parametrize("rule", GLUED_AFTER)
@pytest.mark.parametrize("place", AFTER)
def test_a_rule_glued_after_the_last_document_is_not_context(rule: str, place: str) -> None:
    check(after(DOCS, rule)[place], rule)


# A document may end (or open) with a question of its own: a word problem, a forum post. Glued to a rule that reads as
# the template's on its own line ("Do not use…", `promptzip._rules._COMMAND`), such a paragraph is given up whole as it
# was before, the safe way; never split there, and never is the rule context.
ASKING = [
    DOCS[0],
    DOCS[1],
    "Josh buys a boat for $8,000 and puts $5,000 of repairs into it, which raises its value by 150%. How much profit "
    "did he make?",
]
# A rule that does not make the paragraph it is glued to read as the template's ("Do not…" at a line's start does).
QUIET = "Only use the provided context."


def check_asking(place: Place, rule: str, *, stays: bool) -> None:
    """The rule is not context, the document that asks is not split (``stays``: it is context), the others are."""
    text, role, last, shown = place
    layout = understand(text, role=role, last_user=last)
    assert_outside(layout, _lines(rule))
    asking = next(d for d in shown if ASKING[2] in d)
    assert_whole(layout, asking)
    assert_inside(layout, [d for d in shown if d != asking])
    if stays:
        assert_inside(layout, [asking])
    if last:
        assert layout.question == Q


@pytest.mark.parametrize("rule", [QUIET, "Do not use outside knowledge."])
@pytest.mark.parametrize("place", AFTER)
def test_a_rule_glued_after_a_document_that_asks_is_not_context(rule: str, place: str) -> None:
    # the paragraph read whole is no template's words with the quiet rule: the document stays context
    check_asking(after(ASKING, rule)[place], rule, stays=rule == QUIET)


@pytest.mark.parametrize("rule", [QUIET, "Do not use outside knowledge."])
@pytest.mark.parametrize("place", BEFORE)
def test_a_rule_glued_before_a_document_that_asks_is_not_context(rule: str, place: str) -> None:
    # between lines of dashes a paragraph that ends in "?" is given up whole, as before
    check_asking(
        before(ASKING[::-1], rule)[place], rule, stays=rule == QUIET and "dashes" not in place and "fenced" not in place
    )


@pytest.mark.parametrize(
    ("ask", "own"),
    [("Summarise what happened to the collier.", False), ("Who rowed the lifeboat?", True)],
    ids=["rules", "question"],
)
def test_a_request_with_a_rule_glued_to_it(ask: str, own: bool) -> None:
    """Two orders read as the template's rules, whole, as before; a question before the question's label is the
    documents' own (as it is without the rule), and the rule alone leaves."""
    rule = "Only use the provided context."
    layout = understand("Context:\n" + JOINED + f"\n\n{ask}\n{rule}" + f"\n\nQuestion: {Q}")
    assert_outside(layout, [rule])
    assert_inside(layout, DOCS)
    (assert_inside if own else assert_outside)(layout, [ask])
    assert layout.question == Q


def test_the_reported_request() -> None:
    text = (
        "Context:\nThe lifeboat was launched at dawn. Three men rowed it to the wreck and brought the crew back by "
        "the lifeboat.\nOnly use the provided context.\n\nQuestion: Who rowed the lifeboat?"
    )
    layout = understand(text)
    doc = text[len("Context:\n") : text.index("\nOnly")]
    assert [text[r.start : r.end] for r in layout.regions if r.kind == "context"] == [doc]
    assert_outside(layout, ["Only use the provided context."])
    assert layout.question == "Who rowed the lifeboat?"


# ------------------------------------------------------------------------- rules glued before the documents
GLUED_BEFORE = [
    "Use only the documents below.",
    "Only use the context below.",
    "Answer using only the passages below.",
    "Do not use outside knowledge.",
    "Use only the documents below.\nDo not use outside knowledge.",
]


@pytest.mark.parametrize("rule", GLUED_BEFORE)
@pytest.mark.parametrize("place", BEFORE)
def test_a_rule_glued_before_the_first_document_is_not_context(rule: str, place: str) -> None:
    check(before(DOCS, rule)[place], rule)


# ------------------------------------------------------------------------ a document's own last or first line
# How-tos, recipes, leaflets and manuals that end with an order of their own, some in the words of a rule.
HOW_TOS = {
    "recipe": (
        "Tomato salad\nSlice the tomatoes thickly and lay them on a cold plate.\nTear the basil over them and add a "
        "pinch of salt.\nUse only fresh basil."
    ),
    "leaflet": (
        "Storing Seacalm\nThe bottle must be kept cold once it is opened.\nThrow it away four weeks after opening.\n"
        "Keep refrigerated."
    ),
    "manual": (
        "Changing the port\nOpen harbour.conf and set the port to 8080.\nSave the file and close the editor.\n"
        "Restart the service."
    ),
    "handset": (
        "Charging the handset\nPlug the cable into the base and wait for the green light.\nA full charge takes about "
        "three hours.\nOnly use the provided charger."
    ),
    "heater": (
        "The bathroom heater\nIt is splash-proof and warms a small room in ten minutes.\nMount it out of reach of "
        "the bath.\nDo not use outside."
    ),
    "editor": (
        "Saving a draft\nDrafts are kept for thirty days.\nRight-click anywhere in the note.\nUse the context menu to "
        "save."
    ),
    "kitchen": (
        "Crab cakes\nFry the cakes for three minutes a side until golden.\nDrain them on paper.\nServe immediately."
    ),
    "form": (
        "Filing a harbour permit\nFill in the form and sign the last page.\nAttach a copy of your licence.\nKeep the "
        "receipts with the documents."
    ),
}


# Where the documents share one paragraph, a how-to among them is read line by line, and only its last line could be
# given up. Elsewhere a how-to whose lines open as orders ("Keep…", "Use…", "Do not…") may be read whole as the
# template's words, as it was before (`promptzip._rules._COMMAND`, and see `test_understand_gaps`); it is never split.
ONE_PARAGRAPH = ("user-context-lines", "system-numbered", "user-numbered")


def assert_whole(layout: Layout, doc: str) -> None:
    """``doc`` is all context or none of it: never split at its last (or first) line."""
    inside = context_text(layout)
    lines = doc.split("\n")
    assert len({line in inside for line in lines}) == 1, (doc[:40], layout.regions)


def check_document(name: str, place: Place, doc: str, rule: str = "") -> None:
    """``doc``, the last (or first) of the documents, is not split, and with the others in one paragraph stays context
    (``rule``: glued to it, and not context)."""
    text, role, last, shown = place
    layout = understand(text, role=role, last_user=last)
    assert_whole(layout, doc)
    rest = [d for d in shown if doc not in d]
    assert_inside(layout, shown if name in ONE_PARAGRAPH else rest)
    assert_outside(layout, _lines(rule))


@pytest.mark.parametrize("doc", HOW_TOS)
@pytest.mark.parametrize("place", [p for p in AFTER if p != "user-xml"])
def test_a_documents_own_last_line_stays_context(doc: str, place: str) -> None:
    check_document(place, after([DOCS[0], DOCS[1], HOW_TOS[doc]], "")[place], HOW_TOS[doc])


@pytest.mark.parametrize("doc", HOW_TOS)
@pytest.mark.parametrize("place", [p for p in AFTER if p != "user-xml"])
def test_a_documents_own_last_line_stays_with_it_before_a_rule(doc: str, place: str) -> None:
    """A rule after the how-to takes only its own line: the how-to's last order is not a rule glued to it."""
    rule = "Only use the provided context."
    check_document(place, after([DOCS[0], DOCS[1], HOW_TOS[doc]], rule)[place], HOW_TOS[doc], rule)


# The same orders opening a document.
OPENINGS = {
    "handset": "Only use the provided charger.\nPlug the cable into the base and wait for the green light.",
    "recipe": "Use only fresh basil.\nTear it over the sliced tomatoes and add a pinch of salt.",
    "heater": "Do not use outside.\nThe bathroom heater is splash-proof and warms a small room in ten minutes.",
    "manual": "Restart the service.\nIt reads harbour.conf again and listens on the new port.",
}


@pytest.mark.parametrize("doc", OPENINGS)
@pytest.mark.parametrize("place", BEFORE)
def test_a_documents_own_first_line_stays_context(doc: str, place: str) -> None:
    check_document(place, before([OPENINGS[doc], DOCS[1], DOCS[2]], "")[place], OPENINGS[doc])


# ------------------------------------------------------------------------------------ the line on its own
@pytest.mark.parametrize("rule", sorted({line for r in GLUED_AFTER + GLUED_BEFORE for line in _lines(r)}))
def test_a_rule_on_the_prompts_own_parts_is_a_part_rule(rule: str) -> None:
    assert part_rule(rule)


NOT_PART_RULES = [
    *(doc.rsplit("\n", 1)[-1] for doc in HOW_TOS.values()),
    *(doc.split("\n", 1)[0] for doc in OPENINGS.values()),
    "Use the notes field for comments.",
    "Only use the documents folder for drafts.",
    "Use your own outside knowledge to judge the claims.",
    "Follow the instructions in the documents provided with your kit.",
    "Cite the author and year of each source.",
    "Cite your sources.",
    "Say you don't know when a customer asks about prices.",
    "Keep the documents above the desk.",
    "Do not write on the documents.",
    "Read the documents.",
    *DOCS,
]


@pytest.mark.parametrize("line", NOT_PART_RULES)
def test_a_documents_line_is_no_part_rule(line: str) -> None:
    assert not part_rule(line)
