"""The fake upstream's answers (:class:`~promptzip.integrations.proxy.testing.FakeUpstream`): each API's reply and
SSE events in its own shape, batches, files and the tool-call mode. Test support, as ``testing`` is."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

__all__ = [
    "LONG_PAD",
    "NAMED_EVENTS",
    "STREAMS",
    "Stream",
    "answer_for",
    "answers_a_tool_call",
    "compaction",
    "compaction_stream",
    "compacts",
    "json_or_none",
    "sse",
    "tool_call",
    "tool_call_stream",
]

if TYPE_CHECKING:
    from promptzip.integrations.proxy.testing import Recorded


def sse(data: dict[str, Any] | str, named: bool) -> bytes:
    head = f"event: {data['type']}\n" if named and isinstance(data, dict) else ""
    return f"{head}data: {data if isinstance(data, str) else json.dumps(data)}\n\n".encode()


Stream = tuple[list[Any], list[Any], list[Any]]  # events before the text, one per text delta, events after
LONG_PAD = 1000  # characters a long:N stream adds to each text delta: megabytes in thousands of chunks


def _part(i: int, pad: int) -> str:
    return f"part{i} " + "x" * pad + (" " if pad else "")


def _chat_stream(n: int, pad: int = 0) -> Stream:
    chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": "fake"}
    deltas = [
        {**chunk, "choices": [{"index": 0, "delta": {"content": _part(i, pad)}, "finish_reason": None}]}
        for i in range(n)
    ]
    return [], deltas, [{**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}, "[DONE]"]


def _anthropic_stream(n: int, pad: int = 0) -> Stream:
    block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    deltas = [
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": _part(i, pad)}}
        for i in range(n)
    ]
    stop = {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}}
    after = [
        {"type": "content_block_stop", "index": 0},
        {**stop, "usage": {"output_tokens": n}},
        {"type": "message_stop"},
    ]
    return [{"type": "message_start", "message": _message("")}, block], deltas, after


def _responses_stream(n: int, pad: int = 0) -> Stream:
    where = {"item_id": "msg_fake", "output_index": 0, "content_index": 0, "logprobs": []}
    deltas = [
        {"type": "response.output_text.delta", "sequence_number": i + 1, "delta": _part(i, pad), **where}
        for i in range(n)
    ]
    text = "".join(_part(i, pad) for i in range(n))
    created = {"type": "response.created", "sequence_number": 0, "response": _response("", "in_progress")}
    return [created], deltas, [{"type": "response.completed", "sequence_number": n + 1, "response": _response(text)}]


def _completions_stream(n: int, pad: int = 0) -> Stream:
    """OpenAI's legacy Completions stream: a ``text_completion`` chunk per text delta, a last one that says why it
    stopped, then ``[DONE]``."""
    chunk = {"id": "cmpl-fake", "object": "text_completion", "created": 0, "model": "fake"}
    deltas = [
        {**chunk, "choices": [{"text": _part(i, pad), "index": 0, "logprobs": None, "finish_reason": None}]}
        for i in range(n)
    ]
    last = {**chunk, "choices": [{"text": "", "index": 0, "logprobs": None, "finish_reason": "stop"}]}
    return [], deltas, [last, "[DONE]"]


STREAMS = {
    "/v1/chat/completions": _chat_stream,
    "/v1/messages": _anthropic_stream,
    "/v1/responses": _responses_stream,
    "/v1/completions": _completions_stream,
}
NAMED_EVENTS = ("/v1/messages", "/v1/responses")  # whose SSE events carry an event: line (OpenAI's others do not)


def _message(text: str) -> dict[str, Any]:
    """An Anthropic Messages API reply."""
    content = [{"type": "text", "text": text}] if text else []
    usage = {"input_tokens": 0, "output_tokens": 3 if text else 0}
    reply = {"id": "msg_fake", "type": "message", "role": "assistant", "model": "fake", "content": content}
    return {**reply, "stop_reason": "end_turn" if text else None, "stop_sequence": None, "usage": usage}


def _tool_use(name: str) -> dict[str, Any]:
    return {"type": "tool_use", "id": "toolu_fake", "name": name, "input": {}}


def tool_call(name: str) -> dict[str, Any]:
    """An Anthropic Messages API reply that calls the tool ``name`` with no input."""
    return {
        **_message(""),
        "content": [_tool_use(name)],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 0, "output_tokens": 3},
    }


def tool_call_stream(name: str) -> Stream:
    """:func:`tool_call` as Anthropic's SSE events."""
    start = {"type": "content_block_start", "index": 0, "content_block": _tool_use(name)}
    delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{}"}}
    stop = {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None}}
    after = [
        {"type": "content_block_stop", "index": 0},
        {**stop, "usage": {"output_tokens": 3}},
        {"type": "message_stop"},
    ]
    return [{"type": "message_start", "message": _message("")}, start], [delta], after


