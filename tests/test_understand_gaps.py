"""Request understanding of rules the lexicons of :mod:`test_understand_verbs` and :mod:`test_understand_verbs_lines`
missed: grounding rules that open with an adverb ("Only use the provided context."), a one-line task that says how to
answer ("Explain your reasoning step by step."), rule lines written all in lower case ("mention the date\\nstay
neutral"), and orders in words the lexicons lacked ("Lead with the answer.", "Suggest next steps.", "Prioritize the
newest document.", "Highlight any risks."). Each stays outside context wherever it stands, so compression cannot drop
it.

The guards stay: a one-line request about the documents' content ("Summarise what happened to the collier.") is the
question of the turn being answered and elsewhere the documents' own; a wrapped line of lower-case prose is no rule;
and how-tos, recipes, leaflets, changelogs, news, the sample address and GSM8K's problems (as written and in lower
case) stay context."""

from __future__ import annotations

import re
from importlib import resources

import pytest
from conftest import require_data
from test_understand_verbs import BLANK, NOT_ORDERS, ORDERS, TIGHT, assert_inside, assert_outside
from test_understand_verbs_lines import DOCUMENTS as LINE_DOCUMENTS
from test_understand_verbs_lines import IMPERATIVE_AFTER, WRAPPED
from test_understand_verbs_lines import RULES as LINE_RULES
from understand_helpers import DOCS, ROLES, Q

from promptzip._rules import is_template
from promptzip._rules_lists import item_rules, rule_lines
from promptzip._understand import understand

JOINED = "\n\n".join(DOCS)


def placements(rule: str) -> dict[str, tuple[str, str, bool]]:
    """``rule`` where a template puts it beside the documents: (text, role, whether it is the turn being answered)."""
    return {
        "system-before-long": (rule + "\n\n" + "\n\n".join(DOCS * 2), "system", False),
        "system-after-long": (
            "You are a harbour historian.\n\n" + "\n\n".join(DOCS * 2) + "\n\n" + rule,
            "system",
            False,
        ),
        "system-after-headed": ("Documents:\n" + JOINED + "\n\n" + rule, "system", False),
        "system-under-heading": ("Documents:\n" + rule + "\n\n" + JOINED, "system", False),
        "system-before-label": ("Context:\n" + JOINED + "\n\n" + rule + f"\n\nQuestion: {Q}", "system", False),
        "user-before-label": ("Context:\n" + JOINED + "\n\n" + rule + f"\n\nQuestion: {Q}", "user", True),
        "user-after-dashes": (BLANK.join([*DOCS, rule]) + f"{BLANK}Question: {Q}", "user", True),
        "user-before-dashes": (TIGHT.join([rule, *DOCS]) + f"{TIGHT}Question: {Q}", "user", True),
    }


PLACES = list(placements(""))


def check_outside(rule: str, place: str) -> None:
    text, role, last = placements(rule)[place]
    layout = understand(text, role=role, last_user=last)
    assert_outside(layout, [line.strip() for line in rule.split("\n")])
    assert_inside(layout, DOCS)


def check_alone(rule: str) -> None:
    """The whole system message: its own words, never context."""
    layout = understand(rule, role="system", last_user=False)
    assert [r.kind for r in layout.regions] == ["instruction"]


# ------------------------------------------------------------------------------------------ grounding rules
GROUNDING = [
    "Only use the provided context.",
    "Use only the documents below.",
    "Answer only from the context.",
    "Do not use outside knowledge.",
    "Only use information from the documents.",
    "Only rely on the sources provided.",
    "Strictly use the retrieved passages.",
    "Only answer from the given context.",
]


@pytest.mark.parametrize("rule", GROUNDING)
@pytest.mark.parametrize("place", PLACES)
def test_a_grounding_rule_beside_the_documents_is_not_context(rule: str, place: str) -> None:
    check_outside(rule, place)


@pytest.mark.parametrize("rule", GROUNDING)
def test_a_grounding_rule_alone_is_the_instruction(rule: str) -> None:
    check_alone(rule)
    assert is_template(rule)


# A README's note opens so too, with its own nouns: the prompt's parts must follow as what is used.
NOT_GROUNDING = [
    "Only use this flag if you know why.",
    "Only use the context manager when the file is large.",
    "Only use the notes field for comments.",
    "Use the documents folder for drafts.",
    "Only use the sources listed in the bibliography style guide.",
]


