"""The LiteLLM hook against a real ``litellm.Router`` and ``litellm.acompletion``, sending to the recording fake
upstream on 127.0.0.1: opted-in models arrive compressed exactly as the core compresses them, others untouched,
and every failure leaves the request as it was."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest

# litellm downloads its model cost map when imported unless told to use the copy it ships (the tests stay offline).
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm

import promptzip as pz
from promptzip.integrations.litellm import PromptZipHook

# litellm's own types make pydantic warn (a ReadOnly TypedDict item) when a Router builds its schemas; not ours.
pytestmark = pytest.mark.filterwarnings("ignore:Item.*the `ReadOnly` qualifier:UserWarning")

QUESTION = "Question: How tall is the Eiffel Tower?"
DERIVED = ("input_callback", "success_callback", "failure_callback", "_async_input_callback")
DERIVED += ("_async_success_callback", "_async_failure_callback")
LOGGER = "promptzip.integrations.litellm"
BROKEN = {
    "broken-rate": {"rate": 7},  # BudgetError: a rate is a fraction
    "broken-key": {"ratio": 0.3},  # ConfigError: a misspelt key
    "broken-preset": {"preset": "no-such-preset"},  # ConfigError from the registry
    "broken-type": "yes",  # ConfigError: neither a bool nor a mapping
}
CONFIGS: dict[str, Any] = {
    "rag": {"rate": 0.3},
    "plain": None,
    "off": False,
    "history": {"rate": 0.6, "scope": "history"},
    "slow": {"rate": 0.3, "deadline": 1e-6},
    **BROKEN,
}


def chat(article: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "You answer from the context only."},
        {"role": "user", "content": f"Context:\n{article}\n\n{QUESTION}"},
    ]


@pytest.fixture(scope="module")
def router(upstream: Any) -> litellm.Router:
    deployments = []
    for name, config in CONFIGS.items():
        params = {"model": "openai/gpt-4o", "api_base": upstream.url, "api_key": "sk-test"}
        info = {} if config is None else {"model_info": {"promptzip": config}}
        deployments.append({"model_name": name, "litellm_params": params, **info})
    return litellm.Router(model_list=deployments)


@pytest.fixture
def register() -> Iterator[Any]:
    """Registers one hook in ``litellm.callbacks`` for one test (any other PromptZipHook steps aside meanwhile, so
    that exactly one compresses), and puts the callbacks back as they were."""
    others = [c for c in litellm.callbacks if isinstance(c, PromptZipHook)]
    mine: list[PromptZipHook] = []

    def use(hook: PromptZipHook) -> PromptZipHook:
        litellm.callbacks = [c for c in litellm.callbacks if not isinstance(c, PromptZipHook)] + [hook]
        forget_derived()
        mine.append(hook)
        return hook

    yield use
    litellm.callbacks = [c for c in litellm.callbacks if not any(c is h for h in mine)] + others
    forget_derived()


def forget_derived() -> None:
    """Drops promptzip hooks from the lists LiteLLM copies ``litellm.callbacks`` into at each call (it adds, never
    removes), so that a hook of an earlier test does not log for this one; LiteLLM refills them from ``callbacks``."""
    for name in DERIVED:
        setattr(litellm, name, [c for c in getattr(litellm, name) if not isinstance(c, PromptZipHook)])


@pytest.fixture
def hook(register: Any, bm25: pz.Zipper) -> PromptZipHook:
    return register(PromptZipHook(zippers={"fast": bm25}, deadline=60))  # type: ignore[no-any-return]


def sent(upstream: Any, call: Any) -> list[dict[str, Any]]:
    """Runs ``call()`` (a coroutine factory) and returns the messages of the one request the upstream got."""
    before = len(upstream.requests)
    asyncio.run(call())
    new = [r for r in upstream.requests[before:] if r.target.startswith("/v1/chat/completions")]
    assert len(new) == 1
    messages: list[dict[str, Any]] = new[0].json()["messages"]
    return messages


def expected(zipper: pz.Zipper, messages: list[dict[str, str]], **budget: Any) -> list[dict[str, Any]]:
    return [dict(m) for m in zipper.compress_messages(messages, **budget).messages or ()]


def test_an_opted_in_model_sends_what_the_core_compresses(
    hook: PromptZipHook, router: litellm.Router, upstream: Any, bm25: pz.Zipper, article: str
) -> None:
    messages = chat(article)
    out = sent(upstream, lambda: router.acompletion(model="rag", messages=messages))
    assert out == expected(bm25, messages, rate=0.3)
    assert out[0] == messages[0]  # the instruction goes out byte for byte
    assert out[1]["content"].endswith(QUESTION)
    assert "330 metres" in out[1]["content"]
    assert len(out[1]["content"]) < len(messages[1]["content"]) / 2


def test_a_model_that_did_not_opt_in_is_sent_untouched(
    hook: PromptZipHook, router: litellm.Router, upstream: Any, article: str
) -> None:
    messages = chat(article)
    assert sent(upstream, lambda: router.acompletion(model="plain", messages=messages)) == messages


def test_streaming_calls_are_compressed_too(
    hook: PromptZipHook, router: litellm.Router, upstream: Any, bm25: pz.Zipper, article: str
) -> None:
    messages = chat(article)

    async def stream() -> None:
        response = await router.acompletion(model="rag", messages=messages, stream=True)
        parts = [chunk.choices[0].delta.content async for chunk in response]
        assert "".join(p for p in parts if p).startswith("part0")

    assert sent(upstream, stream) == expected(bm25, messages, rate=0.3)


def test_the_deployment_scope_reaches_the_core(
    hook: PromptZipHook, router: litellm.Router, upstream: Any, bm25: pz.Zipper, article: str
) -> None:
    messages = [
        {"role": "user", "content": f"Summarise this.\n\n{article}"},
        {"role": "assistant", "content": article},
        {"role": "user", "content": f"Context:\n{article}\n\n{QUESTION}"},
    ]
    out = sent(upstream, lambda: router.acompletion(model="history", messages=messages))
    assert out == [dict(m) for m in bm25.compress_messages(messages, rate=0.6, scope="history").messages or ()]
    assert out[-1] == messages[-1]  # the last user turn stays whole with scope="history"
    assert out[1] != messages[1]


def test_a_team_opts_in_through_its_metadata(
    hook: PromptZipHook, router: litellm.Router, upstream: Any, bm25: pz.Zipper, article: str
) -> None:
    # The proxy puts the caller's team metadata here (litellm.proxy.litellm_pre_call_utils).
    team = {"user_api_key_team_metadata": {"promptzip": {"budget": 150}}}
    messages = chat(article)
    out = sent(upstream, lambda: router.acompletion(model="plain", messages=messages, metadata=team))
    assert out == expected(bm25, messages, budget=150)
    off = sent(upstream, lambda: router.acompletion(model="off", messages=messages, metadata=team))
    assert off == messages  # a deployment that says false is never compressed


def test_a_call_can_narrow_or_turn_off_compression(
    hook: PromptZipHook, router: litellm.Router, upstream: Any, bm25: pz.Zipper, article: str
) -> None:
    messages = chat(article)
    narrowed = sent(
        upstream, lambda: router.acompletion(model="rag", messages=messages, metadata={"promptzip": {"budget": 120}})
    )
    assert narrowed == expected(bm25, messages, budget=120)
    off = sent(upstream, lambda: router.acompletion(model="rag", messages=messages, metadata={"promptzip": False}))
    assert off == messages


def test_models_named_in_the_hook_opt_in_on_the_plain_sdk_path(
    register: Any, upstream: Any, bm25: pz.Zipper, article: str
) -> None:
    register(PromptZipHook(zippers={"fast": bm25}, models=("openai/gpt-4o",), rate=0.4, deadline=60))
    messages = chat(article)
    out = sent(
        upstream,
        lambda: litellm.acompletion(model="openai/gpt-4o", api_base=upstream.url, api_key="sk-test", messages=messages),
    )
    assert out == expected(bm25, messages, rate=0.4)


@pytest.mark.parametrize("model", sorted(BROKEN))
def test_a_broken_configuration_fails_open_with_a_warning(
    model: str,
    hook: PromptZipHook,
    router: litellm.Router,
    upstream: Any,
    article: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    messages = chat(article)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert sent(upstream, lambda: router.acompletion(model=model, messages=messages)) == messages
    warnings = [r for r in caplog.records if r.name == LOGGER]
    assert len(warnings) == 1
    assert "goes uncompressed" in warnings[0].getMessage()


def test_a_compression_past_its_deadline_fails_open(
    hook: PromptZipHook, router: litellm.Router, upstream: Any, article: str, caplog: pytest.LogCaptureFixture
) -> None:
    messages = chat(article)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert sent(upstream, lambda: router.acompletion(model="slow", messages=messages)) == messages
    assert any("deadline" in r.getMessage() for r in caplog.records if r.name == LOGGER)


def test_a_crash_inside_compression_fails_open(
    register: Any, router: litellm.Router, upstream: Any, article: str, caplog: pytest.LogCaptureFixture
) -> None:
    from proxy_helpers import exploding

    register(PromptZipHook(zippers={"fast": exploding(RuntimeError("boom"))("fast", "gpt-4o", None)}))
    messages = chat(article)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert sent(upstream, lambda: router.acompletion(model="rag", messages=messages)) == messages
    records = [r for r in caplog.records if r.name == LOGGER]
    assert records
    assert "RuntimeError: boom" in records[0].getMessage()
    assert records[0].exc_info


def test_the_hook_checks_its_own_settings() -> None:
    with pytest.raises(pz.ConfigError, match="preset"):
        PromptZipHook(preset="")
    with pytest.raises(pz.ConfigError, match="deadline"):
        PromptZipHook(deadline=0)
    with pytest.raises(pz.ConfigError, match="scope"):
        PromptZipHook(scope="everything")
    with pytest.raises(pz.BudgetError):
        PromptZipHook(rate=2.0)
    with pytest.raises(pz.ConfigError, match="models"):
        PromptZipHook(models="rag")


def test_a_conversation_is_priced_by_the_deployment_model(register: Any, upstream: Any) -> None:
    """A deployment of a Claude model (here behind an OpenAI-compatible endpoint) has its conversations weighed
    with Claude's cache prices, as the proxy and a wrapped client do, not with the hook's target's (gpt-4o)."""
    from test_conversation import conversation, zipper

    register(PromptZipHook(zippers={"fast": zipper()}, budget=4000, deadline=60))
    params = {"model": "openai/claude-sonnet-4-5", "api_base": upstream.url, "api_key": "sk-test"}
    router = litellm.Router(
        model_list=[{"model_name": "claude", "litellm_params": params, "model_info": {"promptzip": True}}]
    )
    as_claude, as_gpt = zipper(), zipper()
    differ = 0
    for t in range(1, 12):
        msgs = conversation(t)
        out = sent(upstream, lambda msgs=msgs: router.acompletion(model="claude", messages=msgs))
        want = expected(as_claude, msgs, budget=4000, pricing=pz.pricing_for("claude-sonnet-4-5"))
        assert out == want
        differ += want != expected(as_gpt, msgs, budget=4000, pricing=pz.pricing_for("gpt-4o"))
    assert differ  # the deployment's prices changed what went out


