"""Word-level pruning: units, force-keep rules, rate/target/threshold, cutting by offsets, bad input."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import promptzip as pz
from promptzip._cache import MemoryCache
from promptzip._types import TokenScores
from promptzip.compressors.pruning import forced_mask, group_tokens, phrase_groups, prune_scores, word_units
from promptzip.compressors.token_prune import TokenPruneCompressor
from promptzip.compressors.token_scores import (
    BatchTokenScorer,
    RandomTokenScorer,
    WordLengthScorer,
    cached_token_scores,
)

TOK = pz.get_tokenizer("gpt-4o")


def units_of(text: str) -> list[str]:
    s, e = word_units(text)
    return [text[a:b] for a, b in zip(s.tolist(), e.tolist(), strict=True)]


def forced_of(text: str, **kw: object) -> list[str]:
    s, e = word_units(text)
    mask = forced_mask(text, s, e, **kw)  # type: ignore[arg-type]
    return [text[a:b] for a, b, m in zip(s.tolist(), e.tolist(), mask.tolist(), strict=True) if m]


def scores_for(text: str, values: list[float] | None = None, seed: int = 0) -> TokenScores:
    s, e = word_units(text)
    v = np.random.default_rng(seed).random(len(s)) if values is None else np.asarray(values)
    return TokenScores(text, tuple(s.tolist()), tuple(e.tolist()), tuple(float(x) for x in v))


def test_units_split_punctuation_off_words() -> None:
    assert units_of('The (Eiffel) tower, "in" Paris.') == [
        "The",
        "(",
        "Eiffel",
        ")",
        "tower",
        ",",
        '"',
        "in",
        '"',
        "Paris",
        ".",
    ]
    assert units_of("U.S. policy... well-known e.g., —") == ["U.S.", "policy", "...", "well-known", "e.g", ".,", "—"]
    assert units_of("") == []
    assert units_of(" \n\t ") == []


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("It costs 1,083 dollars in 2024.", ["1,083", "2024"]),
        ("Ticket AB-1234 and issue #93 for @alice", ["AB-1234", "#93", "@alice"]),
        ("See https://example.org/a?b=1 or www.x.com now", ["https://example.org/a?b=1", "www.x.com"]),
        ("Mail jane.doe+x@mail.example.com today", ["jane.doe+x@mail.example.com"]),
        ("Call my_func with fooBar and np.linalg.norm please", ["my_func", "fooBar", "np.linalg.norm"]),
        ("We ran build() before the NASA test", ["build(", "NASA"]),
    ],
)
def test_force_keep_rules(text: str, kept: list[str]) -> None:
    forced = forced_of(text)
    for word in kept:
        assert word in forced, (word, forced)
    assert "the" not in forced
    assert "We" not in forced


def test_speaker_labels_and_user_tokens_are_forced() -> None:
    text = "Alice: hello there friend\nDr. Smith: fine thanks\nnot a label: here"
    forced = forced_of(text, force_tokens=["friend", "?"])
    assert forced[:2] == ["Alice", ":"]
    assert {"Dr", ".", "Smith", "friend"} <= set(forced)
    assert "label" not in forced
    assert forced_of("Is it? Yes", force_tokens=["?"]) == ["?"]


def test_prune_rate_keeps_best_words_and_forced_ones() -> None:
    text = "alpha beta gamma delta 42 epsilon zeta"
    values = [0.9, 0.1, 0.8, 0.2, 0.0, 0.7, 0.3]
    p = prune_scores(scores_for(text, values), rate=0.5)  # 7 units → 3 kept: the forced number and the best two
    assert p.text == "alpha gamma 42"
    assert p.forced == 1
    assert p.utility == pytest.approx(0.9 + 0.8 + 0.0)
    assert [text[s.start : s.end] for s in p.kept] == ["alpha", "gamma", "42"]
    assert prune_scores(scores_for(text, values), rate=0.7).text == "alpha gamma 42 epsilon"


def test_threshold_mode() -> None:
    text = "alpha beta gamma delta"
    p = prune_scores(scores_for(text, [0.9, 0.1, 0.5, 0.49]), threshold=0.5)
    assert p.text == "alpha gamma"


def test_exactly_one_mode_is_required() -> None:
    ts = scores_for("a b c")
    with pytest.raises(pz.ConfigError, match="exactly one"):
        prune_scores(ts)
    with pytest.raises(pz.ConfigError, match="exactly one"):
        prune_scores(ts, rate=0.5, threshold=0.5)
    with pytest.raises(pz.ConfigError, match=r"\(0, 1\]"):
        prune_scores(ts, rate=0.0)


@pytest.mark.parametrize("target", [0, 5, 17, 40, 500])
def test_target_tokens_is_exact_in_the_target_tokenizer(article: str, target: int) -> None:
    p = prune_scores(scores_for(article, seed=target), target_tokens=target, tokenizer=TOK)
    forced_only = prune_scores(scores_for(article, seed=target), target_tokens=0, tokenizer=TOK)
    assert p.tokens == TOK.count(p.text)
    assert p.tokens <= max(target, forced_only.tokens)


def test_rates_are_close_to_the_kept_fraction(article: str) -> None:
    total = TOK.count(article)
    for rate in (0.33, 0.5, 0.7):
        p = prune_scores(scores_for(article), rate=rate, tokenizer=TOK)
        assert p.tokens <= rate * total + 1
        assert p.tokens >= (rate - 0.15) * total


def test_output_is_cut_from_the_original_never_detokenized() -> None:
    text = "Ünïcödé CaSe   spacing: naïve café — 東京タワー is tall; ΑΒΓ test\nnext line 😀 here."
    for seed in range(20):
        p = prune_scores(scores_for(text, seed=seed), rate=0.5)
        # every kept span is source text, and the output is the spans joined by one separator each
        pieces = [text[s.start : s.end] for s in p.kept]
        rebuilt = re.sub(r"[ \n]", "", p.text)
        assert rebuilt == "".join(pieces).replace(" ", "").replace("\n", "")
        for word in p.text.split():
            assert word in text  # no merged junk words
    assert "   " in prune_scores(scores_for(text, [1.0] * len(units_of(text))), rate=1.0).text


def test_joins_keep_line_breaks_and_attached_punctuation() -> None:
    text = "Alice: the tower Paris, is tall\nBob: so what"
    values = [1, 1, 0, 1, 0, 1, 0, 1, 1, 1, 1, 0]  # Alice : the tower Paris , is tall Bob : so what
    p = prune_scores(scores_for(text, [float(v) for v in values]), threshold=0.5)
    assert p.text == "Alice: tower tall\nBob: so"  # the comma went with "Paris"
    values[4] = 1
    assert (
        prune_scores(scores_for(text, [float(v) for v in values]), threshold=0.5).text
        == "Alice: tower Paris, tall\nBob: so"
    )


def test_orphan_punctuation_is_dropped_with_its_word() -> None:
    text = "He said (quietly) hello."
    p = prune_scores(scores_for(text, [1, 1, 1, 0, 1, 1, 1]), threshold=0.5)
    assert p.text == "He said hello."


def test_group_tokens_for_offsets_of_any_shape() -> None:
    text = " Paris, France"
    s, e = word_units(text)  # Paris , France
    # byte-level style tokens that carry their leading space, one covering "Paris," whole
    ts, te = np.array([0, 7]), np.array([7, 14])
    assert group_tokens(s, e, ts, te, np.array([0.2, 0.8])).tolist() == [0.2, 0.2, 0.8]
    summed = group_tokens(
        s, e, np.array([0, 4, 6, 7]), np.array([4, 6, 7, 14]), np.array([1.0, 2.0, 3.0, 4.0]), how="sum"
    )
    assert summed.tolist() == [3.0, 3.0, 4.0]
    assert group_tokens(s[:0], e[:0], ts, te, np.array([0.1, 0.2])).tolist() == []


def test_phrases_end_at_punctuation_and_function_words() -> None:
    text = "the big red house, in the old town"
    ids = phrase_groups(text, *word_units(text)).tolist()
    assert ids == [0, 0, 0, 0, 1, 2, 3, 3, 3]


class CountingScorer(WordLengthScorer):
    name = "counting"

    def __init__(self) -> None:
        self.texts = 0

    def _score_texts(self, texts, units, question=None):  # type: ignore[no-untyped-def]
        self.texts += len(texts)
        return super()._score_texts(texts, units, question)


def test_scores_are_cached_so_another_rate_costs_no_model_call(article: str) -> None:
    scorer = CountingScorer()
    pruner = TokenPruneCompressor(scorer, cache=MemoryCache())
    a = pruner.prune(article, rate=0.5, tokenizer="gpt-4o")
    b = pruner.prune(article, rate=0.33, tokenizer="gpt-4o")
    c = pruner.prune(article, threshold=0.5)
    assert scorer.texts == 1
    assert b.tokens < a.tokens
    assert c.text
    again = cached_token_scores(scorer, [article, article], pruner.cache)
    assert scorer.texts == 1
    assert again[0].scores == again[1].scores


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n\t  ",
        "😀😀 🎉🎉🎉 👍",
        "x" * 200_000,
        "Mixed: English, 中文句子, русский текст, العربية, हिन्दी 123.",
    ],
)
def test_bad_and_odd_input(text: str) -> None:
    pruner = TokenPruneCompressor(RandomTokenScorer(), cache=MemoryCache())
    started = time.perf_counter()
    p = pruner.prune(text, rate=0.5, tokenizer="gpt-4o")
    assert time.perf_counter() - started < 20
    assert p.tokens == TOK.count(p.text)
    assert all(text[s.start : s.end] in p.text for s in p.kept)
    if not text.strip():
        assert p.text == ""
        assert p.kept == ()


def test_non_str_input_is_an_input_error() -> None:
    pruner = TokenPruneCompressor(WordLengthScorer())
    with pytest.raises(pz.InputError, match="must be str"):
        pruner.prune(42, rate=0.5)  # type: ignore[arg-type]
    with pytest.raises(pz.InputError, match="must be str"):
        WordLengthScorer().token_scores_many(["ok", None])  # type: ignore[list-item]


def test_a_huge_text_is_pruned_in_linear_time() -> None:
    words = np.random.default_rng(0).choice(["alpha", "beta,", "gamma", "(delta)", "42", "eps.", "\n"], 60_000)
    text = " ".join(words.tolist())
    ts = RandomTokenScorer().token_scores_many([text])[0]
    started = time.perf_counter()
    p = prune_scores(ts, rate=0.33, tokenizer=TOK)
    assert time.perf_counter() - started < 10
    assert p.tokens <= 0.34 * TOK.count(text)


def test_batch_scorer_is_a_token_scorer() -> None:
    assert isinstance(WordLengthScorer(), BatchTokenScorer)
    ts = WordLengthScorer().token_scores(pz.Chunk("tiny words, extraordinary"))
    assert ts.scores[-1] > ts.scores[0]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=st.text(st.sampled_from(list("ab1 ,.\n(é😀-:")), max_size=80),
    rate=st.floats(0.05, 1.0),
    seed=st.integers(0, 1000),
)
def test_property_spans_are_source_text_and_budget_holds(text: str, rate: float, seed: int) -> None:
    ts = scores_for(text, seed=seed)
    p = prune_scores(ts, rate=rate, tokenizer=TOK)
    assert p.tokens == TOK.count(p.text)
    for span in p.kept:
        assert text[span.start : span.end] in p.text
        assert span.end > span.start
    assert all(a.end <= b.start for a, b in zip(p.kept, p.kept[1:], strict=False))


# -- readable runs ---------------------------------------------------------------------------------------------------
PROSE = (
    "You may convey verbatim copies of the Program's source code as you receive it, in any medium. "
    "Section 5 applies. "
    "You may charge any price or no price for each copy that you convey, and you may offer support for a fee. "
    "Them if you wish, you can receive source code or get it if you want it. Yes."
)


def word_count(text: str) -> int:
    return sum(1 for u in units_of(text) if re.search(r"\w", u))


def sentence_of(text: str, start: int) -> str:
    from promptzip._split import sentence_spans

    return next(text[a:b] for a, b in sentence_spans(text) if a <= start < b)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(st.floats(0.0, 1.0), min_size=len(units_of(PROSE)), max_size=len(units_of(PROSE))),
    rate=st.floats(0.05, 1.0),
    exact=st.booleans(),
)
def test_property_kept_runs_are_never_shorter_than_the_minimum(values: list[float], rate: float, exact: bool) -> None:
    p = prune_scores(scores_for(PROSE, values), rate=rate, tokenizer=TOK if exact else None, min_run=3, min_words=4)
    from promptzip._split import sentence_spans

    for a, b in sentence_spans(PROSE):  # a kept span may run on into the next sentence: judge each sentence's part
        sentence = PROSE[a:b]
        parts = [PROSE[max(a, s.start) : min(b, s.end)] for s in p.kept if s.start < b and s.end > a]
        for run in parts:
            assert word_count(run) >= min(3, word_count(sentence)), (run, p.text)
        kept = sum(word_count(run) for run in parts)
        assert kept == 0 or kept >= min(4, word_count(sentence)), (sentence, p.text)  # some words: at least four
    assert "5" in p.text  # forced units are still forced...
    assert "Section 5 applies" in p.text  # ...inside a run, never alone


def test_the_reported_noise_cannot_come_back() -> None:
    text = "Them if you wish, you can receive source code or get it if you want it."
    words = units_of(text)
    # the scores that produced "them if wish that receive source code or get it if": every other word
    values = [float(i % 2 == 0) for i in range(len(words))]
    salad = prune_scores(scores_for(text, values), rate=0.5)
    assert max(len(text[s.start : s.end].split()) for s in salad.kept) < 3  # word by word (min_run=1): salad
    readable = prune_scores(scores_for(text, values), rate=0.5, min_run=3, min_words=4)
    assert all(len(text[s.start : s.end].split()) >= 3 for s in readable.kept), readable.text
    lone = "Then item 5 was moved to the archive by the clerk."
    p = prune_scores(scores_for(lone, [0.0] * len(units_of(lone))), rate=0.05, min_run=3, min_words=4)
    assert p.text != "5"
    assert word_count(p.text) >= 4
    assert "5" in p.text


def test_threshold_mode_keeps_runs_too() -> None:
    values = [float(i % 3 == 0) for i in range(len(units_of(PROSE)))]
    p = prune_scores(scores_for(PROSE, values), threshold=0.5, min_run=3, min_words=4)
    assert all(word_count(PROSE[s.start : s.end]) >= 3 for s in p.kept)
    with pytest.raises(pz.ConfigError, match="min_run"):
        prune_scores(scores_for(PROSE), rate=0.5, min_run=0)


@pytest.mark.parametrize("seed", range(6))
def test_balanced_variants_keep_runs_and_a_floor_of_words(seed: int) -> None:
    from promptzip.compressors.extractive import ExtractiveCompressor
    from promptzip.compressors.token_prune import PrunedExtractiveCompressor
    from promptzip.testing import KeywordScorer

    compressor = PrunedExtractiveCompressor(ExtractiveCompressor(KeywordScorer()), RandomTokenScorer(seed))
    chunk = pz.Chunk(PROSE)
    (group,) = compressor.propose([chunk], "May I charge a price for a copy of the source code?", TOK)
    pruned = [v for v in group if "prune" in v.kind]
    assert pruned
    for v in pruned:
        assert word_count(v.text) >= 4, v.text  # never a lone "5"
        for span in v.kept:
            run = PROSE[span.start : span.end]
            assert word_count(run) >= min(3, word_count(sentence_of(PROSE, span.start))), (run, v.text)
        assert v.tokens == TOK.count(v.text)
    with pytest.raises(pz.ConfigError, match="min_run"):
        PrunedExtractiveCompressor(ExtractiveCompressor(KeywordScorer()), RandomTokenScorer(), min_words=0)
