"""The GSM8K suites (``gsm8k-qa``, ``gsm8k-agnostic``), the per-suite merge of the eval report, and the fluency
figure (:mod:`promptzip.evals.fluency`)."""

from __future__ import annotations

import json
import random
import statistics
from pathlib import Path
from typing import Any

import pytest
from conftest import require_data

from promptzip.evals.metrics import answer_retained

# ------------------------------------------------------------------------------------------------ the suites


@pytest.fixture(scope="module")
def gsm8k_qa() -> Any:
    require_data("gsm8k")
    from promptzip.evals.suites import build_suite

    return build_suite("gsm8k-qa", 300)


def _paragraphs(item: Any) -> list[str]:
    return [item.context[s.start : s.end] for s in item.documents]


def test_the_builder_moved_and_the_traces_use_it() -> None:
    from promptzip.evals import _traces, records

    assert _traces.gsm8k_articles is records.gsm8k_articles
    assert _traces.GSM8K_GROUP == records.GSM8K_GROUP == 64
    assert records.gsm8k_asked("Tom has 3 apples. He eats one. How many apples does Tom have left?") == (
        "How many apples does Tom have left?"
    )
    assert records.gsm8k_asked("Tom has 3 apples. Find the rest.") == "Tom has 3 apples. Find the rest."


@pytest.mark.data
def test_gsm8k_qa_answers_are_only_in_the_gold_paragraph(gsm8k_qa: Any) -> None:
    from promptzip.evals.suites import GSM8K_ARTICLE

    assert gsm8k_qa.name == "gsm8k-qa"
    assert gsm8k_qa.regime == "query-aware"
    assert gsm8k_qa.kind == "qa"
    assert len(gsm8k_qa.items) == 300
    assert len({i.id for i in gsm8k_qa.items}) == 300
    for item in gsm8k_qa.items:
        (target,) = item.targets
        paragraphs = _paragraphs(item)
        assert len(paragraphs) == GSM8K_ARTICLE
        assert "\n\n".join(paragraphs) == item.context  # the documents tile the context
        assert target.gold in item.documents
        gold = item.context[target.gold.start : target.gold.end]
        assert gold.startswith("Problem: ")
        assert "\nSolution: " in gold
        assert "####" in gold
        assert answer_retained(gold, target.answers)
        assert not answer_retained(item.question or "", target.answers)
        others = [p for p in paragraphs if p != gold]
        assert len(others) == GSM8K_ARTICLE - 1
        assert not any(answer_retained(p, target.answers) for p in others), item.id
        assert item.question
        assert item.question in gold


@pytest.mark.data
def test_gsm8k_qa_is_a_seeded_sample_of_articles_the_size_of_squad_ones(gsm8k_qa: Any) -> None:
    from promptzip._tokenizers import get_tokenizer
    from promptzip.evals.suites import build_suite

    assert build_suite("gsm8k-qa", 300) == gsm8k_qa
    other = build_suite("gsm8k-qa", 300, seed=1)
    assert [i.id for i in other.items] != [i.id for i in gsm8k_qa.items]
    assert len({i.group for i in gsm8k_qa.items}) > 25  # drawn across the articles, not from a few
    tok = get_tokenizer("o200k_base")
    contexts = {i.context for i in gsm8k_qa.items}
    assert 5500 <= statistics.median(tok.count(c) for c in contexts) <= 7500
    quick = build_suite("gsm8k-qa", 10, quick=True)
    assert len(quick.items) == 10
    assert len({i.group for i in quick.items}) <= 2


@pytest.mark.data
def test_gsm8k_agnostic_targets_every_kept_question_of_each_article() -> None:
    require_data("gsm8k")
    from promptzip.evals.suites import build_suite, gsm8k_usable

    suite = build_suite("gsm8k-agnostic", 100)
    assert suite.regime == "task-agnostic"
    assert len(suite.items) == 32
    assert build_suite("gsm8k-agnostic", 100) == suite
    assert [i.id for i in build_suite("gsm8k-agnostic", 5).items] == [i.id for i in suite.items[:5]]
    for item in suite.items:
        assert item.question is None
        paragraphs = _paragraphs(item)
        assert len(item.targets) >= 5
        for target in item.targets:
            gold = item.context[target.gold.start : target.gold.end]
            assert sum(answer_retained(p, target.answers) for p in paragraphs) == 1
            assert answer_retained(gold, target.answers)
    qa = build_suite("gsm8k-qa", 10_000)
    assert len(qa.items) == sum(len(i.targets) for i in suite.items)  # the same questions, all of them
    assert gsm8k_usable  # the filter both suites share