# ------------------------------------------------------------------------------------- Responses and Messages
def tool_output_items(tag: str) -> list[dict[str, Any]]:
    """A Responses ``input`` list: the question, a function call, and its JSON output (an array of records)."""
    from test_wrap_doors import QUESTION as ASKED
    from test_wrap_doors import RECORDS

    return [
        {"role": "user", "content": [{"type": "input_text", "text": f"[{tag}] {ASKED}"}]},
        {"type": "function_call", "call_id": "c1", "name": "harbour_log", "arguments": '{"port": "Oslo"}'},
        {"type": "function_call_output", "call_id": "c1", "output": RECORDS},
    ]


def anthropic_tool_loop(tag: str) -> list[dict[str, Any]]:
    from test_wrap_doors import QUESTION as ASKED
    from test_wrap_doors import RECORDS

    call = {"type": "tool_use", "id": f"toolu_{tag}", "name": "harbour_log", "input": {"port": "Oslo"}}
    return [
        {"role": "user", "content": f"[{tag}] {ASKED}"},
        {"role": "assistant", "content": [{"type": "text", "text": "Let me look."}, call]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"toolu_{tag}", "content": RECORDS}]},
    ]


DOOR_BUDGET = 250
DOOR_REQUESTS: dict[str, tuple[str, dict[str, Any]]] = {
    "responses-string": ("responses", {"instructions": "Answer from the documents only. " * 8, "input": "x"}),
    "responses-tool-output": ("responses", {"instructions": "Answer from the log.", "input": tool_output_items("lr")}),
    "messages-rag-system": ("messages", {"system": "x", "messages": [{"role": "user", "content": "[lm] x"}]}),
    "messages-tool-result": ("messages", {"messages": anthropic_tool_loop("lt")}),
}


