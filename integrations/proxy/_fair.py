"""Whose compression runs next, and whose waits are shed when the queue is full: turns by client.

The compression threads are few (``compression_threads``) and a compression takes seconds on a CPU, so the order
of the waiting ones decides who is served. Served first come, first served, one client that sends many chats at
once (a batch job, an agent fanning out, a retry storm) fills the queue: every other client then waits behind all
of its chats, past its deadline, or is refused with 503 at the door. A client is the request's tenant, else its
credential (:attr:`~._requests.Options.client`). Inside a client, the end users its bodies name
(:attr:`~._requests.Options.user`: an app that serves many people with one key) take the client's turns in turn, by
the same rules: one user's batch does not hold up the others of the same key, and naming many users never gives a
client more than its own turn.

:class:`FairQueue` keeps the same two bounds and changes only the order and whom a full queue refuses:

* **Turns.** A free thread takes the oldest waiting compression of the client with the fewest running, and among
  those of the one whose last turn is the longest ago (a client that held nothing before comes first), so a client
  with one chat waits for at most one compression of each other client, however many they queued.
* **Shedding.** When ``capacity`` compressions are admitted (running or waiting) and a chat arrives, the newest
  waiting compression of the client holding the most is shed (its requests get the 503 and ``retry-after`` the
  newcomer would have got) when that client holds at least two more than the newcomer's client would: the one who
  filled the queue gets the refusals. Otherwise the newcomer is refused, as before. A running compression is never
  stopped; and a client alone, or every client holding its share, is served first come, first served. When the
  newcomer's own client holds the most, the newest waiting compression of its user holding the most is shed instead,
  when that user holds at least two more than the newcomer's.

With ``fair=False`` every request counts as one client: the order of arrival, and the newcomer refused when full.

:class:`FairSlots` gives the upstream connections (``max_connections``) out the same way: a request that finds them
all taken waits (at most ``timeouts.pool``, then 503), and a freed connection goes to the waiting request whose
client's turn it is, not to the one that came first, so a client holding many long streamed answers, with more
queued, delays another's request by one answer's end at most. Nothing is shed there: a wait is bounded by its timeout.
A chat of a compressed route sent as given (``x-promptzip-disable``) waits under the user its body names as well.

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


# A waiting entry's place: its client, then the end user inside that client ("" when the request names none)
Key = tuple[str, str]


@dataclass(eq=False, slots=True)
class _Job:
    key: Key
    start: Callable[[], asyncio.Future[Any]]
    expires: float  # time.monotonic() past which it is not started
    refused: Callable[[], BaseException]  # what its requests get when it is shed
    done: asyncio.Future[Any]
    order: int = field(default=0)


class _Turns:
    """Who of those with something waiting goes next: first the client, then the end user inside it, each chosen
    the same way: the fewest running; among those, the one whose last turn is the longest ago (one that held nothing
    before first); then the oldest waiting entry. So end users who share a client share its turns, and naming many
    users never wins a client more than its own. The entries of ``waiting`` have an ``order`` (from :meth:`order`)."""

    def __init__(self) -> None:
        self.running: Counter[Key] = Counter()
        self._clients: Counter[str] = Counter()  # running, per client
        self._last: dict[Key | str, int] = {}  # when each client's and user's last entry started (until forgotten)
        self._orders = itertools.count()

    def order(self) -> int:
        return next(self._orders)

    def pick(self, waiting: Mapping[Key, deque[Any]]) -> Key:
        oldest = _oldest(waiting)
        client = min(oldest, key=lambda c: (self._clients[c], self._last.get(c, -1), oldest[c]))
        users = (k for k in waiting if k[0] == client)
        return min(users, key=lambda k: (self.running[k], self._last.get(k, -1), waiting[k][0].order))

    def start(self, key: Key) -> None:
        self.running[key] += 1
        self._clients[key[0]] += 1
        self._last[key] = self._last[key[0]] = next(self._orders)

    def end(self, key: Key) -> None:
        self.running[key] -= 1
        if self.running[key] <= 0:
            del self.running[key]
        self._clients[key[0]] -= 1
        if self._clients[key[0]] <= 0:
            del self._clients[key[0]]

    def forget(self, key: Key, *, client: bool) -> None:
        """``key`` holds nothing any more (and its whole client nothing, when ``client``): its next entry counts as a
        newcomer's."""
        self._last.pop(key, None)
        if client:
            self._last.pop(key[0], None)


def _oldest(waiting: Mapping[Key, deque[Any]]) -> dict[str, int]:
    """The order of each client's oldest waiting entry."""
    oldest: dict[str, int] = {}
    for (client, _), queue in waiting.items():
        oldest[client] = min(oldest.get(client, queue[0].order), queue[0].order)
    return oldest


class _Held:
    """Running plus waiting, per client and per end user inside it."""

    def __init__(self) -> None:
        self.users: Counter[Key] = Counter()
        self.clients: Counter[str] = Counter()

    def add(self, key: Key) -> None:
        self.users[key] += 1
        self.clients[key[0]] += 1

    def drop(self, key: Key, turns: _Turns) -> None:
        self.users[key] -= 1
        self.clients[key[0]] -= 1
        if self.users[key] <= 0:
            del self.users[key]
            emptied = self.clients[key[0]] <= 0
            if emptied:
                del self.clients[key[0]]
            turns.forget(key, client=emptied)


