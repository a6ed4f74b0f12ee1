"""tiktoken encodings from a compiled copy of their rank file (promptzip/_tiktoken_ranks.py): the same encoding as
tiktoken's own loader, written once, read back without parsing the file, and ignored when it is not whole."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import tiktoken
from fresh_process import run_child

from promptzip import _tiktoken_ranks as ranks
from promptzip._tokenizers import TIKTOKEN_ENCODINGS, _packaged, packaged_rank_file

TEXTS = [
    "The President proposed $2,000 in tax credits (FY2027) for 14.5 million families.",
    "  indented\n\n\tcode = {'a': [1, 2]}  # naïve café, 東京, emoji 🙂🚀, <|endoftext|> as text\r\n",
    "ID-8842-XK  https://example.org/a?b=c&d=%20  ",
]

ENCODINGS = [name for name in TIKTOKEN_ENCODINGS if packaged_rank_file(name) is not None]


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache folder of this test's own, so the compiled files start absent."""
    monkeypatch.setenv("PROMPTZIP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv(ranks.ENV, raising=False)
    return tmp_path / "cache" / "models" / "tiktoken"


def _slow(name: str, calls: list[str]) -> Any:
    def load() -> Any:
        calls.append(name)
        rank_file = packaged_rank_file(name)
        assert rank_file is not None
        return _packaged(name, rank_file)

    return load


def _never() -> Any:
    raise AssertionError("the compiled copy should have been read")


@pytest.mark.parametrize("name", ENCODINGS)
def test_the_compiled_copy_is_the_same_encoding_and_skips_the_parse(models: Path, name: str) -> None:
    rank_file = packaged_rank_file(name)
    assert rank_file is not None
    calls: list[str] = []
    first = ranks.load_encoding(name, rank_file, _slow(name, calls))
    assert calls == [name]
    assert [p.name for p in models.iterdir()] == [ranks.compiled_path(name, rank_file).name]

    again = ranks.load_encoding(name, rank_file, _never)
    assert again is not first
    assert again._mergeable_ranks == first._mergeable_ranks
    assert again._pat_str == first._pat_str
    assert again._special_tokens == first._special_tokens
    for text in TEXTS:
        assert again.encode_ordinary(text) == first.encode_ordinary(text)
        assert again.decode(again.encode_ordinary(text)) == text
    assert again.encode("<|endoftext|>", allowed_special="all") == first.encode("<|endoftext|>", allowed_special="all")


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # cut short
        lambda data: b"NOTPZ" + data[5:],  # foreign
        lambda data: data[:-1],  # one byte short of its lengths
        lambda data: data.replace(b'"count": ', b'"count": 1', 1),  # lengths that overrun the file
        lambda data: b"",
    ],
)
def test_a_damaged_compiled_copy_is_ignored_and_replaced(models: Path, damage: Any) -> None:
    name = "o200k_base"
    rank_file = packaged_rank_file(name)
    assert rank_file is not None
    calls: list[str] = []
    reference = ranks.load_encoding(name, rank_file, _slow(name, calls))
    path = ranks.compiled_path(name, rank_file)
    whole = path.read_bytes()
    path.write_bytes(damage(whole))

    found = ranks.load_encoding(name, rank_file, _slow(name, calls))
    assert calls == [name, name]  # the slow loader again
    assert found.encode_ordinary(TEXTS[1]) == reference.encode_ordinary(TEXTS[1])
    assert path.read_bytes() == whole  # written whole again
    assert not [p for p in path.parent.iterdir() if p.suffix == ".tmp"]


def test_another_rank_file_is_compiled_apart(models: Path, tmp_path: Path) -> None:
    rank_file = packaged_rank_file("r50k_base") or packaged_rank_file("o200k_base")
    assert rank_file is not None
    edited = tmp_path / "edited" / rank_file.name
    edited.parent.mkdir()
    edited.write_bytes(rank_file.read_bytes() + b"\n")
    assert ranks.compiled_path("o200k_base", edited) != ranks.compiled_path("o200k_base", rank_file)


def test_switched_off_it_neither_reads_nor_writes(models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = "cl100k_base"
    rank_file = packaged_rank_file(name)
    assert rank_file is not None
    calls: list[str] = []
    ranks.load_encoding(name, rank_file, _slow(name, calls))  # compiled
    monkeypatch.setenv(ranks.ENV, "0")
    ranks.load_encoding(name, rank_file, _slow(name, calls))
    assert calls == [name, name]


def test_a_cache_that_cannot_be_written_costs_only_the_slow_load(
    models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder should be")
    monkeypatch.setenv("PROMPTZIP_CACHE_DIR", str(blocked / "cache"))
    name = "o200k_base"
    rank_file = packaged_rank_file(name)
    assert rank_file is not None
    calls: list[str] = []
    for _ in range(2):
        found = ranks.load_encoding(name, rank_file, _slow(name, calls))
        assert found.encode_ordinary("hello world") == tiktoken.get_encoding(name).encode_ordinary("hello world")
    assert calls == [name, name]


_CHILD = """
import json, sys
import tiktoken.load

def refuse(*args, **kwargs):
    raise AssertionError("parsed the rank file")

if sys.argv[1] == "compiled":
    tiktoken.load.load_tiktoken_bpe = refuse
import promptzip as pz

tokenizer = pz.get_tokenizer("gpt-4o")
print(json.dumps({"ids": tokenizer.encode(sys.stdin.read())}))
"""


def test_a_fresh_process_counts_with_the_compiled_copy(tmp_path: Path) -> None:
    """The first process compiles the table; the next reads it and never parses the rank file, with the same ids."""
    text = "\n".join(TEXTS)
    env = {"PROMPTZIP_CACHE_DIR": str(tmp_path / "cache")}
    first = run_child(_CHILD, "first", stdin=text, **env)
    assert list((tmp_path / "cache" / "models" / "tiktoken").iterdir())
    second = run_child(_CHILD, "compiled", stdin=text, **env)
    assert second["ids"] == first["ids"] == tiktoken.get_encoding("o200k_base").encode_ordinary(text)
