"""Tokenizers: offline tiktoken encodings, model-name resolution, batch counts, and the packaged MiniLM tokenizer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from promptzip._errors import ConfigError, PromptZipError
from promptzip._models import resolve_model
from promptzip._tokenizers import HFTokenizer, TiktokenTokenizer, Tokenizer, get_tokenizer

SAMPLES = [
    "",
    "hello world",
    "  leading and trailing spaces  ",
    "Ünïcödé façade, naïve café — “quotes” and ‘apostrophes’…",
    "日本語のテキストと한국어 텍스트, Ελληνικά, русский, العربية, עברית",
    "emoji 😀👍🏽🇫🇷 and a ZWJ family 👨‍👩‍👧‍👦",
    "e\u0301 combining accents, NBSP\u00a0and\u2028line separators",
    "code: def f(x):\n\treturn {'k': [1, 2.5e-3]}  # comment\r\n",
    "<|endoftext|> and <|im_start|>user\nhi<|im_end|>",
]


@pytest.mark.parametrize(
    ("target", "encoding"),
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("cl100k_base", "cl100k_base"),
        ("o200k_base", "o200k_base"),
    ],
)
def test_targets_resolve_to_encodings(target: str, encoding: str) -> None:
    tok = get_tokenizer(target)
    assert isinstance(tok, TiktokenTokenizer)
    assert tok.name == encoding
    assert get_tokenizer(target) is tok  # shared per process


@pytest.mark.parametrize("encoding", ["o200k_base", "cl100k_base"])
@pytest.mark.parametrize("text", SAMPLES)
def test_tiktoken_counts_and_round_trips(encoding: str, text: str) -> None:
    tok = get_tokenizer(encoding)
    ids = tok.encode(text)
    assert tok.count(text) == len(ids)
    assert tok.decode(ids) == text
    assert all(isinstance(i, int) for i in ids)


def test_encodings_differ_and_counts_are_exact() -> None:
    text = "The quick brown fox jumps over the lazy dog."
    o200k, cl100k = get_tokenizer("o200k_base"), get_tokenizer("cl100k_base")
    assert o200k.count(text) == cl100k.count(text) == 10  # both encodings: one token per word, one for "."
    assert o200k.encode(text) != cl100k.encode(text)
    assert o200k.count("") == 0
    assert o200k.encode("") == []


def test_special_token_text_is_ordinary_text() -> None:
    tok = get_tokenizer("gpt-4o")
    text = "before <|endoftext|> after"
    ids = tok.encode(text)
    assert tok.count(text) == len(ids) > 3  # spelled out in pieces, not the one special token
    assert 199999 not in ids  # o200k_base's <|endoftext|>
    assert tok.decode(ids) == text
    assert get_tokenizer("cl100k_base").count("<|endoftext|>") > 1


@pytest.mark.parametrize("n", [0, 1, 63, 64, 200])
def test_count_many_equals_single_counts(n: int) -> None:
    tok = get_tokenizer("o200k_base")
    texts = [SAMPLES[i % len(SAMPLES)] * (1 + i % 3) for i in range(n)]
    assert tok.count_many(texts) == [tok.count(t) for t in texts]
    assert len(tok.count_many(texts)) == n


def test_unknown_targets_are_config_errors() -> None:
    for target in ["no-such-model-xyz", "", "   "]:
        with pytest.raises(ConfigError):
            get_tokenizer(target)
    with pytest.raises(ConfigError, match="known"):
        TiktokenTokenizer("p99k_base")
    with pytest.raises(ConfigError):
        get_tokenizer(42)  # type: ignore[arg-type]


def test_a_tokenizer_instance_passes_through() -> None:
    class Words(Tokenizer):
        name = "words"

        def encode(self, text: str) -> list[int]:
            return [len(w) for w in text.split()]

        def decode(self, ids: object) -> str:
            raise NotImplementedError

    words = Words()
    assert get_tokenizer(words) is words
    assert words.count("three little words") == 3
    assert words.count_many(["a b", "", "c"]) == [2, 0, 1]


def test_tiktoken_cache_dir_is_not_left_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    tok = TiktokenTokenizer("cl100k_base")  # a fresh instance loads its encoding again
    assert tok.count("offline tokens") > 0
    assert "TIKTOKEN_CACHE_DIR" not in os.environ


# -- Hugging Face tokenizers (the packaged MiniLM) ---------------------------------------------------------------
@pytest.fixture(scope="module")
def minilm_dir() -> Path:
    return resolve_model("minilm").path


def test_hf_tokenizer_by_registry_key(minilm_dir: Path) -> None:
    tok = get_tokenizer("minilm")
    assert isinstance(tok, HFTokenizer)
    assert tok.count("hello world") == 2
    assert tok.count("") == 0
    assert tok.decode(tok.encode("Hello World")) == "hello world"  # an uncased WordPiece vocabulary
    assert tok.count("unbelievably") >= 2  # split into word pieces


def test_hf_tokenizer_by_path_counts_whole_texts(minilm_dir: Path) -> None:
    tok = get_tokenizer("hf:" + str(minilm_dir))
    assert isinstance(tok, HFTokenizer)
    long_text = " ".join(["word"] * 1000)
    # No padding to the model's sequence length and no truncation to it: a count sees the whole text.
    assert tok.count(long_text) == 1000
    assert tok.count("a b c") == 3
    texts = ["", "hello world", long_text, *SAMPLES]
    assert tok.count_many(texts) == [tok.count(t) for t in texts]
    assert tok.count_many([]) == []
    assert get_tokenizer(str(minilm_dir)).count("hello world") == 2  # a bare local folder works too


def test_hf_tokenizer_for_a_missing_path_raises_a_promptzip_error() -> None:
    tok = get_tokenizer("hf:/nonexistent")
    with pytest.raises(PromptZipError, match="nonexistent"):
        tok.count("anything")
