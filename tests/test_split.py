"""Splitting: sentence boundaries, hard splits, code fences, ``<pz>`` tags, and offsets that always point home."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promptzip._errors import InputError
from promptzip._split import Segment, chunk_source, parse_tags, sentence_spans
from promptzip._types import Chunk


def sentences(text: str, **kw: int) -> list[str]:
    spans = sentence_spans(text, **kw)
    for a, b in spans:
        assert 0 <= a < b <= len(text)
    return [text[a:b] for a, b in spans]


def check_chunks(text: str, chunks: list[Chunk]) -> None:
    for c in chunks:
        assert text[c.start : c.end] == c.text
        assert c.text
        assert c.text == c.text.strip()
    starts = [c.start for c in chunks]
    assert starts == sorted(starts)
    for left, right in itertools.pairwise(chunks):
        assert left.end <= right.start


# -- sentences -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Mr. Smith met Dr. Jones in the U.S. embassy. They talked.",
            ["Mr. Smith met Dr. Jones in the U.S. embassy.", "They talked."],
        ),
        ("Use hand tools, e.g. Hammers and saws. Then stop.", ["Use hand tools, e.g. Hammers and saws.", "Then stop."]),
        (
            "Mrs. Dalloway said i.e. Nothing. Prof. Xavier agreed.",
            ["Mrs. Dalloway said i.e. Nothing.", "Prof. Xavier agreed."],
        ),
        ("J. R. R. Tolkien wrote The Hobbit. It sold well.", ["J. R. R. Tolkien wrote The Hobbit.", "It sold well."]),
        (
            "Pi is about 3.14 and e is 2.718. Both are irrational.",
            ["Pi is about 3.14 and e is 2.718.", "Both are irrational."],
        ),
        ("Version 2.0.1 shipped. It works.", ["Version 2.0.1 shipped.", "It works."]),
        ("Really! Is it? Yes.", ["Really!", "Is it?", "Yes."]),
        ("Wait?! No way!!! Fine.", ["Wait?!", "No way!!!", "Fine."]),
        ('She said "Go home." Then she left.', ['She said "Go home."', "Then she left."]),
        ("line one\nline two\r\n\nline three", ["line one", "line two", "line three"]),
        ("ends with a period.\nnext line in lower case", ["ends with a period.", "next line in lower case"]),
        ("see Fig.\n3 shows it", ["see Fig.", "3 shows it"]),
        ("a list:\n- first item\n- second item", ["a list:", "- first item", "- second item"]),
        ("   padded sentence.   ", ["padded sentence."]),
        ("no final punctuation", ["no final punctuation"]),
        ("lower case after a period. does not split", ["lower case after a period. does not split"]),
        ("", []),
        (" \n\t ", []),
    ],
)
def test_sentence_boundaries(text: str, expected: list[str]) -> None:
    assert sentences(text) == expected


def test_sentence_spans_respect_start_and_end() -> None:
    text = "Skip this. Take this one. And this one. Not this."
    start, end = text.index("Take"), text.index("Not")
    spans = sentence_spans(text, start, end)
    assert [text[a:b] for a, b in spans] == ["Take this one.", "And this one."]
    assert spans[0][0] == start


def test_a_huge_single_word_is_hard_split_into_covering_pieces() -> None:
    word = "".join(chr(ord("a") + i % 26) for i in range(200_000))
    text = f"Before.\n{word}\nAfter."
    spans = sentence_spans(text, max_chars=1000)
    pieces = [(a, b) for a, b in spans if text[a:b] not in ("Before.", "After.")]
    assert all(b - a <= 1000 for a, b in spans)
    assert "".join(text[a:b] for a, b in pieces) == word  # contiguous, in order, nothing lost or repeated
    assert pieces[0][0] == text.index(word)
    assert len(pieces) == 200


def test_long_sentences_split_at_spaces_when_they_can() -> None:
    text = " ".join(f"word{i:04d}" for i in range(2000))  # one 17,999-character sentence
    spans = sentence_spans(text, max_chars=100)
    assert all(0 < b - a <= 100 for a, b in spans)
    assert " ".join(text[a:b] for a, b in spans) == text  # every cut fell on a space
    assert len(spans) > 2000 * 9 // 100


# -- code fences ---------------------------------------------------------------------------------------------------
def test_code_fences_are_protected_chunks() -> None:
    text = (
        "Intro paragraph. It explains.\n\n"
        "```python\ndef f(x):\n\n    return x.y  # a. b\n```\n"
        "Between the fences.\n"
        "~~~\nraw ~~~ text\n\n\nmore\n~~~\n"
        "Outro."
    )
    chunks = chunk_source(text, "doc")
    check_chunks(text, chunks)
    code = [c for c in chunks if c.protected]
    assert [c.metadata["kind"] for c in code] == ["code", "code"]
    assert code[0].text == "```python\ndef f(x):\n\n    return x.y  # a. b\n```"
    assert code[1].text == "~~~\nraw ~~~ text\n\n\nmore\n~~~"
    prose = [c.text for c in chunks if not c.protected]
    assert prose == ["Intro paragraph. It explains.", "Between the fences.", "Outro."]
    assert all(c.source_id == "doc" for c in chunks)


def test_a_fence_closes_only_with_its_own_marker() -> None:
    text = "````\n```\nstill code\n````\nafter"
    chunks = chunk_source(text, "s")
    assert [(c.text, c.protected) for c in chunks] == [("````\n```\nstill code\n````", True), ("after", False)]
    text = "```\nbacktick block\n~~~\nnot closed by tildes\n```\nprose"
    assert chunk_source(text, "s")[0].text == "```\nbacktick block\n~~~\nnot closed by tildes\n```"


def test_an_unclosed_fence_runs_to_the_end() -> None:
    text = "Some text.\n\n```js\nlet a = 1;\n\nlet b = 2;"
    chunks = chunk_source(text, "s")
    check_chunks(text, chunks)
    assert chunks[-1].protected
    assert chunks[-1].metadata["kind"] == "code"
    assert chunks[-1].text == "```js\nlet a = 1;\n\nlet b = 2;"
    assert chunks[-1].end == len(text)


# -- <pz> tags -----------------------------------------------------------------------------------------------------
def test_keep_tags_protect_their_text_and_disappear() -> None:
    text = "Free text here.\n\n<pz keep>Do NOT drop this. Ever.</pz>\n\nMore free text."
    chunks = chunk_source(text, "s")
    check_chunks(text, chunks)
    assert [(c.text, c.protected) for c in chunks] == [
        ("Free text here.", False),
        ("Do NOT drop this. Ever.", True),
        ("More free text.", False),
    ]
    assert chunks[1].metadata["kind"] == "keep"
    assert not any("<pz" in c.text or "</pz>" in c.text for c in chunks)


def test_nested_tags() -> None:
    text = 'a <PZ keep>b <pz rate="0.5">c <pz keep>d</pz> e</pz> f</pz> g'
    segments = parse_tags(text)
    assert [(text[s.start : s.end].strip(), s.keep, s.rate) for s in segments] == [
        ("a", False, None),
        ("b", True, None),
        ("c", True, 0.5),
        ("d", True, 0.5),
        ("e", True, 0.5),
        ("f", True, None),
        ("g", False, None),
    ]
    chunks = chunk_source(text, "s")
    check_chunks(text, chunks)
    assert [(c.text, c.protected) for c in chunks] == [
        ("a", False),
        ("b", True),
        ("c", True),
        ("d", True),
        ("e", True),
        ("f", True),
        ("g", False),
    ]


def test_rate_tags_record_metadata() -> None:
    text = "Plain.\n\n<pz rate=0.3>Squeeze this part. It is long.\n\nSo is this.</pz>\n\nPlain again."
    chunks = chunk_source(text, "s")
    check_chunks(text, chunks)
    rates = [(c.text, c.metadata.get("rate"), c.protected) for c in chunks]
    assert rates == [
        ("Plain.", None, False),
        ("Squeeze this part. It is long.", 0.3, False),
        ("So is this.", 0.3, False),
        ("Plain again.", None, False),
    ]
    assert parse_tags("<pz rate='1'>x</pz>") == [Segment(13, 14, False, 1.0)]
    assert parse_tags("<pz keep rate=0.25 >x</pz>")[0] == Segment(20, 21, True, 0.25)


def test_text_that_only_looks_like_a_tag_is_text() -> None:
    text = "<pzz keep>a</pzz> <p>b</p> x<pz"
    assert parse_tags(text) == [Segment(0, len(text), False, None)]


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("abc <pz keep>never closed", 4),
        ("<pz keep>x</pz> then <pz keep>open", 21),
        ("abc </pz> stray", 4),
        ("<pz keep>x</pz></pz>", 15),
        ("ab <pz colour=red>x</pz>", 3),
        ("ab <pz keep=yes>x</pz>", 3),
        ("abcd <pz rate=2>x</pz>", 5),
        ("abcd <pz rate=0>x</pz>", 5),
        ("abcd <pz rate=-0.5>x</pz>", 5),
        ("abcd <pz rate=half>x</pz>", 5),
        ("abcd <pz rate=nan>x</pz>", 5),
        ("abcd <pz rate>x</pz>", 5),
        ("<pz keep>x</pz junk>", 10),
        ('xy <pz keep "oops">z</pz>', 3),
    ],
)
def test_bad_tags_raise_with_their_position(text: str, position: int) -> None:
    with pytest.raises(InputError) as info:
        parse_tags(text)
    assert info.value.position == position
    assert str(position) in str(info.value)
    with pytest.raises(InputError):
        chunk_source(text, "s")


# -- chunks --------------------------------------------------------------------------------------------------------
def test_long_paragraphs_become_sentence_windows() -> None:
    sentence = "This sentence is about forty characters. "
    text = (sentence * 30).strip() + "\n\nShort paragraph."
    chunks = chunk_source(text, "s", max_chunk_chars=200)
    check_chunks(text, chunks)
    assert chunks[-1].text == "Short paragraph."
    windows = chunks[:-1]
    assert all(len(c.text) <= 200 for c in windows)
    assert len(windows) >= len(text) // 200
    assert " ".join(c.text for c in windows) == (sentence * 30).strip()


def test_one_long_sentence_is_cut_to_the_chunk_limit() -> None:
    sentence = " ".join(["lorem"] * 150)  # 899 characters, no sentence boundary
    text = f"{sentence}.\n\nTail."
    chunks = chunk_source(text, "s", max_chunk_chars=250)
    check_chunks(text, chunks)
    assert all(len(c.text) <= 250 for c in chunks)
    assert " ".join(c.text for c in chunks[:-1]) == sentence + "."
    assert chunks[-1].text == "Tail."


# -- properties ----------------------------------------------------------------------------------------------------
_FRAGMENTS = st.one_of(
    st.sampled_from([" ", "  ", "\n", "\n\n", "\t", "\r\n", "\u2028", "\u3000", "\x85", "\x1c"]),
    st.sampled_from([".", "!", "?", ";", "...", "?!", "。", "！", "？", '."', ".)", "'", "-"]),
    st.sampled_from(["Mr.", "Dr.", "U.S.", "e.g.", "i.e.", "J.", "3.14", "etc.", "No.", "a.m."]),
    st.sampled_from(["word", "Word", "x", "A", "日本語", "한국어", "Ωλ", "مرحبا", "😀", "👍🏽", "🇫🇷", "é", "e\u0301"]),
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=8),
)
_TEXT = st.lists(_FRAGMENTS, max_size=80).map("".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_TEXT, max_chars=st.integers(1, 60) | st.just(1200))
def test_sentence_spans_partition_the_text(text: str, max_chars: int) -> None:
    spans = sentence_spans(text, max_chars=max_chars)
    covered = [False] * len(text)
    prev_end = 0
    for a, b in spans:
        assert prev_end <= a < b <= len(text), "ordered, non-overlapping, non-empty, within bounds"
        assert b - a <= max_chars
        assert not text[a].isspace(), "trimmed"
        assert not text[b - 1].isspace(), "trimmed"
        for i in range(a, b):
            covered[i] = True
        prev_end = b
    missing = [i for i, ch in enumerate(text) if not ch.isspace() and not covered[i]]
    assert not missing, f"characters outside every sentence: {[text[i] for i in missing]}"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    parts=st.lists(
        st.one_of(_TEXT, st.sampled_from(["\n\n", "\n```\ncode()\n", "\n~~~\n", "\n```\n", "<pz keep>", "</pz>"])),
        max_size=12,
    ),
    max_chunk_chars=st.integers(20, 300),
)
def test_chunk_offsets_always_point_into_the_source(parts: list[str], max_chunk_chars: int) -> None:
    text = "".join(parts)
    try:
        chunks = chunk_source(text, "src", max_chunk_chars=max_chunk_chars)
    except InputError as exc:
        refused: InputError | None = exc
    else:
        refused = None
    if refused is not None:  # unbalanced tags are the only reason to refuse, and the position points at one
        assert refused.position is not None
        assert text[refused.position :].lower().startswith(("<pz", "</pz"))
        return
    check_chunks(text, chunks)
    assert all(len(c.text) <= max_chunk_chars for c in chunks if not c.protected)
    if "<pz" not in text and "</pz" not in text:
        covered = [False] * len(text)
        for c in chunks:
            covered[c.start : c.end] = [True] * (c.end - c.start)
        assert all(covered[i] for i, ch in enumerate(text) if not ch.isspace())
