"""The doors of :mod:`promptzip.evals.integrations`: the request, the bench that runs it, and one function per
door (each sends the request through one integration in one mode and measures what reached the model)."""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from importlib import metadata, resources
from typing import Any

import promptzip as pz
from promptzip._messages import message_tokens

PRESET, TARGET, CACHE = "fast", "gpt-4o", "memory"
FILES = "/v1/files"  # an OpenAI batch file of one chat line: its body goes out as chat.completions.create sends it
BATCHES = "/v1/messages/batches"  # a batch of one request: its params go out as messages.create would send them
# the chat as one raw prompt in ChatML: read by the template rule, each turn by its role
COMPLETIONS = "/v1/completions"
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
        box.append(_body_of(new[0]))


def _body_of(recorded: Any) -> dict[str, Any]:
    """A request's JSON body; for an upload (a batch file), the JSON of the file's first line."""
    content_type = recorded.header("content-type") or ""
    if not content_type.startswith("multipart/form-data"):
        return dict(recorded.json())
    from promptzip.integrations.proxy._multipart import parse_form

    form = parse_form(content_type, recorded.body)
    file = None if form is None else form.field("file")
    if form is None or file is None:
        raise RuntimeError("the upload the fake upstream got has no file field")
    return dict(json.loads(form.parts[file].content.split(b"\n", 1)[0]))


def _timed(make: Callable[[], Any]) -> tuple[Any, float]:
    """``make()`` and its seconds; an awaitable it returns is run to completion on a new event loop."""
    started = time.perf_counter()
    value = make()
    if inspect.isawaitable(value):
        value = asyncio.run(_wait(value))
    return value, time.perf_counter() - started


