"""Bad input gets a typed PromptZipError with a clear message; nothing is silently truncated."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

import promptzip as pz

TEXT = "The tower is 330 metres tall. It was finished in 1889."


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ("", "empty"),
        ("   \n\t ", "empty"),
        ([], "empty"),
        (["fine text.", "  "], "context item 1 is empty"),
        ([TEXT, 42], "context item 1 must be str, not int"),
        ([TEXT, None], "must be str, not NoneType"),
        (42, "context must be a str"),
        ({"text": TEXT}, "context must be a str"),
        (b"caf\xe9 au lait", "not valid UTF-8"),
        ([TEXT, b"\xff\xfe\xfa"], "context item 1 is not valid UTF-8"),
        ("null\x00byte", "NUL"),
    ],
)
def test_bad_context(context: Any, message: str) -> None:
    with pytest.raises(pz.InputError, match=message):
        pz.compress(context, question="How tall?", budget=50, cache="none")


def test_valid_utf8_bytes_are_accepted() -> None:
    r = pz.compress("tour Eiffel: 330 m, café".encode(), budget=100, cache="none")
    assert "café" in r.text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"budget": 0}, "positive"),
        ({"budget": -5}, "positive"),
        ({"budget": pz.Budget(rate=0.01)}, "resolves to 0"),
        ({}, "a budget is required"),
        ({"budget": 100, "rate": 0.5}, "not both"),
        ({"budget": True}, "bool"),
        ({"budget": "100"}, "cannot use str"),
        ({"budget": 0.3}, r"float.*did you mean rate=0\.3\?"),
        ({"budget": 1.0}, r"float.*did you mean rate=1\.0\?"),
        ({"budget": 800.5}, r"float.*did you mean budget=800\?"),
        ({"budget": -2.0}, r"is a float: a budget is an int number of tokens$"),
        ({"rate": 0.0}, r"\(0, 1\]"),
        ({"rate": 1.5}, r"\(0, 1\]"),
        ({"rate": float("nan")}, r"\(0, 1\]"),
    ],
)
def test_bad_budget(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(pz.BudgetError, match=message):
        pz.compress(TEXT, question="How tall?", cache="none", **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"tokens": 10, "rate": 0.5}, "exactly one"), ({}, "exactly one"), ({"tokens": 2.5}, "must be an int")],
)
def test_budget_needs_exactly_one(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(pz.BudgetError, match=message):
        pz.Budget(**kwargs)


def test_unknown_target_tokenizer() -> None:
    with pytest.raises(pz.ConfigError, match="unknown target tokenizer 'gpt-99-nonexistent-model'"):
        pz.compress(TEXT, budget=10, target="gpt-99-nonexistent-model", cache="none")


def test_unknown_preset() -> None:
    with pytest.raises(pz.ConfigError, match=r"unknown preset 'turbo'.*fast"):
        pz.compress(TEXT, budget=10, preset="turbo", cache="none")


def test_unknown_reorder_and_cache() -> None:
    with pytest.raises(pz.ConfigError, match="reorder"):
        pz.Zipper.from_preset("fast", cache="none", reorder="shuffled")
    with pytest.raises(pz.ConfigError, match="ftp"):
        pz.Zipper.from_preset("fast", cache="ftp://example")


def test_question_must_be_text() -> None:
    with pytest.raises(pz.InputError, match="question must be str"):
        pz.compress(TEXT, question=123, budget=10, cache="none")  # type: ignore[arg-type]


def test_errors_are_also_value_errors() -> None:
    assert issubclass(pz.InputError, ValueError)
    assert issubclass(pz.BudgetError, ValueError)
    assert issubclass(pz.ModelNotAvailable, pz.ConfigError)
    for exc in (pz.ConfigError, pz.InputError, pz.BudgetError, pz.UpstreamError, pz.ModelNotAvailable):
        assert issubclass(exc, pz.PromptZipError)


def test_missing_model_says_what_to_install() -> None:
    with pytest.raises(pz.ModelNotAvailable, match="hub"):
        pz.Zipper.from_preset("fast", cache="none", model="llmlingua-2-xlm-roberta-large").compress(
            TEXT, question="How tall?", budget=20
        )


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ("hello", "must be a list"),
        ([], "empty"),
        (["hi"], r"messages\[0\] must be an object"),
        ([{"content": "hi"}], "unknown role None"),
        ([{"role": "wizard", "content": "hi"}], "unknown role 'wizard'"),
        ([{"role": "user", "content": 5}], r"messages\[0\].content must be str"),
        ([{"role": "user"}], "has no content"),
        ([{"role": "user", "content": [{"text": "x"}]}], "must be an object with a 'type'"),
        ([{"role": "user", "content": [{"type": "text", "text": 3}]}], r"content\[0\].text must be str"),
    ],
)
def test_malformed_messages(messages: Any, message: str) -> None:
    with pytest.raises(pz.InputError, match=message):
        pz.compress_messages(messages, budget=100, cache="none")


@pytest.mark.slow
def test_a_million_tokens_in_bounded_memory() -> None:
    """1M tokens through split → score → knapsack → assemble, BM25 scoring (the model-free part of the pipeline).

    Runs in a subprocess to read its peak RSS; the time is printed for the record, not asserted (see make bench).
    """
    script = textwrap.dedent(
        """
        import json, resource, sys, time
        import promptzip as pz
        from promptzip.compressors.extractive import ExtractiveCompressor
        from promptzip.retrievers.sparse import BM25Scorer

        words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda omicron".split()
        paras = []
        for p in range(12000):
            sents = [" ".join(words[(p * 7 + s * 3 + k) % 12] + str((p * s + k) % 97) for k in range(14)) + "."
                     for s in range(5)]
            paras.append(" ".join(sents))
        text = "\\n\\n".join(paras)
        zipper = pz.Zipper(ExtractiveCompressor(BM25Scorer(), dedup=False))
        t = time.perf_counter()
        r = zipper.compress(text, question="gamma42 theta17", budget=pz.Budget(tokens=4000))
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(json.dumps({"tokens_in": r.tokens_in, "tokens_out": r.tokens_out, "seconds": time.perf_counter() - t,
                          "rss": rss, "chars": len(text), "count": zipper.tokenizer.count(r.text)}))
        """
    )
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    out = subprocess.run([sys.executable, "-P", "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    stats = json.loads(out.stdout.strip().splitlines()[-1])
    print(stats)
    assert stats["tokens_in"] >= 1_000_000
    assert stats["count"] == stats["tokens_out"] <= 4000
    assert stats["tokens_out"] > 3500  # the budget is used, not wasted
    assert stats["rss"] < 3 * 1024**3
