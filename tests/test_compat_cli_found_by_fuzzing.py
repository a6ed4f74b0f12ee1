"""Bugs a fuzzing pass found in the LLMLingua compat layer, the command line and ``promptzip diff``: a token budget
overrun when there is no context, budgets that are not finite or are numpy's numbers, an ``<llmlingua, rate=…>`` tag
that emptied the context, a traceback when the reader of a pipe goes away, and two sources with one id marked with
each other's cuts. Model-free (BM25) unless marked slow."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import run_cli as run

import promptzip as pz
from promptzip._diff import render_diff
from promptzip.cli import main
from promptzip.compat.llmlingua import PromptCompressor

INSTRUCTION = "Please answer the following question carefully and in detail."
QUESTION = "How tall is the Eiffel Tower?"
PASSAGES = [
    "The tower is 330 metres tall. It was finished in 1889.",
    "Bananas are yellow and grow in bunches in the tropics.",
    "Paris hosted the 2024 Olympics from 26 July.",
]
DELETED = re.compile(r"\[-(.*?)-\]", flags=re.DOTALL)
SECTION = re.compile(r"^==> .* <==\n", flags=re.MULTILINE)


@pytest.fixture(scope="module")
def lingua(bm25: pz.Zipper) -> PromptCompressor:
    return PromptCompressor(zipper=bm25)


# ------------------------------------------------------------------------------------------ compat: budgets
@pytest.mark.parametrize("contexts", [[], ["", "  \n"]])
def test_a_token_budget_below_instruction_and_question_is_an_error_without_context_too(
    lingua: PromptCompressor, contexts: list[str], gpt4o: pz.Tokenizer
) -> None:
    with pytest.raises(pz.BudgetError, match="alone need 17 tokens but the budget is 5") as raised:
        lingua.compress_prompt(contexts, instruction=INSTRUCTION, question=QUESTION, target_token=5)
    assert (raised.value.budget, raised.value.required) == (5, 17)
    # with room, or with a rate (a fraction of nothing to compress), both are returned as they are
    roomy = lingua.compress_prompt(contexts, instruction=INSTRUCTION, question=QUESTION, target_token=17)
    by_rate = lingua.compress_prompt(contexts, instruction=INSTRUCTION, question=QUESTION, rate=0.1)
    assert roomy["compressed_prompt"] == by_rate["compressed_prompt"] == f"{INSTRUCTION}\n\n{QUESTION}"
    assert roomy["compressed_tokens"] == gpt4o.count(roomy["compressed_prompt"]) == 17


@pytest.mark.parametrize("target_token", [float("inf"), float("-inf"), float("nan"), np.float64("inf")])
def test_a_target_token_that_is_not_finite_is_a_budget_error(lingua: PromptCompressor, target_token: float) -> None:
    # inf was an OverflowError from int(); -inf and nan passed silently to `rate`
    with pytest.raises(pz.BudgetError, match="target_token must be a finite number"):
        lingua.compress_prompt(PASSAGES, question=QUESTION, target_token=target_token)
    with pytest.raises(pz.BudgetError, match="target_token must be a finite number"):
        lingua.compress_prompt_llmlingua2(PASSAGES, target_token=target_token)
    # LLMLingua's own "unset", -1 (its default), still leaves the rate in charge
    out = lingua.compress_prompt(PASSAGES, question=QUESTION, rate=0.5, target_token=-1)
    assert out["compressed_tokens"] <= out["origin_tokens"] * 0.5


def test_numpy_numbers_are_their_python_numbers(lingua: PromptCompressor) -> None:
    def call(**kw: Any) -> str:
        return lingua.compress_prompt(PASSAGES, question=QUESTION, **kw)["compressed_prompt"]

    assert call(target_token=np.int64(20)) == call(target_token=20)
    assert call(target_token=np.float32(20.0)) == call(target_token=20)
    assert call(rate=np.float32(0.5)) == call(rate=0.5)
    assert call(rate=np.int64(1)) == call(rate=1)
    forced = call(rate=0.5, force_context_ids=[np.int64(1)])
    assert forced == call(rate=0.5, force_context_ids=[1])
    assert PASSAGES[1] in forced
    two = lingua.compress_prompt_llmlingua2(PASSAGES, target_token=np.int64(20), force_context_ids=[np.int32(-1)])
    assert PASSAGES[2] in two["compressed_prompt_list"]
    with pytest.raises(pz.ConfigError, match="force_context_ids"):
        call(force_context_ids=[np.True_])
    with pytest.raises(pz.ConfigError, match="rate must be a number"):
        call(rate=np.True_)


# ------------------------------------------------------------------------------------------ compat: structure
def test_a_region_rate_never_leaves_the_question_alone(lingua: PromptCompressor, article: str) -> None:
    # <llmlingua, rate=0.1> became <pz rate=0.1>, a cap no sentence of the article fits: every paragraph was
    # dropped and a call with room for 200 tokens sent the question alone. Now the most relevant sentence of each
    # paragraph is offered where none is that short, so the region is cut near its own rate, within the target.
    plain = f"<llmlingua>{article}</llmlingua>"
    untagged = lingua.structured_compress_prompt([plain], question="How tall is the tower?", target_token=200)
    sizes = {}
    for rate in ("0.1", "0.5", "1"):
        tagged = f"<llmlingua, rate={rate}>{article}</llmlingua>"
        out = lingua.structured_compress_prompt([tagged], question="How tall is the tower?", target_token=200)
        assert "330 metres" in out["compressed_prompt"]
        assert "<pz" not in out["compressed_prompt"]
        assert out["compressed_tokens"] <= 200
        sizes[rate] = out["compressed_tokens"]
    assert sizes["1"] == untagged["compressed_tokens"]  # a rate of 1 caps nothing
    assert sizes["0.1"] <= sizes["0.5"] < sizes["1"]  # the region's own rate is honoured below the call's
    for bad in ("0", "1.5", "lots"):
        with pytest.raises(pz.InputError, match=r"context\[0\].*rate in \(0, 1\]"):
            lingua.structured_compress_prompt([f"<llmlingua, rate={bad}>{article}</llmlingua>"], target_token=200)


@pytest.mark.slow
def test_a_region_rate_never_leaves_the_question_alone_with_the_fast_preset(article: str) -> None:
    fast = PromptCompressor(cache="memory")
    tagged = f"<llmlingua, rate=0.1>{article}</llmlingua>"
    out = fast.structured_compress_prompt([tagged], question="How tall is the tower?", target_token=200)
    assert "330 metres" in out["compressed_prompt"]
    assert 20 < out["compressed_tokens"] <= 200
    assert "<pz" not in out["compressed_prompt"]
    assert "llmlingua" not in out["compressed_prompt"]


# ------------------------------------------------------------------------------------------ CLI: closed pipes
class ClosedPipe(io.StringIO):
    """A stream whose reader has gone: every write fails as a closed pipe's does."""

    def write(self, s: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_main_ends_quietly_when_its_reader_goes(capsys: pytest.CaptureFixture[str]) -> None:
    err = io.StringIO()
    assert main(["models", "--json"], stdout=ClosedPipe(), stderr=err) == 141
    assert err.getvalue() == ""
    print("still here")  # the process's own standard output was not moved to the null device
    assert capsys.readouterr().out == "still here\n"


@pytest.mark.slow
@pytest.mark.parametrize("argv", [["models", "--json"], ["compress", "{doc}", "-b", "50", "--json"]])
def test_a_pipe_closed_early_ends_quietly_in_a_subprocess(doc: Path, argv: list[str]) -> None:
    exe = [sys.executable, "-P", "-m", "promptzip.cli", *(a.format(doc=doc) for a in argv)]
    if argv[0] == "compress":
        exe += ["--cache", "memory", "--quiet"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    child = subprocess.Popen(exe, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert child.stdout is not None
    child.stdout.close()  # `| head -c 0`: the reader is gone before the first write
    _, err = child.communicate(timeout=300)
    assert err.decode() == ""  # no BrokenPipeError traceback, and none at interpreter shutdown
    assert child.returncode == 141  # 128 + SIGPIPE, as a shell reports a tool the signal ended


# ------------------------------------------------------------------------------------------ diff: shared ids
def marked(rendered: str) -> list[list[str]]:
    """The [-…-] pieces of each ``==> id <==`` section of a plain diff."""
    body = rendered.rstrip("\n").rpartition("\n")[0]
    return [DELETED.findall(section) for section in SECTION.split(body)[1:]]


def unmarked(rendered: str) -> list[str]:
    body = rendered.rstrip("\n").rpartition("\n")[0]
    return [section.replace("[-", "").replace("-]", "").rstrip("\n") for section in SECTION.split(body)[1:]]


def test_two_sources_with_one_id_each_show_their_own_cut(bm25: pz.Zipper) -> None:
    doc = "\n\n".join(PASSAGES)
    r = bm25.compress([pz.Chunk(doc, "x"), pz.Chunk(doc, "x")], question="How tall?", budget=40)
    rendered = render_diff(r, color=False)
    first, second = marked(rendered)
    assert [*first, *second] == [d.text for d in r.dropped]
    assert "330 metres" not in "".join(first)  # the first copy's kept sentence is plain, not struck through
    assert second == [doc]
    assert unmarked(rendered) == [doc, doc]


def test_a_chunk_whose_id_is_an_automatic_one_keeps_its_own_cut(bm25: pz.Zipper) -> None:
    doc = "\n\n".join(PASSAGES)
    other = "Bananas are yellow. The tower is tall."
    r = bm25.compress([doc, pz.Chunk(other, source_id="0")], question="How tall?", budget=30)
    assert [s.id for s in r.sources] == ["0", "0"]
    rendered = render_diff(r, color=False)
    assert [piece for pieces in marked(rendered) for piece in pieces] == [d.text for d in r.dropped]
    assert unmarked(rendered) == [doc, other]
    assert "The tower is 330 metres tall." in rendered.replace("[-", "\0").split("\0")[0]


@pytest.mark.slow
def test_the_same_file_twice_in_the_diff_command(doc: Path, article: str) -> None:
    argv = ("diff", str(doc), str(doc), "-q", "How tall is the tower?", "-b", "60", "--cache", "memory")
    code, out, _ = run(*argv, "--color", "never")
    assert code == 0
    _, as_json, _ = run(*argv, "--json")
    dropped = json.loads(as_json)["dropped"]
    first, second = marked(out)
    assert [*first, *second] == [d["text"] for d in dropped]
    assert not any("330 metres" in piece for piece in first)
    assert second == [article]  # the second copy, a duplicate, is dropped whole; the first is not
    assert unmarked(out) == [article, article]