@pytest.mark.parametrize("name", sorted(DOOR_REQUESTS))
def test_responses_and_anthropic_calls_send_what_a_wrapped_client_sends(
    name: str, register: Any, upstream: Any, gpt4o: pz.Tokenizer
) -> None:
    """``aresponses`` and ``aanthropic_messages`` through a Router are read by the proxy's dialects for their APIs,
    as a wrapped SDK client reads the same call: the same prompt arrives upstream, instructions and ``system``
    counted in the budget, tool outputs cut by their structure."""
    import anthropic
    import openai
    from proxy_helpers import REPORT, bm25
    from test_wrap_doors import QUESTION as ASKED

    from promptzip._cache import MemoryCache

    api, request = DOOR_REQUESTS[name]
    if name == "responses-string":
        request = {**request, "input": f"Documents:\n{REPORT}\n\nQuestion: {ASKED}"}
    elif name == "messages-rag-system":
        request = {**request, "system": f"Answer from the documents only.\n\nDocuments:\n{REPORT}"}
    register(PromptZipHook(zippers={"fast": bm25("fast", "gpt-4o", MemoryCache())}, deadline=60))
    root = upstream.url.removesuffix("/v1")
    info = {"promptzip": {"budget": DOOR_BUDGET}}
    deployments = {"gpt": ("openai/gpt-4o", upstream.url), "claude": ("anthropic/claude-sonnet-4-5", root)}
    router = litellm.Router(
        model_list=[
            {
                "model_name": name,
                "litellm_params": {"model": m, "api_base": base, "api_key": "sk-test"},
                "model_info": info,
            }
            for name, (m, base) in deployments.items()
        ]
    )
    route, keys = (
        ("/v1/responses", ("instructions", "input")) if api == "responses" else ("/v1/messages", ("system", "messages"))
    )

    async def through_litellm() -> None:
        if api == "responses":
            await router.aresponses(model="gpt", **request)
            if name == "responses-string":  # streamed: the same body, with stream=True
                events = await router.aresponses(model="gpt", stream=True, **request)
                assert [e async for e in events]
        else:
            await router.aanthropic_messages(model="claude", max_tokens=64, **request)

    asyncio.run(through_litellm())
    *_, via_hook = (r.json() for r in upstream.requests if r.target.startswith(route))
    if name == "responses-string":
        streamed = dict(via_hook)
        assert streamed.pop("stream") is True
        via_hook = [r for r in upstream.requests if r.target.startswith(route)][-2].json()
        assert streamed == via_hook

    own = bm25("fast", "gpt-4o", MemoryCache())
    if api == "responses":
        with openai.OpenAI(base_url=upstream.url, api_key="sk-test", max_retries=0) as client:
            pz.wrap(client, budget=DOOR_BUDGET, zipper=own).responses.create(model="gpt-4o", **request)
    else:
        with anthropic.Anthropic(base_url=root, api_key="sk-test", max_retries=0) as claude:
            pz.wrap(claude, budget=DOOR_BUDGET, zipper=own).messages.create(
                model="claude-sonnet-4-5", max_tokens=64, **request
            )
    via_wrap = [r for r in upstream.requests if r.target.startswith(route)][-1].json()

    assert {k: via_hook.get(k) for k in keys} == {k: via_wrap.get(k) for k in keys}
    assert json.dumps(via_hook) != json.dumps({**via_hook, **request})  # compressed, not sent as given
    if name == "responses-string":  # the instructions count in the budget
        assert gpt4o.count(via_hook["instructions"]) + gpt4o.count(via_hook["input"]) <= DOOR_BUDGET
    if name.endswith(("tool-output", "tool-result")):  # still valid JSON, the record that answers kept
        tool = (
            via_hook["input"][2]["output"] if api == "responses" else via_hook["messages"][2]["content"][0]["content"]
        )
        assert any(r.get("year") == 12 for r in json.loads(tool) if isinstance(r, dict))


