"""``promptzip.compat.llmlingua.PromptCompressor`` with the call shapes of LLMLingua's README and examples: the
result dict's keys and types, budgets in the target tokenizer, instruction and question verbatim, and no silent
misspelling. Model-free (BM25) unless marked slow."""

from __future__ import annotations

import re
from typing import Any

import pytest

import promptzip as pz
from promptzip.compat.llmlingua import IGNORED_ARGUMENTS, PromptCompressor

QUESTION = "How tall is the Eiffel Tower?"
INSTRUCTION = "Answer the question from the passages below."
KEYS = {"compressed_prompt", "origin_tokens", "compressed_tokens", "ratio", "rate", "saving"}


@pytest.fixture(scope="module")
def contexts(article: str) -> list[str]:
    return article.split("\n\n")


@pytest.fixture(scope="module")
def lingua(bm25: pz.Zipper) -> PromptCompressor:
    return PromptCompressor(zipper=bm25)


def check_answer(out: Any, gpt4o: pz.Tokenizer) -> None:
    """LLMLingua's keys and types, and numbers that are the prompt's own token counts in the target tokenizer."""
    assert set(out) == KEYS
    assert isinstance(out["compressed_prompt"], str)
    assert out["compressed_prompt"]
    assert type(out["origin_tokens"]) is int
    assert type(out["compressed_tokens"]) is int
    assert out["compressed_tokens"] == gpt4o.count(out["compressed_prompt"])
    assert out["compressed_tokens"] < out["origin_tokens"]
    ratio = out["origin_tokens"] / out["compressed_tokens"]
    assert out["ratio"] == f"{ratio:.1f}x"
    assert re.fullmatch(r"\d+\.\d%", out["rate"])
    assert abs(float(out["rate"][:-1]) - 100 / ratio) < 0.06
    assert re.fullmatch(r", Saving \$\d+\.\d in GPT-4\.", out["saving"])


def test_contexts_question_and_a_token_budget(
    lingua: PromptCompressor, contexts: list[str], gpt4o: pz.Tokenizer
) -> None:
    # LLMLingua's README: compress_prompt(prompt_list, instruction="", question="", target_token=200)
    out = lingua.compress_prompt(contexts, instruction="", question=QUESTION, target_token=200)
    check_answer(out, gpt4o)
    assert out["compressed_tokens"] <= 200
    assert out["origin_tokens"] == gpt4o.count("\n\n".join([*contexts, QUESTION]))
    assert out["compressed_prompt"].endswith("\n\n" + QUESTION)
    assert "330 metres" in out["compressed_prompt"]


def test_a_rate_is_the_kept_fraction(lingua: PromptCompressor, contexts: list[str], gpt4o: pz.Tokenizer) -> None:
    # LLMLingua-2's README: compress_prompt(prompt, rate=0.33, force_tokens=['\n', '?'])
    out = lingua.compress_prompt("\n\n".join(contexts), rate=0.33, force_tokens=["\n", "?"])
    check_answer(out, gpt4o)
    assert out["compressed_tokens"] <= int(0.33 * out["origin_tokens"])
    # without a question relevance is centrality, and kept sentences are verbatim pieces of the input
    for piece in out["compressed_prompt"].split("\n\n"):
        assert piece in "\n\n".join(contexts)


def test_instruction_and_question_are_kept_verbatim_around_the_context(
    lingua: PromptCompressor, contexts: list[str], gpt4o: pz.Tokenizer
) -> None:
    out = lingua.compress_prompt(contexts, instruction=INSTRUCTION, question=QUESTION, rate=0.4)
    check_answer(out, gpt4o)
    prompt = out["compressed_prompt"]
    assert prompt.startswith(INSTRUCTION + "\n\n")
    assert prompt.endswith("\n\n" + QUESTION)
    assert out["compressed_tokens"] <= int(0.4 * out["origin_tokens"])
    assert out["origin_tokens"] == gpt4o.count("\n\n".join([INSTRUCTION, *contexts, QUESTION]))


def test_target_token_wins_over_rate(lingua: PromptCompressor, contexts: list[str]) -> None:
    out = lingua.compress_prompt(contexts, question=QUESTION, rate=0.9, target_token=90)
    assert out["compressed_tokens"] <= 90


def test_longllmlingua_arguments_are_accepted_and_sort_puts_the_best_context_first(
    lingua: PromptCompressor, contexts: list[str], gpt4o: pz.Tokenizer
) -> None:
    # LongLLMLingua's README example; the answer sits in the last context, so "sort" brings it to the front
    question = "When were the Summer Olympics held in Paris?"
    out = lingua.compress_prompt(
        contexts,
        question=question,
        rate=0.55,
        condition_in_question="after_condition",
        reorder_context="sort",
        dynamic_context_compression_ratio=0.3,
        condition_compare=True,
        context_budget="+100",
        rank_method="longllmlingua",
    )
    check_answer(out, gpt4o)
    assert out["compressed_tokens"] <= int(0.55 * out["origin_tokens"])
    assert out["compressed_prompt"].startswith("The 2024 Summer Olympics were held in Paris")
    in_order = lingua.compress_prompt(contexts, question=question, rate=0.55, rank_method="longllmlingua")
    assert in_order["compressed_prompt"].startswith("The Eiffel Tower is a wrought-iron")
    assert "The 2024 Summer Olympics were held in Paris" in in_order["compressed_prompt"]


def test_ignored_filters_change_nothing(lingua: PromptCompressor, contexts: list[str]) -> None:
    plain = lingua.compress_prompt(contexts, question=QUESTION, target_token=150)
    filtered = lingua.compress_prompt(
        contexts, question=QUESTION, target_token=150, use_sentence_level_filter=True, iterative_size=100
    )
    assert filtered == plain
    assert "use_sentence_level_filter" in IGNORED_ARGUMENTS


