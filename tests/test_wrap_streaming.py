"""The wrapped OpenAI client on every entry point that sends a prompt: ``stream=True``, the ``stream(...)`` helpers,
``with_raw_response`` and ``with_streaming_response``, sync and async, and the per-call ``promptzip=`` keyword.

The real ``openai`` SDK talks to the real fake upstream on 127.0.0.1 (tests/fake_openai.py), which records the bytes
it receives. Compression uses a BM25-only stack (no model), so these tests are fast.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fake_openai import FakeOpenAI, Recorded

import promptzip as pz
from promptzip._messages import message_tokens
from promptzip.integrations.decorator import compress_call, wrap

openai = pytest.importorskip("openai")

QUESTION = "How tall is the Eiffel Tower, in metres?"
SYSTEM = "You are a careful travel assistant. Cite the context."
BUDGET = 150
CHAT = "/v1/chat/completions"
RESPONSES = "/v1/responses"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(reply="The tower is 330 metres tall.") as server:
        yield server


@pytest.fixture
def client(fake: FakeOpenAI) -> Iterator[Any]:
    with openai.OpenAI(base_url=fake.url + "/v1", api_key="test", max_retries=0) as c:
        yield c


def chat(article: str) -> list[dict[str, Any]]:
    """Long earlier turns and a short last question: compressible under either scope."""
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "Here is an article about Paris.\n\n" + article},
        {"role": "assistant", "content": "Thanks. " + article},
        {"role": "user", "content": QUESTION},
    ]


def items(article: str) -> list[dict[str, Any]]:
    """The same chat as Responses input items."""
    return [
        {"role": "developer", "content": SYSTEM},
        {"role": "user", "content": [{"type": "input_text", "text": "Here is an article about Paris.\n\n" + article}]},
        {"role": "assistant", "content": "Thanks. " + article},
        {"role": "user", "content": QUESTION},
    ]


def tokens(messages: list[dict[str, Any]], tokenizer: pz.Tokenizer) -> int:
    return message_tokens(messages, tokenizer.count)


def body(fake: FakeOpenAI, path: str) -> dict[str, Any]:
    sent: dict[str, Any] = fake.last(path).json()
    return sent


def assert_chat_compressed(sent: dict[str, Any], article: str, tokenizer: pz.Tokenizer, budget: int = BUDGET) -> None:
    original = chat(article)
    assert tokens(sent["messages"], tokenizer) <= budget < tokens(original, tokenizer)
    assert [m["role"] for m in sent["messages"]] == [m["role"] for m in original]
    assert sent["messages"][-1] == original[-1]  # the question goes out as it came


def assert_input_compressed(sent: dict[str, Any], article: str, tokenizer: pz.Tokenizer) -> None:
    original = items(article)
    sent_chat = [{"role": m["role"], "content": _text(m["content"])} for m in sent["input"]]
    original_chat = [{"role": m["role"], "content": _text(m["content"])} for m in original]
    assert tokens(sent_chat, tokenizer) <= BUDGET < tokens(original_chat, tokenizer)
    assert sent["input"][-1] == original[-1]
    assert sent["input"][1]["content"][0]["type"] == "input_text"


def _text(content: Any) -> str:
    return content if isinstance(content, str) else "".join(part["text"] for part in content)


def same_body(a: Recorded, b: Recorded) -> None:
    assert a.path == b.path
    assert a.body == b.body  # byte for byte


# ------------------------------------------------------------------------------------------ streaming, sync
def test_stream_true_is_compressed_and_the_stream_comes_back_intact(
    client: Any, fake: FakeOpenAI, bm25: pz.Zipper, article: str, gpt4o: pz.Tokenizer
) -> None:
    wrapped = wrap(client, budget=BUDGET, zipper=bm25)
    stream = wrapped.chat.completions.create(model="gpt-4o", messages=chat(article), stream=True, temperature=0.1)
    assert isinstance(stream, openai.Stream)
    chunks = list(stream)
    sent = body(fake, CHAT)
    assert (sent["stream"], sent["temperature"]) == (True, 0.1)
    assert_chat_compressed(sent, article, gpt4o)
    assert [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content] == fake.reply_chunks()
    assert chunks[-1].choices[0].finish_reason == "stop"

    with wrapped.responses.create(model="gpt-4o", input=items(article), stream=True) as events:
        deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert deltas == fake.reply_chunks()
    assert_input_compressed(body(fake, RESPONSES), article, gpt4o)


def test_stream_helpers_compress(
    client: Any, fake: FakeOpenAI, bm25: pz.Zipper, article: str, gpt4o: pz.Tokenizer
) -> None:
    wrapped = wrap(client, budget=BUDGET, zipper=bm25)
    with wrapped.chat.completions.stream(model="gpt-4o", messages=chat(article)) as stream:
        deltas = [e.delta for e in stream if e.type == "content.delta" and e.delta]
        final = stream.get_final_completion()
    assert deltas == fake.reply_chunks()
    assert final.choices[0].message.content == fake.reply
    sent = body(fake, CHAT)
    assert sent["stream"] is True
    assert fake.last(CHAT).headers["x-stainless-helper-method"] == "chat.completions.stream"
    assert_chat_compressed(sent, article, gpt4o)

    with wrapped.responses.stream(model="gpt-4o", input=items(article)) as events:
        text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        response = events.get_final_response()
    assert text == fake.reply == response.output_text
    assert_input_compressed(body(fake, RESPONSES), article, gpt4o)


def test_raw_and_streaming_response_views_compress(
    client: Any, fake: FakeOpenAI, bm25: pz.Zipper, article: str, gpt4o: pz.Tokenizer
) -> None:
    wrapped = wrap(client, budget=BUDGET, zipper=bm25)
    for completions in (wrapped.chat.completions.with_raw_response, wrapped.with_raw_response.chat.completions):
        fake.clear()
        raw = completions.create(model="gpt-4o", messages=chat(article))
        assert raw.http_response.status_code == 200
        assert raw.parse().choices[0].message.content == fake.reply
        assert_chat_compressed(body(fake, CHAT), article, gpt4o)

    raw = wrapped.chat.completions.with_raw_response.create(model="gpt-4o", messages=chat(article), stream=True)
    pieces = [c.choices[0].delta.content for c in raw.parse() if c.choices[0].delta.content]
    assert pieces == fake.reply_chunks()
    assert_chat_compressed(body(fake, CHAT), article, gpt4o)

    for completions in (
        wrapped.chat.completions.with_streaming_response,
        wrapped.with_streaming_response.chat.completions,
    ):
        fake.clear()
        with completions.create(model="gpt-4o", messages=chat(article), stream=True) as response:
            lines = [line for line in response.iter_lines() if line.startswith("data: {")]
        assert "".join(json.loads(line[6:])["choices"][0]["delta"].get("content", "") for line in lines) == fake.reply
        assert_chat_compressed(body(fake, CHAT), article, gpt4o)

    for responses in (wrapped.responses.with_raw_response, wrapped.with_raw_response.responses):
        fake.clear()
        assert responses.create(model="gpt-4o", input=items(article)).parse().output_text == fake.reply
        assert_input_compressed(body(fake, RESPONSES), article, gpt4o)
    with wrapped.responses.with_streaming_response.create(model="gpt-4o", input=items(article)) as response:
        assert response.parse().output_text == fake.reply
    assert_input_compressed(body(fake, RESPONSES), article, gpt4o)

    # what the wrapper does not send a prompt through is the client's own
    assert wrapped.chat.completions.with_raw_response.list is not None
    assert wrapped.models.with_raw_response.list().parse().data[0].id == "gpt-4o"


# ------------------------------------------------------------------------------------------ promptzip=
def test_promptzip_false_sends_the_body_byte_identical(
    client: Any, fake: FakeOpenAI, bm25: pz.Zipper, article: str
) -> None:
    wrapped = wrap(client, budget=BUDGET, zipper=bm25)
    calls = [
        lambda c, **kw: c.chat.completions.create(model="gpt-4o", messages=chat(article), **kw),
        lambda c, **kw: list(c.chat.completions.create(model="gpt-4o", messages=chat(article), stream=True, **kw)),
        lambda c, **kw: c.chat.completions.with_raw_response.create(model="gpt-4o", messages=chat(article), **kw),
        lambda c, **kw: c.responses.create(model="gpt-4o", input=items(article), **kw),
        lambda c, **kw: c.responses.create(model="gpt-4o", input=article, stream=True, **kw).close(),
    ]
    for send in calls:
        for off in (False, {"disable": True}):
            send(client)
            send(wrapped, promptzip=off)
            plain, through = fake.requests[-2:]
            same_body(plain, through)
    with client.chat.completions.stream(model="gpt-4o", messages=chat(article)) as stream:
        stream.until_done()
    with wrapped.chat.completions.stream(model="gpt-4o", messages=chat(article), promptzip=False) as stream:
        stream.until_done()
    same_body(*fake.requests[-2:])
    assert json.loads(fake.requests[-1].body)["messages"] == chat(article)
    assert b"promptzip" not in fake.requests[-1].body  # the keyword never reaches the SDK


def test_promptzip_budget_and_scope_overrides(
    client: Any, fake: FakeOpenAI, bm25: pz.Zipper, article: str, gpt4o: pz.Tokenizer
) -> None:
    wrapped = wrap(client, budget=400, zipper=bm25)

    def sent(**kw: Any) -> list[dict[str, Any]]:
        wrapped.chat.completions.create(model="gpt-4o", messages=chat(article), **kw)
        messages: list[dict[str, Any]] = body(fake, CHAT)["messages"]
        return messages

    default = sent()
    assert tokens(default, gpt4o) <= 400
    assert sent(promptzip=True) == sent(promptzip=None) == sent(promptzip={}) == default

    small = sent(promptzip=BUDGET)
    assert tokens(small, gpt4o) <= BUDGET < tokens(default, gpt4o)
    assert sent(promptzip=pz.Budget(tokens=BUDGET)) == sent(promptzip={"budget": BUDGET}) == small
    assert_chat_compressed({"messages": small}, article, gpt4o)

    tokens_in = tokens(chat(article), gpt4o)
    by_rate = sent(promptzip={"rate": 0.25})
    assert tokens(by_rate, gpt4o) <= int(0.25 * tokens_in)
    assert sent(promptzip=pz.Budget(rate=0.25)) == by_rate

    history = sent(promptzip={"scope": "history", "budget": BUDGET})
    assert history[0] == chat(article)[0]
    assert history[-1] == chat(article)[-1]
    assert tokens(history, gpt4o) <= BUDGET

    # the stream helper and the raw views take the keyword too
    with wrapped.chat.completions.stream(model="gpt-4o", messages=chat(article), promptzip=BUDGET) as stream:
        stream.until_done()
    assert body(fake, CHAT)["messages"] == small
    wrapped.chat.completions.with_raw_response.create(model="gpt-4o", messages=chat(article), promptzip=BUDGET)
    assert body(fake, CHAT)["messages"] == small

    # the wrapper's own settings are unchanged by a call's override
    assert sent() == default
    narrow = wrap(client, budget=BUDGET, zipper=bm25, scope="history")
    narrow.chat.completions.create(model="gpt-4o", messages=chat(article))
    assert body(fake, CHAT)["messages"] == history


BAD_OPTIONS: list[tuple[object, type[pz.PromptZipError], str]] = [
    ("yes", pz.ConfigError, "promptzip= takes False"),
    ([800], pz.ConfigError, "not list"),
    (0, pz.BudgetError, "must be positive"),
    (-5, pz.BudgetError, "must be positive"),
    (0.2, pz.BudgetError, r"promptzip=\{'rate': 0.2\}"),
    ({"budget": 0}, pz.BudgetError, "must be positive"),
    ({"budget": "800"}, pz.BudgetError, "an int number of tokens"),
    ({"budget": 0.5}, pz.BudgetError, "float"),
    ({"rate": 2}, pz.BudgetError, r"\(0, 1\]"),
    ({"rate": "0.2"}, pz.BudgetError, "must be a number"),
    ({"budget": 100, "rate": 0.2}, pz.BudgetError, "not both"),
    ({"scope": "everything"}, pz.ConfigError, "'all'.*'history'"),
    ({"colour": "blue"}, pz.ConfigError, "unknown promptzip= option 'colour'"),
    ({"disable": "yes"}, pz.ConfigError, "True or False"),
    ({"disable": True, "budget": 100}, pz.ConfigError, "no other option"),
]


@pytest.mark.parametrize(("value", "error", "message"), BAD_OPTIONS)
def test_bad_promptzip_values_raise_typed_errors_before_sending(
    client: Any, fake: FakeOpenAI, bm25: pz.Zipper, value: object, error: type[Exception], message: str
) -> None:
    wrapped = wrap(client, budget=BUDGET, zipper=bm25)
    fake.clear()
    hi = [{"role": "user", "content": "Hi"}]
    with pytest.raises(error, match=message):
        wrapped.chat.completions.create(model="gpt-4o", messages=hi, promptzip=value)
    with pytest.raises(error, match=message):
        wrapped.chat.completions.stream(model="gpt-4o", messages=hi, promptzip=value)
    with pytest.raises(error, match=message):
        wrapped.responses.with_raw_response.create(model="gpt-4o", input="Hi", promptzip=value)
    with pytest.raises(error, match=message):  # even when there is no prompt to compress
        wrapped.responses.stream(response_id="resp_1", promptzip=value)
    assert fake.requests == []


def test_bad_input_and_setup_are_typed_errors(client: Any, fake: FakeOpenAI, bm25: pz.Zipper) -> None:
    wrapped = wrap(client, budget=BUDGET, zipper=bm25)
    fake.clear()
    with pytest.raises(pz.InputError):
        wrapped.chat.completions.create(model="gpt-4o", messages="Hi", stream=True)
    with pytest.raises(pz.InputError):
        wrapped.chat.completions.stream(model="gpt-4o", messages=[42])
    with pytest.raises(pz.InputError):
        wrapped.with_streaming_response.responses.create(model="gpt-4o", input=42)
    assert fake.requests == []
    with pytest.raises(pz.ConfigError, match="scope must be 'all'"):
        wrap(client, budget=BUDGET, zipper=bm25, scope="recent")
    with pytest.raises(pz.ConfigError, match="scope must be 'all'"):
        compress_call(budget=BUDGET, zipper=bm25, scope=None)  # type: ignore[arg-type]


def test_decorator_scope_history_keeps_the_current_turn(bm25: pz.Zipper, article: str, gpt4o: pz.Tokenizer) -> None:
    @compress_call(budget=BUDGET, zipper=bm25, scope="history")
    def send(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return messages

    out = send(chat(article))
    assert out[0] == chat(article)[0]
    assert out[-1] == chat(article)[-1]
    assert tokens(out, gpt4o) <= BUDGET < tokens(chat(article), gpt4o)


# ------------------------------------------------------------------------------------------ async
def test_async_streaming_helpers_views_and_options(
    fake: FakeOpenAI, bm25: pz.Zipper, article: str, gpt4o: pz.Tokenizer
) -> None:
    async def main() -> None:
        async with openai.AsyncOpenAI(base_url=fake.url + "/v1", api_key="test", max_retries=0) as client:
            wrapped = wrap(client, budget=BUDGET, zipper=bm25)

            stream = await wrapped.chat.completions.create(model="gpt-4o", messages=chat(article), stream=True)
            assert isinstance(stream, openai.AsyncStream)
            pieces = [c.choices[0].delta.content async for c in stream if c.choices[0].delta.content]
            assert pieces == fake.reply_chunks()
            assert_chat_compressed(body(fake, CHAT), article, gpt4o)

            async with wrapped.chat.completions.stream(model="gpt-4o", messages=chat(article)) as events:
                deltas = [e.delta async for e in events if e.type == "content.delta" and e.delta]
            assert deltas == fake.reply_chunks()
            assert_chat_compressed(body(fake, CHAT), article, gpt4o)

            async with wrapped.responses.stream(model="gpt-4o", input=items(article)) as response_events:
                text = "".join([e.delta async for e in response_events if e.type == "response.output_text.delta"])
            assert text == fake.reply
            assert_input_compressed(body(fake, RESPONSES), article, gpt4o)

            raw = await wrapped.chat.completions.with_raw_response.create(model="gpt-4o", messages=chat(article))
            assert raw.parse().choices[0].message.content == fake.reply
            assert_chat_compressed(body(fake, CHAT), article, gpt4o)
            raw = await wrapped.with_raw_response.responses.create(model="gpt-4o", input=items(article))
            assert raw.parse().output_text == fake.reply
            assert_input_compressed(body(fake, RESPONSES), article, gpt4o)

            streaming = wrapped.chat.completions.with_streaming_response
            async with streaming.create(model="gpt-4o", messages=chat(article), stream=True) as response:
                lines = [line async for line in response.iter_lines() if line.startswith("data: {")]
            assert len(lines) == len(fake.reply_chunks()) + 2
            assert_chat_compressed(body(fake, CHAT), article, gpt4o)

            # per call: off (byte-identical to the plain client), a budget, and bad values at the call
            await client.chat.completions.create(model="gpt-4o", messages=chat(article))
            await wrapped.chat.completions.create(model="gpt-4o", messages=chat(article), promptzip=False)
            same_body(*fake.requests[-2:])
            async with client.chat.completions.stream(model="gpt-4o", messages=chat(article)) as events:
                await events.until_done()
            async with wrapped.chat.completions.stream(
                model="gpt-4o", messages=chat(article), promptzip={"disable": True}
            ) as events:
                await events.until_done()
            same_body(*fake.requests[-2:])
            await wrapped.responses.create(model="gpt-4o", input=items(article), stream=True, promptzip=100)
            sent = body(fake, RESPONSES)["input"]
            assert tokens([{"role": m["role"], "content": _text(m["content"])} for m in sent], gpt4o) <= 100

            fake.clear()
            with pytest.raises(pz.BudgetError):
                await wrapped.chat.completions.create(model="gpt-4o", messages=chat(article), promptzip=0)
            with pytest.raises(pz.ConfigError):
                wrapped.chat.completions.stream(model="gpt-4o", messages=chat(article), promptzip="x")
            with pytest.raises(pz.InputError):  # compression errors come when the stream is opened
                async with wrapped.chat.completions.stream(model="gpt-4o", messages="Hi"):
                    pass
            unopened = wrapped.responses.with_streaming_response.create(model="gpt-4o", input=items(article))
            del unopened  # never entered: nothing is sent, no coroutine is left unawaited
            assert fake.requests == []

    asyncio.run(main())
