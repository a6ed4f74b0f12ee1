"""The eval harness: metrics, methods, the baseline worker's protocol, reports, and the ``--quick`` run end to end
on real data (what CI runs)."""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import require_data

from promptzip._types import Span
from promptzip.evals.metrics import (
    RETENTION_METRIC,
    answer_retained,
    exact_match,
    lcs_length,
    mean_interval,
    spans_overlap,
    squad_f1,
    summary_recall,
    wilson_interval,
)
from promptzip.evals.suites import SUITES, Item, Target

# ------------------------------------------------------------------------------------------------ metrics


def test_squad_em_and_f1() -> None:
    assert exact_match("The Eiffel Tower.", ["eiffel tower"]) == 1.0
    assert exact_match("Eiffel", ["eiffel tower"]) == 0.0
    assert squad_f1("Eiffel", ["eiffel tower"]) == pytest.approx(2 / 3)
    assert squad_f1("", ["x"]) == 0.0


def test_retention_treats_unicode_punctuation_as_punctuation() -> None:
    kept = "Kohr's book—known for its statement “Whenever something is wrong, something is too big”—was read."
    assert answer_retained(kept, ["Whenever something is wrong, something is too big"])
    assert answer_retained(kept, ["“Whenever something is wrong, something is too big”"])
    assert answer_retained("«Paris»", ["Paris"])
    assert answer_retained("¿Paris?", ["paris"])
    assert answer_retained("It opened in 1889.", ["1889"])
    assert not answer_retained("It opened in 18890.", ["1889"])  # still whole words only
    assert not answer_retained("The Eiffel Tower", ["Tower of Babel"])
    assert not answer_retained("anything", ["", "  "])  # an empty answer matches nothing
    # SQuAD's EM keeps the official (ASCII) normalization
    assert exact_match("“Paris”", ["Paris"]) == 0.0
    assert exact_match('"Paris"', ["Paris"]) == 1.0


def test_summary_recall_is_recall_only() -> None:
    reference = "The tower opened in 1889 in Paris."
    assert summary_recall(reference + " Much more text follows here.", reference)["rougeL"] == 1.0
    half = summary_recall("The tower opened.", reference)
    assert 0 < half["content"] < 1
    assert 0 < half["rouge1"] < 1
    assert summary_recall("", reference) == {"content": 0.0, "rouge1": 0.0, "rougeL": 0.0}
    assert lcs_length("a b c d".split(), "a x c d".split()) == 3


def test_intervals() -> None:
    lo, hi = wilson_interval(50, 100)
    assert lo < 0.5 < hi
    assert hi - lo < 0.21
    mean, lo, hi = mean_interval([0.2, 0.4, 0.6])
    assert mean == pytest.approx(0.4)
    assert lo < mean < hi
    assert math.isnan(mean_interval([])[0])
    assert spans_overlap([Span(0, 5)], Span(4, 9))
    assert not spans_overlap([Span(0, 4)], Span(4, 9))


# ------------------------------------------------------------------------------------------------ methods


def _item() -> Item:
    paragraphs = [
        "Bananas are elongated, edible fruit. They grow in clusters.",
        "The Eiffel Tower was designed by the company of Gustave Eiffel. It opened in 1889.",
        "Paris hosted the 2024 Summer Olympics. Beach volleyball was played near the tower.",
    ]
    context = "\n\n".join(paragraphs)
    start = context.index("The Eiffel")
    gold = Span(start, start + len(paragraphs[1]))
    return Item("t1", context, "Whose company designed the Eiffel Tower?", (Target(("Gustave Eiffel",), gold),))


@pytest.mark.parametrize("name", ["first-k", "random-sentences", "random-tokens", "oracle"])
def test_simple_methods_fit_the_budget_and_are_deterministic(name: str) -> None:
    from promptzip._tokenizers import get_tokenizer
    from promptzip.evals.methods import create_method

    tok = get_tokenizer("o200k_base")
    item = _item()
    method = create_method(name, seed=3)
    for budget in (5, 12, 30):
        out = method.compress(item, budget)
        assert tok.count(out.text) <= budget
        assert out.seconds is not None
        assert out.seconds >= 0
        assert method.compress(item, budget).text == out.text
    if name == "oracle":
        assert "Gustave Eiffel" in method.compress(item, 8).text