@pytest.mark.parametrize("line", NOT_GROUNDING)
def test_a_readme_note_that_opens_so_is_not_a_rule_line(line: str) -> None:
    assert not rule_lines(line)


# ------------------------------------------------------------------------------------- one-line tasks with a form
FORMS = [
    "Explain your reasoning step by step.",
    "Summarise the key points in three bullets.",
    "Summarize the documents in plain English.",
    "Explain each term in no more than two sentences.",
    "Describe the findings as a bulleted list.",
    "List the main points in three bullets.",
    "Summarise the notes above in under 100 words.",
]


@pytest.mark.parametrize("rule", FORMS)
@pytest.mark.parametrize("place", PLACES)
def test_a_one_line_task_that_says_how_to_answer_is_not_context(rule: str, place: str) -> None:
    check_outside(rule, place)


@pytest.mark.parametrize("rule", FORMS)
def test_a_one_line_task_that_says_how_to_answer_is_the_templates(rule: str) -> None:
    check_alone(rule)
    assert is_template(rule)


# Requests about the documents' content: the prompt's nouns as a subject of their own do not say how to answer.
CONTENT_ASKS = [
    "Summarise what happened to the collier.",
    "Explain why the harbour was dredged.",
    "Explain the context of the 1911 gale.",
    "Describe the background to the 1911 gale.",
    "Describe the sources of the granite.",
]


@pytest.mark.parametrize("ask", CONTENT_ASKS)
def test_a_one_line_request_about_the_documents_stays_a_request(ask: str) -> None:
    """What :func:`test_understand_verbs_lines.test_one_line_that_asks_stays_a_request` asks for: a request about the
    documents' content, saying nothing of how to answer, is the question of the turn being answered and elsewhere the
    documents' own."""
    assert not is_template(ask)
    text = "Context:\n" + JOINED + f"\n\n{ask}"
    assert understand(text, role="user", last_user=True).question == ask
    assert_inside(understand(text, role="system", last_user=False), [ask])


def test_a_user_turn_that_asks_for_an_explanation_is_the_question() -> None:
    for ask in ("Explain photosynthesis.", "Explain your reasoning step by step."):
        layout = understand(ask, role="user", last_user=True)
        assert [r.kind for r in layout.regions] == ["question"]
        assert layout.question == ask


def test_a_task_that_says_how_to_answer_gives_way_to_the_question_it_follows() -> None:
    """The turn asks, then says how to answer: the question is what relevance is scored against, the form is kept."""
    form = "Explain your reasoning step by step."
    text = "Context:\n" + JOINED + f"\n\n{Q}\n\n{form}"
    layout = understand(text, role="user", last_user=True)
    assert layout.question == Q
    assert_outside(layout, [Q, form])
    assert_inside(layout, DOCS)
    # and with nothing else that asks, the task is still the question
    assert understand("Context:\n" + JOINED + f"\n\n{form}").question == form


# ---------------------------------------------------------------------------------------- lower-case rule lines
LOWER = {
    "orders": "mention the date\nstay neutral\nif the notes disagree, say so",
    "dotted": "mention the date.\nstay neutral.\nquote the notes you rely on.",
    "sentences": "mention the date. stay neutral. if the notes disagree, say so.",
    "grounding": "only use the provided context\ncite your sources\nnever guess",
    "bullets": "- answer in english\n- cite your sources\n- never guess",
    "i": "say i don't know when the notes are silent\nstay neutral",
    **{f"lines-{name}": "\n".join(rule.lower() for rule in rules) for name, rules in LINE_RULES.items()},
}


@pytest.mark.parametrize("rules", LOWER)
@pytest.mark.parametrize("place", PLACES)
def test_lower_case_rule_lines_are_not_context(rules: str, place: str) -> None:
    check_outside(LOWER[rules], place)


@pytest.mark.parametrize("order", [o.lower() for o in ORDERS if o not in IMPERATIVE_AFTER])
def test_an_order_in_lower_case_is_a_rule_line(order: str) -> None:
    assert rule_lines(order)


# Lower-case prose: a line that stops where a sentence cannot goes on into the next one (a wrapped line).
LOWER_PROSE = [
    "explain it how you will, the fleet shrank and\nthe curing sheds closed in 1920.",
    "i told the skipper to\nstay neutral about the harbour fees.",
    "the council will\nmention the harbour in its report.",
    "mention of the harbour first appears in the\ncouncil minutes of 1201.",
    "state funding rose by a third, and\nquote figures were printed in the paper.",
]