def test_eval_sizes_and_the_listing_know_the_new_suites() -> None:
    from promptzip.evals.run import FULL_SIZES, QUICK_SIZES
    from promptzip.evals.suites import SUITES

    for name in ("gsm8k-qa", "gsm8k-agnostic"):
        assert name in SUITES
        assert name in FULL_SIZES
        assert name in QUICK_SIZES
    assert set(FULL_SIZES) == set(QUICK_SIZES) == set(SUITES)


# ------------------------------------------------------------------------------------------------ the merge


def _records(out: Path, suite: str, regime: str, kept: int) -> None:
    from promptzip.evals.runner import Record, _write_records

    meta = {
        "suite": suite,
        "regime": regime,
        "kind": "qa",
        "suite_description": f"synthetic {suite}",
        "suite_notes": [],
        "suite_items": 2,
        "ratios": [10.0],
        "items": 2,
        "method": "first-k",
        "slow": False,
        "settings": {"description": "first-k"},
        "retention_metric": 2,
    }
    records = [Record(suite, "first-k", 10.0, f"q{i}", "a", 1000, 100, 100, 0.01, 1, kept, kept) for i in range(2)]
    _write_records(out / "records" / suite / "first-k.jsonl.gz", {"meta": meta}, records)


def test_a_run_of_one_suite_keeps_the_other_suites_and_their_provenance(tmp_path: Path) -> None:
    from promptzip.evals.report import build_report

    _records(tmp_path, "squad-qa", "query-aware", 1)
    first = build_report(tmp_path, command="promptzip eval --suites squad-qa", notes=["load 12"])
    before = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert first["runs"]["squad-qa"]["command"] == "promptzip eval --suites squad-qa"

    _records(tmp_path, "gsm8k-qa", "query-aware", 0)
    build_report(tmp_path, command="promptzip eval --suites gsm8k-qa", notes=["load 1"])
    after = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert after["suites"]["squad-qa"] == before["suites"]["squad-qa"]
    assert after["runs"]["squad-qa"] == before["runs"]["squad-qa"]
    assert after["runs"]["gsm8k-qa"]["command"] == "promptzip eval --suites gsm8k-qa"
    assert after["runs"]["gsm8k-qa"]["notes"] == ["load 1"]
    text = (tmp_path / "results.md").read_text(encoding="utf-8")
    assert "## squad-qa" in text
    assert "## gsm8k-qa" in text
    assert text.index("## squad-qa") < text.index("## gsm8k-qa")
    assert "Run note: load 12." in text
    assert "Run note: load 1." in text

    # a suite whose record files are gone keeps its last figures and their provenance
    (tmp_path / "records" / "squad-qa" / "first-k.jsonl.gz").unlink()
    build_report(tmp_path, command="promptzip eval --report-only")
    kept = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert kept["suites"]["squad-qa"] == before["suites"]["squad-qa"]
    assert kept["runs"]["squad-qa"] == before["runs"]["squad-qa"]
    assert kept["runs"]["gsm8k-qa"] == after["runs"]["gsm8k-qa"]


def test_results_written_before_per_suite_provenance_keep_their_meta(tmp_path: Path) -> None:
    from promptzip.evals.report import NOTES, build_report

    _records(tmp_path, "squad-qa", "query-aware", 1)
    built = build_report(tmp_path, command="x")
    legacy = {
        "meta": {
            "generated": "2026-12-02 02:39 UTC",
            "command": "promptzip eval",
            "machine": "m",
            "notes": [*NOTES, "old"],
        },
        "suites": built["suites"],
    }
    (tmp_path / "results.json").write_text(json.dumps(legacy), encoding="utf-8")
    rebuilt = build_report(tmp_path, command="promptzip eval --report-only")
    assert rebuilt["suites"] == legacy["suites"]
    assert rebuilt["runs"]["squad-qa"] == {
        "generated": "2026-12-02 02:39 UTC",
        "command": "promptzip eval",
        "machine": "m",
        "notes": ["old"],
    }


# ------------------------------------------------------------------------------------------------ fluency


def _scored(method: str, item: str, nll: float, retained: bool) -> Any:
    from promptzip.evals.fluency import Scored

    return Scored(method, 20.0, item, 100, nll, 2.0, 2.5, retained)


