"""Dialects: how an API's request body (a proxy route's, or a wrapped SDK call's arguments) becomes the chat
messages the core understands, and how the compressed messages go back into that body. The proxy
(:mod:`promptzip.integrations.proxy._dialects`, which adds each API's error style) and the wrapped clients
(:mod:`promptzip.integrations._clients`) read bodies through the same dialects, so every door sends the same.

A :class:`Dialect` only translates; the core's request understanding (``Zipper.compress_messages``) alone decides
what is instruction, context and question. ``read`` gives a :class:`Chat` (the messages, and where in the body
each of their texts lives), or the reason to forward a valid body as it came (``unknown-shape``: a role or shape
the dialect does not know; ``nothing-to-compress``: no text it may change; or one of a dialect's own, below);
``write`` puts the texts the core changed back where they came from and leaves every other value as it was.

* ``chat`` (``/v1/chat/completions``): the body's ``messages`` are the chat.
* ``anthropic`` (``/v1/messages``): ``system`` (a string or text blocks) is a system message; each message's
  string or text blocks are its content; a ``tool_result`` block (string or blocks) is a tool message before its
  turn; ``tool_use`` blocks are counted like tool calls and never changed. A ``cache_control`` breakpoint (a
  top-level one marks the last block) keeps what it covers byte for byte, so the provider's prompt cache keeps
  hitting: with the cache-stable history (``history="stable"``, the default) that is the system prompt, the
  prefix a conversation shares with others, and the messages are left to the history, which resends what was sent
  before byte for byte and compresses only what is new (an agent loop that marks the end of every request would
  otherwise have nothing compressed); with ``history="reselect"`` it is every block at or before the last
  breakpoint (system first, then the messages), sent to the core as protected (counted, kept).
* ``responses`` (``/v1/responses``): ``instructions`` is a system message and ``input`` a user message (a string)
  or items: messages (string or ``input_text``/``output_text`` parts), ``function_call_output`` items as tool
  messages, function calls counted; items of other kinds are forwarded and not sent to the core.
* ``completions`` (``/v1/completions``, OpenAI's legacy Completions API, which vLLM, TGI and llama.cpp servers
  serve for raw prompts): a ``prompt`` string, or an array of exactly one string, is one user message; whatever
  chat template it is written in is the core's to read. A body is forwarded as it came when its prompt is token
  ids (``token-ids``), several prompts (``several-prompts``), missing (``no-prompt``) or empty
  (``nothing-to-compress``), and when it sets ``echo`` (``echo``): the answer would hand the client back a prompt
  it did not send. A prompt of another type, or an array that mixes them, is refused, as is an ``echo`` that is not
  a boolean (a lenient server may read the string ``"true"`` as true).

Anthropic's ``document`` and ``search_result`` blocks (in a turn or a tool result) are retrieved passages: their
texts go to the core as context as a whole, what they carry beside is counted and kept, and with citations enabled
all of it is kept (:mod:`promptzip.integrations._retrieval_blocks`). Other non-text blocks (images, PDF documents,
thinking, ...) are never sent or changed. A text the core emptied is dropped when its list keeps another block, else
it becomes :data:`MINIMAL_TEXT` (providers refuse empty text blocks).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from promptzip._messages import (
    MINIMAL_TEXT,  # one spelling for every door: a text the core emptied
    ROLES,
)
from promptzip.integrations import _retrieval_blocks as retrieval
from promptzip.integrations._bodies import RequestError, check_body, check_chat, check_str, type_name

__all__ = ["MINIMAL_TEXT", "AnthropicMessages", "Chat", "ChatCompletions", "Completions", "Dialect", "OpenAIResponses"]

Path = tuple[str | int, ...]
"""Where a value lives in a body: keys and list indexes from the top."""


@dataclass(frozen=True, slots=True)
class Chat:
    """A body as chat messages; ``places[i]`` maps a text of message ``i`` (``None``: its string content, an int:
    that content part) to where it lives in the body. Texts without a place are never written back. ``places``
    is ``None`` when the messages are the body's own (chat completions). A text whose place is in ``wrapped`` went
    to the core inside promptzip's tags (a retrieved passage), which come off when it is written back."""

    messages: list[dict[str, Any]]
    places: tuple[Mapping[int | None, Path], ...] | None = None
    wrapped: frozenset[Path] = frozenset()


class _Passthrough(Exception):
    """A valid body to forward as it came (an unknown role, say); the argument is the reason."""


_protected = retrieval.protected  # counted, never compressed: one JSON value, which understanding protects


def _fail(message: str, param: str) -> RequestError:
    return RequestError(message, param=param, code="invalid_type")


def _param(path: Path) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


