"""The doors of ``agent-trace``: every request of a trace sent through the running promptzip proxy by the real SDKs.

The in-process ``stable`` method calls ``Zipper.compress_messages(history="stable")`` itself. These methods send the
same requests the way a deployment does, and bill what the provider would have received:

* ``proxy-openai``: the ``openai`` client → the proxy's ``/v1/chat/completions`` → a recording
  :class:`~promptzip.integrations.proxy.testing.FakeUpstream` on 127.0.0.1 (the provider); the messages billed
  are the ``messages`` of the body the upstream received.
* ``proxy-anthropic``: each request translated to Anthropic's Messages format (:func:`to_anthropic`: the system
  prompt apart, tool calls as ``tool_use`` blocks, tool answers as ``tool_result`` blocks), sent by the
  ``anthropic`` client to the proxy's ``/v1/messages``; the body the upstream received is translated back
  (:func:`from_anthropic`, the inverse on every shape the traces hold) and billed like the others.

The budget goes as the proxy's ``x-promptzip-budget`` / ``x-promptzip-rate`` header; the history is the proxy's
default (``stable``), and no conversation header is sent: the proxy recognises each conversation by its messages,
which is what is measured. One proxy serves the whole suite (:func:`open_proxy`); each (trace, method, budget) run
gets an API key of its own (:meth:`Doors.session`), and the proxy keeps conversation state and its result cache
per credential, so every run starts with no conversation state, as the in-process methods' fresh Zippers do.

The proxy is configured as the suite runs the in-process methods: the ``fast`` preset, gpt-4o's tokenizer, the
suite's Zipper factory, and ``min_tokens`` at the suite's passthrough threshold. No route is given cache prices:
the proxy prices each request by its ``model`` (the suite's are gpt-4o and claude-sonnet-4-5, billed at the same
prices), as it does for a deployment that configures none. Its deadline is
the client's timeout: the suite measures what reaches the provider, not latency. An answer marked
``x-promptzip-status: fail-open`` (the original was forwarded) is raised as :class:`ProxyFailOpen`, which the suite
counts as the in-process methods' fail-open.

Each Anthropic request is marked as agent loops mark theirs, and as the suite's Anthropic cache model bills it:
a ``cache_control`` breakpoint on the system prompt and on the last block of the request (:func:`mark`). The proxy
keeps the system prompt byte for byte and leaves the messages to its cache-stable history; the marks are taken off
again before billing (:func:`unmark`), so both doors bill the same chat shapes.
"""

from __future__ import annotations

import itertools
import json
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from promptzip._errors import PromptZipError
from promptzip._pricing import CachePricing
from promptzip._types import Budget
from promptzip.evals._agent_report import MIN_TOKENS

__all__ = [
    "ANTHROPIC_MODEL",
    "NOTE",
    "OPENAI_MODEL",
    "TAG",
    "Doors",
    "ProxyFailOpen",
    "Received",
    "Session",
    "available",
    "budget_headers",
    "from_anthropic",
    "mark",
    "open_proxy",
    "post_anthropic",
    "post_openai",
    "proxy_settings",
    "send_anthropic",
    "send_openai",
    "take_tagged",
    "to_anthropic",
    "unmark",
]

Messages = list[dict[str, Any]]
Build = Callable[[str, str], Any]
OPENAI_MODEL = "gpt-4o"
ANTHROPIC_MODEL = "claude-sonnet-4-5"  # claude-sonnet-4's prices (promptzip.pricing_for), as the suite bills
MAX_TOKENS = 1024  # Anthropic's API requires a reply length; the fake upstream ignores it
TIMEOUT_S = 600.0
TAG = "x-agent-trace-request"  # a header the proxy forwards: finds this request among those the upstream got


NOTE = (
    "The proxy doors: one proxy (under uvicorn on 127.0.0.1, preset fast, target gpt-4o, min_tokens "
    f"{MIN_TOKENS}, an in-memory cache, each request priced by its model) in front of a fake upstream; "
    "each run sends under an API key of its own, so its conversation state starts empty. Each /v1/messages request "
    "carries cache_control breakpoints on its system prompt and on its last block, as agent loops mark them."
)
EPHEMERAL = {"type": "ephemeral"}


class ProxyFailOpen(PromptZipError):
    """The proxy could not compress the request and forwarded the original (``x-promptzip-status: fail-open``)."""


