"""A bad-input audit of the public API, the CLI and the framework doors: each wrong type, odd number or broken text
is a typed PromptZipError that names the argument, never a TypeError/KeyError/AttributeError/RecursionError from
deep inside, and never a result that silently leaves part of the input uncounted."""

from __future__ import annotations

import functools
import io
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli

import promptzip as pz
from promptzip._registry import Registry

TEXT = "The tower is 330 metres tall. It was finished in 1889. Bananas are yellow."


# ------------------------------------------------------------------------------------------------ budgets
def test_an_infinite_budget_is_a_budget_error_not_an_overflow(bm25: pz.Zipper) -> None:
    with pytest.raises(pz.BudgetError, match=r"budget=inf is a float"):
        bm25.compress(TEXT, budget=float("inf"))  # type: ignore[arg-type]
    with pytest.raises(pz.BudgetError, match=r"budget=inf is a float"):
        bm25.compress_messages([{"role": "user", "content": TEXT}], budget=float("inf"))  # type: ignore[arg-type]


def test_numpy_integers_are_token_budgets(bm25: pz.Zipper) -> None:
    np = pytest.importorskip("numpy")
    assert pz.Budget(tokens=np.int64(40)) == pz.Budget(tokens=40)
    assert type(pz.Budget(tokens=np.int64(40)).tokens) is int
    assert bm25.compress(TEXT, question="How tall?", budget=np.int64(40)).budget == 40


# ------------------------------------------------------------------------------------------------ text
@pytest.mark.parametrize(
    ("call", "where"),
    [
        (lambda z: z.compress("\ud800 " + TEXT, budget=50), "context"),
        (lambda z: z.compress(TEXT, question="How tall?\udcff", budget=50), "question"),
        (lambda z: z.compress_prompt("Context: \ud800 " + TEXT, budget=50), "prompt"),
        (lambda z: z.compress_messages([{"role": "user", "content": "\ud800" + TEXT}], budget=50), "content"),
    ],
)
def test_an_unpaired_surrogate_is_an_input_error(bm25: pz.Zipper, call: Any, where: str) -> None:
    """Such a str cannot be encoded (the chat door raised UnicodeEncodeError; the fast preset's tokenizer a
    TypeError): it is refused as the proxy refuses it."""
    with pytest.raises(pz.InputError, match=rf"{where}.* unpaired surrogate .* at position"):
        call(bm25)


def test_a_memoryview_is_read_as_bytes(bm25: pz.Zipper) -> None:
    assert "330 metres" in bm25.compress(memoryview(TEXT.encode()), budget=100).text