class _Builder:
    """Collects chat messages and their places; ``frozen(path)`` says a block must be kept byte for byte."""

    def __init__(self, text_types: tuple[str, ...], frozen: Callable[[Path], bool] = lambda path: False) -> None:
        self.text_types = text_types
        self.frozen = frozen
        self.messages: list[dict[str, Any]] = []
        self.places: list[dict[int | None, Path]] = []
        self.wrapped: set[Path] = set()

    def add(self, message: dict[str, Any], places: dict[int | None, Path]) -> None:
        self.messages.append(message)
        self.places.append(places)

    def plain(self, block: object) -> bool:
        """A text block with nothing that pins its text (annotations point into it by offset)."""
        return (
            isinstance(block, dict)
            and block.get("type") in self.text_types
            and isinstance(block.get("text"), str)
            and not block.get("annotations")
        )

    def text(self, role: str, text: str, path: Path) -> None:
        check_str(text, _param(path))  # an unpaired surrogate is refused here, as on the chat route
        # A block's text is kept when its block is (the breakpoints mark blocks, not their texts).
        if self.frozen(path) or (path[-1] == "text" and self.frozen(path[:-1])):
            self.add({"role": role, "content": _protected(text)}, {})
        else:
            self.add({"role": role, "content": text}, {None: path})

    def part(self, block: object, path: Path, parts: list[dict[str, Any]], places: dict[int | None, Path]) -> None:
        """Append ``block`` as a chat part: its text, its text protected, or a placeholder of its type."""
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise _fail(f"{_param(path)} must be an object with a string 'type'", _param(path))
        kind: str = block["type"]
        if kind in self.text_types:
            text = check_str(block.get("text"), f"{_param(path)}.text")
            # Annotations (citations) point into the text by offset: such a text is kept as it is.
            if self.frozen(path) or block.get("annotations"):
                parts.append({"type": "text", "text": _protected(text)})
                return
            places[len(parts)] = (*path, "text")
            parts.append({"type": "text", "text": text})
        elif kind in retrieval.KINDS and self.passages(block, path, parts, places):
            return
        else:
            parts.append({"type": kind})  # images, PDF documents, thinking: neither counted nor changed

    def passages(
        self, block: dict[str, Any], path: Path, parts: list[dict[str, Any]], places: dict[int | None, Path]
    ) -> bool:
        """Append a document's or search result's texts as parts (module docstring); ``False`` when it has none."""
        found = list(retrieval.passages(block, path))
        if not found:
            return False
        # Citations point into the texts by position, and a breakpoint keeps what it covers: such a block stays whole.
        kept = retrieval.citing(block) or self.frozen(path) or any(self.frozen(p[:-1]) for p, _ in found)
        parts.extend({"type": "text", "text": _protected(value)} for value in retrieval.metadata(block))
        for where, text in found:
            check_str(text, _param(where))
            if kept or not retrieval.wrappable(text):
                parts.append({"type": "text", "text": _protected(text)})
                continue
            places[len(parts)] = where
            parts.append({"type": "text", "text": retrieval.wrap(text)})
            self.wrapped.add(where)
        return True

    def content(self, role: str, value: object, path: Path, *, empty_ok: bool = False) -> None:
        """A message whose content is a string or a list of blocks (``None`` too when ``empty_ok``)."""
        if isinstance(value, str):
            self.text(role, value, path)
        elif isinstance(value, list) and len(value) == 1 and self.plain(value[0]):
            # One text block reads as the string it holds: a client writes a turn as a string, then as one block
            # to mark it with cache_control, then as a string again once the mark has moved on; the history must
            # see the same message each time to find the prefix it sent.
            self.text(role, check_str(value[0]["text"], f"{_param(path)}[0].text"), (*path, 0, "text"))
        elif isinstance(value, list):
            parts: list[dict[str, Any]] = []
            places: dict[int | None, Path] = {}
            for j, block in enumerate(value):
                self.part(block, (*path, j), parts, places)
            self.add({"role": role, "content": parts}, places)
        elif value is None and empty_ok:
            self.add({"role": role, "content": ""}, {})
        else:
            where = _param(path)
            raise _fail(f"{where} must be a string or an array, not {type_name(value)}", where)

    def chat(self) -> Chat:
        return Chat(self.messages, tuple(self.places), frozenset(self.wrapped))