def test_registry_lists_presets_first_and_the_baselines() -> None:
    from promptzip.evals.methods import method_names

    names = method_names()
    assert names[0].startswith("promptzip-")
    assert "promptzip-fast" in names
    assert {"llmlingua", "longllmlingua", "selective-context"} <= set(method_names(slow=True))
    assert "llmlingua" not in method_names(slow=False)


def test_methods_say_where_they_apply() -> None:
    from promptzip.evals.methods import create_method

    assert not create_method("oracle").applies_to("task-agnostic", "qa")
    assert not create_method("langchain-embeddings-filter").applies_to("task-agnostic", "summary")
    assert create_method("first-k").applies_to("task-agnostic", "summary")


def test_baseline_worker_protocol(tmp_path: Path) -> None:
    """The worker answers in order on its own channel, reports errors as answers, and stays alive."""
    from promptzip.evals.baselines import BaselineWorker

    worker = BaselineWorker(Path(sys.executable), model=str(tmp_path))
    try:
        assert worker.ask({"op": "rss"})["peak_rss_mb"] > 0
        assert worker.versions["model"] == str(tmp_path)
        with pytest.raises(RuntimeError, match="unknown op"):
            worker.ask({"op": "nonsense"})
        with pytest.raises(RuntimeError, match="unknown method"):
            worker.ask({"op": "compress", "method": "nonsense", "contexts": ["x"], "budget": 3})
        assert worker.ask({"op": "hello"})["ok"]
    finally:
        worker.close()


def test_missing_baselines_environment_is_an_error_not_a_skip(tmp_path: Path) -> None:
    from promptzip._errors import ConfigError
    from promptzip.evals.baselines import BaselineWorker

    with pytest.raises(ConfigError, match=r"baselines_venv\.sh"):
        BaselineWorker(tmp_path / "nope" / "python", model="x").ask({"op": "hello"})


# ------------------------------------------------------------------------------------------------ report


