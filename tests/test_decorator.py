"""The decorator and the wrapped OpenAI client: the real ``fast`` stack, the real ``openai`` SDK, and a real HTTP
server on 127.0.0.1 (tests/fake_openai.py) that records what it receives."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fake_openai import FakeOpenAI

import promptzip as pz
from promptzip._messages import message_tokens
from promptzip.integrations.decorator import compress_call, wrap

QUESTION = "How tall is the Eiffel Tower, in metres?"
BUDGET = 150


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(reply="The tower is 330 metres tall.") as server:
        yield server


def chat(article: str) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "You are a careful travel assistant. Cite the context."},
        {"role": "user", "content": "Here is an article about Paris.\n\n" + article},
        {"role": "assistant", "content": "Thanks. " + article},
        {"role": "user", "content": QUESTION},
    ]


def tokens(messages: list[dict[str, Any]], tokenizer: pz.Tokenizer) -> int:
    return message_tokens(messages, tokenizer.count)


def assert_compressed(sent: list[dict[str, Any]], original: list[dict[str, Any]], tokenizer: pz.Tokenizer) -> None:
    assert tokens(original, tokenizer) > BUDGET >= tokens(sent, tokenizer)
    assert sent[0] == original[0]
    assert sent[-1] == original[-1]
    assert [m["role"] for m in sent] == [m["role"] for m in original]
    assert len(sent[1]["content"]) < len(original[1]["content"])


# ------------------------------------------------------------------------------------------ the decorator
@pytest.mark.slow
def test_sync_function_messages_positional_and_keyword(fast: pz.Zipper, article: str, gpt4o: pz.Tokenizer) -> None:
    def send(model: str, messages: list[dict[str, Any]], temperature: float = 0.0) -> list[dict[str, Any]]:
        """Send a chat."""
        return messages

    decorated = compress_call(budget=BUDGET, zipper=fast)(send)
    assert decorated is not send
    assert decorated.__name__ == "send"
    assert decorated.__doc__ == "Send a chat."
    assert decorated.__wrapped__ is send  # type: ignore[attr-defined]
    messages = chat(article)
    before = copy.deepcopy(messages)
    by_position = decorated("gpt-4o", messages, 0.5)
    by_keyword = decorated(model="gpt-4o", messages=messages)
    assert by_position == by_keyword
    assert_compressed(by_position, before, gpt4o)
    assert messages == before  # the caller's list is not changed
    assert send("gpt-4o", messages) is messages  # the original function is not changed


@pytest.mark.slow
def test_sync_function_prompt_with_and_without_question(fast: pz.Zipper, article: str, gpt4o: pz.Tokenizer) -> None:
    @compress_call(budget=60, arg="prompt", zipper=fast)
    def complete(prompt: str) -> str:
        return prompt

    assert complete(article) == complete(prompt=article)
    assert 0 < gpt4o.count(complete(article)) <= 60 < gpt4o.count(article)

    @compress_call(budget=60, arg="prompt", question="question", zipper=fast)
    def answer(prompt: str, question: str) -> str:
        return prompt

    context = answer(article, QUESTION)
    assert context == answer(question=QUESTION, prompt=article)
    assert "330 metres" in context
    assert QUESTION not in context
    assert gpt4o.count(context) + gpt4o.count(QUESTION) <= 60


@pytest.mark.slow
def test_async_functions(fast: pz.Zipper, article: str, gpt4o: pz.Tokenizer) -> None:
    @compress_call(budget=BUDGET, arg="messages", zipper=fast)
    async def send(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        await asyncio.sleep(0)
        return messages

    @compress_call(budget=60, arg="prompt", zipper=fast)
    async def complete(prompt: str, *, suffix: str = "") -> str:
        return prompt + suffix

    async def main() -> tuple[list[dict[str, Any]], list[dict[str, Any]], str, str]:
        return (
            await send(chat(article)),
            await send(messages=chat(article)),
            await complete(article),
            await complete(prompt=article, suffix="!"),
        )

    positional, keyword, text, text_kw = asyncio.run(main())
    assert positional == keyword
    assert_compressed(positional, chat(article), gpt4o)
    assert text_kw == text + "!"
    assert 0 < gpt4o.count(text) <= 60


@pytest.mark.slow
def test_missing_none_and_short_arguments_pass_through(fast: pz.Zipper) -> None:
    @compress_call(budget=BUDGET, arg="prompt", zipper=fast)
    def complete(prompt: str | None = None) -> str | None:
        return prompt

    assert complete() is None
    assert complete(None) is None
    assert complete("Short prompt.\n\n  Two paragraphs. ") == "Short prompt.\n\n  Two paragraphs. "  # fits: as is

    @compress_call(budget=BUDGET, zipper=fast)
    def send(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return messages

    short = [
        {"role": "user", "content": "The Eiffel Tower is in Paris.\n\nIt is a tall tower."},
        {"role": "assistant", "content": "Yes.\n\nThe tower is 330 metres tall."},
        {"role": "user", "content": QUESTION},
    ]
    assert send(short) is short  # fits: the same list, not a re-joined copy
    with pytest.raises(TypeError):
        complete("a", "b")  # type: ignore[call-arg]  # the function's own TypeError


def test_bad_setup_is_a_config_error_at_decoration_time() -> None:
    def no_messages(prompt: str) -> str:
        return prompt

    with pytest.raises(pz.ConfigError, match=r"no parameter named 'messages' \(its parameters: prompt\)"):
        compress_call(budget=100)(no_messages)
    with pytest.raises(pz.ConfigError, match="no parameter named 'query'"):
        compress_call(budget=100, arg="prompt", question="query")(no_messages)

    def star(*messages: Any) -> None:
        return None

    with pytest.raises(pz.ConfigError, match=r"\*args"):
        compress_call(budget=100)(star)
    with pytest.raises(pz.ConfigError, match="decorates a function"):
        compress_call(budget=100)(42)  # type: ignore[arg-type]
    with pytest.raises(pz.ConfigError, match="unknown preset"):
        compress_call(budget=100, preset="nope")
    with pytest.raises(pz.BudgetError, match="budget is required"):
        compress_call()


def test_wrong_argument_types_are_input_errors() -> None:
    @compress_call(budget=100, arg="messages", question="question", cache="memory")
    def send(messages: Any, question: Any = None) -> Any:
        return messages

    for bad in (42, {"role": "user", "content": "hi"}, [42], [{"role": "wizard", "content": "hi"}]):
        with pytest.raises(pz.InputError):
            send(bad)
    with pytest.raises(pz.InputError, match="question"):
        send([{"role": "user", "content": "hi"}], question=7)

    @compress_call(budget=100, arg="messages", cache="memory")
    async def asend(messages: Any) -> Any:
        return messages

    with pytest.raises(pz.InputError):
        asyncio.run(asend(42))


# ------------------------------------------------------------------------------------------ the wrapped client
@pytest.fixture(scope="module")
def openai() -> Any:
    """The real OpenAI SDK (only these tests need it)."""
    return pytest.importorskip("openai")


def sent_body(fake: FakeOpenAI, path: str) -> dict[str, Any]:
    body: dict[str, Any] = fake.last(path).json()
    return body


@pytest.mark.slow
def test_wrapped_client_sends_compressed_chats(
    openai: Any, fake: FakeOpenAI, fast: pz.Zipper, article: str, gpt4o: pz.Tokenizer
) -> None:
    with openai.OpenAI(base_url=fake.url + "/v1", api_key="test", max_retries=0) as client:
        wrapped = wrap(client, budget=BUDGET, zipper=fast)
        assert wrapped is not client
        assert type(wrapped) is not type(client)
        assert wrapped.base_url == client.base_url  # everything else is the client's own

        reply = wrapped.chat.completions.create(model="gpt-4o", messages=chat(article), temperature=0.2)
        assert reply.choices[0].message.content == fake.reply
        body = sent_body(fake, "/v1/chat/completions")
        assert body["model"] == "gpt-4o"
        assert body["temperature"] == 0.2
        assert_compressed(body["messages"], chat(article), gpt4o)
        assert fake.last().headers["authorization"] == "Bearer test"

        client.chat.completions.create(model="gpt-4o", messages=chat(article))
        assert sent_body(fake, "/v1/chat/completions")["messages"] == chat(article)  # the original is not wrapped

        short = [{"role": "user", "content": "Hi.\n\nSecond paragraph."}, {"role": "user", "content": "Hi"}]
        wrapped.chat.completions.create(model="gpt-4o", messages=short)
        assert sent_body(fake, "/v1/chat/completions")["messages"] == short

        assert [m.id for m in wrapped.models.list()] == ["gpt-4o"]  # other endpoints pass through
        with wrapped.with_options(timeout=30) as copied:
            copied.chat.completions.create(model="gpt-4o", messages=chat(article))
        assert_compressed(sent_body(fake, "/v1/chat/completions")["messages"], chat(article), gpt4o)


@pytest.mark.slow
def test_wrapped_client_responses_string_and_message_list(
    openai: Any, fake: FakeOpenAI, fast: pz.Zipper, article: str, gpt4o: pz.Tokenizer
) -> None:
    with openai.OpenAI(base_url=fake.url + "/v1", api_key="test", max_retries=0) as client:
        wrapped = wrap(client, budget=60, zipper=fast)
        reply = wrapped.responses.create(model="gpt-4o", input=article, instructions="Be brief.")
        assert reply.output_text == fake.reply
        body = sent_body(fake, "/v1/responses")
        assert body["instructions"] == "Be brief."
        assert 0 < gpt4o.count(body["input"]) <= 60 < gpt4o.count(article)

        call = {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": json.dumps({"q": "tower"})}
        items: list[Any] = [
            {"role": "developer", "content": "Answer from the context."},
            {"role": "user", "content": [{"type": "input_text", "text": article}]},
            call,
            {"type": "function_call_output", "call_id": "c1", "output": "330 m"},
            {"role": "user", "content": QUESTION},
        ]
        wrapped = wrap(client, budget=BUDGET, zipper=fast)
        wrapped.responses.create(model="gpt-4o", input=items)
        sent = sent_body(fake, "/v1/responses")["input"]
        assert sent[0] == items[0]
        assert sent[2:] == items[2:]
        assert sent[1]["content"][0]["type"] == "input_text"
        kept = sent[1]["content"][0]["text"]
        assert 0 < len(kept) < len(article)
        assert "330 metres" in kept


@pytest.mark.slow
def test_streaming_requests_are_compressed_and_stream_back_intact(
    openai: Any, fake: FakeOpenAI, fast: pz.Zipper, article: str, gpt4o: pz.Tokenizer
) -> None:
    with openai.OpenAI(base_url=fake.url + "/v1", api_key="test", max_retries=0) as client:
        wrapped = wrap(client, budget=BUDGET, zipper=fast)
        stream = wrapped.chat.completions.create(model="gpt-4o", messages=chat(article), stream=True)
        assert isinstance(stream, openai.Stream)
        pieces = [c.choices[0].delta.content for c in stream if c.choices[0].delta.content]
        assert_compressed(sent_body(fake, "/v1/chat/completions")["messages"], chat(article), gpt4o)
        assert pieces == fake.reply_chunks()  # chunk by chunk, as sent

        with wrapped.responses.create(model="gpt-4o", input=article, stream=True) as events:
            deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
        assert deltas == fake.reply_chunks()
        assert gpt4o.count(sent_body(fake, "/v1/responses")["input"]) <= BUDGET


@pytest.mark.slow
def test_async_client(openai: Any, fake: FakeOpenAI, fast: pz.Zipper, article: str, gpt4o: pz.Tokenizer) -> None:
    async def main() -> list[str]:
        async with openai.AsyncOpenAI(base_url=fake.url + "/v1", api_key="test", max_retries=0) as client:
            wrapped = wrap(client, budget=BUDGET, zipper=fast)
            reply = await wrapped.chat.completions.create(model="gpt-4o", messages=chat(article))
            assert reply.choices[0].message.content == fake.reply
            assert_compressed(sent_body(fake, "/v1/chat/completions")["messages"], chat(article), gpt4o)

            response = await wrapped.responses.create(model="gpt-4o", input=article)
            assert response.output_text == fake.reply
            assert gpt4o.count(sent_body(fake, "/v1/responses")["input"]) <= BUDGET

            stream = await wrapped.chat.completions.create(model="gpt-4o", messages=chat(article), stream=True)
            assert_compressed(sent_body(fake, "/v1/chat/completions")["messages"], chat(article), gpt4o)
            return [c.choices[0].delta.content async for c in stream if c.choices[0].delta.content]

    assert asyncio.run(main()) == fake.reply_chunks()


@pytest.mark.slow
def test_sdk_objects_in_messages(
    openai: Any, fake: FakeOpenAI, fast: pz.Zipper, article: str, gpt4o: pz.Tokenizer
) -> None:
    """A previous reply appended as the SDK's own object is read, counted and sent unchanged."""
    with openai.OpenAI(base_url=fake.url + "/v1", api_key="test", max_retries=0) as client:
        wrapped = wrap(client, budget=BUDGET, zipper=fast)
        previous = wrapped.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])
        messages: list[Any] = [*chat(article)[:3], previous.choices[0].message, {"role": "user", "content": QUESTION}]
        wrapped.chat.completions.create(model="gpt-4o", messages=messages)
        sent = sent_body(fake, "/v1/chat/completions")["messages"]
        assert (sent[3]["role"], sent[3]["content"]) == ("assistant", fake.reply)
        assert sent[-1]["content"] == QUESTION
        assert message_tokens(sent, gpt4o.count) <= BUDGET