@pytest.mark.parametrize(
    "text",
    WRAPPED + LOWER_PROSE + [n.lower() for n in NOT_ORDERS] + [d.lower() for d in LINE_DOCUMENTS.values()],
)
def test_lower_case_prose_and_documents_are_not_rule_lines(text: str) -> None:
    assert not rule_lines(text)


@pytest.mark.parametrize("doc", LINE_DOCUMENTS)
@pytest.mark.parametrize(("role", "last"), ROLES, ids=["system", "user"])
def test_a_lower_case_document_paragraph_stays_context(doc: str, role: str, last: bool) -> None:
    docs = [DOCS[0], LINE_DOCUMENTS[doc].lower(), DOCS[1]]
    for text in ("Context:\n" + "\n\n".join(docs) + f"\n\nQuestion: {Q}", BLANK.join(docs) + f"{BLANK}Question: {Q}"):
        assert_inside(understand(text, role=role, last_user=last), docs)


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]


def test_the_sample_address_in_lower_case_has_no_rule_lines() -> None:
    sample = (resources.files("promptzip") / "_sample" / "sotu.txt").read_text(encoding="utf-8").lower()
    paras = [p for p in re.split(r"\n\s*\n", sample) if p.strip()]
    assert paras
    for para in paras:
        for text in (para, "\n".join(_sentences(para)), *_sentences(para)):
            assert not rule_lines(text), text[:80]


def test_gsm8k_problems_in_lower_case_have_no_rule_lines() -> None:
    require_data("gsm8k")
    from promptzip.evals.data import load_gsm8k_test

    problems = load_gsm8k_test()
    assert problems
    for p in problems:
        question = p.question.lower()
        for text in (question, "\n".join(_sentences(question)), p.answer.lower()):
            assert not rule_lines(text), text[:80]


# ----------------------------------------------------------------------------------------------- new verbs
NEW_ORDERS = [
    "Lead with the answer.",
    "Lead with a one-line summary.",
    "Suggest next steps.",
    "Suggest follow-up questions the user could ask.",
    "Prioritize the newest document.",
    "Prioritise the most recent sources.",
    "Prioritize accuracy over speed.",
    "Highlight any risks.",
    "Flag any contradictions between the sources.",
    "Call out any caveats.",
    "Note any missing information.",
]
# Orders the brief named that the first lexicon already reads (kept here so they stay read).
KNOWN_ORDERS = [
    "Format the answer as a table.",
    "Keep it under 100 words.",
    "Write in a friendly tone.",
    "Respond in the user's language.",
    "Base your answer on the sources.",
]


@pytest.mark.parametrize("order", NEW_ORDERS)
@pytest.mark.parametrize("marker", ["1.", "-", "b)"])
def test_a_new_order_is_a_rule_item(order: str, marker: str) -> None:
    assert item_rules(f"{marker} {order}")


@pytest.mark.parametrize("order", NEW_ORDERS)
def test_a_new_order_is_a_rule_line(order: str) -> None:
    assert rule_lines(order)
    assert rule_lines(order.lower())
    check_alone(order)


@pytest.mark.parametrize("order", NEW_ORDERS + KNOWN_ORDERS)
@pytest.mark.parametrize("place", PLACES)
def test_a_new_order_beside_the_documents_is_not_context(order: str, place: str) -> None:
    check_outside(order, place)


@pytest.mark.parametrize("order", NEW_ORDERS)
def test_a_list_of_new_orders_is_rules(order: str) -> None:
    rules = f"{order}\nStay neutral."
    check_outside(rules, "system-after-headed")
    check_outside("\n".join(f"- {r}" for r in rules.split("\n")), "user-before-label")


# The same words in a how-to's, a leaflet's, a changelog's, a dance class's or a news item's sense.
NOT_NEW_ORDERS = [
    "Lead with your left foot.",
    "Lead with a strong headline.",
    "Suggest a name for the new lifeboat.",
    "Suggest changes on the forum.",
    "Suggest similar commands on a typo.",
    "Prioritize your tasks each morning.",
    "Prioritize sleep and exercise.",
    "Prioritize local files over the cache.",
    "Prioritize evidence-based treatments.",
    "Highlight the text and press Ctrl+C.",
    "Highlight the risks of smoking to your patients.",
    "Flag the post as spam.",
    "Flag risks early to your manager.",
    "Note any damage on the delivery slip.",
    "Keep refrigerated.",
    "Format the disk before installing.",
    "Write to the council by May 1.",
    "Respond to the invitation by Friday.",
]


