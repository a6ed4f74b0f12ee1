"""The ``agent-trace`` eval: trace builders (deterministic, valid OpenAI chats, the answer where it should be), the
provider prompt-cache simulation on hand-made token lists (exact numbers), and a quick run of the runner."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import require_data

from promptzip._pricing import CachePricing, pricing_for
from promptzip.evals import _traces as traces
from promptzip.evals._provider_cache import (
    PROVIDERS,
    BreakpointCache,
    PrefixCache,
    Serializer,
    common_prefix,
    serialize,
)
from promptzip.evals.agent_trace import METHODS, has_history, main, markdown, run_agent_trace
from promptzip.evals.metrics import answer_retained
from promptzip.evals.records import SquadArticle, squad_article

# ------------------------------------------------------------------------------------------ provider cache


def _arr(tokens: Sequence[int]) -> Any:
    return np.asarray(tokens, dtype=np.int64)


def test_common_prefix() -> None:
    assert common_prefix(_arr([1, 2, 3, 4]), _arr([1, 2, 9, 4])) == 2
    assert common_prefix(_arr([1, 2, 3]), _arr([1, 2, 3, 4, 5])) == 3
    assert common_prefix(_arr([7]), _arr([8])) == 0
    assert common_prefix(_arr([]), _arr([1])) == 0


def test_openai_prefix_cache_exact() -> None:
    cache = PrefixCache(CachePricing(input=2.0, cached=1.0, min_prefix=4, step=2))
    a = list(range(1, 11))  # 10 tokens, nothing cached yet
    first = cache.bill(a)
    assert (first.tokens, first.cached) == (10, 0)
    assert first.cost == pytest.approx(20e-6)
    # 7 tokens in common with a: 4 + (7 - 4) // 2 * 2 = 6 cached, 3 fresh
    second = cache.bill([*a[:7], 99, 98])
    assert (second.tokens, second.cached) == (9, 6)
    assert second.cost == pytest.approx((6 * 1.0 + 3 * 2.0) / 1e6)
    # shorter than min_prefix in common with anything: nothing cached
    third = cache.bill([5, 6, 7])
    assert (third.cached, third.cost) == (0, pytest.approx(6e-6))
    # the longest common prefix with *any* earlier request: a (10), not the second (7)
    fourth = cache.bill([*a, 11, 12])
    assert (fourth.tokens, fourth.cached) == (12, 10)
    assert fourth.cost == pytest.approx((10 * 1.0 + 2 * 2.0) / 1e6)


def test_anthropic_breakpoint_cache_exact() -> None:
    cache = BreakpointCache(CachePricing(input=2.0, cached=0.2, write=2.5, min_prefix=4))
    small = cache.bill([1, 2, 3])  # below min_prefix: not cached, so not written either: plain input
    assert (small.cached, small.cost) == (0, pytest.approx(3 * 2.0 / 1e6))
    b = cache.bill([1, 2, 3, 4, 5])  # the 3-token request was never cached: all 5 written
    assert (b.cached, b.cost) == (0, pytest.approx(5 * 2.5 / 1e6))
    c = cache.bill([1, 2, 3, 4, 5, 6, 7])  # b is a whole prefix: read 5, write 2
    assert (c.cached, c.cost) == (5, pytest.approx((5 * 0.2 + 2 * 2.5) / 1e6))
    # c shares 6 tokens but is not a whole prefix: only b's breakpoint is read
    d = cache.bill([1, 2, 3, 4, 5, 6, 9, 9])
    assert (d.tokens, d.cached, d.cost) == (8, 5, pytest.approx((5 * 0.2 + 3 * 2.5) / 1e6))
    # the same 6-token overlap under OpenAI's rules is served up to the common prefix
    openai = PrefixCache(CachePricing(input=2.0, cached=1.0, min_prefix=4))
    openai.bill([1, 2, 3, 4, 5, 6, 7])
    assert openai.bill([1, 2, 3, 4, 5, 6, 9, 9]).cached == 6


def test_serialize_pieces_and_prefix_closed() -> None:
    def encode(text: str) -> list[int]:
        return [ord(c) for c in text]

    call = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    messages = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": [{"type": "text", "text": "ab"}, {"type": "image_url", "image_url": {}}]},
        {"role": "assistant", "content": None, "tool_calls": call},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
    ]
    expected = "systemS" + "userab" + "assistant" + json.dumps(call, sort_keys=True) + "tool" + "ok" + "c1"
    assert serialize(messages, encode) == encode(expected)
    for k in range(len(messages)):
        assert serialize(messages, encode)[: len(serialize(messages[:k], encode))] == serialize(messages[:k], encode)
    memo = Serializer(encode)
    assert memo(messages) == serialize(messages, encode) == memo(messages)


def test_providers_use_the_published_tables() -> None:
    assert PROVIDERS["openai"].pricing == pricing_for("gpt-4o")
    assert PROVIDERS["anthropic"].pricing == pricing_for("claude-sonnet-4")
    assert isinstance(PROVIDERS["anthropic"].new_cache(), BreakpointCache)


# -------------------------------------------------------------------------------------------------- traces


def _articles() -> list[SquadArticle]:
    """Six small articles; paragraph j of article k names a builder found nowhere else."""
    articles = []
    for k in range(6):
        raw = []
        for j in range(8):
            builder = f"Builder{k}x{j}"
            text = f"Tower {k}-{j} of the {['north', 'south'][j % 2]} quarter was built by {builder} in {1800 + j}."
            qa = {"id": f"q{k}-{j}", "question": f"Who built tower {k}-{j}?", "answers": [{"text": builder}]}
            raw.append({"context": text + " It still stands today.", "qas": [qa]})
        articles.append(squad_article(f"Towers_of_district_{k}", raw))
    return articles


SMALL = traces.Sizes(rag_turns=(3, 4), turns=3, items=5, lines=40, max_chars=9000)


def _check_shapes(trace: traces.Trace) -> None:
    messages = trace.messages()
    assert messages[0]["role"] == "system"
    open_calls: set[str] = set()
    for m in messages:
        assert m["role"] in {"system", "user", "assistant", "tool"}
        if m.get("tool_calls"):
            assert m["role"] == "assistant"
            assert m["content"] is None
            for call in m["tool_calls"]:
                assert call["type"] == "function"
                assert isinstance(json.loads(call["function"]["arguments"]), dict)
                open_calls.add(call["id"])
        elif m["role"] == "tool":
            assert m["tool_call_id"] in open_calls
            assert isinstance(m["content"], str)
            assert m["content"]
            open_calls.discard(m["tool_call_id"])
        else:
            assert isinstance(m["content"], str)
            assert m["content"].strip()
    assert not open_calls
    json.dumps(messages)  # plain JSON, as a client sends it


def _check_requests(trace: traces.Trace) -> None:
    requests = list(trace.requests())
    assert len(requests) == sum(len(t.calls) for t in trace.turns)
    for before, after in itertools.pairwise(requests):
        assert list(after.messages[: len(before.messages)]) == list(before.messages)  # an agent loop only appends
    for t, turn in enumerate(trace.turns):
        mine = [r for r in requests if r.turn == t]
        assert [r.measured for r in mine] == [False] * (len(mine) - 1) + [True]
        last = mine[-1]
        assert list(last.messages[-last.new :]) == list(turn.messages)


def _built(articles: list[SquadArticle]) -> list[traces.Trace]:
    return traces.build_traces(articles, site="example.org/wiki", sizes=SMALL, seed=3)


def test_traces_are_deterministic_and_differ_by_seed() -> None:
    articles = _articles()
    assert _built(articles) == _built(articles)
    other = traces.build_traces(articles, site="example.org/wiki", sizes=SMALL, seed=4)
    assert [t.messages() for t in other] != [t.messages() for t in _built(articles)]


def test_traces_are_well_formed_with_the_answer_in_the_turn() -> None:
    built = _built(_articles())
    assert [t.kind for t in built] == ["rag", "rag", "tool-json", "tool-log", "code"]
    assert [len(t.turns) for t in built] == [3, 4, 3, 3, 3]
    for trace in built:
        _check_shapes(trace)
        _check_requests(trace)
        for turn in trace.turns:
            text = "\n".join(m.get("content") or "" for m in turn.messages)
            assert answer_retained(text, turn.answers), (trace.id, turn.question)
            assert not answer_retained(turn.question, turn.answers)
            assert turn.reply["role"] == "assistant"


def test_rag_turns_hold_three_to_five_passages_and_the_answer_once() -> None:
    for trace in _built(_articles())[:2]:
        titles = set()
        for turn in trace.turns:
            body, _, question = turn.messages[0]["content"].rpartition("\n\nQuestion: ")
            assert question == turn.question
            passages = re.split(r"\n\n(?=Passage \d+ \()", body.removeprefix("Retrieved passages:\n\n"))
            assert 3 <= len(passages) <= 5
            assert sum(answer_retained(p, turn.answers) for p in passages) == 1  # only in the gold passage
            titles |= {p.split("(", 1)[1].split(")", 1)[0] for p in passages}
        assert len(titles) == 1  # distractors from the same article


def test_search_results_are_an_api_shaped_json_array() -> None:
    trace = _built(_articles())[2]
    for turn in trace.turns:
        results = json.loads(turn.messages[2]["content"])
        assert len(results) == SMALL.items
        assert all(set(r) == {"id", "title", "url", "snippet", "score", "published"} for r in results)
        assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
        assert sum(answer_retained(r["snippet"], turn.answers) for r in results) == 1
        assert json.loads(turn.messages[1]["tool_calls"][0]["function"]["arguments"]) == {"query": turn.question}


def test_logs_answer_sits_in_one_error_line() -> None:
    trace = _built(_articles())[3]
    for turn in trace.turns:
        lines = turn.messages[2]["content"].splitlines()
        assert len(lines) == SMALL.lines
        holding = [line for line in lines if answer_retained(line, turn.answers)]
        assert len(holding) == 1
        assert " ERROR " in holding[0]
        assert sum(" ERROR " in line for line in lines) == 3


def test_code_answers_are_definition_lines_of_the_file_read() -> None:
    trace = _built(_articles())[4]
    paths = [json.loads(t.messages[1]["tool_calls"][0]["function"]["arguments"])["path"] for t in trace.turns]
    assert len(set(paths)) == len(paths)
    assert all(p.startswith("httpx/") for p in paths)
    for turn in trace.turns:
        (line,) = turn.answers
        assert re.match(r"(async\s+)?(def|class)\s", line)
        assert turn.messages[2]["content"].count(line) == 1
        assert len(turn.messages[2]["content"]) <= 9000


def test_gsm8k_articles_keep_the_final_answer_in_the_paragraph() -> None:
    require_data("gsm8k")
    from promptzip.evals.data import load_gsm8k_test

    problems = load_gsm8k_test()
    articles = traces.gsm8k_articles(problems[:128])
    assert [len(a.paragraphs) for a in articles] == [traces.GSM8K_GROUP] * 2
    q = articles[1].questions[3]
    asked = problems[traces.GSM8K_GROUP + 3].question
    assert q.question.endswith("?")
    assert asked.endswith(q.question)
    assert answer_retained(articles[1].gold_paragraph(q).text, q.answers)


@pytest.mark.parametrize("corpus", ["gsm8k", "squad"])
def test_real_corpus_traces(corpus: str) -> None:
    require_data(corpus)
    source = traces.CORPORA[corpus]
    articles = source.load()
    built = traces.build_traces(articles, site=source.site, sizes=traces.QUICK, seed=0)
    assert built == traces.build_traces(articles, site=source.site, sizes=traces.QUICK, seed=0)
    for trace in built:
        _check_shapes(trace)
        _check_requests(trace)
        assert len(trace.turns) == (traces.QUICK.rag_turns[0] if trace.kind == "rag" else traces.QUICK.turns)
        for turn in trace.turns:
            assert answer_retained("\n".join(m.get("content") or "" for m in turn.messages), turn.answers)


# ---------------------------------------------------------------------------------------------------- runner

COLUMNS = (
    "turns",
    "retained",
    "retention_pct",
    "requests",
    "tokens_original",
    "tokens_sent",
    "cached_tokens",
    "cache_hit_pct",
    "prefix_kept_pct",
    "history_pct",
    "after_small",
    "cost",
    "cost_ratio",
    "seconds",
    "fail_open",
    "passthrough",
)


def _methods() -> tuple[str, ...]:
    return ("none", "reselect", "stable") if has_history() else ("none", "reselect")


@pytest.mark.slow
def test_quick_run_writes_every_column(tmp_path: Path) -> None:
    require_data("gsm8k")
    report = run_agent_trace(quick=True, corpus="gsm8k", methods=_methods(), out=tmp_path, progress=False)
    saved = json.loads((tmp_path / "agent_trace.json").read_text(encoding="utf-8"))
    page = (tmp_path / "agent_trace.md").read_text(encoding="utf-8")
    assert saved == json.loads(json.dumps(report))
    assert page == markdown(report)
    assert {t["kind"] for t in report["traces"]} == set(traces.KINDS)
    for trace in report["traces"]:
        labels = {(_label(r), p) for r in trace["runs"] for p in r["totals"]}
        for method in _methods():
            for provider in PROVIDERS:
                wanted = {"none"} if method == "none" else {f"{method} rate=0.3", f"{method} tokens=4000"}
                assert wanted <= {label for label, p in labels if p == provider}, (trace["id"], method, provider)
        for run in trace["runs"]:
            for totals in run["totals"].values():
                assert set(COLUMNS) <= set(totals)
                assert totals["bugs"] == 0, [r["error"] for r in run["rows"] if r["error"]]
                assert totals["turns"] == trace["turns"]
                assert totals["requests"] == len(run["rows"])
            if run["method"] == "none":
                none = run["totals"]["openai"]
                assert none["cost_ratio"] == 1.0
                assert none["retention_pct"] == 100.0
                assert none["tokens_sent"] == none["tokens_original"]
                assert none["fail_open"] == 0
                assert none["prefix_kept_pct"] == 100.0  # every request resends the one before it whole
                assert none["history_pct"] in (None, 100.0)  # every earlier turn's evidence is still there
    for provider in PROVIDERS:
        assert f"## {provider} (" in page
    assert "| trace | method | retention | history evidence | cache hit | prefix kept | after a small request |" in page
    goals = {(g["provider"], g["method"], g["goal"]) for g in report["goals"]}
    assert ("openai", "reselect rate=0.3", "cost") in goals
    assert all(g["met"] in (True, False, None) for g in report["goals"])
    assert report["meta"]["corpus"] == "gsm8k"
    assert report["meta"]["quick"] is True


def _label(run: Mapping[str, Any]) -> str:
    return run["method"] if run["budget"] is None else f"{run['method']} {run['budget']}"


def test_cli_runs_the_suite_and_records_its_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require_data("gsm8k")
    from promptzip.cli import main as promptzip_main

    code = promptzip_main(
        ["eval", "agent-trace", "--quick", "--corpus", "gsm8k", "--methods", "none", "--out", str(tmp_path)]
    )
    assert code == 0
    report = json.loads((tmp_path / "agent_trace.json").read_text(encoding="utf-8"))
    assert report["meta"]["command"] == (
        f"promptzip eval agent-trace --quick --out {tmp_path} --corpus gsm8k --methods none"
    )
    assert "# agent-trace" in capsys.readouterr().out
    assert main(["--quick", "--methods", "nope"]) == 2


def test_methods_table() -> None:
    assert list(METHODS) == ["none", "reselect", "stable"]
    assert not METHODS["none"].compresses
    assert METHODS["stable"].priced
    assert METHODS["stable"].available() == has_history()