class Dialect:
    """How one API's request body reads as chat messages. Subclasses implement :meth:`_read`; :meth:`read` checks
    the body first (an object, not too deep, ``model``/``stream`` typed) and says why a body is forwarded as is.
    """

    name: ClassVar[str]

    def read(self, payload: Any, *, history: str = "stable") -> Chat | str:
        """The body's chat, or why it is forwarded as it came; a :class:`RequestError` (400) for a bad body.
        ``history``: the request's history mode (what a dialect with cache breakpoints keeps depends on it)."""
        body = check_body(payload)
        try:
            chat = self._read(body, history)
        except _Passthrough as exc:
            return str(exc)
        return chat if chat.places is None or any(chat.places) else "nothing-to-compress"

    def _read(self, body: dict[str, Any], history: str) -> Chat:
        raise NotImplementedError

    def write(self, payload: dict[str, Any], chat: Chat, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """``payload`` with the texts that changed between ``chat.messages`` and ``messages`` put back in place."""
        out = copy.deepcopy(payload)
        changed: dict[Path, str] = {}
        for i, places in enumerate((chat.places or ())[: len(messages)]):
            for where, path in places.items():
                new = _text(messages[i], where)
                if new is None or new == _text(chat.messages[i], where):
                    continue
                changed[path] = retrieval.unwrap(new) if path in chat.wrapped else new
        retrieval.put_texts(out, changed)
        return out


def _text(message: object, where: int | None) -> str | None:
    if not isinstance(message, dict):
        return None
    content = message.get("content")
    if where is None:
        return content if isinstance(content, str) else None
    if isinstance(content, list) and where < len(content) and isinstance(content[where], dict):
        text = content[where].get("text")
        return text if isinstance(text, str) else None
    return None


# ------------------------------------------------------------------------------------------------- dialects
class ChatCompletions(Dialect):
    """OpenAI chat completions: the body's ``messages`` are the chat, and come back whole."""

    name = "chat"

    def read(self, payload: Any, *, history: str = "stable") -> Chat | str:
        return Chat(check_chat(payload))

    def write(self, payload: dict[str, Any], chat: Chat, messages: list[dict[str, Any]]) -> dict[str, Any]:
        return {**payload, "messages": messages}


class AnthropicMessages(Dialect):
    """Anthropic's Messages API (``POST /v1/messages``); see the module docstring."""

    name = "anthropic"

    def _read(self, body: dict[str, Any], history: str) -> Chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _fail("messages must be a non-empty array", "messages")
        system = body.get("system")
        frozen = _cached_prefix(body, messages, system, messages_too=history != "stable")
        b = _Builder(("text",), frozen.__contains__)
        if system is not None:
            b.content("system", system, ("system",))
        for i, m in enumerate(messages):
            if not isinstance(m, dict):
                raise _fail(f"messages[{i}] must be an object, not {type_name(m)}", f"messages[{i}]")
            role = m.get("role")
            if not isinstance(role, str):
                raise _fail(f"messages[{i}].role must be a string", f"messages[{i}].role")
            if role not in ("user", "assistant"):
                raise _Passthrough("unknown-shape")
            content = m.get("content")
            if isinstance(content, list):
                self._turn(b, role, content, ("messages", i, "content"))
            else:
                b.content(role, content, ("messages", i, "content"))
        return b.chat()

    @staticmethod
    def _turn(b: _Builder, role: str, blocks: list[Any], path: Path) -> None:
        """A turn of blocks: its tool results become tool messages before it, its tool uses its tool calls."""
        if len(blocks) == 1 and b.plain(blocks[0]):  # one text block: the string it holds (_Builder.content)
            b.content(role, blocks, path)
            return
        parts: list[dict[str, Any]] = []
        places: dict[int | None, Path] = {}
        calls: list[dict[str, Any]] = []
        results = 0
        for j, block in enumerate(blocks):
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "tool_result":
                b.content("tool", block.get("content"), (*path, j, "content"), empty_ok=True)
                results += 1
            elif kind == "tool_use":
                calls.append(block)  # counted as serialized, like a chat's tool_calls; never changed
            else:
                b.part(block, (*path, j), parts, places)
        if parts or calls or not results:
            b.add({"role": role, "content": parts, **({"tool_calls": calls} if calls else {})}, places)


def _cached_prefix(body: dict[str, Any], messages: list[Any], system: object, *, messages_too: bool) -> frozenset[Path]:
    """The paths of every block and string content at or before the last ``cache_control`` breakpoint, in the order
    the provider caches them: system, then each message; a tool result after the blocks inside it. Without
    ``messages_too``, only the system's (any breakpoint covers all of it): the cache-stable history keeps the
    messages it sent before as they were (module docstring)."""
    order: list[tuple[Path, object]] = []
    if isinstance(system, str):
        order.append((("system",), system))
    elif isinstance(system, list):
        order += [(("system", j), block) for j, block in enumerate(system)]
    for i, m in enumerate(messages):
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, str):
            order.append((("messages", i, "content"), content))
        for j, block in enumerate(content if isinstance(content, list) else ()):
            at: Path = ("messages", i, "content", j)
            inner = block.get("content") if isinstance(block, dict) else None
            if isinstance(inner, str):
                order.append(((*at, "content"), inner))
            order += [
                ((*at, "content", k), nested) for k, nested in enumerate(inner if isinstance(inner, list) else ())
            ]
            order.append((at, block))
    if body.get("cache_control") is not None:  # automatic caching: the breakpoint is the last block
        covered = order
    else:
        marks = [n for n, (_, b) in enumerate(order) if isinstance(b, dict) and b.get("cache_control") is not None]
        covered = order[: marks[-1] + 1] if marks else []
    return frozenset(path for path, _ in covered if messages_too or path[0] == "system")