# ------------------------------------------------------------------------------------------------ messages
DEEP = functools.reduce(lambda inner, _: {"a": inner}, range(5000), 1)
SELF: dict[str, Any] = {"role": "user", "content": TEXT}
SELF["again"] = SELF


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        # bytes were neither counted nor valid in a request: a budget of 50 let 20 tokens of bytes through uncounted
        ([{"role": "user", "content": TEXT.encode()}], r"messages\[0\].content must be str, not bytes"),
        ([{"role": "user", "content": [{"type": "text", "text": b"x"}]}], r"content\[0\].text must be str, not bytes"),
        ([{"role": "user", "content": [{"type": "text", "text": "x", "meta": DEEP}]}], "nested too deeply"),
        ([{"role": "user", "content": "x", 1: "one"}], r"messages\[0\] cannot be read as JSON"),
        (
            [{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": [{"id": "1", "x": object()}]}],
            r"messages\[1\].tool_calls cannot be read as JSON",
        ),
        ([SELF], "Circular reference"),
    ],
)
@pytest.mark.parametrize("history", ["stable", "reselect"])
def test_messages_that_cannot_be_counted_are_input_errors(
    bm25: pz.Zipper, messages: Any, message: str, history: str
) -> None:
    with pytest.raises(pz.InputError, match=message):
        bm25.compress_messages(messages, budget=50, history=history)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"scope": None}, pz.InputError, "scope must be one of all, history, not None"),
        ({"partition": None}, pz.InputError, "partition must be a str, not NoneType"),
        ({"partition": 5}, pz.InputError, "partition must be a str, not int"),
        ({"pricing": "gpt-4o"}, pz.ConfigError, "pricing must be a promptzip.CachePricing or None, not str"),
        ({"question": 5}, pz.InputError, "question must be str, not int"),
    ],
)
def test_compress_messages_names_the_bad_keyword(
    bm25: pz.Zipper, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        bm25.compress_messages([{"role": "user", "content": TEXT}], budget=50, **kwargs)


def test_compress_prompt_names_its_question(bm25: pz.Zipper) -> None:
    with pytest.raises(pz.InputError, match="question must be str, not int"):  # it said "query"
        bm25.compress_prompt(TEXT, budget=50, question=5)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ Zipper and values
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"compressor": None}, "compressor must be a promptzip.Compressor, not NoneType"),
        ({"compressor": "fast"}, r"not str; for a named stack use Zipper.from_preset\('fast'\)"),
        ({"policy": "knapsack"}, "policy must be a promptzip.Policy, not str"),
        ({"separator": None}, "separator must be a str, not NoneType"),
        ({"max_chunk_chars": "500"}, "max_chunk_chars must be an int ≥ 100, got '500'"),
        ({"max_chunk_chars": None}, "max_chunk_chars must be an int ≥ 100, got None"),
    ],
)
def test_a_zipper_checks_its_parts_when_built(bm25: pz.Zipper, kwargs: dict[str, Any], message: str) -> None:
    """They failed at the first compress, with AttributeError or TypeError."""
    kwargs = {"compressor": bm25.compressor, **kwargs}
    with pytest.raises(pz.ConfigError, match=message):
        pz.Zipper(**kwargs)


@pytest.mark.parametrize(
    ("sources", "kwargs", "message"),
    [
        (None, {}, "sources must be a sequence of promptzip.Source, not NoneType"),
        (["text"], {}, r"sources\[0\] must be a promptzip.Source, not str"),
        ([pz.Source(None, TEXT)], {}, r"sources\[0\].id must be str, not NoneType"),  # type: ignore[arg-type]
        ([pz.Source("a", None)], {}, r"sources\[0\].text must be str, not NoneType"),  # type: ignore[arg-type]
        ([pz.Source("a", TEXT)], {"reserved": "3"}, "reserved must be a non-negative int, got '3'"),
        ([pz.Source("a", TEXT)], {"reserved": -5}, "reserved must be a non-negative int, got -5"),
        ([pz.Source("a", TEXT)], {"tags": {"a": "x"}}, r"tags\['a'\] must be a non-negative int, got 'x'"),
    ],
)
def test_compress_sources_checks_its_arguments(
    bm25: pz.Zipper, sources: Any, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(pz.InputError, match=message):
        bm25.compress_sources(sources, budget=10, **kwargs)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: pz.Chunk("abc", start="0"), "Chunk offsets must be ints"),
        (lambda: pz.Chunk("abc", source_id=5), "Chunk.source_id must be str, not int"),
        (lambda: pz.Chunk("abc", source_id=None), "Chunk.source_id must be str, not NoneType"),
        (lambda: pz.Span("a", "b"), "Span offsets must be ints"),
        (lambda: pz.Span(None, None), "Span offsets must be ints"),
    ],
)
def test_chunks_and_spans_check_their_fields(make: Any, message: str) -> None:
    with pytest.raises(pz.InputError, match=message):
        make()


