"""The ``runnable`` door of ``agent-trace``: every request of a trace goes through LangChain's
:class:`~promptzip.integrations.langchain.PromptZipRunnable` as real ``langchain-core`` messages (system, human, AI
messages with their tool calls, tool messages), as the step before the chat model in an LCEL chain or an agent loop
sees them, and is billed in the OpenAI form LangChain's own ``convert_to_openai_messages`` gives what came out.

Each run gets a Zipper of its own from the suite's factory, as the in-process methods do, so its conversation state
starts empty; the Runnable is built per call around it (its constructor is cheap), with the run's budget and the
provider's prices (``pricing=``), and its history is the default (``stable``), recognised from the messages.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from promptzip._pricing import CachePricing
from promptzip._types import Budget

__all__ = ["available", "send_runnable"]

Messages = list[dict[str, Any]]


def available() -> bool:
    return importlib.util.find_spec("langchain_core") is not None


def send_runnable(zipper: Any, messages: Messages, budget: Budget | None, pricing: CachePricing) -> Messages:
    """``runnable`` (a :class:`~promptzip.evals.agent_trace.Method`'s ``send``)."""
    from langchain_core.messages import convert_to_messages, convert_to_openai_messages

    from promptzip.integrations.langchain import PromptZipRunnable

    if budget is None:
        return messages
    spec: dict[str, Any] = {"budget": budget.tokens} if budget.tokens is not None else {"rate": budget.rate}
    runnable = PromptZipRunnable(zipper=zipper, pricing=pricing, **spec)
    out = runnable.invoke(convert_to_messages(messages))
    return [dict(m) for m in convert_to_openai_messages(out)]
