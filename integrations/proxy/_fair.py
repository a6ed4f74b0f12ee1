"""Whose compression runs next, and whose waits are shed when the queue is full: turns by client.

The compression threads are few (``compression_threads``) and a compression takes seconds on a CPU, so the order
of the waiting ones decides who is served. Served first come, first served, one client that sends many chats at
once (a batch job, an agent fanning out, a retry storm) fills the queue: every other client then waits behind all
of its chats, past its deadline, or is refused with 503 at the door. A client is the request's tenant, else its
credential (:attr:`~._requests.Options.client`).

:class:`FairQueue` keeps the same two bounds and changes only the order and whom a full queue refuses:

* **Turns.** A free thread takes the oldest waiting compression of the client with the fewest running, and among
  those of the one whose last turn is the longest ago (a client that held nothing before comes first), so a client
  with one chat waits for at most one compression of each other client, however many they queued.
* **Shedding.** When ``capacity`` compressions are admitted (running or waiting) and a chat arrives, the newest
  waiting compression of the client holding the most is shed (its requests get the 503 and ``retry-after`` the
  newcomer would have got) when that client holds at least two more than the newcomer's client would: the one who
  filled the queue gets the refusals. Otherwise the newcomer is refused, as before. A running compression is never
  stopped; and a client alone, or every client holding its share, is served first come, first served.

With ``fair=False`` every request counts as one client: the order of arrival, and the newcomer refused when full.

:class:`FairSlots` gives the upstream connections (``max_connections``) out the same way: a request that finds them
all taken waits (at most ``timeouts.pool``, then 503), and a freed connection goes to the waiting request whose
client's turn it is, not to the one that came first, so a client holding many long streamed answers, with more
queued, delays another's request by one answer's end at most. Nothing is shed there: a wait is bounded by its timeout.

Both run on the event loop only (no locks); :class:`FairQueue`'s ``start`` must return a future of that loop
(``run_in_executor``).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from promptzip._errors import DeadlineExceeded

__all__ = ["FairQueue", "FairSlots"]


@dataclass(eq=False, slots=True)
class _Job:
    client: str
    start: Callable[[], asyncio.Future[Any]]
    expires: float  # time.monotonic() past which it is not started
    refused: Callable[[], BaseException]  # what its requests get when it is shed
    done: asyncio.Future[Any]
    order: int = field(default=0)


class _Turns:
    """Who of the clients with something waiting goes next: the one with the fewest running; among those, the one
    whose last turn is the longest ago (a client that held nothing before first); then the oldest waiting entry.
    The entries of ``waiting`` have an ``order`` (from :meth:`order`)."""

    def __init__(self) -> None:
        self.running: Counter[str] = Counter()
        self._last: dict[str, int] = {}  # when each client's last entry started (until it is forgotten)
        self._orders = itertools.count()

    def order(self) -> int:
        return next(self._orders)

    def pick(self, waiting: Mapping[str, deque[Any]]) -> str:
        return min(waiting, key=lambda c: (self.running[c], self._last.get(c, -1), waiting[c][0].order))

    def start(self, client: str) -> None:
        self.running[client] += 1
        self._last[client] = next(self._orders)

    def end(self, client: str) -> None:
        self.running[client] -= 1
        if self.running[client] <= 0:
            del self.running[client]

    def forget(self, client: str) -> None:
        """``client`` holds nothing any more: its next entry counts as a newcomer's."""
        self._last.pop(client, None)


