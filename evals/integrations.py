"""``integrations``: one realistic RAG request through every door promptzip offers, under the same allowance.

    python -P -m promptzip.evals.integrations [--out DIR]      # evals/results/integrations.{json,md}

The request: the bundled State of the Union address (``promptzip/_sample/sotu.txt``, ~10.7k o200k tokens) split
into :data:`DOCUMENTS` documents of consecutive paragraphs, the bundled question (``sample.json``), and LangChain's
RAG-tutorial instruction; as a chat, the instruction and the documents (joined by a blank line) are the system
message and the question the user turn. Every door gets :data:`CONTEXT_BUDGET` tokens for the context, written in
the budget that door takes (:data:`SCOPES`): the documents alone, the whole prompt string, or the whole chat.

Tokens are counted with ``promptzip.get_tokenizer("gpt-4o")`` on what the budget covers as it reached the model
(the fake upstream's recorded body, the prompt a mock LLM echoed, the documents a retriever step passed on);
``reported`` is what the door itself says (``Result.tokens_*``, the proxy's ``x-promptzip-tokens-*`` headers,
LLMLingua's ``origin_tokens``/``compressed_tokens``). Which of sync / async / streaming a door supports is data
(:data:`DOORS`), read from what each integration implements; the modes listed as run are exercised, each checked
against the budget. Wall time is one call after one untimed warm-up call of the same request through the same door
(models loaded, query-agnostic scores cached), so it is the door's own cost, not the first call's.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import inspect
import json
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import promptzip as pz
from promptzip._messages import message_tokens

__all__ = ["DOORS", "Request", "Row", "main", "markdown", "markdown_table", "run_doors", "sample_request"]

PRESET, TARGET, CACHE = "fast", "gpt-4o", "memory"
DOCUMENTS = 8
CONTEXT_BUDGET = 400
SEP = "\n\n"
INSTRUCTION = (  # LangChain's RAG tutorial system prompt, without its {context} slot
    "You are an assistant for question-answering tasks. Use the following pieces of retrieved context to answer "
    "the question. If you don't know the answer, say that you don't know. Use three sentences maximum and keep the "
    "answer concise."
)
SCOPES = {
    "context": "the documents joined by a blank line ≤ N",
    "prompt": 'instruction + context + question as one string ≤ tokens(instruction + "\\n\\n" + question) + N',
    "request": "the chat (OpenAI convention) ≤ tokens of the same chat with an empty context + N",
}
COMMAND = "python -P -m promptzip.evals.integrations"


@dataclass(frozen=True, slots=True)
class Request:
    """One RAG request: documents, question, instruction and the context allowance ``budget`` (tokens)."""

    documents: tuple[str, ...]
    question: str
    instruction: str = INSTRUCTION
    budget: int = CONTEXT_BUDGET

    @property
    def context(self) -> str:
        return SEP.join(self.documents)

    def messages(self, context: str | None = None) -> list[dict[str, str]]:
        system = f"{self.instruction}{SEP}{self.context if context is None else context}"
        return [{"role": "system", "content": system}, {"role": "user", "content": self.question}]


def sample_request(documents: int = DOCUMENTS, budget: int = CONTEXT_BUDGET) -> Request:
    """The bundled sample as ``documents`` groups of consecutive paragraphs (nearly equal in number)."""
    folder = resources.files("promptzip") / "_sample"
    sample = json.loads((folder / "sample.json").read_text(encoding="utf-8"))
    paragraphs = [p for p in (folder / sample["file"]).read_text(encoding="utf-8").split(SEP) if p.strip()]
    size = -(-len(paragraphs) // documents)
    groups = [SEP.join(paragraphs[i : i + size]) for i in range(0, len(paragraphs), size)]
    return Request(tuple(groups), sample["question"], budget=budget)


@dataclass(frozen=True, slots=True)
class Measured:
    """One call through a door: tokens in and out on what its budget covers, the door's own figures, seconds."""

    tokens_in: int
    tokens_out: int
    seconds: float
    reported: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class Row:
    """A door's line in the report; ``runs`` holds every exercised mode, ``mode`` is the one the table shows."""

    door: str
    packages: dict[str, str]
    support: dict[str, str]
    scope: str
    budget: int
    mode: str
    tokens_in: int
    tokens_out: int
    reported: tuple[int, int] | None
    seconds: float
    warmup_seconds: float
    runs: dict[str, dict[str, float]]
    note: str


