"""A run of a million blanks makes tiktoken's pre-tokenizer panic: promptzip encodes such a text in parts cut inside
the run (promptzip/_blank_runs.py), and the parts' encodings joined are the whole text's."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

import promptzip as pz
from promptzip._blank_runs import PART, encode_guarded, parts
from promptzip._errors import InputError, ModelNotAvailable
from promptzip._tokenizers import TIKTOKEN_ENCODINGS

BLANKS = [" ", "\t", "\xa0", "\u3000", "\u2003", "\x0b", "\x0c"]
LEFT = ["", "x", "x.", "\n", "1", " ", ")"]
RIGHT = ["", "y", "\n", "\r\n", "Word", ".", " z"]
LENGTHS = [2 * PART, 2 * PART + 1, 3 * PART + 1, 4 * PART + 4, 5000]


def encodings() -> Iterator[Any]:
    for name in TIKTOKEN_ENCODINGS:
        try:
            yield pytest.param(pz.get_tokenizer(name)._encoding(), id=name)
        except ModelNotAvailable:  # not every rank file is shipped offline
            continue


@pytest.mark.parametrize("encoding", list(encodings()))
@pytest.mark.parametrize("blank", BLANKS, ids=[f"U+{ord(b):04X}" for b in BLANKS])
def test_the_parts_of_a_long_run_encode_as_the_whole(encoding: Any, blank: str) -> None:
    for left in LEFT:
        for right in RIGHT:
            for n in LENGTHS:
                text = left + blank * n + right
                pieces = parts(text)
                run = max(re.findall(r"[^\S\r\n]+", text), key=len)
                # cut at every PART of a run of one blank, leaving at least PART after the last cut
                assert len(pieces) == ((len(run) - PART) // PART + 1 if set(run) == {blank} else 1)
                assert "".join(pieces) == text
                assert [i for p in pieces for i in encoding.encode_ordinary(p)] == encoding.encode_ordinary(text)


def test_runs_of_mixed_blanks_and_short_runs_are_not_cut() -> None:
    assert parts("a" + " \t" * 5000 + "b") == ["a" + " \t" * 5000 + "b"]
    assert parts("a" + " " * (2 * PART - 1) + "b" + "\n" * 10_000) == ["a" + " " * (2 * PART - 1) + "b" + "\n" * 10_000]


def panic_type() -> type[BaseException]:
    try:
        pz.get_tokenizer("o200k_base")._encoding().encode_ordinary(" " * 2_000_000)
    except BaseException as exc:  # pyo3's PanicException is a BaseException
        return type(exc)
    pytest.skip("this tiktoken does not panic on a run of two million spaces")


@pytest.mark.parametrize("blank", [" ", "\t", "\xa0"])
def test_a_million_blanks_are_counted_and_round_trip(blank: str) -> None:
    tok = pz.get_tokenizer("gpt-4o")
    text = "Before the run." + blank * 2_000_000 + "After the run."
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.count(text) == len(ids)
    # the same count as the encoder gives where it does not panic: 700,000 blanks (and their parts) counted directly
    shorter = "Before the run." + blank * 700_000 + "After the run."
    assert tok.count(shorter) == len(tok._encoding().encode_ordinary(shorter))
    assert tok.count(shorter) == sum(len(tok._encoding().encode_ordinary(p)) for p in parts(shorter))


def test_a_panic_with_nothing_to_cut_is_an_input_error() -> None:
    panic = panic_type()

    def always(text: str) -> list[int]:
        raise panic("the pre-tokenizer overflowed")

    with pytest.raises(InputError, match="cannot encode this text"):
        encode_guarded(always, "no long runs here", "o200k_base")
    with pytest.raises(InputError, match="cannot encode this text"):
        encode_guarded(always, "x" + " " * 5000, "o200k_base")  # cut, and the parts panic too


def test_other_errors_are_not_taken_for_a_panic() -> None:
    def broken(text: str) -> list[int]:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        encode_guarded(broken, "x" + " " * 5000, "o200k_base")