@pytest.mark.parametrize("line", NOT_NEW_ORDERS)
def test_the_same_words_in_a_documents_sense_are_not_a_rule_line(line: str) -> None:
    assert not rule_lines(line)
    assert not rule_lines(line.lower())


@pytest.mark.parametrize("line", NOT_NEW_ORDERS[:14])
def test_the_same_words_in_a_documents_sense_are_not_a_rule_item(line: str) -> None:
    assert not item_rules(f"- {line}")


NEW_DOCUMENTS = {
    "changelog": (
        "Release 3.1.0\n- Suggest similar commands on a typo.\n- Highlight the current line in the editor.\n"
        "- Prioritize local files over the cache.\n- Flag deprecated options in the config.\n"
        "- Lead with the error message in tracebacks."
    ),
    "dance": (
        "The waltz, week two\nLead with your left foot.\nSuggest the turn with your right hand.\n"
        "Prioritize posture over speed."
    ),
    "project": (
        "Risk register\nFlag risks early to your manager.\nHighlight blockers in the weekly report.\n"
        "Prioritize the tasks that unblock others."
    ),
    "pharmacy": (
        "Storing Seacalm\nThe bottle must be refrigerated.\nNote any change in colour.\n"
        "Ask your pharmacist about disposal.\nHighlight the expiry date on the label."
    ),
    "news": (
        "Residents were told on Monday to write to the council by May 1 about the harbour fees.\nThe board said "
        "it would prioritize the breakwater repairs.\nSuggest a name for the new lifeboat, the paper asked."
    ),
}
# Documents with a line that opens with an imperative of the first lexicon ("Keep…", "Format…", "Write…"): between
# lines of dashes such a block is the template's, as it was before these rules (`promptzip._rules._COMMAND`), so they
# are checked among headed documents only.
FIRST_LEXICON_DOCUMENTS = {
    "leaflet": (
        "Storing Seacalm\nThe bottle must be refrigerated.\nKeep refrigerated.\nNote any change in colour.\n"
        "Ask your pharmacist about disposal."
    ),
    "how-to": (
        "Installing HarbourOS\nBack up your files first.\nFormat the disk before installing.\n"
        "Highlight the new partition and press Enter.\nSuggest a hostname when asked."
    ),
    "news": (
        "Residents were told on Monday to write to the council by May 1 about the harbour fees.\nWrite to the "
        "council by May 1, the harbour board urged.\nThe board said it would prioritize the breakwater repairs."
    ),
}


@pytest.mark.parametrize("doc", [*NEW_DOCUMENTS, *(f"first-{d}" for d in FIRST_LEXICON_DOCUMENTS)])
def test_a_document_with_the_new_verbs_is_not_rules(doc: str) -> None:
    text = NEW_DOCUMENTS.get(doc) or FIRST_LEXICON_DOCUMENTS[doc.removeprefix("first-")]
    assert not rule_lines(text)
    assert not rule_lines(text.lower())
    assert not item_rules(text)


@pytest.mark.parametrize("doc", NEW_DOCUMENTS)
@pytest.mark.parametrize(("role", "last"), ROLES, ids=["system", "user"])
def test_a_document_with_the_new_verbs_stays_context_among_the_documents(doc: str, role: str, last: bool) -> None:
    for where in range(3):
        docs = [*DOCS[:where], NEW_DOCUMENTS[doc], *DOCS[where:]]
        for text in (
            "Context:\n" + "\n\n".join(docs) + f"\n\nQuestion: {Q}",
            BLANK.join(docs) + f"{BLANK}Question: {Q}",
            TIGHT.join(docs) + f"{TIGHT}Question: {Q}",
            "You are a harbour historian.\n\n" + "\n\n".join(DOCS + docs),
        ):
            assert_inside(understand(text, role=role, last_user=last), docs)


@pytest.mark.parametrize("doc", FIRST_LEXICON_DOCUMENTS)
@pytest.mark.parametrize(("role", "last"), ROLES, ids=["system", "user"])
def test_a_document_with_first_lexicon_lines_stays_context_among_headed_documents(
    doc: str, role: str, last: bool
) -> None:
    docs = [DOCS[0], FIRST_LEXICON_DOCUMENTS[doc], DOCS[1]]
    text = "Context:\n" + "\n\n".join(docs) + f"\n\nQuestion: {Q}"
    assert_inside(understand(text, role=role, last_user=last), docs)