class FairQueue:
    """At most ``capacity`` compressions admitted and ``slots`` running; whose runs next and whose is shed, by
    client (module docstring). ``on_shed`` is called once per shed compression (a metric)."""

    def __init__(self, capacity: int, slots: int, *, fair: bool = True, on_shed: Callable[[], None] = lambda: None):
        self.capacity, self.slots, self.fair = capacity, slots, fair
        self._on_shed = on_shed
        self._waiting: dict[str, deque[_Job]] = {}  # per client, oldest first; no empty deques
        self._held: Counter[str] = Counter()  # running + waiting, per client
        self._turns = _Turns()

    @property
    def admitted(self) -> int:
        return self._held.total()

    def held(self, client: str) -> int:
        return self._held[self._key(client)]

    def submit(
        self,
        client: str,
        start: Callable[[], asyncio.Future[Any]],
        *,
        expires: float,
        refused: Callable[[], BaseException],
    ) -> asyncio.Future[Any]:
        """Admit a compression for ``client``: a future of what ``start()``'s future gives once a thread has run
        it, or ``refused()`` when it is shed while waiting, or :class:`~promptzip.DeadlineExceeded` when it is still
        waiting at ``expires``. Raises ``refused()`` at once when the queue is full and no other client holds more
        than its share."""
        key = self._key(client)
        if self.admitted >= self.capacity:
            victim = self._victim(key)
            if victim is None:
                raise refused()
            self._finish(victim)
            victim.done.set_exception(victim.refused())
            self._on_shed()
        job = _Job(key, start, expires, refused, asyncio.get_running_loop().create_future(), self._turns.order())
        self._waiting.setdefault(key, deque()).append(job)
        self._held[key] += 1
        self._dispatch()
        return job.done

    # --------------------------------------------------------------------------------------------- inside
    def _key(self, client: str) -> str:
        return client if self.fair else ""

    def _victim(self, key: str) -> _Job | None:
        """The newest waiting job of the client that holds the most, when it holds two more than ``key`` would."""
        heaviest = max(self._waiting, key=lambda c: (self._held[c], -self._waiting[c][0].order), default=None)
        if heaviest is None or heaviest == key or self._held[heaviest] < self._held[key] + 2:
            return None
        queue = self._waiting[heaviest]
        job = queue.pop()
        if not queue:
            del self._waiting[heaviest]
        return job

    def _next(self) -> _Job | None:
        if not self._waiting:
            return None
        client = self._turns.pick(self._waiting)
        queue = self._waiting[client]
        job = queue.popleft()
        if not queue:
            del self._waiting[client]
        return job

    def _dispatch(self) -> None:
        while self._turns.running.total() < self.slots:
            job = self._next()
            if job is None:
                return
            if time.monotonic() >= job.expires:  # its requests have stopped waiting: not worth a thread
                self._finish(job)
                job.done.set_exception(DeadlineExceeded("the compression waited past its deadline for a thread"))
                continue
            self._turns.start(job.client)
            try:
                running = job.start()
            except Exception as exc:  # the executor is shut down (the app is stopping): its requests get the error
                self._turns.end(job.client)
                self._finish(job)
                job.done.set_exception(exc)
                continue
            running.add_done_callback(functools.partial(self._ran, job))

    def _ran(self, job: _Job, running: asyncio.Future[Any]) -> None:
        self._turns.end(job.client)
        self._finish(job)
        if running.cancelled():
            job.done.cancel()
        elif (exc := running.exception()) is not None:
            job.done.set_exception(exc)
        else:
            job.done.set_result(running.result())
        self._dispatch()

    def _finish(self, job: _Job) -> None:
        self._held[job.client] -= 1
        if self._held[job.client] <= 0:
            del self._held[job.client]
            self._turns.forget(job.client)


@dataclass(eq=False, slots=True)
class _Waiter:
    future: asyncio.Future[None]
    order: int


class FairSlots:
    """At most ``slots`` held at once, given out in turns by client (module docstring): :meth:`acquire` one (wait
    for it under ``asyncio.timeout``), :meth:`release` it when done."""

    def __init__(self, slots: int, *, fair: bool = True) -> None:
        self.slots, self.fair = slots, fair
        self._waiting: dict[str, deque[_Waiter]] = {}  # per client, oldest first; no empty deques
        self._held: Counter[str] = Counter()  # holding or waiting, per client
        self._turns = _Turns()

    @property
    def in_use(self) -> int:
        return self._turns.running.total()

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._waiting.values())

    async def acquire(self, client: str) -> None:
        key = client if self.fair else ""
        self._held[key] += 1
        if not self._waiting and self.in_use < self.slots:
            self._turns.start(key)
            return
        waiter = _Waiter(asyncio.get_running_loop().create_future(), self._turns.order())
        self._waiting.setdefault(key, deque()).append(waiter)
        try:
            await waiter.future
        except BaseException:  # cancelled, or its timeout: given up (a slot granted meanwhile goes on)
            if waiter.future.done() and not waiter.future.cancelled():
                self.release(client)
            else:
                queue = self._waiting.get(key)
                if queue is not None and waiter in queue:
                    queue.remove(waiter)
                    if not queue:
                        del self._waiting[key]
                self._let_go(key)
            raise

    def release(self, client: str) -> None:
        key = client if self.fair else ""
        self._turns.end(key)
        self._let_go(key)
        while self._waiting and self.in_use < self.slots:
            next_client = self._turns.pick(self._waiting)
            queue = self._waiting[next_client]
            waiter = queue.popleft()
            if not queue:
                del self._waiting[next_client]
            if waiter.future.done():  # cancelled: its acquire cleans up after itself
                continue
            self._turns.start(next_client)
            waiter.future.set_result(None)

    def _let_go(self, key: str) -> None:
        self._held[key] -= 1
        if self._held[key] <= 0:
            del self._held[key]
            self._turns.forget(key)