def test_report_from_records(tmp_path: Path) -> None:
    from promptzip.evals.report import build_report
    from promptzip.evals.runner import Record, _write_records

    meta = {
        "suite": "squad-qa",
        "regime": "query-aware",
        "kind": "qa",
        "suite_description": "synthetic",
        "suite_notes": [],
        "suite_items": 2,
        "ratios": [10.0, 20.0],
        "items": 2,
    }
    for method, slow, kept in (("promptzip-fast", False, 1), ("llmlingua", True, 0)):
        records = [
            Record("squad-qa", method, r, f"q{i}", "a", 1000, int(1000 / r), int(1000 / r), 0.5, 1, kept, kept)
            for i in range(2)
            for r in (10.0, 20.0)
        ]
        records.append(Record("squad-qa", method, 10.0, "q9", "b", 1000, 100, targets=1, error="ValueError: boom"))
        header = {"meta": {**meta, "method": method, "slow": slow, "settings": {"description": method}}}
        if not slow:  # the slow baseline's file predates the metric's version field: scored with v1
            header["meta"]["retention_metric"] = RETENTION_METRIC
        _write_records(tmp_path / "records" / "squad-qa" / f"{method}.jsonl.gz", header, records)
    results = build_report(tmp_path, command="test")
    stats = results["suites"]["squad-qa"]["methods"]["promptzip-fast"]["by_ratio"]["10.0"]
    assert stats["failures"] == 1
    assert stats["targets"] == 3
    assert stats["retention"] == pytest.approx(2 / 3)
    assert results["suites"]["squad-qa"]["paired_items"] == 3
    text = (tmp_path / "results.md").read_text(encoding="utf-8")
    assert "| promptzip-fast |" in text
    assert "| llmlingua † |" in text
    assert "† llmlingua: records scored with retention metric v1" in text
    assert "Paired" in text
    assert "ValueError" not in text
    for png in ("retention.png", "latency.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_runs_only_failed_or_missing_items(tmp_path: Path) -> None:
    from promptzip.evals.methods import Method, Output
    from promptzip.evals.runner import _read_record_file, _write_records, load_records, run_method
    from promptzip.evals.suites import Suite

    class Flaky(Method):
        name = "flaky"

        def __init__(self, broken: set[str]) -> None:
            self.broken = broken
            self.calls: list[str] = []

        def _compress(self, item: Item, budget: int) -> Output:
            self.calls.append(item.id)
            if item.id in self.broken:
                raise ValueError("boom")
            return Output(item.context[:20])

    items = tuple(
        Item(f"i{k}", "Gustave Eiffel built it. " * 8, "Who built it?", (Target(("Gustave Eiffel",)),))
        for k in range(3)
    )
    suite = Suite("toy", "query-aware", "qa", (10.0,), items, "toy")
    first = run_method(suite, Flaky({"i1"}), tmp_path, n_slow=1, progress=False)
    assert [r.error is not None for r in first] == [False, True, False]
    fixed = Flaky(set())
    run_method(suite, fixed, tmp_path, n_slow=1, progress=False, resume=True)
    assert fixed.calls == ["i1"]
    _, records = load_records(tmp_path)
    assert sorted(r.item for r in records) == ["i0", "i1", "i2"]
    assert all(r.error is None and r.retained == 1 for r in records)
    # records scored with an older retention metric are all run again
    path = tmp_path / "records" / "toy" / "flaky.jsonl.gz"
    meta, kept = _read_record_file(path)
    assert meta["retention_metric"] == RETENTION_METRIC
    _write_records(path, {"meta": {**meta, "retention_metric": RETENTION_METRIC - 1}}, kept)
    again = Flaky(set())
    run_method(suite, again, tmp_path, n_slow=1, progress=False, resume=True)
    assert again.calls == ["i0", "i1", "i2"]
    assert _read_record_file(path)[0]["retention_metric"] == RETENTION_METRIC


def test_cli_hook_lists_methods() -> None:
    from promptzip.evals._cli import add_eval_commands

    parser = argparse.ArgumentParser()
    add_eval_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["eval", "--list"])
    out, err = io.StringIO(), io.StringIO()
    assert args.func(args, out, err) == 0
    assert "squad-qa" in out.getvalue()
    assert "langchain-embeddings-filter" in out.getvalue()
    assert parser.parse_args(["bench", "--sizes", "1000"]).sizes == "1000"


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["bench", "--sizes", "abc"], "--sizes takes comma-separated positive ints"),
        (["bench", "--sizes", "0"], "--sizes takes comma-separated positive ints"),
        (["bench", "--sizes", "1000", "--presets", "nope"], "unknown preset 'nope'"),
        (["bench", "--presets", "none", "--llmlingua", "nope"], "unknown llmlingua method 'nope'"),
        (["bench", "--llmlingua-sizes", "1k"], "--llmlingua-sizes takes comma-separated positive ints"),
        (["eval", "--suites", "nope"], "unknown suite 'nope'"),
        (["eval", "--n", "squad-qa=x"], "--n takes SUITE=N"),
        (["eval", "--n", "nope=3"], "unknown suite 'nope'"),
    ],
)
def test_eval_and_bench_refuse_bad_arguments_before_running_or_writing(
    argv: list[str], said: str, tmp_path: Path
) -> None:
    """A typo is exit 2 and one line, never a traceback, and no report is written over the results."""
    from promptzip.evals._cli import add_eval_commands

    parser = argparse.ArgumentParser()
    add_eval_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args([*argv, "--out", str(tmp_path)])
    out, err = io.StringIO(), io.StringIO()
    assert args.func(args, out, err) == 2
    assert said in err.getvalue()
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------------ quick run


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    require_data("squad", "quoref", "drop", "summaries")
    from promptzip.evals.run import EvalConfig, run_eval

    out = tmp_path_factory.mktemp("quick")
    # one torch thread, as the eval CLI uses by default (much faster on a busy 2-core machine); restored after
    results = run_eval(EvalConfig(out=out, quick=True, progress=False, threads=1))
    results["_out"] = out
    return results


