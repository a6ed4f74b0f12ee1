"""agent-trace's doors (:mod:`promptzip.evals._agent_doors`, :mod:`promptzip.evals._agent_wrap_doors`): the chat ↔
Anthropic translation round-trips, and, through the real proxy under uvicorn with the real ``openai`` and
``anthropic`` SDKs and a recording fake upstream, every request of the quick traces reaches the upstream; the OpenAI
door sends byte for byte what the in-process cache-stable history sends; the Anthropic door resends reused prefixes
as they were and keeps the budget; a run's conversation state is its own; a fail-open answer is counted; the suite
runs each door for its provider, and the ``pz.wrap`` doors send what the proxy's doors send."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import require_data

from promptzip._errors import PromptZipError
from promptzip._messages import message_tokens
from promptzip._pricing import listed_pricing
from promptzip._tokenizers import get_tokenizer
from promptzip._types import Budget
from promptzip.evals import _agent_doors as doors
from promptzip.evals import _agent_wrap_doors as wrap_doors
from promptzip.evals._agent_report import MIN_TOKENS
from promptzip.evals._provider_cache import PROVIDERS, Serializer
from promptzip.evals._traces import CORPORA, QUICK, Trace, build_traces
from promptzip.evals.agent_trace import (
    BUDGETS,
    DOORS,
    METHODS,
    PRESET,
    TARGET,
    _factory,
    add_arguments,
    run_agent_trace,
)

Messages = list[dict[str, Any]]


@pytest.fixture(scope="module")
def quick_traces() -> list[Trace]:
    require_data("gsm8k")
    source = CORPORA["gsm8k"]
    return build_traces(source.load(), site=source.site, sizes=QUICK, seed=0)


def _requests(trace: Trace) -> list[Messages]:
    return [[dict(m) for m in r.messages] for r in trace.requests()]


# ---------------------------------------------------------------------------------------------- translation


def _call(call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


OTHER_SHAPES: list[Messages] = [
    [{"role": "user", "content": "no system prompt"}, {"role": "assistant", "content": "fine"}],
    [
        {"role": "system", "content": "tools"},
        {"role": "user", "content": [{"type": "text", "text": "parts"}, {"type": "text", "text": " and more"}]},
        {"role": "assistant", "content": "Both.", "tool_calls": [_call("c1", "a", {"x": 1}), _call("c2", "b", {})]},
        {"role": "tool", "tool_call_id": "c1", "content": "one"},
        {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "two"}]},
        {"role": "assistant", "content": "done"},
    ],
]  # fmt: skip


def test_anthropic_translation_round_trips_every_trace_request(quick_traces: list[Trace]) -> None:
    ser = Serializer(get_tokenizer(TARGET).encode)
    shapes = 0
    for trace in quick_traces:
        for messages in _requests(trace):
            system, turns = doors.to_anthropic(messages)
            assert system == messages[0]["content"]
            assert all(t["role"] in ("user", "assistant") for t in turns)
            back = doors.from_anthropic(system, json.loads(json.dumps(turns)))  # as the wire carries it
            assert back == messages
            assert ser(back) == ser(messages)  # billed alike
            shapes += any("tool_calls" in m for m in messages)
    assert shapes  # the tool loops' calls and results were among them


def test_breakpoints_go_where_an_agent_loop_puts_them_and_come_off_again(quick_traces: list[Trace]) -> None:
    """:func:`mark` puts a breakpoint on the system prompt and on the request's last block (a tool result, a text
    block, or the block a string became); :func:`unmark` gives back exactly the unmarked translation."""
    for trace in quick_traces:
        for messages in _requests(trace):
            system, turns = doors.to_anthropic(messages)
            marked_system, marked = doors.mark(system, turns)
            assert marked_system == [{"type": "text", "text": system, "cache_control": doors.EPHEMERAL}]
            assert marked[-1]["content"][-1]["cache_control"] == doors.EPHEMERAL
            blocks = [b for m in marked for b in (m["content"] if isinstance(m["content"], list) else ())]
            assert sum("cache_control" in b for b in blocks) == 1
            assert marked[:-1] == turns[:-1]  # nothing else changes
            wire = json.loads(json.dumps({"system": marked_system, "messages": marked}))
            assert doors.unmark(wire["system"], wire["messages"], turns) == (system, turns)


def test_anthropic_translation_round_trips_other_shapes() -> None:
    for messages in OTHER_SHAPES:
        system, turns = doors.to_anthropic(messages)
        assert doors.from_anthropic(system, turns) == messages
    _, turns = doors.to_anthropic(OTHER_SHAPES[1])
    assert [b["type"] for b in turns[1]["content"]] == ["text", "tool_use", "tool_use"]
    assert turns[2]["content"][0] == {"type": "tool_result", "tool_use_id": "c1", "content": "one"}


@pytest.mark.parametrize(
    "bad",
    [
        {"role": "user", "content": "x", "name": "alice"},  # Anthropic has no message names
        {"role": "function", "name": "f", "content": "x"},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c", "type": "function",
                                                                "function": {"name": "f", "arguments": '{"a":1}'}}]},
        {"role": "system", "content": "a second system message"},
    ],
)  # fmt: skip
def test_anthropic_translation_refuses_what_it_cannot_carry_back(bad: dict[str, Any]) -> None:
    # The last two: arguments Anthropic would print back differently, a system message not first.
    with pytest.raises(ValueError, match=r"."):
        doors.to_anthropic([{"role": "user", "content": "first"}, bad])


def test_budget_headers() -> None:
    assert doors.budget_headers(Budget(rate=0.3)) == {"x-promptzip-rate": "0.3"}
    assert doors.budget_headers(Budget(tokens=4000)) == {"x-promptzip-budget": "4000"}
    assert doors.budget_headers(None) == {}


def test_door_methods_are_opt_in_and_priced_for_their_own_provider() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args([]).methods == "none,reselect,stable"
    assert set(DOORS).isdisjoint(METHODS)
    assert {(m.name, m.provider, m.opens) for m in DOORS.values()} == {
        ("proxy-openai", "openai", doors.open_proxy),
        ("proxy-anthropic", "anthropic", doors.open_proxy),
        ("wrap-openai", "openai", wrap_doors.open_wrap),
        ("wrap-anthropic", "anthropic", wrap_doors.open_wrap),
        ("runnable", None, None),  # in process, as stable: once per provider, under each one's prices
    }
    assert all(m.priced and m.compresses for m in DOORS.values())


def test_the_proxy_is_set_up_as_the_suite_runs() -> None:
    settings = doors.proxy_settings("http://127.0.0.1:9/v1")
    assert (settings.preset, settings.target, settings.min_tokens) == (PRESET, TARGET, MIN_TOKENS)
    assert settings.pricing is None
    assert all(route.pricing is None for route in settings.routes.values())  # each request priced by its model
    for model, provider in ((doors.OPENAI_MODEL, "openai"), (doors.ANTHROPIC_MODEL, "anthropic")):
        assert listed_pricing(model) == PROVIDERS[provider].pricing  # the suite bills it at the same prices


# ----------------------------------------------------------------------------------------- the real path


@pytest.fixture(scope="module")
def proxy() -> Iterator[doors.Doors]:
    """The proxy (the ``fast`` preset, as the suite builds it) in front of a fake upstream, one per module."""
    with doors.Doors(_factory) as d:
        yield d


def _passes(messages: Messages) -> bool:
    return message_tokens(messages, get_tokenizer(TARGET).count) < MIN_TOKENS


@pytest.mark.slow
def test_proxy_openai_sends_what_stable_sends_in_process(proxy: doors.Doors, quick_traces: list[Trace]) -> None:
    pricing = PROVIDERS["openai"].pricing
    compressed = 0
    for trace in quick_traces:
        for name, budget in BUDGETS.items():
            session, zipper = proxy.session(), _factory(PRESET, TARGET)
            for messages in _requests(trace):
                before = proxy.forwarded
                got = doors.post_openai(session, messages, budget)
                assert proxy.forwarded == before + 1  # it reached the upstream, once
                if _passes(messages):
                    assert (got.status, got.reason, got.messages) == ("passthrough", "below-min-tokens", messages)
                    continue
                result = zipper.compress_messages(messages, budget=budget, history="stable", pricing=pricing)
                assert got.messages == list(result.messages or ()), (trace.id, name)
                assert got.reused == result.reused_messages
                compressed += got.status == "compressed"
    assert compressed


def _within(got: doors.Received, budget: Budget) -> bool:
    assert got.tokens_in is not None
    assert got.tokens_out is not None
    return got.tokens_out <= budget.resolve(got.tokens_in)


@pytest.mark.slow
def test_proxy_anthropic_resends_its_prefix_and_keeps_the_budget(proxy: doors.Doors, quick_traces: list[Trace]) -> None:
    reused = 0
    for trace in quick_traces:
        for name, budget in BUDGETS.items():
            session, earlier = proxy.session(), list[Messages]()
            for messages in _requests(trace):
                before = proxy.forwarded
                got = doors.post_anthropic(session, messages, budget)
                assert proxy.forwarded == before + 1
                assert got.status != "passthrough" or got.reason != "nothing-to-compress"  # the marks keep no turn
                assert got.status in ("compressed", "passthrough"), got.reason
                assert len(got.messages) == len(messages)
                if got.status == "compressed":
                    assert _within(got, budget), (trace.id, name)
                if got.reused:  # an earlier request's sent prefix, byte for byte
                    assert any(e[: got.reused] == got.messages[: got.reused] for e in earlier), (trace.id, name)
                    reused += 1
                earlier.append(got.messages)
    assert reused


@pytest.mark.slow
@pytest.mark.parametrize("post", [doors.post_openai, doors.post_anthropic], ids=["openai", "anthropic"])
def test_each_run_starts_with_no_conversation_state(proxy: doors.Doors, quick_traces: list[Trace], post: Any) -> None:
    trace = next(t for t in quick_traces if t.kind == "tool-log")
    *history, last = _requests(trace)
    budget = BUDGETS["rate=0.3"]
    first = proxy.session()
    for messages in history:
        post(first, messages, budget)
    fresh = doors.Doors(_factory)  # another proxy, which has seen nothing
    with fresh:
        alone = post(fresh.session(), last, budget)
    other = post(proxy.session(), last, budget)
    assert (other.reused, other.messages) == (0, alone.messages)
    # The control: under the first run's key, the same request finds that run's state and reuses its prefix.
    same = post(first, last, budget)
    assert same.reused > 0
    assert same.messages != alone.messages


@pytest.mark.slow
def test_a_fail_open_answer_is_counted_as_the_in_process_methods_count_it(
    proxy: doors.Doors, quick_traces: list[Trace]
) -> None:
    messages = _requests(next(t for t in quick_traces if t.kind == "code"))[-1]
    tiny = Budget(tokens=5)
    with pytest.raises(PromptZipError):  # in process: the budget is below what must stay verbatim
        _factory(PRESET, TARGET).compress_messages(messages, budget=tiny, history="stable")
    for send in (doors.send_openai, doors.send_anthropic):
        before = proxy.forwarded
        with pytest.raises(doors.ProxyFailOpen, match="proxy fail-open"):  # a PromptZipError: the suite counts it
            send(proxy.session(), messages, tiny, PROVIDERS["openai"].pricing)
        assert proxy.forwarded == before + 1  # the original went out (checked against it before raising)


@pytest.mark.slow
def test_the_suite_runs_each_door_for_its_own_provider() -> None:
    require_data("gsm8k")
    methods = ("none", "stable", *DOORS)
    report = run_agent_trace(quick=True, corpus="gsm8k", methods=methods, budgets=("rate=0.3",), progress=False)
    for trace in report["traces"]:
        runs = {(r["method"], tuple(r["totals"])): r for r in trace["runs"]}
        assert {k for k in runs if k[0] in DOORS} == {
            ("proxy-openai", ("openai",)),
            ("proxy-anthropic", ("anthropic",)),
            ("wrap-openai", ("openai",)),
            ("wrap-anthropic", ("anthropic",)),
            ("runnable", ("openai",)),  # in process, as stable: once per provider
            ("runnable", ("anthropic",)),
        }
        for provider in ("openai", "anthropic"):  # LangChain's messages go out as compress_messages sends them
            runnable, like_it = runs["runnable", (provider,)], runs["stable", (provider,)]
            assert [r["billed"] for r in runnable["rows"]] == [r["billed"] for r in like_it["rows"]], trace["id"]
        stable, proxied = runs["stable", ("openai",)], runs["proxy-anthropic", ("anthropic",)]
        # Every door sends what the in-process history sends: OpenAI's byte for byte; Anthropic's, whose requests
        # carry breakpoints, as the proxy's own Anthropic door does.
        for name, like in (("proxy-openai", stable), ("wrap-openai", stable), ("wrap-anthropic", proxied)):
            door = runs[name, tuple(like["totals"])]
            assert [r["billed"] for r in door["rows"]] == [r["billed"] for r in like["rows"]], (trace["id"], name)
        for run in (r for k, r in runs.items() if k[0] in DOORS):
            assert all(r["error"] is None for r in run["rows"]), trace["id"]
            assert len(run["rows"]) == len(stable["rows"])
    notes = report["meta"]["notes"]
    assert any(n.startswith("The proxy doors") for n in notes)
    assert any(n.startswith("The wrap doors") for n in notes)
