"""The LiteLLM hook against a real ``litellm.Router`` and ``litellm.acompletion``, sending to the recording fake
upstream on 127.0.0.1: opted-in models arrive compressed exactly as the core compresses them, others untouched,
and every failure leaves the request as it was."""

from __future__ import annotations

import asyncio
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
        mine.append(hook)
        return hook

    yield use
    litellm.callbacks = [c for c in litellm.callbacks if not any(c is h for h in mine)] + others


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
