"""The ``wrap-openai`` and ``wrap-anthropic`` doors of ``agent-trace``: every request of a trace sent by
``pz.wrap`` around the real ``openai`` / ``anthropic`` SDK, straight to a recording fake upstream on 127.0.0.1 (no
proxy), and billed as the upstream received it.

Each run gets wrapped clients over a Zipper of its own from the suite's factory, as the in-process methods get
theirs, so its conversation state starts empty. The budget is each call's ``promptzip=`` keyword, and the history is
the wrapped client's default (``stable``), recognised from the messages (no ``prompt_cache_key``). A request under the
suite's passthrough threshold (:data:`~promptzip.evals._agent_report.MIN_TOKENS`) goes with ``promptzip=False``, as
the proxy's ``min_tokens`` and the in-process methods pass it through. Anthropic requests are translated and marked
as the ``proxy-anthropic`` door marks them (:func:`~promptzip.evals._agent_doors.mark`), so the doors bill the same
chat shapes. A request the wrapped client cannot compress raises a :class:`~promptzip.PromptZipError`, which the
suite counts as the other methods' fail-open.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from promptzip._messages import message_tokens
from promptzip._pricing import CachePricing
from promptzip._tokenizers import get_tokenizer
from promptzip._types import Budget
from promptzip.evals import _agent_doors as doors
from promptzip.evals._agent_report import MIN_TOKENS

__all__ = ["NOTE", "WrapSession", "open_wrap", "send_anthropic", "send_openai"]

Messages = list[dict[str, Any]]
PRESET, TARGET = "fast", "gpt-4o"  # the suite's, as the proxy doors are configured
NOTE = (
    "The wrap doors: pz.wrap around the openai / anthropic SDK, straight to a fake upstream; each run's clients "
    f"wrap a Zipper of their own; requests under {MIN_TOKENS} tokens go with promptzip=False, as the proxy's "
    "min_tokens passes them through."
)


@dataclass(frozen=True, slots=True)
class WrapSession:
    """One (trace, method, budget) run's wrapped clients, over one fresh Zipper."""

    upstream: Any
    openai: Any
    anthropic: Any
    tags: Iterator[int]


@contextmanager
def open_wrap(build: Callable[[str, str], Any]) -> Iterator[Callable[[], WrapSession]]:
    """A fake upstream and one ``openai`` and one ``anthropic`` client for a suite; yields what makes a run's
    session (the clients wrapped over a new Zipper from ``build``)."""
    import anthropic
    import openai

    from promptzip.integrations.decorator import wrap
    from promptzip.integrations.proxy.testing import FakeUpstream

    with ExitStack() as stack:
        upstream = stack.enter_context(FakeUpstream())
        common: dict[str, Any] = {"api_key": "unused", "max_retries": 0, "timeout": doors.TIMEOUT_S}
        to_openai = stack.enter_context(openai.OpenAI(base_url=upstream.url, **common))
        to_anthropic = stack.enter_context(anthropic.Anthropic(base_url=upstream.url.removesuffix("/v1"), **common))
        tags = itertools.count(1)

        def session() -> WrapSession:
            # Every call gives its own promptzip= (the run's budget, or False): the clients' rate is never used.
            zipper = build(PRESET, TARGET)
            return WrapSession(
                upstream, wrap(to_openai, rate=1.0, zipper=zipper), wrap(to_anthropic, rate=1.0, zipper=zipper), tags
            )

        yield session


def _setting(messages: Messages, budget: Budget | None) -> Budget | bool:
    """The call's ``promptzip=``: off under the passthrough threshold, else the run's budget."""
    if budget is None or message_tokens(messages, get_tokenizer(TARGET).count) < MIN_TOKENS:
        return False
    return budget


def send_openai(session: WrapSession, messages: Messages, budget: Budget | None, pricing: CachePricing) -> Messages:
    """``wrap-openai`` (a :class:`~promptzip.evals.agent_trace.Method`'s ``send``): the wrapped client prices the
    call by its model, which the suite bills at the same prices."""
    tag = str(next(session.tags))
    session.openai.chat.completions.create(
        model=doors.OPENAI_MODEL,
        messages=messages,
        extra_headers={doors.TAG: tag},
        promptzip=_setting(messages, budget),
    )
    return list(doors.take_tagged(session.upstream, tag)["messages"])


def send_anthropic(session: WrapSession, messages: Messages, budget: Budget | None, pricing: CachePricing) -> Messages:
    """``wrap-anthropic``, as :func:`send_openai`, with the chat in Anthropic's format, marked as an agent loop marks
    it; what the upstream received is unmarked and translated back."""
    plain_system, plain = doors.to_anthropic(messages)
    system, turns = doors.mark(plain_system, plain)
    tag = str(next(session.tags))
    extra: dict[str, Any] = {"system": system} if system is not None else {}
    session.anthropic.messages.create(
        model=doors.ANTHROPIC_MODEL,
        max_tokens=doors.MAX_TOKENS,
        messages=turns,
        extra_headers={doors.TAG: tag},
        promptzip=_setting(messages, budget),
        **extra,
    )
    body = doors.take_tagged(session.upstream, tag)
    received_system, received = doors.unmark(body.get("system"), body["messages"], plain)
    return doors.from_anthropic(received_system, received)