def test_force_context_ids_keep_a_context_whole(lingua: PromptCompressor, contexts: list[str]) -> None:
    bananas = next(i for i, c in enumerate(contexts) if c.startswith("Bananas"))
    dropped = lingua.compress_prompt(contexts, question=QUESTION, target_token=150)
    assert contexts[bananas] not in dropped["compressed_prompt"]
    kept = lingua.compress_prompt(contexts, question=QUESTION, target_token=150, force_context_ids=[bananas])
    assert contexts[bananas] in kept["compressed_prompt"]
    assert kept["compressed_tokens"] <= 150


def test_a_misspelt_argument_is_a_config_error_naming_the_accepted_ones(
    lingua: PromptCompressor, contexts: list[str]
) -> None:
    with pytest.raises(pz.ConfigError, match=r"'target_tokens' \(did you mean 'target_token'\?\)") as caught:
        lingua.compress_prompt(contexts, question=QUESTION, target_tokens=200)
    assert isinstance(caught.value, ValueError)
    with pytest.raises(pz.ConfigError, match=r"'use_llmlingua'.*use_llmlingua2"):
        PromptCompressor(use_llmlingua=True)
    with pytest.raises(pz.ConfigError, match="reorder_context"):
        lingua.compress_prompt(contexts, reorder_context="sorted")
    with pytest.raises(pz.ConfigError, match="force_tokens"):
        lingua.compress_prompt(contexts, force_tokens="?")


def test_a_budget_below_the_question_is_an_error_not_an_overrun(lingua: PromptCompressor, contexts: list[str]) -> None:
    with pytest.raises(pz.BudgetError):
        lingua.compress_prompt(contexts, instruction=INSTRUCTION, question=QUESTION, target_token=5)


def test_no_context_returns_instruction_and_question(lingua: PromptCompressor, gpt4o: pz.Tokenizer) -> None:
    out = lingua.compress_prompt(["", "  "], instruction=INSTRUCTION, question=QUESTION)
    assert out["compressed_prompt"] == f"{INSTRUCTION}\n\n{QUESTION}"
    assert out["origin_tokens"] == out["compressed_tokens"] == gpt4o.count(out["compressed_prompt"])
    assert out["ratio"] == "1.0x"


def test_llmlingua2_entry_point_lists_each_kept_context(
    lingua: PromptCompressor, contexts: list[str], gpt4o: pz.Tokenizer
) -> None:
    out = lingua.compress_prompt_llmlingua2(contexts, rate=0.5, force_tokens=["\n", "?"], use_context_level_filter=True)
    pieces = out.pop("compressed_prompt_list")
    check_answer(out, gpt4o)
    assert pieces
    assert "\n\n".join(pieces) == out["compressed_prompt"]
    with pytest.raises(pz.ConfigError, match="question"):
        lingua.compress_prompt_llmlingua2(contexts, question=QUESTION)


def test_structured_prompts_keep_what_says_compress_false(
    lingua: PromptCompressor, contexts: list[str], gpt4o: pz.Tokenizer
) -> None:
    keep = "Ticket ref: EIFFEL-1889-TOUR."
    tagged = [
        f"<llmlingua, compress=False>{keep}</llmlingua>",
        *(f"<llmlingua, rate=0.4>{c}</llmlingua>" for c in contexts),
    ]
    out = lingua.structured_compress_prompt(tagged, question=QUESTION, target_token=120)
    assert keep in out["compressed_prompt"]
    assert "llmlingua" not in out["compressed_prompt"]
    assert "<pz" not in out["compressed_prompt"]
    assert out["compressed_tokens"] <= 120
    with pytest.raises(pz.InputError, match="colour"):
        lingua.structured_compress_prompt(["<llmlingua, colour=red>x</llmlingua>"])


def test_the_constructor_maps_use_llmlingua2_to_a_token_level_preset() -> None:
    # model_name and device_map are accepted and ignored: nothing is downloaded or moved to a GPU
    lingua2 = PromptCompressor(
        model_name="microsoft/llmlingua-2-xlm-roberta-large-meetingbank", use_llmlingua2=True, device_map="cpu"
    )
    assert lingua2.preset == "balanced"
    assert PromptCompressor().preset == "fast"
    assert PromptCompressor(use_llmlingua2=True, preset="max").preset == "max"


@pytest.mark.slow
def test_force_tokens_survive_token_level_pruning(contexts: list[str]) -> None:
    lingua2 = PromptCompressor(use_llmlingua2=True, cache="memory")
    pruner = lingua2.zipper_for(("Paris", "?")).compressor
    assert getattr(pruner, "force_tokens", None) == ("Paris", "?")  # the preset's pruner holds them
    plain = lingua2.compress_prompt_llmlingua2(contexts, rate=0.33)
    forced = lingua2.compress_prompt_llmlingua2(contexts, rate=0.33, force_tokens=["the", "of"])

    def count(text: str) -> int:
        return len(re.findall(r"\b(?:the|of)\b", text))

    # a pruned sentence keeps its forced words: more of them survive than without forcing, within the same budget
    assert count(forced["compressed_prompt"]) > count(plain["compressed_prompt"])
    assert forced["compressed_tokens"] <= int(0.33 * forced["origin_tokens"])


@pytest.mark.slow
def test_the_readme_call_with_the_default_preset(contexts: list[str], gpt4o: pz.Tokenizer) -> None:
    out = PromptCompressor(cache="memory").compress_prompt(
        contexts, instruction="", question=QUESTION, target_token=200
    )
    check_answer(out, gpt4o)
    assert out["compressed_tokens"] <= 200
    assert "330 metres" in out["compressed_prompt"]