def _by_ratio(results: dict[str, Any], suite: str, method: str) -> dict[str, Any]:
    by_ratio: dict[str, Any] = results["suites"][suite]["methods"][method]["by_ratio"]
    return by_ratio


@pytest.mark.slow
@pytest.mark.data
def test_quick_run_writes_results_tables_and_plots(quick: dict[str, Any]) -> None:
    out: Path = quick["_out"]
    saved = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert set(saved["suites"]) == set(SUITES)  # every suite, the GSM8K ones included
    text = (out / "results.md").read_text(encoding="utf-8")
    for name in ("promptzip-fast", "first-k", "random-sentences", "random-tokens", "oracle"):
        assert f"| {name} |" in text
    for png in ("retention.png", "latency.png"):
        blob = (out / png).read_bytes()
        assert blob[:8] == b"\x89PNG\r\n\x1a\n"
        assert len(blob) > 10_000
    assert len(list((out / "records").glob("*/*.jsonl.gz"))) >= 6 * 4
    for suite in saved["suites"].values():
        for method, entry in suite["methods"].items():
            assert not entry["slow"], f"--quick ran the slow baseline {method}"
            for stats in entry["by_ratio"].values():
                assert stats["failures"] == 0, (method, stats["failure_examples"])


@pytest.mark.slow
@pytest.mark.data
def test_quick_run_is_sane(quick: dict[str, Any]) -> None:
    for suite in ("squad-qa", "quoref-qa", "drop-qa"):
        oracle = _by_ratio(quick, suite, "oracle")
        for method in quick["suites"][suite]["methods"]:
            for ratio, stats in _by_ratio(quick, suite, method).items():
                assert oracle[ratio]["retention"] >= stats["retention"], (suite, method, ratio)
    squad = quick["suites"]["squad-qa"]["methods"]
    assert squad["first-k"]["by_ratio"]["10.0"]["retention"] <= squad["promptzip-fast"]["by_ratio"]["10.0"]["retention"]
    for name, suite in quick["suites"].items():
        for method, entry in suite["methods"].items():
            for ratio, stats in entry["by_ratio"].items():
                if method.startswith("promptzip-"):
                    assert stats["over_budget"] == 0, (name, method, ratio)
                if method in ("first-k", "random-tokens", "random-sentences") or method.startswith("promptzip-"):
                    achieved, target = stats["achieved_ratio_median"], float(ratio)
                    assert 0.95 * target <= achieved <= 1.6 * target, (name, method, ratio, achieved)


def test_the_readme_results_table_is_written_between_its_markers(tmp_path: Path) -> None:
    from promptzip.evals.report import README_END, README_START, update_readme

    def stats(retention: float) -> dict[str, object]:
        return {"items": 4, "targets": 4, "retention": retention, "retention_ci": [retention - 0.1, retention + 0.1]}

    results = {
        "suites": {
            "squad-qa": {
                "kind": "qa",
                "ratios": [10.0, 20.0, 50.0],
                "methods": {
                    "weak": {
                        "by_ratio": {"10.0": stats(0.5), "20.0": stats(0.25), "50.0": stats(0.25)},
                        "retention_metric": 1,  # an older record file: marked, with the note under the table
                    },
                    "strong": {"by_ratio": {"10.0": stats(0.75), "20.0": stats(0.5), "50.0": stats(0.25)}},
                },
            }
        }
    }
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_START}\nold table\n{README_END}\nafter\n", encoding="utf-8")
    assert update_readme(readme, results)
    text = readme.read_text(encoding="utf-8")
    assert "old table" not in text
    assert text.startswith("intro\n")
    assert text.endswith(f"{README_END}\nafter\n")
    rows = [line for line in text.splitlines() if line.startswith(("| strong", "| weak"))]
    assert len(rows) == 2  # best at the middle ratio first
    assert rows[0] == "| strong | 4 | 75.0 [65.0–85.0] | 50.0 [40.0–60.0] | 25.0 [15.0–35.0] |"
    assert rows[1].startswith("| weak † | 4 | 50.0")
    assert "\n\n† weak: records scored with retention metric v1" in text
    assert update_readme(readme, results)  # idempotent
    assert readme.read_text(encoding="utf-8") == text
    plain = tmp_path / "PLAIN.md"
    plain.write_text("no markers\n", encoding="utf-8")
    assert not update_readme(plain, results)
    assert plain.read_text(encoding="utf-8") == "no markers\n"
    assert not update_readme(tmp_path / "missing.md", results)


