"""The framework doors of :mod:`promptzip.evals.integrations` (LangChain, LlamaIndex, Haystack, LiteLLM): each
sends the request through one framework's real objects in one mode and measures what reached the model."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from promptzip.evals._integration_doors import CACHE, PRESET, SEP, TARGET, Bench, Measured, _as_chat, _drain, _timed

__all__ = [
    "via_haystack",
    "via_haystack_agent",
    "via_haystack_chat",
    "via_lc_compressor",
    "via_lc_runnable",
    "via_litellm",
    "via_llama_index",
    "via_llama_index_llm",
]


def via_lc_compressor(b: Bench, mode: str) -> Measured:
    from langchain_core.documents import Document

    from promptzip.integrations.langchain import PromptZipCompressor

    docs = [Document(page_content=d, metadata={"part": i}) for i, d in enumerate(b.request.documents)]
    compressor = PromptZipCompressor(budget=b.request.budget, **b.options())
    call = compressor.acompress_documents if mode == "async" else compressor.compress_documents
    out, s = _timed(lambda: call(docs, b.request.question))
    kept, tokens_in = SEP.join(d.page_content for d in out), b.count(b.request.context)
    reported = sum(d.metadata["promptzip_tokens_out"] for d in out)  # per document, so separators are not in it
    return Measured(tokens_in, b.count(kept), s, (sum(d.metadata["promptzip_tokens_in"] for d in out), reported))


def via_lc_runnable(b: Bench, mode: str) -> Measured:
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage, convert_to_openai_messages
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import RunnableLambda

    from promptzip.integrations.langchain import PromptZipRunnable

    r, seen = b.request, list[Any]()
    prompt = ChatPromptTemplate.from_messages([("system", r.instruction + SEP + "{context}"), ("human", "{question}")])
    model = GenericFakeChatModel(messages=iter([AIMessage(content="$22 billion.")]))
    runnable = PromptZipRunnable(budget=b.budgets["request"], **b.options())

    def record(value: Any) -> Any:  # what the model got
        seen.append(value)
        return value

    chain = prompt | runnable | RunnableLambda(record) | model
    values = {"context": r.context, "question": r.question}
    calls: dict[str, Any] = {"sync": chain.invoke, "async": chain.ainvoke, "stream": lambda v: list(chain.stream(v))}
    _, s = _timed(lambda: calls[mode](values))
    sent = convert_to_openai_messages(seen[0].to_messages())
    return Measured(b.request_tokens(r.messages()), b.request_tokens(sent), s)


def via_llama_index(b: Bench, mode: str) -> Measured:
    from llama_index.core import VectorStoreIndex
    from llama_index.core.embeddings import MockEmbedding
    from llama_index.core.llms import MockLLM
    from llama_index.core.schema import TextNode

    from promptzip.integrations.llama_index import PromptZipNodePostprocessor

    nodes = [TextNode(text=d, id_=f"part-{i}") for i, d in enumerate(b.request.documents)]
    index = VectorStoreIndex(nodes, embed_model=MockEmbedding(embed_dim=8))
    post = PromptZipNodePostprocessor(budget=b.request.budget, target=TARGET, **b.options())
    engine = index.as_query_engine(
        llm=MockLLM(), similarity_top_k=len(nodes), node_postprocessors=[post], streaming=mode == "stream"
    )
    q = b.request.question
    response, s = _timed(lambda: engine.aquery(q) if mode == "async" else engine.query(q))
    if mode == "stream":  # the mock LLM streams the prompt it got back
        "".join(response.response_gen)
    kept = SEP.join(n.node.get_content() for n in response.source_nodes)
    return Measured(b.count(b.request.context), b.count(kept), s)


def via_llama_index_llm(b: Bench, mode: str) -> Measured:
    """PromptZipLLM around LlamaIndex's mock LLM that keeps the messages it got: chat, achat or stream_chat."""
    from llama_index.core.llms import ChatMessage
    from llama_index.core.llms.mock import MockLLMWithChatMemoryOfLastCall

    from promptzip.integrations.llama_index import PromptZipLLM

    r, model = b.request, MockLLMWithChatMemoryOfLastCall(max_tokens=None)
    llm = PromptZipLLM(model, budget=b.budgets["request"], **b.options())
    messages = [ChatMessage(role=m["role"], content=m["content"]) for m in r.messages()]
    calls: dict[str, Any] = {
        "sync": lambda: llm.chat(messages),
        "async": lambda: llm.achat(messages),
        "stream": lambda: list(llm.stream_chat(messages)),
    }
    _, s = _timed(calls[mode])
    sent = [{"role": m.role.value, "content": m.content} for m in model.last_chat_messages or ()]
    return Measured(b.request_tokens(r.messages()), b.request_tokens(sent), s)


