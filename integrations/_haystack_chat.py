"""Haystack chat messages as the core reads them: a ``ChatMessage`` as an OpenAI chat message and back, so both
chat doors of :mod:`promptzip.integrations.haystack` (the compressor and the wrapping generator) send a request as
the proxy and ``pz.wrap`` send it. Messages keep their role, name, meta, tool calls and media; only text (and text
tool results) changes, and a message the core left alone is returned as the same object."""

from __future__ import annotations

import json
from typing import Any

from haystack.dataclasses import ChatMessage

from promptzip._errors import InputError
from promptzip._pricing import CachePricing
from promptzip.integrations._calls import Compression
from promptzip.integrations._documents import checked_list

__all__ = ["as_chat", "check_messages", "compress_chat", "written_back"]


def compress_chat(
    compression: Compression, messages: list[ChatMessage], *, scope: str, pricing: CachePricing | None
) -> list[ChatMessage]:
    """``messages`` with their context compressed to ``compression``'s budget for the whole request."""
    read = [as_chat(m, i) for i, m in enumerate(messages)]
    out = compression.chat([d for d, _ in read], scope=scope, pricing=pricing)
    return [
        message if new is given else written_back(message, slots, new)
        for message, (given, slots), new in zip(messages, read, out, strict=True)
    ]


def check_messages(messages: object) -> list[ChatMessage]:
    return checked_list(messages, ChatMessage, "messages", "haystack ChatMessage")


def as_chat(message: ChatMessage, i: int) -> tuple[dict[str, Any], list[int]]:
    """A ChatMessage as an OpenAI chat message, and for each of its text pieces (the whole content when it is one
    text, else each content part) the index of the ChatMessage content item it stands for. Tool calls go in
    ``tool_calls`` and media as parts the core never changes; a tool result is the ``tool`` message's content."""
    data = message.to_dict()
    chat: dict[str, Any] = {"role": data["role"]}
    if data.get("name"):
        chat["name"] = data["name"]
    parts: list[dict[str, Any]] = []
    slots: list[int] = []
    calls: list[dict[str, Any]] = []
    for k, item in enumerate(data["content"]):
        if "text" in item:
            parts.append({"type": "text", "text": item["text"]})
            slots.append(k)
        elif "tool_call" in item:
            calls.append(_openai_call(item["tool_call"], i))
        elif "tool_call_result" in item:
            result = item["tool_call_result"]
            chat["tool_call_id"] = result["origin"].get("id")
            value = result["result"]
            if isinstance(value, str):
                parts.append({"type": "text", "text": value})
            else:  # a list of text, image and file parts: only the text parts are read
                parts.extend({"type": "text", "text": p["text"]} if "text" in p else {"type": "media"} for p in value)
            slots += [k] * (len(parts) - len(slots))
        else:  # an image, a file, reasoning: sent as it is
            parts.append({"type": "media"})
            slots.append(k)
    if calls:
        chat["tool_calls"] = calls
    if len(parts) == 1 and parts[0]["type"] == "text":
        chat["content"] = parts[0]["text"]
    elif parts:
        chat["content"] = parts
    elif not calls:
        raise InputError(f"messages[{i}] has no content")
    else:
        chat["content"] = None
    return chat, slots


def _openai_call(call: dict[str, Any], i: int) -> dict[str, Any]:
    """A ToolCall in OpenAI's form, its arguments JSON as Haystack writes them (``to_openai_dict_format``). Arguments
    JSON cannot hold (a date, a set) are refused, not written as their ``str``: Haystack's own ``json.dumps`` fails on
    them too, so a text promptzip made up would be counted for a call that cannot be sent as given."""
    try:
        arguments = json.dumps(call.get("arguments") or {}, ensure_ascii=False)
    except (TypeError, ValueError) as exc:  # ValueError: a circular reference
        name = call.get("tool_name")
        raise InputError(
            f"messages[{i}] cannot be read as a chat message: the arguments of tool call {name!r} are not JSON: {exc}"
        ) from exc
    return {"id": call.get("id"), "type": "function", "function": {"name": call["tool_name"], "arguments": arguments}}


def written_back(message: ChatMessage, slots: list[int], chat: dict[str, Any]) -> ChatMessage:
    """``message`` with the texts of ``chat`` (its compressed OpenAI form) in place of its own."""
    content = chat["content"]
    texts = [content] if isinstance(content, str) else [p.get("text") for p in content or ()]
    data = message.to_dict()
    items = data["content"]
    seen: dict[int, int] = {}  # how many text pieces of a list tool result were written so far
    for slot, text in zip(slots, texts, strict=True):
        item = items[slot]
        if text is None:  # media: as it was
            seen[slot] = seen.get(slot, 0) + 1
        elif "text" in item:
            item["text"] = text
        elif "tool_call_result" in item:
            result = item["tool_call_result"]
            if isinstance(result["result"], str):
                result["result"] = text
            else:
                n = seen.get(slot, 0)
                result["result"][n] = {**result["result"][n], "text": text}
                seen[slot] = n + 1
    return ChatMessage.from_dict(data)