class Bench:
    """What the doors share for one run: the request, the fake upstream, the proxy, and the Zipper (``None``: each
    door builds the ``fast`` preset itself, through its own public settings, as a user would)."""

    def __init__(self, request: Request, zipper: pz.Zipper | None, stack: ExitStack) -> None:
        from promptzip.integrations.proxy import ProxySettings, create_app
        from promptzip.integrations.proxy.testing import FakeUpstream, live_server

        self.request, self.zipper = request, zipper
        self.kept: dict[str, Any] = {}  # objects a door keeps across its calls
        self.count = pz.get_tokenizer(TARGET).count
        self.budgets = {
            "context": request.budget,
            "prompt": self.count(request.instruction + SEP + request.question) + request.budget,
            "request": message_tokens(request.messages(""), self.count) + request.budget,
        }
        self.upstream = stack.enter_context(FakeUpstream())
        # min_tokens=0: every request is held to its budget; no result cache, so the timed call compresses again.
        settings = ProxySettings(
            upstream=self.upstream.url, cache=CACHE, preset=PRESET, target=TARGET, min_tokens=0,
            result_cache=False, compression_deadline=600,
        )  # fmt: skip
        factory = None if zipper is None else (lambda preset, target, cache: zipper)
        self.proxy = stack.enter_context(live_server(create_app(settings, zipper_factory=factory)))

    def options(self) -> dict[str, Any]:
        """How a door gets its Zipper: the injected one, or the preset by name."""
        return {"zipper": self.zipper} if self.zipper is not None else {"preset": PRESET, "cache": CACHE}

    def request_tokens(self, messages: Sequence[Mapping[str, Any]]) -> int:
        return message_tokens(messages, self.count)

    @contextmanager
    def received(self, path: str) -> Iterator[list[dict[str, Any]]]:
        """Yields a list that holds, after the block, the JSON body of the one request the upstream got on ``path``."""
        before, box = len(self.upstream.requests), list[dict[str, Any]]()
        yield box
        new = [r for r in self.upstream.requests[before:] if r.target.startswith(path)]
        if len(new) != 1:
            raise RuntimeError(f"expected one request on {path} at the fake upstream, got {len(new)}")
        box.append(new[0].json())


def _timed(make: Callable[[], Any]) -> tuple[Any, float]:
    """``make()`` and its seconds; an awaitable it returns is run to completion on a new event loop."""
    started = time.perf_counter()
    value = make()
    if inspect.isawaitable(value):
        value = asyncio.run(_wait(value))
    return value, time.perf_counter() - started


