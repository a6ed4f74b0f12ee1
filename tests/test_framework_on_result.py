"""What the model did not get, seen from the framework doors: LangChain's compressor and runnable, LlamaIndex's node
postprocessor and LLM, Haystack's three components and the LiteLLM hook take ``on_result=``, as ``pz.wrap`` does.
Each hands the ``Result`` of every compression it did to the callback before its output is returned or sent, with
the real framework objects (and the recording fake upstream where a call goes out): the dropped spans are missing
from the output (a document of which nothing was kept is among them, whole), input that fits reports nothing, a
callback that raises stops the call with its own exception, and a callback that is not callable is refused at
construction. Haystack carries the callback through ``to_dict`` / ``from_dict`` by its import path."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

os.environ["HAYSTACK_TELEMETRY_ENABLED"] = "False"  # before the first import of haystack: it would phone home
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm would download its cost map on import

import litellm
from haystack import Document as HaystackDocument
from haystack import Pipeline
from haystack.components.generators.chat import OpenAIChatGenerator
from haystack.core.errors import PipelineRuntimeError, SerializationError
from haystack.dataclasses import ChatMessage as HaystackMessage
from haystack.utils import Secret
from langchain_core.documents import Document
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from llama_index.core.base.llms.types import ChatMessage as LlamaMessage
from llama_index.core.llms.mock import MockLLMWithChatMemoryOfLastCall
from llama_index.core.schema import NodeWithScore, TextNode
from proxy_helpers import REPORT, bm25, last_body

import promptzip as pz
from promptzip._cache import MemoryCache
from promptzip.integrations.haystack import (
    PromptZipChatCompressor,
    PromptZipChatGenerator,
    PromptZipDocumentCompressor,
)
from promptzip.integrations.langchain import PromptZipCompressor, PromptZipRunnable
from promptzip.integrations.litellm import PromptZipHook
from promptzip.integrations.llama_index import PromptZipLLM, PromptZipNodePostprocessor
from promptzip.integrations.proxy.testing import FakeUpstream

# litellm's own types make pydantic warn (a ReadOnly TypedDict item) when a Router builds its schemas; not ours.
pytestmark = pytest.mark.filterwarnings("ignore:Item.*the `ReadOnly` qualifier:UserWarning")

QUERY = "How tall is the Eiffel Tower?"
DOC_BUDGET = 60  # well under the article's ~280 tokens: whole paragraphs go
CHAT_BUDGET = 150
ASKED = "How many ships did the harbour handle in year 12?"
PROMPT = f"Answer from the documents.\n\nDocuments:\n{REPORT}\n\nQuestion: {ASKED}"


class Refused(Exception):
    """What the refusing callback raises: it must reach the caller as itself."""


def refuse(result: pz.Result) -> None:
    raise Refused(f"{len(result.dropped)} spans dropped")


def kept_in_memory(result: pz.Result) -> None:
    """A module-level callback, which Haystack can serialize by its import path."""


def fresh() -> pz.Zipper:
    """A model-free stack with a cache of its own, so no conversation state carries over between tests."""
    return bm25("fast", "gpt-4o", MemoryCache())


def paragraphs(article: str) -> list[str]:
    return article.split("\n\n")


def check_dropped(result: pz.Result, given: list[str], kept: dict[int, str], budget: int = DOC_BUDGET) -> None:
    """``result`` is the compression of ``given`` (source ids: their indexes) that gave ``kept`` (index -> text
    returned): within the budget, something dropped, each dropped span missing from what its source became, and
    each text that vanished entirely dropped whole."""
    assert result.tokens_out <= budget < result.tokens_in
    assert result.dropped
    for d in result.dropped:
        assert d.text == given[int(d.source_id)][d.start : d.end]
        assert d.text not in kept.get(int(d.source_id), "")
    vanished = [i for i in range(len(given)) if i not in kept]
    assert vanished  # the budget left some paragraphs out altogether: they must not vanish unreported
    for i in vanished:
        spans = sorted((d.start, d.end) for d in result.dropped if d.source_id == str(i))
        assert _words("".join(given[i][s:e] for s, e in spans)) == _words(given[i])


def _words(text: str) -> list[str]:
    return text.split()


# ------------------------------------------------------------------------------------------------- LangChain
def test_langchain_compressor_reports_the_documents_it_dropped(bm25: pz.Zipper, article: str) -> None:
    texts = paragraphs(article)
    docs = [Document(page_content=t, id=str(i)) for i, t in enumerate(texts)]
    seen: list[pz.Result] = []
    compressor = PromptZipCompressor(budget=DOC_BUDGET, zipper=bm25, on_result=seen.append)
    out = compressor.compress_documents(docs, QUERY)
    assert len(seen) == 1
    check_dropped(seen[0], texts, {int(d.id or ""): d.page_content for d in out})

    again = asyncio.run(compressor.acompress_documents(docs, QUERY))
    assert len(seen) == 2
    assert [d.page_content for d in again] == [d.page_content for d in out]
    assert seen[1].dropped == seen[0].dropped

    whole = PromptZipCompressor(budget=2000, zipper=bm25, on_result=seen.append).compress_documents(docs, QUERY)
    assert [d.page_content for d in whole] == texts
    assert len(seen) == 2  # documents that fit come back whole and report nothing


def test_langchain_runnable_reports_chats_and_prompts(bm25: pz.Zipper) -> None:
    seen: list[pz.Result] = []
    got: list[Any] = []
    template = ChatPromptTemplate.from_messages([("system", "Answer from the documents."), ("user", "{question}")])
    chain = template | PromptZipRunnable(budget=CHAT_BUDGET, zipper=fresh(), on_result=seen.append)
    chain.pipe(RunnableLambda(got.append)).invoke({"question": f"Documents:\n{REPORT}\n\nQuestion: {ASKED}"})
    assert len(seen) == 1
    sent = got[0].to_messages()
    assert [m["content"] for m in seen[0].messages or ()] == [m.content for m in sent]
    assert seen[0].dropped
    assert all(d.text not in sent[1].content for d in seen[0].dropped)

    runnable = PromptZipRunnable(budget=80, zipper=bm25, on_result=seen.append)
    text = asyncio.run(runnable.ainvoke(PROMPT))
    assert len(seen) == 2
    assert seen[1].text == text
    assert seen[1].dropped
    assert all(d.text not in text for d in seen[1].dropped)

    short = [SystemMessage("Be brief."), HumanMessage("Hi")]
    assert runnable.invoke(short) == short
    assert runnable.invoke("Hi") == "Hi"
    assert len(seen) == 2  # what fits goes on as given and reports nothing


def test_langchain_callbacks_that_raise_stop_the_chain(bm25: pz.Zipper, article: str) -> None:
    docs = [Document(page_content=t) for t in paragraphs(article)]
    with pytest.raises(Refused):
        PromptZipCompressor(budget=DOC_BUDGET, zipper=bm25, on_result=refuse).compress_documents(docs, QUERY)
    with pytest.raises(Refused):
        asyncio.run(
            PromptZipCompressor(budget=DOC_BUDGET, zipper=bm25, on_result=refuse).acompress_documents(docs, QUERY)
        )
    reached: list[Any] = []
    chain = PromptZipRunnable(budget=80, zipper=bm25, on_result=refuse) | RunnableLambda(reached.append)
    with pytest.raises(Refused):
        chain.invoke(PROMPT)
    with pytest.raises(Refused):
        asyncio.run(chain.ainvoke(PROMPT))
    assert reached == []  # the model after the runnable is never called


def test_langchain_refuses_a_callback_that_is_not_callable(bm25: pz.Zipper) -> None:
    with pytest.raises(pz.ConfigError, match="on_result"):
        PromptZipCompressor(budget=100, zipper=bm25, on_result="print")
    with pytest.raises(pz.ConfigError, match="on_result"):
        PromptZipRunnable(budget=100, zipper=bm25, on_result=42)
    assert "on_result" not in PromptZipRunnable(budget=100, on_result=print).model_dump()  # a callable is not data


# ------------------------------------------------------------------------------------------------- LlamaIndex
def test_llama_index_postprocessor_reports_the_nodes_it_dropped(bm25: pz.Zipper, article: str) -> None:
    texts = paragraphs(article)
    nodes = [NodeWithScore(node=TextNode(text=t, id_=str(i)), score=1.0) for i, t in enumerate(texts)]
    seen: list[pz.Result] = []
    postprocessor = PromptZipNodePostprocessor(budget=DOC_BUDGET, zipper=bm25, on_result=seen.append)
    out = postprocessor.postprocess_nodes(nodes, query_str=QUERY)
    assert len(seen) == 1
    check_dropped(seen[0], texts, {int(n.node.node_id): n.node.get_content() for n in out})

    again = asyncio.run(postprocessor.apostprocess_nodes(nodes, query_str=QUERY))
    assert len(seen) == 2
    assert [n.node.get_content() for n in again] == [n.node.get_content() for n in out]

    whole = PromptZipNodePostprocessor(budget=2000, zipper=bm25, on_result=seen.append)
    assert [n.node.get_content() for n in whole.postprocess_nodes(nodes, query_str=QUERY)] == texts
    assert len(seen) == 2  # nodes that fit come back whole and report nothing

    with pytest.raises(Refused):
        PromptZipNodePostprocessor(budget=DOC_BUDGET, zipper=bm25, on_result=refuse).postprocess_nodes(
            nodes, query_str=QUERY
        )
    with pytest.raises(Refused):
        asyncio.run(
            PromptZipNodePostprocessor(budget=DOC_BUDGET, zipper=bm25, on_result=refuse).apostprocess_nodes(
                nodes, query_str=QUERY
            )
        )
    assert "on_result" not in postprocessor.to_dict()  # serialized as LlamaIndex's own callback_manager: not at all


def test_llama_index_llm_reports_each_request_before_the_wrapped_llm(bm25: pz.Zipper) -> None:
    seen: list[pz.Result] = []
    inner = MockLLMWithChatMemoryOfLastCall()
    llm = PromptZipLLM(inner, budget=CHAT_BUDGET, zipper=fresh(), on_result=seen.append)
    chat = [
        LlamaMessage(role="system", content="Answer from the documents."),
        LlamaMessage(role="user", content=f"Documents:\n{REPORT}\n\nQuestion: {ASKED}"),
    ]
    llm.chat(chat)
    assert len(seen) == 1
    sent = [m.content for m in inner.last_chat_messages or ()]
    assert [m["content"] for m in seen[0].messages or ()] == sent
    assert seen[0].dropped
    assert all(d.text not in (sent[1] or "") for d in seen[0].dropped)

    answer = asyncio.run(llm.acomplete(PROMPT))  # the mock echoes the prompt it got
    assert len(seen) == 2
    assert seen[1].text == answer.text
    assert all(d.text not in answer.text for d in seen[1].dropped)

    llm.chat([LlamaMessage(role="user", content="Hi")])
    llm.complete("Hi")
    assert len(seen) == 2  # requests that fit are sent as given and report nothing

    stopped = MockLLMWithChatMemoryOfLastCall()
    refusing = PromptZipLLM(stopped, budget=CHAT_BUDGET, zipper=fresh(), on_result=refuse)
    with pytest.raises(Refused):
        refusing.chat(chat)
    with pytest.raises(Refused):
        asyncio.run(refusing.achat(chat))
    with pytest.raises(Refused):
        refusing.complete(PROMPT)
    assert stopped.last_called_chat_function == []  # the wrapped LLM was never called


def test_llama_index_refuses_a_callback_that_is_not_callable(bm25: pz.Zipper) -> None:
    with pytest.raises(pz.ConfigError, match="on_result"):
        PromptZipNodePostprocessor(budget=100, zipper=bm25, on_result="print")  # type: ignore[arg-type]
    with pytest.raises(pz.ConfigError, match="on_result"):
        PromptZipLLM(MockLLMWithChatMemoryOfLastCall(), budget=100, zipper=bm25, on_result=1)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------- Haystack
def test_haystack_document_compressor_reports_the_documents_it_dropped(bm25: pz.Zipper, article: str) -> None:
    texts = paragraphs(article)
    docs = [HaystackDocument(content=t, id=str(i)) for i, t in enumerate(texts)]
    seen: list[pz.Result] = []
    compressor = PromptZipDocumentCompressor(budget=DOC_BUDGET, zipper=bm25, on_result=seen.append)
    out = compressor.run(documents=docs, query=QUERY)["documents"]
    assert len(seen) == 1
    check_dropped(seen[0], texts, {int(d.id): d.content or "" for d in out})

    again = asyncio.run(compressor.run_async(documents=docs, query=QUERY))["documents"]
    assert len(seen) == 2
    assert [d.content for d in again] == [d.content for d in out]

    whole = PromptZipDocumentCompressor(budget=2000, zipper=bm25, on_result=seen.append)
    assert [d.content for d in whole.run(documents=docs, query=QUERY)["documents"]] == texts
    assert len(seen) == 2  # documents that fit come back whole and report nothing

    refusing = PromptZipDocumentCompressor(budget=DOC_BUDGET, zipper=bm25, on_result=refuse)
    with pytest.raises(Refused):
        refusing.run(documents=docs, query=QUERY)
    with pytest.raises(Refused):
        asyncio.run(refusing.run_async(documents=docs, query=QUERY))
    pipeline = Pipeline()
    pipeline.add_component("compressor", refusing)
    with pytest.raises(PipelineRuntimeError) as stopped:  # Haystack names the component that failed
        pipeline.run({"compressor": {"documents": docs, "query": QUERY}})
    assert isinstance(stopped.value.__cause__, Refused)


def test_haystack_chat_doors_report_before_the_request_goes_out(upstream: FakeUpstream) -> None:
    chat = [
        HaystackMessage.from_system("Answer from the documents."),
        HaystackMessage.from_user(f"Documents:\n{REPORT}\n\nQuestion: {ASKED}"),
    ]
    seen: list[pz.Result] = []
    compressor = PromptZipChatCompressor(budget=CHAT_BUDGET, zipper=fresh(), on_result=seen.append)
    out = asyncio.run(compressor.run_async(chat))["messages"]
    assert len(seen) == 1
    assert [m["content"] for m in seen[0].messages or ()] == [m.text for m in out]
    assert all(d.text not in (out[1].text or "") for d in seen[0].dropped)

    def generator() -> OpenAIChatGenerator:
        return OpenAIChatGenerator(api_key=Secret.from_token("sk-test"), model="gpt-4o", api_base_url=upstream.url)

    wrapped = PromptZipChatGenerator(generator(), budget=CHAT_BUDGET, zipper=fresh(), on_result=seen.append)
    try:
        assert wrapped.run(chat)["replies"]
    finally:
        wrapped.close()
    assert len(seen) == 2
    sent = last_body(upstream, "/v1/chat/completions")["messages"]
    assert [dict(m) for m in seen[1].messages or ()] == sent  # the Result is of the request that went out
    assert seen[1].dropped
    assert all(d.text not in sent[1]["content"] for d in seen[1].dropped)

    assert compressor.run([HaystackMessage.from_user("Hi")])["messages"][0].text == "Hi"
    assert len(seen) == 2  # a chat that fits reports nothing

    before = len(upstream.requests)
    refusing = PromptZipChatGenerator(generator(), budget=CHAT_BUDGET, zipper=fresh(), on_result=refuse)
    try:
        with pytest.raises(Refused):
            refusing.run(chat)
        with pytest.raises(Refused):
            asyncio.run(refusing.run_async(chat))
    finally:
        refusing.close()
    with pytest.raises(Refused):
        PromptZipChatCompressor(budget=CHAT_BUDGET, zipper=fresh(), on_result=refuse).run(chat)
    assert len(upstream.requests) == before  # nothing was sent


def test_haystack_refuses_a_callback_that_is_not_callable(bm25: pz.Zipper) -> None:
    for door in (PromptZipDocumentCompressor, PromptZipChatCompressor):
        with pytest.raises(pz.ConfigError, match="on_result"):
            door(budget=100, zipper=bm25, on_result="print")  # type: ignore[arg-type]
    with pytest.raises(pz.ConfigError, match="on_result"):
        PromptZipChatGenerator(OpenAIChatGenerator(api_key=Secret.from_token("k")), budget=100, on_result=1)  # type: ignore[arg-type]


@pytest.fixture
def openai_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")


def test_haystack_serializes_the_callback_by_its_import_path(openai_key: None) -> None:
    path = f"{__name__}.kept_in_memory"
    inner = OpenAIChatGenerator(model="gpt-4o", api_base_url="http://127.0.0.1:9/v1")
    components: dict[str, Any] = {
        "documents": PromptZipDocumentCompressor(budget=70, cache="memory", on_result=kept_in_memory),
        "chat": PromptZipChatCompressor(rate=0.3, cache="memory", on_result=kept_in_memory),
        "generator": PromptZipChatGenerator(inner, rate=0.3, cache="memory", on_result=kept_in_memory),
    }
    pipeline = Pipeline()
    for name, component in components.items():
        assert component.to_dict()["init_parameters"]["on_result"] == path
        pipeline.add_component(name, component)
    loaded = Pipeline.loads(pipeline.dumps(), allowed_modules=["promptzip.integrations.haystack", __name__])
    assert loaded.to_dict()["components"] == pipeline.to_dict()["components"]
    for name, component in components.items():
        again = loaded.get_component(name)
        assert type(again) is type(component)
        assert again.on_result is kept_in_memory
        assert again._compression.on_result is kept_in_memory  # it is the one the compression calls

    # Without a callback, to_dict is what it was; a lambda cannot be imported back, and Haystack says so.
    assert "on_result" not in PromptZipDocumentCompressor(budget=70).to_dict()["init_parameters"]
    with pytest.raises(SerializationError, match="lambda"):
        PromptZipChatCompressor(budget=70, on_result=lambda r: None).to_dict()


# ------------------------------------------------------------------------------------------------- LiteLLM
@pytest.fixture
def register() -> Iterator[Callable[[PromptZipHook], PromptZipHook]]:
    """Registers one hook in ``litellm.callbacks`` for one test (any other PromptZipHook steps aside meanwhile),
    and puts the callbacks back as they were."""
    before = list(litellm.callbacks)

    def use(hook: PromptZipHook) -> PromptZipHook:
        litellm.callbacks = [c for c in before if not isinstance(c, PromptZipHook)] + [hook]
        return hook

    yield use
    litellm.callbacks = before


def router(upstream: FakeUpstream) -> litellm.Router:
    params = {"model": "openai/gpt-4o", "api_base": upstream.url, "api_key": "sk-test"}
    return litellm.Router(
        model_list=[
            {"model_name": "rag", "litellm_params": params, "model_info": {"promptzip": {"budget": CHAT_BUDGET}}},
            {"model_name": "plain", "litellm_params": params},
        ]
    )


CHAT = [
    {"role": "system", "content": "Answer from the documents."},
    {"role": "user", "content": f"Documents:\n{REPORT}\n\nQuestion: {ASKED}"},
]


def test_litellm_hook_reports_what_it_sent(register: Any, upstream: FakeUpstream) -> None:
    seen: list[pz.Result] = []
    register(PromptZipHook(zippers={"fast": fresh()}, deadline=60, on_result=seen.append))
    rag = router(upstream)
    asyncio.run(rag.acompletion(model="rag", messages=CHAT))
    assert len(seen) == 1
    sent = last_body(upstream, "/v1/chat/completions")["messages"]
    assert [dict(m) for m in seen[0].messages or ()] == sent
    assert seen[0].tokens_out <= CHAT_BUDGET < seen[0].tokens_in
    assert seen[0].dropped
    assert all(d.text not in sent[1]["content"] for d in seen[0].dropped)

    asyncio.run(rag.acompletion(model="plain", messages=CHAT))  # not opted in: sent as given
    asyncio.run(rag.acompletion(model="rag", messages=[{"role": "user", "content": "Hi"}]))  # fits
    assert len(seen) == 1


def test_litellm_callback_that_raises_is_not_failed_open(register: Any, upstream: FakeUpstream) -> None:
    tries: list[pz.Result] = []

    def count_and_refuse(result: pz.Result) -> None:
        tries.append(result)
        refuse(result)

    register(PromptZipHook(zippers={"fast": fresh()}, deadline=60, on_result=count_and_refuse))
    before = len(upstream.requests)
    with pytest.raises(Refused):
        asyncio.run(router(upstream).acompletion(model="rag", messages=CHAT))
    params = {"model": "openai/gpt-4o", "api_base": upstream.url, "api_key": "sk-test"}
    with pytest.raises(Refused):  # the plain SDK path, the deployment's settings given with the call
        asyncio.run(litellm.acompletion(**params, messages=CHAT, model_info={"promptzip": {"budget": CHAT_BUDGET}}))
    assert len(upstream.requests) == before  # nothing was sent
    assert tries  # the Router retries a failed call (its num_retries): each try was refused again


def test_litellm_refuses_a_callback_that_is_not_callable() -> None:
    with pytest.raises(pz.ConfigError, match="on_result"):
        PromptZipHook(on_result="print")  # type: ignore[arg-type]