def test_fluency_rows_compare_each_method_with_random_sentences_on_the_same_items() -> None:
    from promptzip.evals.fluency import summarize

    items = [f"q{i}" for i in range(20)]
    scored = [_scored("random-sentences", i, 2.6 + 0.01 * k, k % 2 == 0) for k, i in enumerate(items)]
    scored += [_scored("promptzip-fast", i, 2.6 + 0.01 * k, True) for k, i in enumerate(items)]  # as fluent
    scored += [_scored("promptzip-token-classifier", i, 3.4 + 0.01 * k, k % 2 == 0) for k, i in enumerate(items)]
    scored += [_scored("promptzip-balanced", i, 3.4 + 0.01 * k, True) for k, i in enumerate(items)]
    rows = {r.method: r for r in summarize(scored)}
    assert rows["random-sentences"].excess_over_anchor is None
    assert rows["random-sentences"].verdict == ""
    assert rows["promptzip-fast"].ratio_to_original[0] == pytest.approx(rows["random-sentences"].ratio_to_original[0])
    assert rows["promptzip-fast"].verdict == "not markedly less fluent"
    assert rows["promptzip-token-classifier"].excess_over_anchor is not None
    assert rows["promptzip-token-classifier"].excess_over_anchor[0] == pytest.approx(0.4)
    assert rows["promptzip-token-classifier"].verdict == "less fluent without a retention gain"
    assert rows["promptzip-balanced"].verdict.startswith("less fluent, retention gain +50.0")
    assert rows["promptzip-balanced"].difference[0] == pytest.approx(1.4 + 0.095)
    assert rows["promptzip-balanced"].retention == 1.0


@pytest.fixture(scope="module")
def scorer() -> Any:
    from promptzip.evals.fluency import NLLScorer

    return NLLScorer()


@pytest.mark.slow
def test_a_fluent_sentence_has_a_lower_nll_than_its_words_shuffled(scorer: Any) -> None:
    sentence = (
        "Janet's ducks lay sixteen eggs per day. She eats three for breakfast every morning and bakes muffins for "
        "her friends every day with four of them."
    )
    words = sentence.split()
    shuffled = words[:]
    random.Random(0).shuffle(shuffled)
    assert shuffled != words
    fluent, scrambled = scorer.mean_nll(sentence), scorer.mean_nll(" ".join(shuffled))
    assert 0 < fluent < scrambled
    assert scorer.mean_nll(sentence) == fluent  # scored once, the same again


@pytest.mark.slow
def test_long_texts_are_scored_in_windows_of_every_token(scorer: Any) -> None:
    from promptzip.evals.fluency import NLLScorer

    text = " ".join(f"Step {k}: add {k} apples to the basket, then count them again." for k in range(12))
    small = NLLScorer(window=32)
    scored = small.score(text)
    n = len(small.tokens(text))
    assert n > 3 * 31
    assert len(scored.nll) == n
    assert scored.position[:3] == (0, 1, 2)
    assert max(scored.position) == 30
    assert scored.position[31] == 0
    whole = scorer.score(text)  # one window of 1024: more context, lower NLL
    assert len(whole.nll) == n
    assert whole.mean < scored.mean
    assert whole.mean_below(31) == pytest.approx(sum(whole.nll[:31]) / 31)
    assert small.score("").nll == ()


@pytest.mark.slow
@pytest.mark.data
def test_the_fluency_cli_writes_its_tables(tmp_path: Path) -> None:
    require_data("gsm8k")
    from promptzip.evals.fluency import main

    argv = ["--suites", "gsm8k-qa,squad-qa", "--methods", "random-sentences,bm25-sentences", "--n", "2"]
    # float32 on all cores: bfloat16 autocast on one thread, the eval's default, is emulated (and ~10x slower) on a
    # CPU without native bfloat16, such as CI's; the tables are what this test checks, not the figures
    argv += ["--float32", "--threads", "0"]
    assert main([*argv, "--articles", "1", "--window", "512", "--out", str(tmp_path), "--no-progress"]) == 0
    results = json.loads((tmp_path / "fluency.json").read_text(encoding="utf-8"))
    meta = results["meta"]
    assert meta["command"].startswith("python -P -m promptzip.evals.fluency --suites gsm8k-qa,squad-qa")
    assert len(meta["load_average_before_after"]) == 2
    suite = results["suites"]["gsm8k-qa"]
    assert suite["items"] == 2
    assert suite["articles"] == 1
    rows = suite["rows"]
    assert {(r["method"], r["ratio"]) for r in rows} == {
        (m, r) for m in ("random-sentences", "bm25-sentences") for r in (10.0, 20.0, 50.0)
    }
    for r in rows:
        assert r["items"] == 2
        assert r["nll"] > 0
        assert r["ratio_to_original"][0] > 0
    text = (tmp_path / "fluency.md").read_text(encoding="utf-8")
    assert "## gsm8k-qa" in text
    assert "| bm25-sentences | 20x | 2 |" in text
    if "squad-qa" in meta["skipped"]:  # SQuAD's release was withdrawn: said, not silently dropped
        assert "`squad-qa` skipped" in text
