"""Compressing chats for the proxy without letting any client stall the others.

Per chat, on the event loop:

1. **Lookup** (the small ``io`` thread pool, never the compression threads): build or find the Zipper, count a
   small chat, and look the whole request up in the result cache. A warm chat is answered here, however busy the
   compression threads are.
2. **Single flight**: identical chats arriving together (same key) share one compression.
3. **Admission**: at most ``compression_queue`` compressions run or wait; one more is refused at once with
   :class:`Overloaded` (a 503 with ``retry-after``), never queued without bound. A free thread takes the waiting
   compression of the client (tenant, else credential) with the fewest running, and a full queue sheds the newest
   waiting one of the client holding the most before it refuses another client (:mod:`._fair`, ``fair_queue``).
4. **Compression** on the ``compression_threads`` pool, under a deadline counted from the request's arrival
   (``compression_deadline``): the thread stops itself at the deadline (:mod:`promptzip._deadline`), and the
   request stops waiting for it shortly after in any case, with :class:`~promptzip.DeadlineExceeded` (the app
   fails open or closed, as configured).

One Zipper per (preset, target) serves every tenant: models and memos are shared, and a tenant only gets its own
namespace of the result cache. Clients cannot create Zippers: presets and targets come from the configuration.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, TypeVar

from promptzip._cache import Cache, MemoryCache, NullCache, cache_from_url, encode_json, make_key
from promptzip._deadline import deadline
from promptzip._errors import BudgetError, DeadlineExceeded, ExpandNotFound
from promptzip._expand import ExpandStore
from promptzip._messages import message_tokens
from promptzip._pipeline import Zipper
from promptzip._pool import ZipperPool
from promptzip._tiered import TieredCache
from promptzip._types import Budget, Result
from promptzip.integrations.proxy._errors import Overloaded  # still exported here, where it is raised
from promptzip.integrations.proxy._fair import FairQueue
from promptzip.integrations.proxy._metrics import Metrics
from promptzip.integrations.proxy._requests import Options, Outcome, decode_outcome, encode_outcome
from promptzip.integrations.proxy._settings import ProxySettings

T = TypeVar("T")

# Large bodies read at once off the event loop: the work holds the interpreter lock, so more threads would add no
# speed, only more turns for the loop to wait through; the rest wait their turn.
BODY_THREADS = 2

__all__ = [
    "RESULT_CACHE_VERSION",
    "Compressions",
    "Overloaded",
    "ZipperFactory",
    "batch_dropped_report",
    "dropped_report",
]

ZipperFactory = Callable[[str, str, Cache], Zipper]
"""Builds the Zipper for (preset, target, cache); the default is ``Zipper.from_preset``."""

RESULT_CACHE_VERSION = "3"  # 2: keys carry the credential's scope; 3: and the conversation namespace
# How long a request keeps waiting after its deadline for the thread to notice it (a forward pass in progress).
DEADLINE_GRACE_S = 0.5


def _lower_priority(nice: int) -> None:
    """Lower this compression thread's CPU priority (Linux schedules threads one by one, and the threads a model
    library starts from here inherit it), so that on a busy machine cache hits, pass-throughs and the event loop
    get the CPU first and a long compression cannot slow every other request down."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except OSError:  # not allowed here (or not Linux): run at the process's priority
        pass