# ------------------------------------------------------------------------------------------------ registries, prices
def test_registry_names_and_factories_are_checked() -> None:
    registry: Registry[Any] = Registry("widget")
    with pytest.raises(pz.ConfigError, match="a widget name must be a str, not None"):
        registry.register(None, dict)  # type: ignore[arg-type]
    with pytest.raises(pz.ConfigError, match="a widget name must not be empty"):
        registry.register(" ", dict)
    with pytest.raises(pz.ConfigError, match="a widget factory must be callable, not NoneType"):
        registry.register("w", None)  # type: ignore[arg-type]
    with pytest.raises(pz.ConfigError, match="a preset name must be a str, not 5"):
        pz.registries.presets.get(5)  # type: ignore[arg-type]
    with pytest.raises(pz.ConfigError, match="a scorer name must be a str, not None"):
        pz.registries.scorers.describe(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("role", "name", "kwargs", "message"),
    [
        ("scorers", "bm25", {"bogus": 1}, "cannot create BM25Scorer: got an unexpected keyword argument 'bogus'"),
        ("compressors", "extractive", {}, "cannot create ExtractiveCompressor: missing a required argument: 'scorer'"),
        ("compressors", "summarize", {}, "cannot create the compressor 'summarize': missing a required argument"),
    ],
)
def test_registry_create_with_wrong_options_is_a_config_error(
    role: str, name: str, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(pz.ConfigError, match=message):
        getattr(pz.registries, role).create(name, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input": float("nan"), "cached": 0.1}, "CachePricing.input must be a finite price >= 0, not nan"),
        ({"input": 1.0, "cached": float("inf")}, "CachePricing.cached must be a finite price >= 0, not inf"),
        ({"input": 1.0, "cached": 0.1, "write": True}, "CachePricing.write must be a finite price >= 0 or None"),
        ({"input": 1.0, "cached": 0.1, "min_prefix": True}, "CachePricing.min_prefix must be a non-negative int"),
    ],
)
def test_cache_prices_are_finite_numbers(kwargs: dict[str, Any], message: str) -> None:
    """A NaN price made every cost comparison of cache-stable history false, silently."""
    with pytest.raises(pz.ConfigError, match=message):
        pz.CachePricing(**kwargs)


def test_pricing_lookups_check_their_arguments() -> None:
    with pytest.raises(pz.ConfigError, match="a model name must be a str or None, not int"):
        pz.pricing_for(5)  # type: ignore[arg-type]
    price = pz.pricing_for("gpt-4o")
    with pytest.raises(pz.ConfigError, match="tokens must be a non-negative int, got 'x'"):
        price.cost("x")  # type: ignore[arg-type]
    with pytest.raises(pz.ConfigError, match="common_prefix must be a non-negative int, got None"):
        price.cached_tokens(None)  # type: ignore[arg-type]


def test_compress_demonstrations_checks_its_zipper() -> None:
    with pytest.raises(pz.ConfigError, match=r"zipper must be a promptzip\.Zipper, not str"):
        pz.compress_demonstrations(["Q: 1+1? A: 2"], "2+2?", 50, zipper="fast")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda t: t.decode([10**9]), "cannot decode these ids with o200k_base"),
        (lambda t: t.decode([-1]), "cannot decode these ids with o200k_base"),
        (lambda t: t.decode(None), "decode takes a list of token ids, not NoneType"),
        (lambda t: t.encode(5), "only a str can be encoded, not int"),
        (lambda t: t.count(b"bytes"), "only a str can be encoded, not bytes"),
    ],
)
def test_tokenizer_errors_are_input_errors(o200k: pz.Tokenizer, call: Any, message: str) -> None:
    with pytest.raises(pz.InputError, match=message):
        call(o200k)


# ------------------------------------------------------------------------------------------------ CLI
@pytest.mark.parametrize("command", [["compress", "-b", "50"], ["diff", "-q", "How tall?", "-b", "50"]])
def test_the_cli_with_standard_input_closed(monkeypatch: pytest.MonkeyPatch, command: list[str]) -> None:
    monkeypatch.setattr(sys, "stdin", None)  # what `promptzip compress <&-` gives Python
    code, _, err = run_cli(*command, "--cache", "none", "-p", "fast")
    assert code == 2
    assert "standard input is closed" in err


def test_the_cli_reads_standard_input_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(TEXT))
    code, _, err = run_cli("compress", "-", "-", "-b", "50", "--cache", "none")
    assert code == 2  # the second read found nothing and said the input was empty
    assert "standard input ('-') can be read only once" in err


def test_a_question_that_is_not_utf8_on_the_command_line(doc: Path) -> None:
    code, _, err = run_cli("compress", str(doc), "-q", "How tall\udcff?", "-b", "50", "--cache", "none")
    assert code == 2  # it was a TypeError from the dense scorer's tokenizer
    assert "--question is not valid UTF-8" in err