# ------------------------------------------------------------------------------------------------ tuning


@pytest.mark.slow
def test_tune_measures_retention_on_training_text(capsys: pytest.CaptureFixture[str]) -> None:
    require_data("squad_shifts")
    from promptzip.evals import tune

    loose = tune.retention({}, n=4, seed=3, min_chars=40_000, ratios=(2,))
    assert loose[2] >= 75  # at 2x nearly every answer survives
    code = tune.main(
        ["--n", "3", "--min-chars", "40000", "--config", "base={}", "--config", 'plain={"clauses": false}']
    )
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["base", "plain"]
    assert all("10x" in line and "50x" in line and "n=3" in line for line in lines)
    with pytest.raises(SystemExit):
        tune.main(["--config", "bad={not json"])


def test_rows_on_fewer_questions_get_a_table_of_their_own() -> None:
    from promptzip.evals.report import readme_table

    def stats(n: int, retention: float) -> dict[str, object]:
        return {"items": n, "targets": n, "retention": retention, "retention_ci": [0.0, 1.0]}

    def method(n: int, retention: float) -> dict[str, object]:
        return {"by_ratio": {r: stats(n, retention) for r in ("10.0", "20.0", "50.0")}}

    results = {
        "suites": {
            "squad-qa": {
                "kind": "qa",
                "ratios": [10.0, 20.0, 50.0],
                "methods": {"ours": method(500, 0.9), "slow": method(8, 0.95), "plain": method(500, 0.5)},
            }
        }
    }
    table = readme_table(results)
    main, _, rest = table.partition("Slow third-party baselines")
    assert "| ours | 500 |" in main
    assert "| plain | 500 |" in main
    assert "slow" not in main  # a higher retention on 8 questions does not rank above the n=500 rows
    assert "n = 8" in rest
    assert "| slow | 8 |" in rest
    assert main.index("| ours |") < main.index("| plain |")


def test_every_suite_names_its_data_and_withdrawn_ones_say_why() -> None:
    from promptzip.evals._fetch import unavailable_reason
    from promptzip.evals.suites import SUITE_DATA, withdrawn_suites

    assert set(SUITE_DATA) == set(SUITES)
    withdrawn = withdrawn_suites(SUITES)
    for name in SUITES:
        reason = unavailable_reason(SUITE_DATA[name])
        assert withdrawn.get(name) == reason  # withdrawn exactly when its data set's release is gone


@pytest.mark.data
def test_a_run_of_every_suite_skips_the_withdrawn_ones_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from promptzip.evals.run import EvalConfig, run_eval
    from promptzip.evals.suites import withdrawn_suites

    require_data("gsm8k")
    withdrawn = withdrawn_suites(SUITES)
    if not withdrawn:
        pytest.skip("every suite's data is here: nothing to skip")
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    results = run_eval(EvalConfig(out=tmp_path, quick=True, methods=("first-k",), progress=False, threads=before + 1))
    assert torch.get_num_threads() == before  # the run's own count is not left to its caller
    err = capsys.readouterr().err
    for name, reason in withdrawn.items():
        assert f"skipping {name}: {reason}" in err
        assert name not in results["suites"]
    assert {"gsm8k-qa", "gsm8k-agnostic"} <= set(results["suites"])
