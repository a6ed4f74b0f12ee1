"""The exceptions promptzip raises.

Every error is a ``PromptZipError``; library errors (tiktoken, transformers, sqlite3, httpx, ...) are translated
where they enter promptzip, with ``raise ... from exc``::

    PromptZipError
    ├── ConfigError            bad settings: unknown preset, tokenizer, scorer, cache URL, registry name
    │   └── ModelNotAvailable  a named model cannot be found locally (and may not be downloaded)
    ├── InputError             bad input: non-str chunks, invalid UTF-8, malformed chat messages, bad tags
    │   └── ExpandNotFound     no text is stored under an expand id (in this scope); also a ``LookupError``
    ├── BudgetError            a budget that is not a budget, or one smaller than the protected parts
    ├── DeadlineExceeded       a compression ran past the time limit it was given (also a ``TimeoutError``)
    └── UpstreamError          the proxy's upstream failed (carries its status when it had one)

``ConfigError``, ``InputError`` and ``BudgetError`` are also ``ValueError``s, so code that already catches
``ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "BudgetError",
    "ConfigError",
    "DeadlineExceeded",
    "ExpandNotFound",
    "InputError",
    "ModelNotAvailable",
    "PromptZipError",
    "UpstreamError",
    "check_int",
]


class PromptZipError(Exception):
    """Root of every error promptzip raises."""


class ConfigError(PromptZipError, ValueError):
    """A setting, name or option is not valid."""


class ModelNotAvailable(ConfigError, LookupError):
    """A model could not be resolved to local files; the message says what to install."""

    def __init__(self, message: str, *, model: str | None = None) -> None:
        super().__init__(message)
        self.model = model


class InputError(PromptZipError, ValueError):
    """The text, chunks or messages given cannot be compressed as they are."""

    def __init__(self, message: str, *, position: int | None = None) -> None:
        super().__init__(message)
        self.position = position


class ExpandNotFound(InputError, LookupError):
    """No original text is stored under an expand id in this scope: never stored, evicted or expired, or stored for
    another scope (another credential of the proxy). The message is the same in every case, so it tells a caller
    nothing about other scopes."""

    def __init__(self, id: str) -> None:
        super().__init__(
            f"no text is stored under the expand id {id!r} here (it may have expired or been evicted from the cache)"
        )
        self.id = id


class BudgetError(PromptZipError, ValueError):
    """The budget is invalid, or smaller than the parts that must be kept."""

    def __init__(self, message: str, *, budget: int | None = None, required: int | None = None) -> None:
        super().__init__(message)
        self.budget = budget
        self.required = required


class DeadlineExceeded(PromptZipError, TimeoutError):
    """A compression was stopped because it ran past its time limit (see :mod:`promptzip._deadline`)."""


class UpstreamError(PromptZipError):
    """The upstream LLM provider could not be reached or answered with an error."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


def check_int(value: object, name: str, *, minimum: int = 1, error: type[PromptZipError] = ConfigError) -> int:
    """``value`` if it is an int (not a bool) of at least ``minimum``, else ``error`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = {1: "a positive int", 0: "a non-negative int"}.get(minimum, f"an int ≥ {minimum}")
        raise error(f"{name} must be {kind}, got {value!r}")
    return value