async def _wait(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _versions(packages: Sequence[str]) -> dict[str, str]:
    return {p: metadata.version(p) for p in packages}


# ------------------------------------------------------------------------------------------------------ doors
def _direct(b: Bench, mode: str) -> Measured:
    r, z = b.request, b.zipper
    kw: dict[str, Any] = {"question": r.question, "instruction": r.instruction, "budget": b.budgets["prompt"]}
    kw |= {} if z else {"preset": PRESET, "cache": CACHE}
    call: Any = (
        (z.acompress if mode == "async" else z.compress) if z else (pz.acompress if mode == "async" else pz.compress)
    )
    result, s = _timed(lambda: call(list(r.documents), **kw))
    text_in = SEP.join([r.instruction, r.context, r.question])
    return Measured(b.count(text_in), b.count(result.text), s, (result.tokens_in, result.tokens_out))


def _messages(b: Bench, mode: str) -> Measured:
    messages, z = b.request.messages(), b.zipper
    kw: dict[str, Any] = {"budget": b.budgets["request"], **({} if z else {"preset": PRESET, "cache": CACHE})}
    result, s = _timed(lambda: (z.compress_messages if z else pz.compress_messages)(messages, **kw))
    out = list(result.messages or ())
    return Measured(b.request_tokens(messages), b.request_tokens(out), s, (result.tokens_in, result.tokens_out))


def _openai_client(b: Bench, mode: str) -> Any:
    import openai

    kind = openai.AsyncOpenAI if mode == "async" else openai.OpenAI
    return kind(base_url=b.upstream.url, api_key="sk-fake", max_retries=0)


async def _drain(reply: Any, client: Any = None) -> Any:
    """The reply of an async call, a stream read to the end; ``client`` is closed after it, on the same loop."""
    try:
        reply = await reply
        return [chunk async for chunk in reply] if hasattr(reply, "__aiter__") else reply
    finally:
        if client is not None:
            await client.close()


def _create(client: Any, messages: list[dict[str, str]], mode: str) -> Any:
    """``chat.completions.create`` on a sync or async client (then closed), a stream read to the end."""
    reply = client.chat.completions.create(model=TARGET, messages=messages, stream=mode == "stream")
    if mode == "async":
        return _drain(reply, client)
    with client:
        return list(reply) if mode == "stream" else reply


def _wrap(b: Bench, mode: str) -> Measured:
    from promptzip.integrations.decorator import wrap

    messages = b.request.messages()
    client = wrap(_openai_client(b, mode), budget=b.budgets["request"], **b.options())
    with b.received("/v1/chat/completions") as got:
        _, s = _timed(lambda: _create(client, messages, mode))
    return Measured(b.request_tokens(messages), b.request_tokens(got[0]["messages"]), s)


def _decorator(b: Bench, mode: str) -> Measured:
    from promptzip.integrations.decorator import compress_call

    messages, client = b.request.messages(), _openai_client(b, mode)
    decorate = compress_call(budget=b.budgets["request"], arg="messages", **b.options())

    def ask(messages: list[dict[str, str]]) -> Any:
        return _create(client, messages, mode)

    async def aask(messages: list[dict[str, str]]) -> Any:
        return await _create(client, messages, mode)

    with b.received("/v1/chat/completions") as got:
        _, s = _timed(lambda: decorate(aask if mode == "async" else ask)(messages))
    return Measured(b.request_tokens(messages), b.request_tokens(got[0]["messages"]), s)


def _lc_compressor(b: Bench, mode: str) -> Measured:
    from langchain_core.documents import Document

    from promptzip.integrations.langchain import PromptZipCompressor

    docs = [Document(page_content=d, metadata={"part": i}) for i, d in enumerate(b.request.documents)]
    compressor = PromptZipCompressor(budget=b.request.budget, **b.options())
    call = compressor.acompress_documents if mode == "async" else compressor.compress_documents
    out, s = _timed(lambda: call(docs, b.request.question))
    kept, tokens_in = SEP.join(d.page_content for d in out), b.count(b.request.context)
    reported = sum(d.metadata["promptzip_tokens_out"] for d in out)  # per document, so separators are not in it
    return Measured(tokens_in, b.count(kept), s, (sum(d.metadata["promptzip_tokens_in"] for d in out), reported))


def _lc_runnable(b: Bench, mode: str) -> Measured:
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


def _llama_index(b: Bench, mode: str) -> Measured:
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


def _haystack(b: Bench, mode: str) -> Measured:
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


def _litellm(b: Bench, mode: str) -> Measured:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before litellm is imported: no download
    import litellm

    from promptzip.integrations.litellm import PromptZipHook

    budget, messages = b.budgets["request"], b.request.messages()
    params = {"model": f"openai/{TARGET}", "api_base": b.upstream.url, "api_key": "sk-fake"}
    deployment = {"model_name": "rag", "litellm_params": params, "model_info": {"promptzip": {"budget": budget}}}
    router: Any = litellm.Router(model_list=[deployment])  # type: ignore[attr-defined]
    given: dict[str, Any] = {"zippers": {PRESET: b.zipper}} if b.zipper else {"cache": CACHE}
    hook = PromptZipHook(preset=PRESET, target=TARGET, deadline=600, **given)
    before = list(litellm.callbacks)
    litellm.callbacks = [*before, hook]

    try:
        with b.received("/v1/chat/completions") as got:
            _, s = _timed(lambda: _drain(router.acompletion(model="rag", messages=messages, stream=mode == "stream")))
    finally:
        litellm.callbacks = before
    return Measured(b.request_tokens(messages), b.request_tokens(got[0]["messages"]), s)


def _llmlingua(b: Bench, mode: str) -> Measured:
    from promptzip.compat.llmlingua import PromptCompressor

    r = b.request
    given: dict[str, Any] = {"zipper": b.zipper} if b.zipper else {"preset": PRESET, "cache": CACHE}
    # One compressor for the run, as an application keeps one: it holds its Zipper (and that Zipper's cache).
    if "llmlingua" not in b.kept:
        b.kept["llmlingua"] = PromptCompressor(target=TARGET, **given)
    compressor = b.kept["llmlingua"]
    out, s = _timed(
        lambda: compressor.compress_prompt(
            list(r.documents), instruction=r.instruction, question=r.question, target_token=b.budgets["prompt"]
        )
    )
    text_in = SEP.join([r.instruction, r.context, r.question])
    reported = (out["origin_tokens"], out["compressed_tokens"])
    return Measured(b.count(text_in), b.count(out["compressed_prompt"]), s, reported)


def _proxy(path: str) -> Callable[[Bench, str], Measured]:
    """A door through the proxy on ``path`` with its SDK: chat and Responses with openai, Messages with anthropic."""

    def door(b: Bench, mode: str) -> Measured:
        import anthropic
        import openai

        messages, is_async = b.request.messages(), mode == "async"
        common: dict[str, Any] = {"api_key": "sk-fake", "max_retries": 0}
        common["default_headers"] = {"x-promptzip-budget": str(b.budgets["request"])}
        body: dict[str, Any] = {"model": TARGET, "stream": True} if mode == "stream" else {"model": TARGET}
        if path == "/v1/messages":
            client: Any = (anthropic.AsyncAnthropic if is_async else anthropic.Anthropic)(base_url=b.proxy, **common)
            body |= {"max_tokens": 64, "system": messages[0]["content"], "messages": messages[1:]}
            send: Any = client.messages.with_raw_response.create
        else:
            client = (openai.AsyncOpenAI if is_async else openai.OpenAI)(base_url=b.proxy + "/v1", **common)
            is_chat = path == "/v1/chat/completions"
            body |= {"messages": messages} if is_chat else {"input": messages}
            send = (client.chat.completions if is_chat else client.responses).with_raw_response.create

        def call() -> Any:
            if is_async:
                return _drain(send(**body), client)
            with client:
                raw = send(**body)
                if mode == "stream":
                    list(raw.parse())
                return raw

        with b.received(path) as got:
            raw, s = _timed(call)
        tokens = (int(raw.headers["x-promptzip-tokens-in"]), int(raw.headers["x-promptzip-tokens-out"]))
        return Measured(b.request_tokens(messages), b.request_tokens(_as_chat(path, got[0])), s, tokens)

    return door


def _as_chat(path: str, body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The chat messages of a body the upstream received (the proxy's dialects read them the same way)."""
    if path == "/v1/messages":
        return [{"role": "system", "content": body["system"]}, *body["messages"]]
    if path == "/v1/responses":
        return list(body["input"])
    return list(body["messages"])


# ------------------------------------------------------------------------------------------------- the table
@dataclass(frozen=True, slots=True)
class Door:
    """A door: its packages, which modes it supports (``yes`` / ``no`` / ``n/a``: it makes no model call), what its
    budget covers, the function that sends the request through it, and the modes run (the first is the table's)."""

    name: str
    packages: tuple[str, ...]
    sync: str
    async_: str
    stream: str
    scope: str
    run: Callable[[Bench, str], Measured]
    modes: tuple[str, ...]
    note: str


_PROXY = ("starlette", "uvicorn")
_NO_CALL = "n/a"  # the door returns text, messages or documents; the caller's model call does any streaming
DOORS: tuple[Door, ...] = (
    Door("`pz.compress`", ("promptzip",), "yes", "yes", _NO_CALL, "prompt", _direct, ("sync", "async"),
         "async: `pz.acompress`"),
    Door("`pz.compress_messages`", ("promptzip",), "yes", "yes", _NO_CALL, "request", _messages, ("sync",),
         "async: `Zipper.acompress_messages` (not run: promptzip has no module-level one)"),
    Door("`pz.wrap(openai.OpenAI)` chat.completions.create", ("openai",), "yes", "yes", "yes", "request", _wrap,
         ("sync", "async", "stream"), "OpenAI / AsyncOpenAI; create, parse, stream helpers, raw/streaming views"),
    Door("`@pz.compress_call`", ("promptzip", "openai"), "yes", "yes", "yes", "request", _decorator,
         ("sync", "async", "stream"), "sync and async functions; the function's own return, a stream, untouched"),
    Door("LangChain `PromptZipCompressor`", ("langchain-core",), "yes", "yes", _NO_CALL, "context", _lc_compressor,
         ("sync", "async"), "compress_documents / acompress_documents"),
    Door("LangChain `PromptZipRunnable`", ("langchain-core",), "yes", "yes", "yes", "request", _lc_runnable,
         ("sync", "async", "stream"), "invoke / ainvoke; `chain.stream` streams the model after it"),
    Door("LlamaIndex `PromptZipNodePostprocessor`", ("llama-index-core",), "yes", "yes", "yes", "context",
         _llama_index, ("sync", "async", "stream"), "query engine: query / aquery / streaming=True (MockLLM)"),
    Door("Haystack `PromptZipDocumentCompressor`", ("haystack-ai",), "yes", "yes", _NO_CALL, "context", _haystack,
         ("sync", "async"), "Pipeline.run / Pipeline.run_async"),
    Door("LiteLLM `PromptZipHook`", ("litellm",), "no", "yes", "yes", "request", _litellm, ("async", "stream"),
         "Router.acompletion; LiteLLM runs no rewriting hook for sync completion, which goes out uncompressed"),
    Door("LLMLingua compat `PromptCompressor`", ("promptzip",), "yes", "no", _NO_CALL, "prompt", _llmlingua,
         ("sync",), "compress_prompt(..., target_token=budget); llmlingua itself not needed"),
    Door("proxy `/v1/chat/completions`", ("openai", *_PROXY), "yes", "yes", "yes", "request",
         _proxy("/v1/chat/completions"), ("sync", "async", "stream"), "x-promptzip-budget header"),
    Door("proxy `/v1/messages`", ("anthropic", *_PROXY), "yes", "yes", "yes", "request", _proxy("/v1/messages"),
         ("sync", "async", "stream"), "x-promptzip-budget header"),
    Door("proxy `/v1/responses`", ("openai", *_PROXY), "yes", "yes", "yes", "request", _proxy("/v1/responses"),
         ("sync", "async", "stream"), "x-promptzip-budget header; input as message items"),
)  # fmt: skip


def _run_door(b: Bench, door: Door, warmup: bool) -> Row:
    warm = door.run(b, door.modes[0]).seconds if warmup else 0.0
    budget = b.budgets[door.scope]
    runs: dict[str, Measured] = {}
    for mode in door.modes:
        runs[mode] = door.run(b, mode)
        if runs[mode].tokens_out > budget:
            raise RuntimeError(f"{door.name} ({mode}): {runs[mode].tokens_out} tokens over the budget of {budget}")
    main = runs[door.modes[0]]
    return Row(
        door=door.name,
        packages=_versions(door.packages),
        support={"sync": door.sync, "async": door.async_, "stream": door.stream},
        scope=door.scope,
        budget=budget,
        mode=door.modes[0],
        tokens_in=main.tokens_in,
        tokens_out=main.tokens_out,
        reported=main.reported,
        seconds=round(main.seconds, 3),
        warmup_seconds=round(warm, 3),
        runs={m: {"tokens_out": x.tokens_out, "seconds": round(x.seconds, 3)} for m, x in runs.items()},
        note=door.note,
    )


def run_doors(
    request: Request,
    *,
    zipper: pz.Zipper | None = None,
    doors: Sequence[Door] = DOORS,
    warmup: bool = True,
    command: str = COMMAND,
    progress: bool = False,
) -> dict[str, Any]:
    """Send ``request`` through each door and return the report; ``zipper`` replaces the ``fast`` preset in every
    door (a test passes a model-free stack)."""
    started = time.time()
    rows: list[Row] = []
    with ExitStack() as stack:
        bench = Bench(request, zipper, stack)
        for door in doors:
            rows.append(_run_door(bench, door, warmup))
            if progress:
                print(f"{door.name}: {rows[-1].tokens_in} -> {rows[-1].tokens_out}", file=sys.stderr, flush=True)
        budgets = dict(bench.budgets)
    return {
        "meta": {
            "command": command,
            "preset": PRESET if zipper is None else repr(zipper),
            "target": TARGET,
            "tokenizer": "o200k_base",
            "promptzip": metadata.version("promptzip"),
            "documents": len(request.documents),
            "question": request.question,
            "context_budget": request.budget,
            "budgets": budgets,
            "scopes": {k: v.replace("N", str(request.budget)) for k, v in SCOPES.items()},
            "warmup": warmup,
            "loadavg": [round(x, 2) for x in os.getloadavg()],
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "seconds": round(time.time() - started, 1),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        },
        "rows": [asdict(r) for r in rows],
    }


# ---------------------------------------------------------------------------------------------------- report
def _support(row: Mapping[str, Any], mode: str) -> str:
    value = row["support"][mode]
    return f"{value} ✓" if mode in row["runs"] else value


def markdown_table(report: Mapping[str, Any]) -> str:
    """The README table: one line per door (✓: the mode was run and held to the budget)."""
    lines = [
        "| integration | package (version tested) | sync | async | streaming | budget covers | tokens in → out | ms |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in report["rows"]:
        packages = ", ".join(f"{p} {v}" for p, v in row["packages"].items())
        cells = [row["door"], packages, *(_support(row, m) for m in ("sync", "async", "stream"))]
        cells += [f"{row['scope']} ≤ {row['budget']}", f"{row['tokens_in']:,} → {row['tokens_out']:,}"]
        cells.append(f"{1000 * row['seconds']:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def markdown(report: Mapping[str, Any]) -> str:
    """The report as a Markdown page: how it was run, the table, and each door's figures as it reports them."""
    meta = report["meta"]
    load = ", ".join(f"{x:.2f}" for x in meta["loadavg"])
    lines = [
        "# integrations: one RAG request through every door",
        "",
        f"Command: `{meta['command']}` · preset `{meta['preset']}`, target `{meta['target']}` (o200k) · "
        f"promptzip {meta['promptzip']} · {meta['date']} · {meta['seconds']} s · load average {load} on "
        f"{meta['cpus']} CPUs · Python {meta['python']}.",
        "",
        f"The request: the bundled State of the Union address split into {meta['documents']} documents of "
        f'consecutive paragraphs, LangChain\'s RAG-tutorial instruction and the question "{meta["question"]}". '
        f"Every door gets {meta['context_budget']} tokens for the context, in the budget it takes:",
        "",
        *[f"- `{k}`: {v} = {meta['budgets'][k]}" for k, v in meta["scopes"].items()],
        "",
        "Tokens in → out are counted on what the budget covers as it reached the model (the fake upstream's "
        "body, the mock LLM's prompt, the documents passed on). ✓: the mode was run and held to the budget. ms: "
        "one call in the first mode after an untimed warm-up call of the same request through the same door.",
        "",
        markdown_table(report),
        "| integration | reported in → out | per mode: tokens out, ms | note |",
        "| --- | --- | --- | --- |",
    ]
    for row in report["rows"]:
        reported = "{:,} → {:,}".format(*row["reported"]) if row["reported"] else "—"
        modes = "; ".join(f"{m}: {x['tokens_out']}, {1000 * x['seconds']:.0f}" for m, x in row["runs"].items())
        lines.append(f"| {row['door']} | {reported} | {modes} | {row['note']} |")
    return "\n".join(lines) + "\n"


def write_report(report: Mapping[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "integrations.json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "integrations.md").write_text(markdown(report), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("evals/results"), help="folder (default evals/results)")
    parser.add_argument("--table", type=Path, default=None, help="also write the README table to this file")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    given = list(sys.argv[1:] if argv is None else argv)
    report = run_doors(sample_request(), command=" ".join([COMMAND, *given]), progress=True)
    write_report(report, args.out)
    if args.table is not None:
        args.table.write_text(markdown_table(report), encoding="utf-8")
    print(markdown_table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