def test_wrap_rejects_what_is_not_a_client(openai: Any, fake: FakeOpenAI) -> None:
    with pytest.raises(pz.ConfigError, match=r"openai\.OpenAI"):
        wrap(object(), budget=100)  # type: ignore[type-var]
    with openai.OpenAI(base_url=fake.url + "/v1", api_key="test", max_retries=0) as client:
        wrapped = wrap(client, budget=100, cache="memory")
        with pytest.raises(pz.ConfigError, match="already wrapped"):
            wrap(wrapped, budget=100)
        with pytest.raises(pz.BudgetError):
            wrap(client)
        with pytest.raises(pz.InputError):
            wrapped.chat.completions.create(model="gpt-4o", messages="Hi")


def test_fake_upstream_scripts_faults(openai: Any, fake: FakeOpenAI) -> None:
    """The shared fake upstream itself: scripted statuses, a reset mid-stream, and OpenAI-style 4xx errors."""
    import urllib.error
    import urllib.request

    from fake_openai import Reply

    hi = [{"role": "user", "content": "Hi"}]
    with openai.OpenAI(base_url=fake.url + "/v1", api_key="test", max_retries=0) as client:
        fake.push(Reply(status=503, body=b'{"error": {"message": "down", "type": "server_error"}}'))
        with pytest.raises(openai.InternalServerError, match="down"):
            client.chat.completions.create(model="gpt-4o", messages=hi)
        fake.push(Reply(reset_after=3))
        received = []
        with pytest.raises(openai.APIConnectionError):  # noqa: PT012 - the error comes while iterating
            for chunk in client.chat.completions.create(model="gpt-4o", messages=hi, stream=True):
                received.append(chunk.choices[0].delta.content)
        assert received == ["", *fake.reply_chunks()[:2]][: len(received)]  # what came before the reset
    request = urllib.request.Request(fake.url + "/v1/chat/completions", data=b"{bad json", method="POST")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    with caught.value as response:
        assert response.code == 400
        assert json.loads(response.read())["error"]["type"] == "invalid_request_error"
    assert fake.last().body == b"{bad json"