def available() -> bool:
    """Whether the proxy and both SDKs are installed."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("openai", "anthropic", "uvicorn", "starlette"))


def budget_headers(budget: Budget | None) -> dict[str, str]:
    """The proxy's control header for ``budget`` (none: the route's default)."""
    if budget is None:
        return {}
    if budget.tokens is not None:
        return {"x-promptzip-budget": str(budget.tokens)}
    return {"x-promptzip-rate": repr(budget.rate)}


# ------------------------------------------------------------------------------------------- translation


def to_anthropic(messages: Sequence[Mapping[str, Any]]) -> tuple[str | None, Messages]:
    """An OpenAI chat as Anthropic's ``system`` and ``messages``: one Anthropic message per chat message (a tool
    answer is a user message holding its ``tool_result``; the API joins consecutive turns of one role), so that
    :func:`from_anthropic` gives the chat back. Shapes the traces do not hold (a system message after the first,
    content parts other than text, names) are a ``ValueError``."""
    system: str | None = None
    out: Messages = []
    for i, m in enumerate(messages):
        role, content = m.get("role"), m.get("content")
        if set(m) - {"role", "content", "tool_calls", "tool_call_id"}:
            raise ValueError(f"message {i} has fields Anthropic's format has no place for: {sorted(m)}")
        if role == "system":
            if i != 0 or not isinstance(content, str):
                raise ValueError("only a leading system message with a string content translates")
            system = content
        elif role == "tool":
            result = {"type": "tool_result", "tool_use_id": m["tool_call_id"], "content": _blocks_or_str(content)}
            out.append({"role": "user", "content": [result]})
        elif role in ("user", "assistant"):
            calls = [_tool_use(c) for c in m.get("tool_calls") or ()]
            if not calls:
                out.append({"role": role, "content": _blocks_or_str(content)})
            else:
                if not isinstance(content, str | None):
                    raise ValueError(f"message {i}: tool calls with content parts do not translate")
                text = [{"type": "text", "text": content}] if content is not None else []
                out.append({"role": role, "content": [*text, *calls]})
        else:
            raise ValueError(f"message {i}: role {role!r} does not translate")
    return system, out


def _blocks_or_str(content: Any) -> Any:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and set(p) == {"type", "text"} for p in content
    ):
        return [dict(p) for p in content]
    raise ValueError(f"content {type(content).__name__} does not translate (a string or text parts only)")


def _tool_use(call: Mapping[str, Any]) -> dict[str, Any]:
    function = call["function"]
    arguments = function["arguments"]
    parsed = json.loads(arguments)
    # Anthropic carries the arguments as an object: the chat's string must be what that object prints back as.
    if not isinstance(parsed, dict) or json.dumps(parsed) != arguments or call.get("type") != "function":
        raise ValueError(f"tool call arguments {arguments!r} do not round-trip as a JSON object")
    return {"type": "tool_use", "id": call["id"], "name": function["name"], "input": parsed}


def from_anthropic(system: Any, messages: Sequence[Mapping[str, Any]]) -> Messages:
    """The OpenAI chat of an Anthropic ``system`` and ``messages`` (the inverse of :func:`to_anthropic`): each
    ``tool_result`` a tool message, ``tool_use`` blocks the message's tool calls, text blocks its content."""
    out: Messages = []
    if system is not None:
        out.append({"role": "system", "content": system if isinstance(system, str) else _parts(system)})
    for m in messages:
        content = m["content"]
        if isinstance(content, str):
            out.append({"role": m["role"], "content": content})
            continue
        calls, texts = [], []
        for block in content:
            kind = block["type"]
            if kind == "tool_result":
                out.append({"role": "tool", "tool_call_id": block["tool_use_id"], "content": _inner(block)})
            elif kind == "tool_use":
                function = {"name": block["name"], "arguments": json.dumps(block["input"])}
                calls.append({"id": block["id"], "type": "function", "function": function})
            elif kind == "text":
                texts.append(block)
            else:
                raise ValueError(f"an Anthropic {kind!r} block has no place in the chat")
        if calls:
            if len(texts) > 1:
                raise ValueError("a turn with tool calls and several text blocks has no one chat content")
            out.append({"role": m["role"], "content": texts[0]["text"] if texts else None, "tool_calls": calls})
        elif texts or not any(b["type"] == "tool_result" for b in content):
            out.append({"role": m["role"], "content": _parts(texts)})
    return out