def test_prompt_cache_key_names_the_conversation(register: Any, upstream: Any) -> None:
    """As for a wrapped client: the same turns under another ``prompt_cache_key`` start afresh, and a follow-up
    under the same key sends the prefix sent before byte for byte."""
    from test_conversation import conversation, zipper

    register(PromptZipHook(zippers={"fast": zipper()}, models=("openai/gpt-4o",), rate=0.3, deadline=60))

    def call(turns: int, key: str) -> list[dict[str, Any]]:
        params = {"model": "openai/gpt-4o", "api_base": upstream.url, "api_key": "sk-test"}
        return sent(upstream, lambda: litellm.acompletion(messages=conversation(turns), prompt_cache_key=key, **params))

    first = call(2, "user-1")
    assert call(3, "user-1")[: len(first)] == first
    assert call(3, "user-2") == expected(zipper(), conversation(3), rate=0.3)


# ------------------------------------------------------------------------------------------------ synchronous
def test_sync_responses_calls_send_what_the_async_ones_send(register: Any, upstream: Any) -> None:
    """LiteLLM's synchronous Responses handler runs the deployment hook itself (in a loop of its own), so
    ``litellm.responses`` and ``Router.responses``, streamed or not, send what ``aresponses`` sends: compressed."""
    from proxy_helpers import REPORT, bm25
    from test_wrap_doors import QUESTION as ASKED

    from promptzip._cache import MemoryCache

    request = {"instructions": "Answer from the documents only.", "input": f"Documents:\n{REPORT}\n\nQuestion: {ASKED}"}
    params = {"model": "openai/gpt-4o", "api_base": upstream.url, "api_key": "sk-test"}
    info = {"promptzip": {"budget": DOOR_BUDGET}}
    router = litellm.Router(model_list=[{"model_name": "gpt", "litellm_params": params, "model_info": info}])

    def through(call: Any) -> dict[str, Any]:
        # A hook of its own each time: what one call recorded of the conversation does not shape the next.
        register(PromptZipHook(zippers={"fast": bm25("fast", "gpt-4o", MemoryCache())}, deadline=60))
        before = len(upstream.requests)
        call()
        new = [r for r in upstream.requests[before:] if r.target.startswith("/v1/responses")]
        assert len(new) == 1
        body: dict[str, Any] = new[0].json()
        body.pop("stream", None)
        return body

    reference = through(lambda: asyncio.run(router.aresponses(model="gpt", **request)))
    assert reference["input"] != request["input"]  # compressed, not sent as given
    assert reference["instructions"] == request["instructions"]
    assert through(lambda: router.responses(model="gpt", **request)) == reference
    assert through(lambda: litellm.responses(**params, model_info=info, **request)) == reference
    assert through(lambda: list(router.responses(model="gpt", stream=True, **request))) == reference


