"""The data model of the ``agent-trace`` suite: a :class:`Trace` of :class:`Turn` s and the :class:`Request` s an
agent loop sends for it. :mod:`promptzip.evals._traces` builds the traces.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["Message", "Request", "Trace", "Turn"]

Message = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Turn:
    """One question of a trace: ``messages`` are what the turn appends before the model's answer ``reply``;
    the model is called after each count in ``calls`` of them (the last call is the measured one)."""

    question: str
    answers: tuple[str, ...]
    messages: tuple[Message, ...]
    reply: Message
    calls: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Request:
    """A request of the agent loop: turn ``turn``'s ``new`` last messages are that turn's; ``measured``: the turn's
    answer should be in them."""

    turn: int
    messages: tuple[Message, ...]
    new: int
    measured: bool


@dataclass(frozen=True, slots=True)
class Trace:
    """A conversation of ``kind`` (one of :data:`~promptzip.evals._traces.KINDS`): a system prompt and its turns."""

    id: str
    kind: str
    description: str
    system: str
    turns: tuple[Turn, ...]

    def requests(self) -> Iterator[Request]:
        """The requests in the order an agent loop sends them, each a fresh copy (a method may change it)."""
        history: list[Message] = [{"role": "system", "content": self.system}]
        for t, turn in enumerate(self.turns):
            for n in turn.calls:
                sent = tuple(json.loads(json.dumps(m)) for m in (*history, *turn.messages[:n]))
                yield Request(t, sent, n, n == turn.calls[-1])
            history += [*turn.messages, turn.reply]

    def messages(self) -> list[Message]:
        """The whole chat: system prompt, then every turn with its reply."""
        out: list[Message] = [{"role": "system", "content": self.system}]
        for turn in self.turns:
            out += [*turn.messages, turn.reply]
        return out