class FairQueue:
    """At most ``capacity`` compressions admitted and ``slots`` running; whose runs next and whose is shed, by
    client and end user (module docstring). ``on_shed`` is called once per shed compression (a metric)."""

    def __init__(self, capacity: int, slots: int, *, fair: bool = True, on_shed: Callable[[], None] = lambda: None):
        self.capacity, self.slots, self.fair = capacity, slots, fair
        self._on_shed = on_shed
        self._waiting: dict[Key, deque[_Job]] = {}  # per client and user, oldest first; no empty deques
        self._held = _Held()
        self._turns = _Turns()

    @property
    def admitted(self) -> int:
        return self._held.clients.total()

    def held(self, client: str, user: str | None = None) -> int:
        """What ``client`` holds (running or waiting), or only its end user ``user``'s share of it."""
        key = self._key(client, user or "")
        return self._held.clients[key[0]] if user is None else self._held.users[key]

    def submit(
        self,
        client: str,
        start: Callable[[], asyncio.Future[Any]],
        *,
        expires: float,
        refused: Callable[[], BaseException],
        user: str = "",
    ) -> asyncio.Future[Any]:
        """Admit a compression for ``client`` (and its end user ``user``): a future of what ``start()``'s future
        gives once a thread has run it, or ``refused()`` when it is shed while waiting, or
        :class:`~promptzip.DeadlineExceeded` when it is still waiting at ``expires``. Raises ``refused()`` at once
        when the queue is full and no other client (or other user of the same client) holds more than its share."""
        key = self._key(client, user)
        if self.admitted >= self.capacity:
            victim = self._victim(key)
            if victim is None:
                raise refused()
            self._finish(victim)
            victim.done.set_exception(victim.refused())
            self._on_shed()
        job = _Job(key, start, expires, refused, asyncio.get_running_loop().create_future(), self._turns.order())
        self._waiting.setdefault(key, deque()).append(job)
        self._held.add(key)
        self._dispatch()
        return job.done

    # --------------------------------------------------------------------------------------------- inside
    def _key(self, client: str, user: str) -> Key:
        return (client, user) if self.fair else ("", "")

    def _victim(self, key: Key) -> _Job | None:
        """The newest waiting job of the client that holds the most, when it holds two more than ``key``'s would,
        and of its user that holds the most; when ``key``'s own client holds the most, of its user that holds two
        more than ``key`` would."""
        if not self._waiting:
            return None
        held = self._held
        oldest = _oldest(self._waiting)  # ties: whose wait began first
        heaviest = max(oldest, key=lambda c: (held.clients[c], -oldest[c]))
        if heaviest != key[0] and held.clients[heaviest] < held.clients[key[0]] + 2:
            return None
        users = [k for k in self._waiting if k[0] == heaviest and k != key]
        user = max(users, key=lambda k: (held.users[k], -self._waiting[k][0].order), default=None)
        if user is None or (heaviest == key[0] and held.users[user] < held.users[key] + 2):
            return None
        queue = self._waiting[user]
        job = queue.pop()
        if not queue:
            del self._waiting[user]
        return job

    def _next(self) -> _Job | None:
        if not self._waiting:
            return None
        key = self._turns.pick(self._waiting)
        queue = self._waiting[key]
        job = queue.popleft()
        if not queue:
            del self._waiting[key]
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
            self._turns.start(job.key)
            try:
                running = job.start()
            except Exception as exc:  # the executor is shut down (the app is stopping): its requests get the error
                self._turns.end(job.key)
                self._finish(job)
                job.done.set_exception(exc)
                continue
            running.add_done_callback(functools.partial(self._ran, job))

    def _ran(self, job: _Job, running: asyncio.Future[Any]) -> None:
        self._turns.end(job.key)
        self._finish(job)
        if running.cancelled():
            job.done.cancel()
        elif (exc := running.exception()) is not None:
            job.done.set_exception(exc)
        else:
            job.done.set_result(running.result())
        self._dispatch()

    def _finish(self, job: _Job) -> None:
        self._held.drop(job.key, self._turns)


@dataclass(eq=False, slots=True)
class _Waiter:
    future: asyncio.Future[None]
    order: int


class FairSlots:
    """At most ``slots`` held at once, given out in turns by client and end user (module docstring): :meth:`acquire`
    one (wait for it under ``asyncio.timeout``), :meth:`release` it when done, with the same names."""

    def __init__(self, slots: int, *, fair: bool = True) -> None:
        self.slots, self.fair = slots, fair
        self._waiting: dict[Key, deque[_Waiter]] = {}  # per client and user, oldest first; no empty deques
        self._held = _Held()  # holding or waiting
        self._turns = _Turns()

    @property
    def in_use(self) -> int:
        return self._turns.running.total()

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._waiting.values())

    async def acquire(self, client: str, user: str = "") -> None:
        key = self._key(client, user)
        self._held.add(key)
        if not self._waiting and self.in_use < self.slots:
            self._turns.start(key)
            return
        waiter = _Waiter(asyncio.get_running_loop().create_future(), self._turns.order())
        self._waiting.setdefault(key, deque()).append(waiter)
        try:
            await waiter.future
        except BaseException:  # cancelled, or its timeout: given up (a slot granted meanwhile goes on)
            if waiter.future.done() and not waiter.future.cancelled():
                self.release(client, user)
            else:
                queue = self._waiting.get(key)
                if queue is not None and waiter in queue:
                    queue.remove(waiter)
                    if not queue:
                        del self._waiting[key]
                self._held.drop(key, self._turns)
            raise

    def release(self, client: str, user: str = "") -> None:
        key = self._key(client, user)
        self._turns.end(key)
        self._held.drop(key, self._turns)
        while self._waiting and self.in_use < self.slots:
            next_key = self._turns.pick(self._waiting)
            queue = self._waiting[next_key]
            waiter = queue.popleft()
            if not queue:
                del self._waiting[next_key]
            if waiter.future.done():  # cancelled: its acquire cleans up after itself
                continue
            self._turns.start(next_key)
            waiter.future.set_result(None)

    def _key(self, client: str, user: str) -> Key:
        return (client, user) if self.fair else ("", "")