def test_sync_chat_completions_go_out_uncompressed(
    register: Any, upstream: Any, article: str, caplog: pytest.LogCaptureFixture
) -> None:
    """What the README says: LiteLLM 1.109.1 runs no request-rewriting hook for the synchronous ``completion``,
    so an opted-in call goes out as given (use ``acompletion``), with a warning the first time for each model.
    Should LiteLLM add such a hook, this fails, and the README and the hook's docstring should say the call is
    compressed."""
    from proxy_helpers import bm25

    from promptzip._cache import MemoryCache

    register(PromptZipHook(zippers={"fast": bm25("fast", "gpt-4o", MemoryCache())}, rate=0.3, deadline=60))
    messages = chat(article)
    info = {"promptzip": True}
    params = {"model": "openai/gpt-4o", "api_base": upstream.url, "api_key": "sk-test"}
    router = litellm.Router(model_list=[{"model_name": "rag", "litellm_params": params, "model_info": info}])
    calls = {
        "gpt-4o": lambda: litellm.completion(**params, model_info=info, messages=messages),
        "rag": lambda: router.completion(model="rag", messages=messages),
        "off": lambda: litellm.completion(**params, model_info={"promptzip": False}, messages=messages),
        "plain": lambda: litellm.completion(**params, messages=messages),
    }
    warning, debug = logging.WARNING, logging.DEBUG
    steps = [("gpt-4o", warning), ("rag", warning), ("off", None), ("plain", None), ("rag", debug), ("gpt-4o", debug)]
    for model, level in steps:  # a warning the first time for each opted-in model, then debug lines; else nothing
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger=LOGGER):
            before = len(upstream.requests)
            calls[model]()
        new = [r for r in upstream.requests[before:] if r.target.startswith("/v1/chat/completions")]
        assert [r.json()["messages"] for r in new] == [messages]
        said = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER]
        if level is None:
            assert said == []
        else:
            assert [lvl for lvl, _ in said] == [level]
            assert f"call to {model!r} goes uncompressed" in said[0][1]
            assert "use acompletion(), or decorate it: promptzip.compress_call(" in said[0][1]
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        assert sent(upstream, lambda: router.acompletion(model="rag", messages=messages)) != messages  # compressed
    assert [r for r in caplog.records if r.name == LOGGER] == []  # and nothing said about it