def answers_a_tool_call(payload: Any) -> bool:
    """Whether an Anthropic request's last message holds a ``tool_result`` block."""
    messages = payload.get("messages") if isinstance(payload, dict) else None
    last = messages[-1] if isinstance(messages, list) and messages else None
    content = last.get("content") if isinstance(last, dict) else None
    return isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content)


# The fields of the fake's compaction block besides its summary, each set, so that a test sees every one of them
# come back in the next request exactly as the SDK round-trips them.
_COMPACTED: dict[str, Any] = {"encrypted_content": "enc_fake", "signature": "sig_fake", "tool_changes": []}


def compacts(payload: Any) -> bool:
    """Whether an Anthropic request is a compaction request: its body sets ``compaction``."""
    return isinstance(payload, dict) and payload.get("compaction") is not None


def _summary(payload: dict[str, Any]) -> str:
    """What the fake's compaction block says: a count of the texts the request sent, then those texts, so that the
    summary is as long and as compressible as the conversation it stands for."""
    texts = _texts(payload.get("messages"))
    return f"Summary of {len(texts)} texts, {sum(map(len, texts))} characters:\n\n" + "\n\n".join(texts)


def compaction(payload: dict[str, Any]) -> dict[str, Any]:
    """The reply to a compaction request, as the API gives it: the ``compaction`` block alone, ``stop_reason``
    ``compaction``."""
    block = {"type": "compaction", "content": _summary(payload), **_COMPACTED}
    return {
        **_message(""),
        "content": [block],
        "stop_reason": "compaction",
        "usage": {"input_tokens": 0, "output_tokens": 3},
    }


def compaction_stream(payload: dict[str, Any]) -> Stream:
    """:func:`compaction` as Anthropic's SSE events: the block starts with its signature, and one
    ``compaction_delta`` carries its summary and encrypted content."""
    opened = {"type": "compaction", "content": None, "signature": _COMPACTED["signature"], "tool_changes": []}
    start = {"type": "content_block_start", "index": 0, "content_block": opened}
    delta = {
        "type": "compaction_delta",
        "content": _summary(payload),
        "encrypted_content": _COMPACTED["encrypted_content"],
    }
    stop = {"type": "message_delta", "delta": {"stop_reason": "compaction", "stop_sequence": None}}
    after = [
        {"type": "content_block_stop", "index": 0},
        {**stop, "usage": {"output_tokens": 3}},
        {"type": "message_stop"},
    ]
    return (
        [{"type": "message_start", "message": _message("")}, start],
        [{"type": "content_block_delta", "index": 0, "delta": delta}],
        after,
    )


def _response(text: str, status: str = "completed") -> dict[str, Any]:
    """An OpenAI Responses API reply."""
    part = {"type": "output_text", "text": text, "annotations": []}
    output = [{"type": "message", "id": "msg_fake", "status": status, "role": "assistant", "content": [part]}]
    reply = {"id": "resp_fake", "object": "response", "created_at": 0, "model": "fake", "status": status}
    usage = {"input_tokens": 0, "output_tokens": 3, "total_tokens": 3}
    return {**reply, "output": output if text else [], "tool_choice": "auto", "tools": [], "usage": usage}