def _inner(block: Mapping[str, Any]) -> Any:
    content = block.get("content")
    return content if isinstance(content, str) or content is None else _parts(content)


def _parts(blocks: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{"type": "text", "text": b["text"]} for b in blocks]


# ----------------------------------------------------------------------------------------------- the proxy


def proxy_settings(upstream: str) -> Any:
    """The proxy's settings for the suite (module docstring): each request priced by its model."""
    from promptzip.evals.agent_trace import PRESET, TARGET
    from promptzip.integrations.proxy import ProxySettings

    return ProxySettings(
        upstream=upstream,
        cache=f"memory://?max_bytes={1 << 30}",
        preset=PRESET,
        target=TARGET,
        min_tokens=MIN_TOKENS,
        compression_deadline=TIMEOUT_S,
    )


@dataclass(frozen=True, slots=True)
class Received:
    """One request's way through the proxy: its answer's ``x-promptzip-status``, reason (or error), reused
    leading messages and token counts, and the messages the upstream received, as an OpenAI chat."""

    status: str
    reason: str
    reused: int
    tokens_in: int | None
    tokens_out: int | None
    messages: Messages


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


class Doors:
    """A fake upstream and the proxy in front of it, with one ``openai`` and one ``anthropic`` client; a context
    manager (:func:`open_proxy`). ``forwarded``: the requests the upstream has received from it."""

    def __init__(self, build: Build) -> None:
        self.build = build
        self.forwarded = 0
        self._stack = ExitStack()
        self._keys = itertools.count(1)
        self._suite = secrets.token_hex(4)
        self._sent = itertools.count(1)

    def __enter__(self) -> Doors:
        import anthropic
        import openai

        from promptzip.integrations.proxy import create_app
        from promptzip.integrations.proxy.testing import FakeUpstream, live_server

        try:
            self.upstream = self._stack.enter_context(FakeUpstream())
            app = create_app(proxy_settings(self.upstream.url), zipper_factory=lambda p, t, cache: self.build(p, t))
            self.url = self._stack.enter_context(live_server(app))
            self.openai = openai.OpenAI(base_url=self.url + "/v1", api_key="unused", max_retries=0, timeout=TIMEOUT_S)
            self._stack.callback(self.openai.close)
            self.anthropic = anthropic.Anthropic(base_url=self.url, api_key="unused", max_retries=0, timeout=TIMEOUT_S)
            self._stack.callback(self.anthropic.close)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def session(self, key: str | None = None) -> Session:
        """A run's clients, under ``key`` or an API key no other run has: the proxy keeps conversation state per
        credential, so a new key's starts empty."""
        key = key or f"sk-agent-trace-{self._suite}-{next(self._keys)}"
        return Session(self, key, self.openai.with_options(api_key=key), self.anthropic.with_options(api_key=key))

    def tagged(self) -> tuple[str, dict[str, str]]:
        tag = str(next(self._sent))
        return tag, {TAG: tag}

    def received(self, tag: str) -> dict[str, Any]:
        """The JSON body the upstream got for the request tagged ``tag`` (:func:`take_tagged`)."""
        body = take_tagged(self.upstream, tag)
        self.forwarded += 1
        return body


def take_tagged(upstream: Any, tag: str) -> dict[str, Any]:
    """The JSON body ``upstream`` (a fake upstream) got for the one request whose ``TAG`` header is ``tag``, then
    forgotten: a suite sends thousands."""
    found = [i for i, r in enumerate(upstream.requests) if r.header(TAG) == tag]
    if len(found) != 1:
        raise RuntimeError(f"the upstream got {len(found)} requests tagged {tag}, not one")
    body: dict[str, Any] = upstream.requests.pop(found[0]).json()
    return body


@dataclass(frozen=True, slots=True)
class Session:
    """One (trace, method, budget) run's clients, both under the run's own API key."""

    doors: Doors
    key: str
    openai: Any
    anthropic: Any


@contextmanager
def open_proxy(build: Build) -> Iterator[Callable[[], Session]]:
    """One proxy for a suite, the Zippers from the suite's factory ``build``; yields what makes a run's session."""
    with Doors(build) as doors:
        yield doors.session


def _received(answer: Mapping[str, str], messages: Messages) -> Received:
    reason = answer.get("x-promptzip-reason") or answer.get("x-promptzip-error") or ""
    reused = _int(answer.get("x-promptzip-reused-messages")) or 0
    tokens = _int(answer.get("x-promptzip-tokens-in")), _int(answer.get("x-promptzip-tokens-out"))
    return Received(answer.get("x-promptzip-status", ""), reason, reused, *tokens, messages)