def test_a_decorated_sync_completion_sends_what_the_core_compresses(
    upstream: Any, article: str, bm25: pz.Zipper
) -> None:
    """What the warning above suggests for the synchronous ``completion``: the decorator rewrites its ``messages``,
    and LiteLLM sends them as the core compressed them."""
    messages = chat(article)
    completion = pz.compress_call(rate=0.3, zipper=bm25)(litellm.completion)
    before = len(upstream.requests)
    response = completion(model="openai/gpt-4o", api_base=upstream.url, api_key="sk-test", messages=messages)
    new = [r for r in upstream.requests[before:] if r.target.startswith("/v1/chat/completions")]
    assert [r.json()["messages"] for r in new] == [expected(bm25, messages, rate=0.3)]
    assert new[0].json()["messages"] != messages
    assert response.choices[0].message.content


def chatml(article: str) -> str:
    """A raw prompt in ChatML, as a string-prompt client sends one to a vLLM server's completions endpoint."""
    return (
        "<|im_start|>system\nYou answer from the context only.<|im_end|>\n"
        f"<|im_start|>user\nContext:\n{article}\n\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
    )


def prompts(upstream: Any, before: int) -> list[Any]:
    return [r.json()["prompt"] for r in upstream.requests[before:] if r.target.startswith("/v1/completions")]


def test_atext_completion_sends_what_a_wrapped_client_sends(
    register: Any, upstream: Any, article: str, bm25: pz.Zipper
) -> None:
    """``atext_completion`` (legacy Completions, raw prompts) is read by the proxy's ``completions`` dialect: a prompt
    in a chat template arrives with its markers, system turn and question as they were, as ``pz.wrap``'s
    ``completions.create`` sends it."""
    import openai

    register(PromptZipHook(zippers={"fast": bm25}, deadline=60))
    prompt = chatml(article)
    params = {"model": "openai/gpt-3.5-turbo-instruct", "api_base": upstream.url, "api_key": "sk-test"}
    info = {"promptzip": {"rate": 0.3}}
    before = len(upstream.requests)

    async def call() -> None:
        # LiteLLM's own SDK client for this call would outlive the loop unclosed: the test hands it one it closes
        async with openai.AsyncOpenAI(base_url=upstream.url, api_key="sk-test", max_retries=0) as sdk:
            await litellm.atext_completion(**params, model_info=info, prompt=prompt, max_tokens=16, client=sdk)

    asyncio.run(call())
    (via_hook,) = prompts(upstream, before)
    with openai.OpenAI(base_url=upstream.url, api_key="sk-test", max_retries=0) as client:
        pz.wrap(client, rate=0.3, zipper=bm25).completions.create(model="gpt-3.5-turbo-instruct", prompt=prompt)
    assert prompts(upstream, before)[1:] == [via_hook]
    assert len(via_hook) < len(prompt) * 0.6
    head = "<|im_start|>system\nYou answer from the context only.<|im_end|>\n<|im_start|>user\nContext:\n"
    assert via_hook.startswith(head)
    assert via_hook.endswith(f"\n\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n")


def test_a_sync_text_completion_goes_as_given_and_the_warning_names_the_decorator_that_compresses_it(
    register: Any, upstream: Any, article: str, bm25: pz.Zipper, caplog: pytest.LogCaptureFixture
) -> None:
    register(PromptZipHook(zippers={"fast": bm25}, deadline=60, models=["openai/gpt-3.5-turbo-instruct"]))
    prompt = chatml(article)
    params = {"model": "openai/gpt-3.5-turbo-instruct", "api_base": upstream.url, "api_key": "sk-test"}
    before = len(upstream.requests)
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        litellm.text_completion(**params, prompt=prompt, max_tokens=16)
    assert prompts(upstream, before) == [prompt]
    said = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(said) == 1
    assert "synchronous text_completion(), so the call to 'gpt-3.5-turbo-instruct' goes uncompressed" in said[0]
    assert 'promptzip.compress_call(rate=..., arg="prompt")(litellm.text_completion)' in said[0]
    decorated = pz.compress_call(rate=0.3, arg="prompt", zipper=bm25)(litellm.text_completion)
    before = len(upstream.requests)
    decorated(**params, prompt=prompt, max_tokens=16)
    assert prompts(upstream, before) == [bm25.compress_prompt(prompt, rate=0.3).text]