def via_haystack(b: Bench, mode: str) -> Measured:
    os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")  # before haystack is imported: no phoning home
    from haystack import Document, Pipeline
    from haystack.components.builders import PromptBuilder
    from haystack.components.retrievers.in_memory import InMemoryBM25Retriever
    from haystack.document_stores.in_memory import InMemoryDocumentStore

    from promptzip.integrations.haystack import PromptZipDocumentCompressor

    store = InMemoryDocumentStore()
    store.write_documents([Document(content=d, id=f"part-{i}") for i, d in enumerate(b.request.documents)])
    template = "{{ instruction }}\n\n{% for d in documents %}{{ d.content }}\n\n{% endfor %}Question: {{ query }}"
    pipeline = Pipeline()
    pipeline.add_component("retriever", InMemoryBM25Retriever(store, top_k=len(b.request.documents)))
    pipeline.add_component("compressor", PromptZipDocumentCompressor(budget=b.request.budget, **b.options()))
    pipeline.add_component("prompt", PromptBuilder(template, required_variables=["documents", "query"]))
    pipeline.connect("retriever.documents", "compressor.documents")
    pipeline.connect("compressor.documents", "prompt.documents")
    q = b.request.question
    data = {"retriever": {"query": q}, "compressor": {"query": q}, "prompt": {"query": q}}
    run = pipeline.run_async if mode == "async" else pipeline.run
    out, s = _timed(lambda: run(data, include_outputs_from={"compressor"}))
    kept = SEP.join(d.content or "" for d in out["compressor"]["documents"])
    return Measured(b.count(b.request.context), b.count(kept), s)


def via_haystack_chat(b: Bench, mode: str) -> Measured:
    """ChatPromptBuilder -> PromptZipChatCompressor -> a real OpenAIChatGenerator, which calls the fake upstream."""
    os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")  # before haystack is imported: no phoning home
    from haystack import Pipeline
    from haystack.components.builders import ChatPromptBuilder
    from haystack.components.generators.chat import OpenAIChatGenerator
    from haystack.dataclasses import ChatMessage
    from haystack.utils import Secret

    from promptzip.integrations.haystack import PromptZipChatCompressor

    r = b.request
    template = [ChatMessage.from_system(r.instruction + SEP + "{{ context }}"), ChatMessage.from_user("{{ question }}")]
    streaming: dict[str, Any] = {"streaming_callback": lambda chunk: None} if mode == "stream" else {}
    generator = OpenAIChatGenerator(
        api_key=Secret.from_token("sk-fake"), model=TARGET, api_base_url=b.upstream.url, **streaming
    )
    pipeline = Pipeline()
    pipeline.add_component("builder", ChatPromptBuilder(template=template, required_variables="*"))
    pipeline.add_component("compressor", PromptZipChatCompressor(budget=b.budgets["request"], **b.options()))
    pipeline.add_component("llm", generator)
    pipeline.connect("builder.prompt", "compressor.messages")
    pipeline.connect("compressor.messages", "llm.messages")
    data = {"builder": {"context": r.context, "question": r.question}}

    def run() -> Any:  # the generator's client closed after the run, on the same event loop for async
        try:
            return pipeline.run(data)
        finally:
            generator.close()

    async def run_async() -> Any:
        try:
            return await pipeline.run_async(data)
        finally:
            await generator.close_async()

    with b.received("/v1/chat/completions") as got:
        _, s = _timed(run_async if mode == "async" else run)
    return Measured(b.request_tokens(r.messages()), b.request_tokens(got[0]["messages"]), s)