# ------------------------------------------------------------------------------------------------ the doors
def test_decorator_settings_are_checked_when_decorating() -> None:
    with pytest.raises(pz.ConfigError, match="target must be a model name, encoding or Tokenizer, not None"):
        pz.compress_call(budget=100, target=None)  # type: ignore[arg-type]
    with pytest.raises(pz.ConfigError, match="cache must be a cache URL, a Cache or None, not int"):
        pz.compress_call(budget=100, cache=5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"preset": None}, "PromptZipCompressor: preset got None"),
        ({"cache": 5}, "PromptZipCompressor: cache got 5"),
        ({"zipper": "fast"}, "PromptZipCompressor: zipper got 'fast'"),
        ({"bogus": 1}, "PromptZipCompressor: unknown setting 'bogus'"),
    ],
)
def test_langchain_settings_are_config_errors_not_validation_errors(kwargs: dict[str, Any], message: str) -> None:
    pytest.importorskip("langchain_core")
    from promptzip.integrations.langchain import PromptZipCompressor

    with pytest.raises(pz.ConfigError, match=message):
        PromptZipCompressor(budget=100, **kwargs)


def test_langchain_runnable_refuses_bytes_by_name(bm25: pz.Zipper) -> None:
    pytest.importorskip("langchain_core")
    from promptzip.integrations.langchain import PromptZipRunnable

    with pytest.raises(pz.ConfigError, match="PromptZipRunnable: scope got None"):
        PromptZipRunnable(budget=100, zipper=bm25, scope=None)
    with pytest.raises(pz.InputError, match="not bytes"):  # "Unsupported message type: <class 'int'>"
        PromptZipRunnable(budget=100, zipper=bm25).invoke(b"a prompt")


def test_haystack_pricing_dict_with_wrong_fields(bm25: pz.Zipper) -> None:
    os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
    pytest.importorskip("haystack")
    from promptzip.integrations.haystack import PromptZipChatCompressor

    with pytest.raises(pz.ConfigError, match=r"pricing as a dict takes the fields of promptzip\.CachePricing"):
        PromptZipChatCompressor(budget=100, zipper=bm25, pricing={"input": 1.0, "bogus": 1})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"models": None}, "models must be a list of model names, not NoneType"),
        ({"zippers": "fast"}, "zippers must map preset names to promptzip.Zippers, not str"),
        ({"zippers": {"fast": "fast"}}, r"zippers\['fast'\] must be a promptzip.Zipper, not str"),
        ({"cache": 5}, "cache must be a cache URL, a Cache or None, not int"),
    ],
)
def test_litellm_hook_settings(kwargs: dict[str, Any], message: str) -> None:
    # promptzip's module first: it tells litellm to use the cost map it ships, not to fetch one
    PromptZipHook = pytest.importorskip("promptzip.integrations.litellm").PromptZipHook

    with pytest.raises(pz.ConfigError, match=message):
        PromptZipHook(budget=100, **kwargs)


def test_litellm_plan_takes_a_mapping() -> None:
    # promptzip's module first: it tells litellm to use the cost map it ships, not to fetch one
    PromptZipHook = pytest.importorskip("promptzip.integrations.litellm").PromptZipHook

    with pytest.raises(pz.ConfigError, match="plan takes a call's keyword arguments as a mapping, not NoneType"):
        PromptZipHook(budget=100).plan(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("target", ["gpt-4o", "cl100k_base", "hf:minilm"])
@pytest.mark.parametrize("text", [None, b"", [], 0])
def test_a_falsy_non_text_is_not_counted_as_no_tokens(target: str, text: object) -> None:
    """An empty str counts 0 tokens; ``None`` or an empty bytes/list is not a text, and counting it as 0 would let
    it through a budget unseen."""
    tokenizer = pz.get_tokenizer(target)
    assert tokenizer.count("") == 0
    with pytest.raises(pz.InputError, match="only a str can be counted"):
        tokenizer.count(text)  # type: ignore[arg-type]