async def _wait(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def versions(packages: Sequence[str]) -> dict[str, str]:
    return {p: metadata.version(p) for p in packages}


# ------------------------------------------------------------------------------------------------------ doors
def via_direct(b: Bench, mode: str) -> Measured:
    r, z = b.request, b.zipper
    kw: dict[str, Any] = {"question": r.question, "instruction": r.instruction, "budget": b.budgets["prompt"]}
    kw |= {} if z else {"preset": PRESET, "cache": CACHE}
    call: Any = (
        (z.acompress if mode == "async" else z.compress) if z else (pz.acompress if mode == "async" else pz.compress)
    )
    result, s = _timed(lambda: call(list(r.documents), **kw))
    text_in = SEP.join([r.instruction, r.context, r.question])
    return Measured(b.count(text_in), b.count(result.text), s, (result.tokens_in, result.tokens_out))


def via_messages(b: Bench, mode: str) -> Measured:
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


def via_decorator(b: Bench, mode: str) -> Measured:
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


def via_llmlingua(b: Bench, mode: str) -> Measured:
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


def via_proxy(path: str, *, documents: bool = False) -> Callable[[Bench, str], Measured]:
    """A door through the proxy on ``path`` with its SDK: chat and Responses with openai, Messages with anthropic
    (``documents``: each document an Anthropic ``document`` block of the user turn, the question a text block)."""
    return _sdk_door(path, wrapped=False, documents=documents)


def via_wrap(path: str, *, documents: bool = False) -> Callable[[Bench, str], Measured]:
    """A door through ``pz.wrap`` around the SDK of ``path``, straight to the upstream."""
    return _sdk_door(path, wrapped=True, documents=documents)


def _document_blocks(r: Request) -> dict[str, Any]:
    """The request as Anthropic sends retrieved documents: the instruction as ``system``, each document a plain-text
    ``document`` block of the user turn, then the question."""
    blocks: list[dict[str, Any]] = [
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": d}} for d in r.documents
    ]
    blocks.append({"type": "text", "text": r.question})
    return {"system": r.instruction, "messages": [{"role": "user", "content": blocks}]}


def _sdk_door(path: str, *, wrapped: bool, documents: bool = False) -> Callable[[Bench, str], Measured]:
    def door(b: Bench, mode: str) -> Measured:
        import anthropic
        import openai

        from promptzip.integrations.decorator import wrap

        messages, is_async = b.request.messages(), mode == "async"
        common: dict[str, Any] = {"api_key": "sk-fake", "max_retries": 0}
        if not wrapped:
            common["default_headers"] = {"x-promptzip-budget": str(b.budgets["request"])}
        root = b.upstream.url.removesuffix("/v1") if wrapped else b.proxy
        body: dict[str, Any] = {"model": TARGET, "stream": True} if mode == "stream" else {"model": TARGET}
        client: Any
        if path.startswith("/v1/messages"):
            client = (anthropic.AsyncAnthropic if is_async else anthropic.Anthropic)(base_url=root, **common)
            body |= {"max_tokens": 64, "system": messages[0]["content"], "messages": messages[1:]}
            if documents:
                body |= _document_blocks(b.request)
            if path == BATCHES:  # the same request as the one of a batch: compressed as messages.create would
                body = {"requests": [{"custom_id": "rag", "params": body}]}
        elif path == COMPLETIONS:  # the chat as one raw prompt in ChatML, as a vLLM server's completions take it
            client = (openai.AsyncOpenAI if is_async else openai.OpenAI)(base_url=root + "/v1", **common)
            body |= {"prompt": chatml(messages), "max_tokens": 64}
        else:
            client = (openai.AsyncOpenAI if is_async else openai.OpenAI)(base_url=root + "/v1", **common)
            body |= {"messages": messages} if path in ("/v1/chat/completions", FILES) else {"input": messages}
            if path == FILES:  # a batch file of one chat line: its body compressed as chat.completions.create would
                line = {"custom_id": "rag", "method": "POST", "url": "/v1/chat/completions", "body": body}
                body = {"file": ("batch.jsonl", (json.dumps(line) + "\n").encode()), "purpose": "batch"}
        if wrapped:
            client = wrap(client, budget=b.budgets["request"], **b.options())
        resource = {
            "/v1/messages": ("messages",),
            "/v1/responses": ("responses",),
            COMPLETIONS: ("completions",),
            BATCHES: ("messages", "batches"),
            FILES: ("files",),
        }
        target: Any = client
        for name in resource.get(path, ("chat", "completions")):
            target = getattr(target, name)
        send: Any = target.with_raw_response.create

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
        tokens = (
            None if wrapped else (int(raw.headers["x-promptzip-tokens-in"]), int(raw.headers["x-promptzip-tokens-out"]))
        )
        sent = _documents_as_chat(got[0]) if documents else _as_chat(path, got[0])
        return Measured(b.request_tokens(messages), b.request_tokens(sent), s, tokens)

    return door


def _documents_as_chat(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A body of document blocks (:func:`_document_blocks`) as it reached the model, in the chat form every other door
    is measured in: the documents as sent joined into the system message, the question the user turn."""
    *docs, question = body["messages"][0]["content"]
    context = SEP.join(d["source"]["data"] for d in docs)
    return [
        {"role": "system", "content": f"{body['system']}{SEP}{context}"},
        {"role": "user", "content": question["text"]},
    ]


def _as_chat(path: str, body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The chat messages of a body the upstream received (the proxy's dialects read them the same way)."""
    if path == BATCHES:
        return _as_chat("/v1/messages", body["requests"][0]["params"])
    if path == FILES:  # the first line of the uploaded batch file (Bench.received)
        return _as_chat("/v1/chat/completions", body["body"])
    if path == "/v1/messages":
        return [{"role": "system", "content": body["system"]}, *body["messages"]]
    if path == "/v1/responses":
        return list(body["input"])
    if path == COMPLETIONS:  # the raw prompt's turns, its template's markers left out
        return unchatml(body["prompt"])
    return list(body["messages"])


def chatml(messages: list[dict[str, str]]) -> str:
    """A chat as one raw prompt in ChatML, with the generation prompt."""
    from promptzip.evals.rag_templates import raw_prompt

    return raw_prompt("chatml", [(m["role"], m["content"]) for m in messages])


def unchatml(prompt: str) -> list[dict[str, Any]]:
    """The turns of a raw prompt in a chat template as chat messages, read by promptzip's own template rule."""
    from promptzip._rules_templates import template_turns

    turns = template_turns(prompt) or []
    return [
        {"role": t.role, "content": prompt[t.start : t.end]}
        for t in turns
        if t.role in ("system", "user", "assistant", "tool") and prompt[t.start : t.end].strip()
    ]


# ------------------------------------------------------------------------------------------------- the table