class OpenAIResponses(Dialect):
    """OpenAI's Responses API (``POST /v1/responses``); see the module docstring."""

    name = "responses"
    _TEXT = ("input_text", "output_text")
    _CALLS = ("function_call", "custom_tool_call")

    def _read(self, body: dict[str, Any], history: str) -> Chat:
        instructions, value = body.get("instructions"), body.get("input")
        if instructions is not None and not isinstance(instructions, str):
            raise _fail(f"instructions must be a string, not {type_name(instructions)}", "instructions")
        if value is None:  # a stored prompt or a previous response carries the conversation: nothing here to read
            raise _Passthrough("no-input")
        b = _Builder(self._TEXT)
        if instructions is not None:
            b.text("system", instructions, ("instructions",))
        if isinstance(value, str):
            b.text("user", value, ("input",))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                self._item(b, item, i)
        else:
            raise _fail(f"input must be a string or an array, not {type_name(value)}", "input")
        return b.chat()

    def _item(self, b: _Builder, item: object, i: int) -> None:
        if not isinstance(item, dict):
            raise _fail(f"input[{i}] must be an object, not {type_name(item)}", f"input[{i}]")
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if not isinstance(role, str):
                raise _fail(f"input[{i}].role must be a string", f"input[{i}].role")
            if role not in ROLES:
                raise _Passthrough("unknown-shape")
            b.content(role, item.get("content"), ("input", i, "content"))
        elif kind == "function_call_output":
            b.content("tool", item.get("output"), ("input", i, "output"))
        elif kind in self._CALLS:
            b.add({"role": "assistant", "content": None, "tool_calls": [item]}, {})
        # Any other item (reasoning, references, built-in tool calls) is forwarded and not sent to the core.


class Completions(Dialect):
    """OpenAI's legacy Completions API (``POST /v1/completions``); see the module docstring."""

    name = "completions"

    def _read(self, body: dict[str, Any], history: str) -> Chat:
        echo = body.get("echo")
        if echo is not None and not isinstance(echo, bool):
            raise _fail(f"echo must be a boolean, not {type_name(echo)}", "echo")
        text, path = _one_prompt(body.get("prompt"))
        if echo:
            raise _Passthrough("echo")
        b = _Builder(())
        b.text("user", text, path)
        return b.chat()


def _one_prompt(prompt: object) -> tuple[str, Path]:
    """The prompt's one text and where it lives; :class:`_Passthrough` for a prompt left as it came, a
    :class:`RequestError` for one of a type the API does not take."""
    if prompt is None:
        raise _Passthrough("no-prompt")
    if isinstance(prompt, str):
        found: tuple[str, Path] = (prompt, ("prompt",))
    elif isinstance(prompt, list):
        kinds = {_prompt_kind(item, i) for i, item in enumerate(prompt)}
        if len(kinds) > 1:
            raise _fail("prompt must not mix strings, token ids and arrays of token ids", "prompt")
        if not kinds:
            raise _Passthrough("nothing-to-compress")
        if kinds != {str}:
            raise _Passthrough("token-ids")
        if len(prompt) > 1:
            raise _Passthrough("several-prompts")  # a batch of prompts, each answered apart: not one request
        found = (prompt[0], ("prompt", 0))
    else:
        raise _fail(f"prompt must be a string or an array, not {type_name(prompt)}", "prompt")
    if not found[0].strip():
        raise _Passthrough("nothing-to-compress")
    return found


def _prompt_kind(item: object, i: int) -> type:
    """What one item of a prompt array is: a string (``str``), a token id (``int``) or an array of them (``list``)."""
    if isinstance(item, str):
        return str
    if _token_id(item) or (isinstance(item, list) and all(map(_token_id, item))):
        return type(item)
    raise _fail(f"prompt[{i}] must be a string, a token id or an array of token ids", f"prompt[{i}]")


def _token_id(value: object) -> bool:
    return type(value) is int  # JSON true and false are Python ints too, and are not token ids