def json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _completion(payload: Any) -> dict[str, Any]:
    """An OpenAI legacy Completions reply: it counts the prompts and their characters, and with ``echo`` starts with
    the prompt, as a server that echoes it does."""
    body = payload if isinstance(payload, dict) else {}
    prompt = body.get("prompt")
    prompts = [prompt] if isinstance(prompt, str) else prompt if isinstance(prompt, list) else []
    chars = sum(len(p) for p in prompts if isinstance(p, str))
    text = f"{len(prompts)} prompts, {chars} characters"
    if body.get("echo") is True and isinstance(prompt, str):
        text = prompt + text
    choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": "stop"}
    return {
        "id": "cmpl-fake",
        "object": "text_completion",
        "created": 0,
        "model": body.get("model", "fake"),
        "choices": [choice],
        "usage": {"prompt_tokens": chars // 4, "completion_tokens": 3, "total_tokens": chars // 4 + 3},
    }


def answer_for(request: Recorded, payload: Any) -> dict[str, Any]:
    if request.target.startswith("/v1/completions"):
        return _completion(payload)
    if request.target.startswith("/v1/chat/completions"):
        messages = payload.get("messages", []) if isinstance(payload, dict) else []
        if not isinstance(messages, list):  # a pass-through body the proxy did not read (an encoded one, say)
            messages = []
        chars = sum(
            len(m.get("content") or "") for m in messages if isinstance(m, dict) and isinstance(m.get("content"), str)
        )
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 0,
            "model": payload.get("model", "fake") if isinstance(payload, dict) else "fake",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": f"{len(messages)} messages, {chars} characters"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": chars // 4, "completion_tokens": 3, "total_tokens": chars // 4 + 3},
        }
    batch = _batch_for(request, payload) or _file_for(request)
    if batch is not None:
        return batch
    if request.target.startswith(("/v1/messages", "/v1/responses")) and isinstance(payload, dict):
        texts = _texts([payload.get(k) for k in ("system", "messages", "instructions", "input")])
        summary = f"{len(texts)} texts, {sum(map(len, texts))} characters"
        return _message(summary) if request.target.startswith("/v1/messages") else _response(summary)
    if request.method == "GET" and request.target.split("?")[0] == "/v1/models":
        return {"object": "list", "data": [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "fake"}]}
    return {"method": request.method, "target": request.target, "body_bytes": len(request.body)}


def _batch_for(request: Recorded, payload: Any) -> dict[str, Any] | None:
    """An Anthropic Message Batch for ``POST /v1/messages/batches`` (as created) and ``GET
    /v1/messages/batches/{id}`` (as ended), else ``None``."""
    path = request.target.split("?")[0]
    created = request.method == "POST" and path == "/v1/messages/batches" and isinstance(payload, dict)
    batch_id = path.removeprefix("/v1/messages/batches/")
    retrieved = request.method == "GET" and batch_id != path and batch_id.isidentifier()
    if not created and not retrieved:
        return None
    requests = payload.get("requests") if isinstance(payload, dict) else None
    count = len(requests) if isinstance(requests, list) else 1
    ended = {"processing": 0, "succeeded": count} if retrieved else {"processing": count, "succeeded": 0}
    return {
        "id": batch_id if retrieved else "msgbatch_fake",
        "type": "message_batch",
        "processing_status": "ended" if retrieved else "in_progress",
        "request_counts": {**ended, "errored": 0, "canceled": 0, "expired": 0},
        "created_at": "2025-01-01T00:00:00Z",
        "expires_at": "2025-01-02T00:00:00Z",
        "ended_at": "2025-01-01T01:00:00Z" if retrieved else None,
        "cancel_initiated_at": None,
        "archived_at": None,
        "results_url": None,
    }


def _file_for(request: Recorded) -> dict[str, Any] | None:
    """An OpenAI file object for ``POST /v1/files`` (from the upload's form, as far as it reads) and ``GET
    /v1/files/{id}``, else ``None``."""
    from promptzip.integrations._bodies import RequestError
    from promptzip.integrations.proxy._multipart import parse_form

    path = request.target.split("?")[0]
    file_id = path.removeprefix("/v1/files/")
    retrieved = request.method == "GET" and file_id != path and "/" not in file_id
    if not retrieved and (request.method != "POST" or path != "/v1/files"):
        return None
    found: dict[str, Any] = {"id": file_id, "bytes": 0, "filename": "batch.jsonl", "purpose": "batch"}
    if not retrieved:
        found = {"id": "file-fake", "bytes": len(request.body), "filename": "upload", "purpose": ""}
        try:
            form = parse_form(request.header("content-type") or "", request.body)
        except RequestError:
            form = None
        for part in form.parts if form is not None else ():
            if part.name == "file":
                found = {**found, "bytes": len(part.content), "filename": part.filename or "upload"}
            if part.name == "purpose":
                found["purpose"] = part.content.decode("utf-8", "replace")
    return {**found, "object": "file", "created_at": 0, "status": "processed"}


def _texts(value: Any) -> list[str]:
    """Every string under a ``text``, ``content``, ``output``, ``system``, ``instructions`` or ``input`` key, or a
    top-level string: what an Anthropic or Responses body says, whatever its shape."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [t for v in value for t in _texts(v)]
    if isinstance(value, dict):
        keys = ("text", "content", "output")
        return [t for k in keys for t in _texts(value.get(k))]
    return []
