"""Single-turn RAG requests through the doors people use: the wrapped OpenAI client (streaming included) and the
LangChain Runnable (chat and string templates, ``.stream`` on the chain), with the context where the frameworks put
it. Each door must keep the instruction and the question byte for byte, keep the answer, and fit the budget.

The real ``openai`` SDK talks to the fake upstream on 127.0.0.1; LangChain's own prompt templates and its
``GenericFakeChatModel`` stand for the model. Compression uses a BM25-only stack (no model), so these are fast.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fake_openai import FakeOpenAI

import promptzip as pz
from promptzip._messages import message_tokens
from promptzip.integrations.decorator import wrap

openai = pytest.importorskip("openai")
prompts = pytest.importorskip("langchain_core.prompts")

DOCS = [
    f"Passage {i}. The harbour of town {i} was rebuilt in {1900 + i} after a storm. Its lighthouse keeper counted "
    f"{i * 7} ships that winter, and the town council met {i + 2} times to plan the new quay."
    for i in range(40)
]
CONTEXT = "\n\n".join(DOCS)
QUESTION = "In which year was the harbour of town 17 rebuilt?"
ANSWER = "1917"
# LangChain's RAG tutorial: the retrieved context in the system message, the question as the user turn.
LANGCHAIN_SYSTEM = (
    "You are an assistant for question-answering tasks. Use the following pieces of retrieved context to answer "
    "the question. If you don't know the answer, say that you don't know. Use three sentences maximum and keep the "
    "answer concise.\n\n{context}"
)
# LlamaIndex's default text_qa_template: one user message with dash fences.
LLAMA_QA = (
    "Context information is below.\n---------------------\n{context_str}\n---------------------\n"
    "Given the context information and not prior knowledge, answer the query.\nQuery: {query_str}\nAnswer: "
)
BUDGET = 200


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(reply="Town 17 rebuilt it in 1917.") as server:
        yield server


def langchain_chat() -> list[dict[str, str]]:
    return [
        {"role": "system", "content": LANGCHAIN_SYSTEM.format(context=CONTEXT)},
        {"role": "user", "content": QUESTION},
    ]


def llama_chat() -> list[dict[str, str]]:
    return [{"role": "user", "content": LLAMA_QA.format(context_str=CONTEXT, query_str=QUESTION)}]


def fixed_pieces(template: str, slot: str) -> list[str]:
    """The template's own text around the context slot: it must reach the model byte for byte."""
    before, after = template.split(slot)
    return [before, after.format(query_str=QUESTION)] if "{query_str}" in after else [before, after]


def check_llama(text: str) -> None:
    before, after = fixed_pieces(LLAMA_QA, "{context_str}")
    assert text.startswith(before)
    assert text.endswith(after)
    assert ANSWER in text
    assert len(text) < len(LLAMA_QA) + len(CONTEXT) // 3


def check_langchain(messages: list[dict[str, Any]]) -> None:
    head = LANGCHAIN_SYSTEM.split("{context}")[0]
    assert messages[0]["content"].startswith(head)
    assert messages[1] == {"role": "user", "content": QUESTION}
    assert ANSWER in messages[0]["content"]


@pytest.mark.parametrize("stream", [False, True])
def test_wrapped_client_compresses_both_templates(fake: FakeOpenAI, bm25: pz.Zipper, stream: bool) -> None:
    with openai.OpenAI(base_url=fake.url + "/v1", api_key="test", max_retries=0) as client:
        wrapped = wrap(client, budget=BUDGET, zipper=bm25)
        for messages in (langchain_chat(), llama_chat()):
            reply = wrapped.chat.completions.create(model="gpt-4o", messages=messages, stream=stream)
            if stream:
                chunks = [c.choices[0].delta.content for c in reply if c.choices and c.choices[0].delta.content]
                assert chunks == fake.reply_chunks()
            sent = json.loads(fake.last("/v1/chat/completions").body)["messages"]
            assert message_tokens(sent, bm25.tokenizer.count) <= BUDGET < message_tokens(messages, bm25.tokenizer.count)
            if len(sent) == 2:
                check_langchain(sent)
            else:
                check_llama(sent[0]["content"])


def test_wrapped_client_stream_helper(fake: FakeOpenAI, bm25: pz.Zipper) -> None:
    with openai.OpenAI(base_url=fake.url + "/v1", api_key="test", max_retries=0) as client:
        wrapped = wrap(client, budget=BUDGET, zipper=bm25)
        with wrapped.chat.completions.stream(model="gpt-4o", messages=llama_chat()) as events:
            final = events.get_final_completion()
        assert final.choices[0].message.content == fake.reply
        check_llama(json.loads(fake.last("/v1/chat/completions").body)["messages"][0]["content"])


def test_runnable_with_both_templates_and_a_streaming_chain(bm25: pz.Zipper) -> None:
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.prompt_values import ChatPromptValue, StringPromptValue

    from promptzip.integrations.langchain import PromptZipRunnable

    runnable = PromptZipRunnable(budget=BUDGET, zipper=bm25)
    chat_prompt = prompts.ChatPromptTemplate.from_messages([("system", LANGCHAIN_SYSTEM), ("human", "{question}")])
    value = (chat_prompt | runnable).invoke({"context": CONTEXT, "question": QUESTION})
    assert isinstance(value, ChatPromptValue)
    check_langchain([{"role": "system", "content": value.messages[0].content}, {"role": "user", "content": QUESTION}])
    assert value.messages[1].content == QUESTION

    string_prompt = prompts.PromptTemplate.from_template(LLAMA_QA)
    text = (string_prompt | runnable).invoke({"context_str": CONTEXT, "query_str": QUESTION})
    assert isinstance(text, StringPromptValue)
    check_llama(text.text)
    assert bm25.tokenizer.count(text.text) <= BUDGET

    seen: list[Any] = []

    def record(prompt_value: Any) -> Any:
        seen.append(prompt_value)
        return prompt_value

    model = GenericFakeChatModel(messages=iter([AIMessage(content="Town 17 rebuilt it in 1917.")]))
    chain = chat_prompt | runnable | record | model
    streamed = "".join(str(c.content) for c in chain.stream({"context": CONTEXT, "question": QUESTION}))
    assert streamed == "Town 17 rebuilt it in 1917."
    sent = seen[0].to_messages()
    check_langchain([{"role": "system", "content": sent[0].content}, {"role": "user", "content": sent[1].content}])
