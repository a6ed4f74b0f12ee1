"""The proxy's dialects: the translations of :mod:`promptzip.integrations._dialects` (how a compressed route's body
reads as chat and how the compressed messages go back), each answering errors in its API's style."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import JSONResponse

from promptzip._errors import PromptZipError
from promptzip.integrations import _dialects as core
from promptzip.integrations._dialects import MINIMAL_TEXT, Chat
from promptzip.integrations.proxy._errors import error_response, status_of
from promptzip.integrations.proxy._settings import DIALECT_PATHS, RouteSettings

__all__ = ["DIALECTS", "MINIMAL_TEXT", "Chat", "Dialect", "dialect_for"]


class Dialect(core.Dialect):
    """A dialect as the proxy serves it: its translation, and its error responses."""

    def error(self, exc: BaseException, *, headers: dict[str, str] | None = None) -> JSONResponse:
        """The JSON error response for ``exc`` in this API's style (OpenAI's unless a dialect says otherwise)."""
        return error_response(exc, headers=headers)


class ChatCompletions(Dialect, core.ChatCompletions):
    """OpenAI chat completions, with OpenAI's errors."""


class OpenAIResponses(Dialect, core.OpenAIResponses):
    """OpenAI's Responses API, with OpenAI's errors."""


class Completions(Dialect, core.Completions):
    """OpenAI's legacy Completions API, with OpenAI's errors."""


_ANTHROPIC_ERRORS = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",  # Anthropic has no 408 of its own; its timeouts (504) are timeout_error
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


class AnthropicMessages(Dialect, core.AnthropicMessages):
    """Anthropic's Messages API, with Anthropic's errors (``{"type": "error", "error": {"type", "message"}}``)."""

    def error(self, exc: BaseException, *, headers: dict[str, str] | None = None) -> JSONResponse:
        status, _, _ = status_of(exc)
        kind = _ANTHROPIC_ERRORS.get(status, "api_error" if status >= 500 else "invalid_request_error")
        message = str(exc) if isinstance(exc, PromptZipError) else "internal proxy error"
        body = {"type": "error", "error": {"type": kind, "message": message}}
        return JSONResponse(body, status_code=status, headers=headers)


DIALECTS: Mapping[str, Dialect] = {
    d.name: d for d in (ChatCompletions(), AnthropicMessages(), OpenAIResponses(), Completions())
}


def dialect_for(path: str, route: RouteSettings) -> Dialect:
    """The dialect of a compressed route: the route's own, else the path's default, else chat completions."""
    return DIALECTS[route.dialect or DIALECT_PATHS.get(path, "chat")]