def via_litellm(path: str) -> Callable[[Bench, str], Measured]:
    """A door through LiteLLM's Router with the hook: ``acompletion``, ``aresponses`` / ``responses`` (input as
    message items) or ``aanthropic_messages`` (the system message apart), after the API of ``path``."""

    def door(b: Bench, mode: str) -> Measured:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before litellm is imported: no download
        import litellm

        from promptzip.integrations.litellm import PromptZipHook

        budget, messages = b.budgets["request"], b.request.messages()
        provider, base = (
            ("anthropic", b.upstream.url.removesuffix("/v1")) if path == "/v1/messages" else ("openai", b.upstream.url)
        )
        params = {"model": f"{provider}/{TARGET}", "api_base": base, "api_key": "sk-fake"}
        deployment = {"model_name": "rag", "litellm_params": params, "model_info": {"promptzip": {"budget": budget}}}
        router: Any = litellm.Router(model_list=[deployment])  # type: ignore[attr-defined]
        given: dict[str, Any] = {"zippers": {PRESET: b.zipper}} if b.zipper else {"cache": CACHE}
        hook = PromptZipHook(preset=PRESET, target=TARGET, deadline=600, **given)
        before = list(litellm.callbacks)
        litellm.callbacks = [*before, hook]
        try:
            with b.received(path) as got:
                _, s = _timed(lambda: _litellm_call(router, path, messages, mode))
        finally:
            litellm.callbacks = before
        return Measured(b.request_tokens(messages), b.request_tokens(_as_chat(path, got[0])), s)

    return door


def _litellm_call(router: Any, path: str, messages: list[dict[str, str]], mode: str) -> Any:
    """The Router's call for the API of ``path`` in ``mode``: a coroutine, or (``sync``, Responses only: LiteLLM's
    sync Responses handler runs the hook itself) the reply; a stream read to the end."""
    options: dict[str, Any] = {"model": "rag", "stream": True} if mode == "stream" else {"model": "rag"}
    if path == "/v1/messages":
        system, rest = messages[0]["content"], messages[1:]
        return _drain(router.aanthropic_messages(max_tokens=64, system=system, messages=rest, **options))
    if path == "/v1/responses":
        if mode == "sync":
            return router.responses(input=messages, **options)
        return _drain(router.aresponses(input=messages, **options))
    return _drain(router.acompletion(messages=messages, **options))


def via_haystack_agent(b: Bench, mode: str) -> Measured:
    """A Haystack Agent whose chat generator is a real OpenAIChatGenerator (to the fake upstream) wrapped in
    PromptZipChatGenerator: the agent's step request, system prompt and question, compressed."""
    os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")  # before haystack is imported: no phoning home
    from haystack.components.agents import Agent
    from haystack.components.generators.chat import OpenAIChatGenerator
    from haystack.dataclasses import ChatMessage
    from haystack.utils import Secret

    from promptzip.integrations.haystack import PromptZipChatGenerator

    r = b.request
    generator = OpenAIChatGenerator(api_key=Secret.from_token("sk-fake"), model=TARGET, api_base_url=b.upstream.url)
    wrapped = PromptZipChatGenerator(generator, budget=b.budgets["request"], **b.options())
    streaming: dict[str, Any] = {"streaming_callback": lambda chunk: None} if mode == "stream" else {}
    agent = Agent(chat_generator=wrapped, system_prompt=r.instruction + SEP + r.context, **streaming)
    messages = [ChatMessage.from_user(r.question)]

    def run() -> Any:
        try:
            return agent.run(messages=messages)
        finally:
            wrapped.close()

    async def run_async() -> Any:
        if streaming:  # an async agent wants an async callback
            streaming["streaming_callback"] = _ignore_chunk
        try:
            return await agent.run_async(messages=messages)
        finally:
            await wrapped.close_async()

    with b.received("/v1/chat/completions") as got:
        _, s = _timed(run_async if mode == "async" else run)
    return Measured(b.request_tokens(r.messages()), b.request_tokens(got[0]["messages"]), s)


async def _ignore_chunk(chunk: Any) -> None:
    return None
