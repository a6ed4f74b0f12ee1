"""Readable output: hard-wrapped prose splits into sentences (not lines), structure keeps its lines, offsets point
home, and a compressed licence keeps whole sentences."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import promptzip as pz
from promptzip._reflow import soft_breaks
from promptzip._split import chunk_source, sentence_spans

GPL = """\
  The "Corresponding Source" for a work in object code form means all
the source code needed to generate, install, and (for an executable
work) run the object code and to modify the work, including scripts to
control those activities.  However, it does not include the work's
System Libraries, or general-purpose tools or generally available free
programs which are used unmodified in performing those activities but
which are not part of the work.  For example, Corresponding Source
includes interface definition files associated with source files for
the work."""

RFC = """\
   The Transmission Control Protocol (TCP) is intended for use as a highly
   reliable host-to-host protocol between hosts in packet-switched computer
   communication networks, and in interconnected systems of such networks.
   This document describes the functions to be performed by the Transmission
   Control Protocol, the program that implements it, and its interface to
   programs or users that require its services."""

EMAIL = """\
Hi Maria,

Thanks for sending the draft over on Friday. I read it on the train and
the second section still needs work, mostly because the numbers in the
table do not match the ones in the summary. Could you check them against
the spreadsheet before the meeting?

Best,
Tom
Tom Baker
Finance Team"""


def sentences(text: str) -> list[str]:
    return [text[a:b] for a, b in sentence_spans(text)]


def flat(s: str) -> str:
    return re.sub(r"\s+", " ", s)


def check_offsets(text: str) -> None:
    for c in chunk_source(text, "s", max_chunk_chars=200):
        assert text[c.start : c.end] == c.text
        for a, b in sentence_spans(c.text):
            assert c.text[a:b] == text[c.start + a : c.start + b]


# -- hard-wrapped prose reads as sentences ---------------------------------------------------------------------------
def test_a_gpl_paragraph_splits_into_its_sentences() -> None:
    assert [flat(s) for s in sentences(GPL)] == [
        'The "Corresponding Source" for a work in object code form means all the source code needed to generate,'
        " install, and (for an executable work) run the object code and to modify the work, including scripts to"
        " control those activities.",
        "However, it does not include the work's System Libraries, or general-purpose tools or generally available"
        " free programs which are used unmodified in performing those activities but which are not part of the work.",
        "For example, Corresponding Source includes interface definition files associated with source files for"
        " the work.",
    ]
    # the sentences are the original bytes, line breaks included
    assert "\n" in sentences(GPL)[0]
    check_offsets(GPL)


def test_an_rfc_paragraph_splits_into_its_sentences() -> None:
    got = sentences(RFC)
    assert len(got) == 2
    assert flat(got[0]).endswith("interconnected systems of such networks.")
    assert flat(got[1]).startswith("This document describes the functions to be performed by the Transmission Control")
    check_offsets(RFC)


def test_an_email_reflows_its_body_and_keeps_greeting_and_signature_lines() -> None:
    assert [flat(s) for s in sentences(EMAIL)] == [
        "Hi Maria,",
        "Thanks for sending the draft over on Friday.",
        "I read it on the train and the second section still needs work, mostly because the numbers in the table do"
        " not match the ones in the summary.",
        "Could you check them against the spreadsheet before the meeting?",
        "Best,",
        "Tom",
        "Tom Baker",
        "Finance Team",
    ]
    check_offsets(EMAIL)


def test_a_long_chunk_of_wrapped_prose_is_windowed_at_sentences() -> None:
    text = "\n\n".join([GPL, RFC])
    chunks = chunk_source(text, "s", max_chunk_chars=300)
    for c in chunks:
        assert text[c.start : c.end] == c.text
        assert c.text.endswith((".", "networks.", "services.")), c.text  # windows end at sentence ends


# -- structure keeps its lines -------------------------------------------------------------------------------------
STRUCTURED = {
    "bullets": (
        "- The first item of this list is a long line of prose about something\n"
        "- the second item of this list is also a fairly long line of prose\n"
        "- and the third item of this list is, once more, a long line of text"
    ),
    "numbers": (
        "1. Install the package from the registry with the usual client tool\n"
        "2. configure the settings file in your home folder with an editor\n"
        "3. run the command line tool with the path of the input document"
    ),
    "code": (
        "def compress(context, question, budget):\n"
        "    chunks = split(context, max_chars=budget * 4)\n"
        "    return [c for c in chunks if score(c, question) > 0.5]"
    ),
    "table": (
        "| name       | description of the column in this table | type |\n"
        "|------------|-----------------------------------------|------|\n"
        "| budget     | the number of tokens the output may use  | int  |"
    ),
    "aligned": (
        "budget      the number of tokens the output may use     int\n"
        "question    what the compressed context should answer   str\n"
        "target      the tokenizer that counts the tokens        str"
    ),
    "poem": "The woods are lovely, dark and deep,\nBut I have promises to keep,\nAnd miles to go before I sleep",
    "long poem": (
        "I celebrate myself and sing myself and what I assume you shall assume\n"
        "For every atom belonging to me as good belongs to you and all of it\n"
        "I loafe and invite my soul and lean and loafe at my ease observing"
    ),
    "address": "Tom Baker\nFinance Team\n42 Example Street\nSpringfield",
    "records": "\n".join(
        f"order {i}: shipped to customer C{i * 7} in the northern region total ${i * 3}.00" for i in range(5)
    ),
    "headers": (
        "From: Tom Baker <tom@example.com> on behalf of the finance team\n"
        "To: Maria Lopez <maria@example.com> and the rest of the group\n"
        "Subject: the draft of the quarterly report that is due next week"
    ),
    "markdown": (
        "# Installing the package and configuring it for your project\n"
        "the package installs from the registry with the usual client and\n"
        "> a quoted line of text from an earlier message in this thread here"
    ),
}


@pytest.mark.parametrize("name", sorted(STRUCTURED))
def test_structure_is_never_merged(name: str) -> None:
    text = STRUCTURED[name]
    assert soft_breaks(text) == frozenset(), name
    lines = [line.strip() for line in text.splitlines()]
    got = sentences(text)
    assert all("\n" not in s for s in got), got
    assert "".join(got).replace(" ", "") == "".join(lines).replace(" ", "")
    check_offsets(text)


def test_a_short_line_inside_a_wrapped_block_still_ends_it() -> None:
    text = (
        "The licence applies to every copy of the program that you convey to\n"
        "other people, whether gratis or for a fee, in any medium at all\n"
        "Signed\n"
        "The Maintainers"
    )
    got = [flat(s) for s in sentences(text)]
    assert len(got) == 3
    assert got[0].startswith("The licence applies")
    assert got[0].endswith("in any medium at all")
    assert got[1:] == ["Signed", "The Maintainers"]


# -- offsets always point home -------------------------------------------------------------------------------------
_WORDS = st.sampled_from(["the", "licence", "Source", "code", "work.", "it,", "(for", "an)", "U.S.", "e.g.", "42"])
_LINE = st.lists(_WORDS, min_size=1, max_size=14).map(" ".join)
_BLOCK = st.lists(_LINE, min_size=1, max_size=6).map("\n".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks=st.lists(_BLOCK, min_size=1, max_size=4), indent=st.sampled_from(["", "  ", "   "]))
def test_wrapped_text_offsets_round_trip(blocks: list[str], indent: str) -> None:
    text = "\n\n".join("\n".join(indent + line for line in b.splitlines()) for b in blocks)
    for c in chunk_source(text, "s", max_chunk_chars=120):
        assert text[c.start : c.end] == c.text
    spans = sentence_spans(text)
    covered = [False] * len(text)
    for a, b in spans:
        assert not text[a].isspace()
        assert not text[b - 1].isspace()
        covered[a:b] = [True] * (b - a)
        assert "\n\n" not in text[a:b]  # a sentence never crosses a paragraph break
    assert all(covered[i] for i, ch in enumerate(text) if not ch.isspace())


# -- compression keeps whole sentences -----------------------------------------------------------------------------
LICENCE = (
    GPL
    + "\n\n"
    + """\
  You may convey verbatim copies of the Program's source code as you
receive it, in any medium, provided that you conspicuously and
appropriately publish on each copy an appropriate copyright notice;
keep intact all notices stating that this License and any
non-permissive terms added in accord with section 7 apply to the code;
keep intact all notices of the absence of any warranty; and give all
recipients a copy of this License along with the Program.

  You may charge any price or no price for each copy that you convey,
and you may offer support or warranty protection for a fee.  The
warranty disclaimer in section 15 limits what the licensor promises
to the people who receive a copy of the covered work from you."""
)


def test_compressing_a_wrapped_licence_keeps_whole_sentences(bm25: pz.Zipper) -> None:
    r = bm25.compress(LICENCE, question="May I charge a price for a copy?", budget=60)
    whole = {(a, b) for a, b in sentence_spans(LICENCE)}
    kept = [s for c in r.chunks for s in c.kept]
    assert kept
    assert "charge any price" in r.context
    for s in kept:
        assert (s.start, s.end) in whole, repr(LICENCE[s.start : s.end])  # a sentence, never a line of one
        assert LICENCE[s.start : s.end] in r.context  # the original bytes, its line breaks included