class Compressions:
    """The proxy's compression side: Zippers, the result cache, the thread pools and the limits."""

    def __init__(self, settings: ProxySettings, factory: ZipperFactory, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self._factory = factory
        self.cache: Cache = NullCache()
        self._compute: ThreadPoolExecutor | None = None
        self._io: ThreadPoolExecutor | None = None
        self._bodies: ThreadPoolExecutor | None = None
        # The app's own pool (its factory and cache are the app's), bounded like the process's shared one.
        self._zippers = ZipperPool(settings.max_zippers)
        self._flights: dict[str, asyncio.Future[Outcome]] = {}
        self._queue = FairQueue(
            settings.compression_queue,
            settings.compression_threads,
            fair=settings.fair_queue,
            on_shed=self._shed,
        )
        secret = settings.cache_key_secret
        # Without a configured secret each process draws its own: entries stay per credential but are not
        # shared between replicas (set the same cache_key_secret on each to share them).
        self.secret = secret.get_secret_value().encode("utf-8") if secret is not None else secrets.token_bytes(32)

    def start(self) -> None:
        s = self.settings
        cache = cache_from_url(s.cache)
        if s.local_cache_bytes and not isinstance(cache, MemoryCache | NullCache):
            cache = TieredCache(cache, MemoryCache(max_bytes=s.local_cache_bytes))
        self.cache = cache
        self._compute = ThreadPoolExecutor(
            max_workers=s.compression_threads,
            thread_name_prefix="promptzip-compress",
            initializer=_lower_priority,
            initargs=(s.compression_nice,),
        )
        self._io = ThreadPoolExecutor(max_workers=s.io_threads, thread_name_prefix="promptzip-io")
        self._bodies = ThreadPoolExecutor(max_workers=BODY_THREADS, thread_name_prefix="promptzip-body")

    def close(self) -> None:
        for pool in (self._compute, self._io, self._bodies):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        self.cache.close()

    async def io(self, func: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._io, func, *args)

    async def off_loop(self, size: int, func: Callable[..., T], *args: Any) -> T:
        """``func(*args)``, the reading, checking or writing of a body of ``size`` bytes: on one of the
        :data:`BODY_THREADS` body threads when the body is past ``thread_body_bytes``, else here. Its Python work
        grows with the body's JSON values, and on the event loop it would hold up every other request for as long;
        on a thread the loop gets its turn at each switch interval (the C parts of ``json`` still hold it). Not the
        ``io`` pool: large bodies would take its threads from the cache lookups of small chats."""
        if self.read_here(size):
            return func(*args)
        return await asyncio.get_running_loop().run_in_executor(self._bodies, func, *args)

    def read_here(self, size: int) -> bool:
        """Whether the work on a body of ``size`` bytes is done on the event loop (``thread_body_bytes``)."""
        return size <= self.settings.thread_body_bytes

    def zipper(self, preset: str, target: str) -> Zipper:
        return self._zippers.get((preset, target), lambda: self._factory(preset, target, self.cache))

    def built(self, preset: str, target: str) -> Zipper | None:
        """The Zipper for (preset, target) when it exists already (building one may load models: not here)."""
        return self._zippers.peek((preset, target))

    def warmup(self, preset: str, target: str) -> None:
        text = "The proxy loads its models at start. It answers requests after that. Nothing else happens here."
        self.zipper(preset, target).compress(text, question="When are models loaded?", budget=Budget(rate=0.5))

    # --------------------------------------------------------------------------------------------- per chat
    async def outcome(self, messages: list[dict[str, Any]], options: Options, arrived: float) -> Outcome:
        """What to send for this chat: a cached or small outcome at once, else a compression within the limits."""
        started = time.perf_counter()
        found = await self.io(self._lookup, messages, options)
        if isinstance(found, Outcome):
            found.seconds = time.perf_counter() - started
            return found
        key, tokens_in = found
        flight_key = f"{options.tenant or ''}/{key}"  # the same chat of another tenant is another flight
        flight = self._flights.get(flight_key)
        if flight is not None:
            self.metrics.single_flight.inc()
            shared = await self._wait(asyncio.shield(flight), options, arrived)
            outcome = replace(shared, headers={**shared.headers, "x-promptzip-cache": "joined"})
        else:
            outcome = await self._lead(flight_key, key, messages, options, tokens_in, arrived)
        outcome.seconds = time.perf_counter() - started
        return outcome

    async def _lead(
        self,
        flight_key: str,
        key: str,
        messages: list[dict[str, Any]],
        options: Options,
        tokens_in: int,
        arrived: float,
    ) -> Outcome:
        loop = asyncio.get_running_loop()
        at = arrived + (options.deadline or self.settings.compression_deadline)
        retry = max(1, round(options.deadline or self.settings.compression_deadline))

        def refused() -> Overloaded:
            return Overloaded(retry)

        def start() -> asyncio.Future[Outcome]:
            return loop.run_in_executor(self._compute, self._compress, key, messages, options, tokens_in, at)

        try:
            job = self._queue.submit(options.client, start, expires=at, refused=refused, user=options.user)
        except Overloaded:
            self.metrics.overloaded.inc()
            raise
        self.metrics.queue.inc()
        self._flights[flight_key] = job

        def release(_: Any) -> None:
            self.metrics.queue.dec()
            if self._flights.get(flight_key) is job:
                del self._flights[flight_key]
            if not job.cancelled():
                job.exception()  # retrieved: a failure nobody waits for any more is not "never retrieved"

        job.add_done_callback(release)
        return await self._wait(asyncio.shield(job), options, arrived)

    def _shed(self) -> None:
        self.metrics.overloaded.inc()
        self.metrics.shed.inc()

    async def _wait(self, job: asyncio.Future[Outcome], options: Options, arrived: float) -> Outcome:
        limit = options.deadline or self.settings.compression_deadline
        left = arrived + limit - time.monotonic() + DEADLINE_GRACE_S
        try:
            return await asyncio.wait_for(job, timeout=max(0.0, left))
        except (TimeoutError, DeadlineExceeded) as exc:
            self.metrics.deadline_exceeded.inc()
            raise DeadlineExceeded(f"the compression did not finish within its deadline of {limit:g} s") from exc

    # ------------------------------------------------------------------------------- in the worker threads
    def _key(self, zipper: Zipper, options: Options, canonical: str) -> str:
        return make_key(
            "proxy-result",
            RESULT_CACHE_VERSION,
            zipper.fingerprint,
            repr(options.budget),
            options.scope,
            options.cache_scope,
            options.history,
            options.conversation,
            repr(options.pricing),  # the cache prices weigh what stable history sends: by route or by model
            # an outcome stored without a report cannot name one, and one stored with it must not name it where the
            # setting is off (replicas sharing a cache); keys with it off are as they were
            *(("report-dropped",) if self.settings.report_dropped else ()),
            canonical,
        )

    def _result_cache(self, options: Options) -> Cache:
        return self.cache if options.tenant is None else self.cache.namespaced(options.tenant)

    def _lookup(self, messages: list[dict[str, Any]], options: Options) -> Outcome | tuple[str, int]:
        """A small chat's or a cached outcome, else (result-cache key, token count) for the compression."""
        zipper = self.zipper(options.preset, options.target)
        method = zipper.compressor.name
        canonical = json.dumps(messages, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        tokens_in: int | None = None
        if len(canonical) < options.min_tokens:  # a token is at least one character: count only small chats
            tokens_in = message_tokens(messages, zipper.tokenizer.count)
            if tokens_in < options.min_tokens:
                return Outcome(None, tokens_in, tokens_in, "below-min-tokens", method)
        key = self._key(zipper, options, canonical)
        if self.settings.result_cache:
            hit = decode_outcome(self._result_cache(options).get(key))
            if hit is not None:
                self.metrics.result_cache.inc("hit")
                if hit.tokens_in < options.min_tokens:  # stored by a route with a lower threshold
                    return Outcome(None, hit.tokens_in, hit.tokens_in, "below-min-tokens", method)
                hit.headers["x-promptzip-cache"] = "hit"
                return hit
            self.metrics.result_cache.inc("miss")
        if tokens_in is None:
            tokens_in = message_tokens(messages, zipper.tokenizer.count)
            if tokens_in < options.min_tokens:
                return Outcome(None, tokens_in, tokens_in, "below-min-tokens", method)
        return key, tokens_in

    def _compress(
        self, key: str, messages: list[dict[str, Any]], options: Options, tokens_in: int, at: float
    ) -> Outcome:
        zipper = self.zipper(options.preset, options.target)
        try:
            with deadline(at - time.monotonic()):
                # Where the context is (JSON tool results stay whole and valid) is the core's request understanding.
                result = zipper.compress_messages(
                    messages,
                    budget=options.budget,
                    scope=options.scope,
                    history=options.history,
                    conversation=options.conversation or None,
                    partition=options.partition,
                    pricing=options.pricing,
                )
        except BudgetError:
            if options.budget.rate is None:  # a token budget is the caller's cap: missing it is an error
                raise
            # A rate is a target: a chat made mostly of what is kept verbatim goes as it came, as every door sends it.
            return Outcome(None, tokens_in, tokens_in, "rate-unreachable", zipper.compressor.name)
        out = [dict(m) for m in result.messages or ()]
        changed = out != messages  # else the original body is forwarded
        report = (
            dropped_report(result, self.cache, options.partition) if changed and self.settings.report_dropped else ""
        )
        outcome = Outcome(
            out if changed else None,
            tokens_in,
            message_tokens(out, zipper.tokenizer.count) if changed else tokens_in,
            result.decision,
            zipper.compressor.name,
            regions=result.regions,
            regions_compressed=result.regions_compressed,
            reused_messages=result.reused_messages,
            dropped=report,
        )
        if self.settings.result_cache:
            self._result_cache(options).put(key, encode_json(encode_outcome(outcome)))
            outcome.headers["x-promptzip-cache"] = "miss"
        return outcome


def dropped_report(result: Result, cache: Cache, scope: str) -> str:
    """The expand id of what a compression dropped, stored for ``scope`` (the request's partition, as the expand
    endpoint looks it up): a JSON text with the budget, the tokens and each dropped span (its source, offsets into
    the source and text, as ``Result.dropped``); ``""`` when nothing was dropped. Content-addressed, so a cached
    outcome replays the same id. A cache that refuses the write leaves an id the endpoint answers 404 for."""
    if not result.dropped:
        return ""
    whole = result.to_dict()
    report = {k: whole[k] for k in ("tokens_in", "tokens_out", "budget", "decision", "dropped")}
    return _store_report(report, cache, scope)


def batch_dropped_report(requests: Sequence[tuple[Mapping[str, Any], str]], cache: Cache, scope: str) -> str:
    """The expand id of what a batch's compressions dropped, stored for ``scope`` as :func:`dropped_report` stores
    one request's: ``{"requests": [...]}``, for each ``(where, id)`` of ``requests`` (a request that reported, in
    batch order: ``where`` names it, its ``custom_id`` and position, and ``id`` is its own report's expand id) an
    object with the keys of ``where``, ``id`` and ``report``, that request's report as :func:`dropped_report` made
    it (read back from the store, so a cached outcome's report is the one it was stored with; ``null`` when the
    cache no longer holds it). ``""`` when no request reported. Blocks on the cache: call it from a worker thread."""
    if not requests:
        return ""
    store = ExpandStore(cache)
    listed: list[dict[str, Any]] = []
    for where, id in requests:
        try:
            report: Any = json.loads(store.get(id, scope=scope))
        except ExpandNotFound:  # evicted or expired since (or a cache that stores nothing): named, not shown
            report = None
        listed.append({**where, "id": id, "report": report})
    return _store_report({"requests": listed}, cache, scope)


def _store_report(report: Mapping[str, Any], cache: Cache, scope: str) -> str:
    return ExpandStore(cache).put(json.dumps(report, ensure_ascii=False, sort_keys=True), scope=scope)