def post_openai(session: Session, messages: Messages, budget: Budget | None) -> Received:
    """The chat through the proxy's chat completions, by the ``openai`` SDK."""
    tag, headers = session.doors.tagged()
    raw = session.openai.chat.completions.with_raw_response.create(
        model=OPENAI_MODEL, messages=messages, extra_headers={**budget_headers(budget), **headers}
    )
    return _received(raw.headers, list(session.doors.received(tag)["messages"]))


def mark(system: str | None, turns: Messages) -> tuple[Any, Messages]:
    """``system`` and ``turns`` with a ``cache_control`` breakpoint on the system prompt and on the request's last
    block, as an agent loop caches its conversation turn by turn (a string content becomes one text block)."""
    marked_system = None if system is None else [{"type": "text", "text": system, "cache_control": EPHEMERAL}]
    out = [dict(m) for m in turns]
    if out:
        content = out[-1]["content"]
        blocks: list[dict[str, Any]] = (
            [{"type": "text", "text": content}] if isinstance(content, str) else [dict(b) for b in content]
        )
        if blocks:
            blocks[-1] = {**blocks[-1], "cache_control": EPHEMERAL}
            out[-1] = {**out[-1], "content": blocks}
    return marked_system, out


def unmark(system: Any, turns: Sequence[Mapping[str, Any]], like: Messages) -> tuple[Any, Messages]:
    """What :func:`mark` added taken off a body the upstream received: the breakpoints, and the blocks a string
    content became (``like``: the turns before marking)."""

    def bare(block: Any) -> Any:
        return {k: v for k, v in block.items() if k != "cache_control"} if isinstance(block, dict) else block

    if isinstance(system, list) and len(system) == 1 and system[0].get("type") == "text":
        system = system[0]["text"]
    out = []
    for i, m in enumerate(turns):
        content = m["content"]
        if isinstance(content, list):
            content = [bare(b) for b in content]
            if i == len(turns) - 1 and i < len(like) and isinstance(like[i]["content"], str) and len(content) == 1:
                content = content[0]["text"]
        out.append({**m, "content": content})
    return system, out


def post_anthropic(session: Session, messages: Messages, budget: Budget | None) -> Received:
    """The chat in Anthropic's format, marked as an agent loop marks it (:func:`mark`), through the proxy's
    ``/v1/messages`` by the ``anthropic`` SDK; what the upstream received is unmarked and translated back
    (:func:`from_anthropic`)."""
    plain_system, plain = to_anthropic(messages)
    system, turns = mark(plain_system, plain)
    tag, headers = session.doors.tagged()
    extra: dict[str, Any] = {"system": system} if system is not None else {}
    raw = session.anthropic.messages.with_raw_response.create(
        model=ANTHROPIC_MODEL,
        max_tokens=MAX_TOKENS,
        messages=turns,
        extra_headers={**budget_headers(budget), **headers},
        **extra,
    )
    body = session.doors.received(tag)
    received_system, received = unmark(body.get("system"), body["messages"], plain)
    return _received(raw.headers, from_anthropic(received_system, received))


def _checked(got: Received, original: Messages) -> Messages:
    """What the upstream received, or :class:`ProxyFailOpen` when the proxy forwarded the original."""
    if got.status == "fail-open":
        if got.messages != original:
            raise RuntimeError("the proxy said fail-open but the upstream did not get the original")
        raise ProxyFailOpen(f"proxy fail-open: {got.reason}")
    if got.status not in ("compressed", "passthrough"):
        raise RuntimeError(f"the proxy answered x-promptzip-status {got.status!r}")
    return got.messages


def send_openai(session: Session, messages: Messages, budget: Budget | None, pricing: CachePricing) -> Messages:
    """``proxy-openai`` (a :class:`~promptzip.evals.agent_trace.Method`'s ``send``). ``pricing`` is the suite's for
    the provider; the proxy's route is configured with the same (:func:`proxy_settings`)."""
    return _checked(post_openai(session, messages, budget), messages)


def send_anthropic(session: Session, messages: Messages, budget: Budget | None, pricing: CachePricing) -> Messages:
    """``proxy-anthropic``, as :func:`send_openai`."""
    return _checked(post_anthropic(session, messages, budget), messages)
