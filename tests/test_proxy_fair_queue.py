"""One client cannot take the compression queue from the others: turns by client, and a full queue sheds the
waiting compression of the client holding the most before it refuses another client (``fair_queue``).

The queue itself is driven on an event loop with futures the test settles; the proxy's behaviour runs through a
real uvicorn server on 127.0.0.1 in front of the fake upstream, with one compression thread and a compressor that
waits behind a gate (real BM25 selection once the gate opens)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from proxy_helpers import Recording, Runs, ask_as_given, gated_proxy, settings, slow_six_in_order, wait_for_gauge
from starlette.testclient import TestClient

from promptzip._errors import DeadlineExceeded
from promptzip.integrations.proxy import TenantSettings, create_app, key_digest
from promptzip.integrations.proxy._fair import FairQueue, FairSlots
from promptzip.integrations.proxy._options import parse_options
from promptzip.integrations.proxy.testing import FakeUpstream, live_server

ROUTE = "/v1/chat/completions"
KEY_A = "sk-alice-00000000000000000000000000000000"
KEY_B = "sk-bob-1111111111111111111111111111111111"
KEY_C = "sk-carol-222222222222222222222222222222222"
TEXT = " ".join(
    f"Sentence {i} of the report says the harbour handled {i * 7} ships and {i * 3} storms that year."
    for i in range(40)
)


class Refused(Exception):
    pass


# ------------------------------------------------------------------------------------- the queue alone
def submit(queue: FairQueue, runs: Runs, client: str, name: str, expires: float = 1e18) -> asyncio.Future[Any]:
    return queue.submit(client, runs.start(name), expires=expires, refused=Refused)


def test_a_free_thread_takes_the_client_with_the_fewest_running() -> None:
    async def scenario(fair: bool) -> list[str]:
        queue, runs = FairQueue(10, 1, fair=fair), Runs()
        jobs = [submit(queue, runs, "A", f"a{i}") for i in range(5)] + [submit(queue, runs, "B", "b0")]
        for _ in range(6):
            runs.finish(runs.started[-1])
            await asyncio.sleep(0)
        assert [await j for j in jobs] == ["a0", "a1", "a2", "a3", "a4", "b0"]
        return runs.started

    assert asyncio.run(scenario(True)) == ["a0", "b0", "a1", "a2", "a3", "a4"]
    assert asyncio.run(scenario(False)) == ["a0", "a1", "a2", "a3", "a4", "b0"]  # by arrival


def test_turns_go_round_the_clients_with_work_waiting() -> None:
    async def scenario() -> list[str]:
        queue, runs = FairQueue(20, 2), Runs()
        for client, n in (("A", 4), ("B", 3), ("C", 1)):
            for i in range(n):
                submit(queue, runs, client, f"{client}{i}")
        for finished in range(8):  # the one that started first ends first
            runs.finish(runs.started[finished])
            await asyncio.sleep(0)
        return runs.started

    # Two threads, nobody else waiting yet: A takes both. Then B and C (nothing run yet) come first, then in turn.
    assert asyncio.run(scenario()) == ["A0", "A1", "B0", "C0", "A2", "B1", "A3", "B2"]


def test_a_full_queue_sheds_the_newest_wait_of_the_client_holding_the_most() -> None:
    async def scenario() -> None:
        queue, runs = FairQueue(4, 1), Runs()
        a = [submit(queue, runs, "A", f"a{i}") for i in range(4)]  # a0 runs, a1..a3 wait: full
        b0 = submit(queue, runs, "B", "b0")
        with pytest.raises(Refused):
            await a[3]  # the newest of A's waiting ones, not the newcomer
        assert (queue.admitted, queue.held("A"), queue.held("B")) == (4, 3, 1)
        b1 = submit(queue, runs, "B", "b1")  # A 3 against B's 2 after it: A's a2 goes too
        with pytest.raises(Refused):
            await a[2]
        with pytest.raises(Refused):  # 2 against 3 now: B is the one over its share, and it is the newcomer
            submit(queue, runs, "B", "b2")
        assert not a[1].done()  # still waiting its turn
        for _ in range(4):
            runs.finish(runs.started[-1])
            await asyncio.sleep(0)
        assert runs.started == ["a0", "b0", "a1", "b1"]
        assert [await f for f in (a[0], a[1], b0, b1)] == ["a0", "a1", "b0", "b1"]
        assert queue.admitted == 0

    asyncio.run(scenario())


def test_a_client_alone_or_an_unfair_queue_refuses_the_newcomer() -> None:
    async def scenario(fair: bool, second: str) -> None:
        queue, runs = FairQueue(3, 1, fair=fair), Runs()
        first = [submit(queue, runs, "A", f"a{i}") for i in range(3)]
        with pytest.raises(Refused):
            submit(queue, runs, second, "x")
        assert not any(f.done() for f in first)  # nothing already admitted is shed
        for name in ("a0", "a1", "a2"):
            runs.finish(name)
            await asyncio.sleep(0)
        assert [await f for f in first] == ["a0", "a1", "a2"]

    asyncio.run(scenario(True, "A"))
    asyncio.run(scenario(False, "B"))


def test_a_job_still_waiting_at_its_deadline_is_not_started() -> None:
    async def scenario() -> None:
        queue, runs = FairQueue(4, 1), Runs()
        first = submit(queue, runs, "A", "a0")
        late = submit(queue, runs, "B", "b0", expires=time.monotonic() + 0.05)
        after = submit(queue, runs, "C", "c0")
        await asyncio.sleep(0.1)
        runs.finish("a0")
        await asyncio.sleep(0)
        with pytest.raises(DeadlineExceeded, match="waited past its deadline"):
            await late
        assert runs.started == ["a0", "c0"]
        runs.finish("c0")
        assert (await first, await after) == ("a0", "c0")

    asyncio.run(scenario())


def test_a_start_that_fails_fails_its_job_and_the_queue_goes_on() -> None:
    async def scenario() -> None:
        queue, runs = FairQueue(4, 1), Runs()

        def broken() -> asyncio.Future[str]:
            raise RuntimeError("cannot schedule new futures after shutdown")

        job = queue.submit("A", broken, expires=1e18, refused=Refused)
        with pytest.raises(RuntimeError, match="after shutdown"):
            await job
        assert queue.admitted == 0
        ok = submit(queue, runs, "A", "a1")
        runs.finish("a1")
        assert await ok == "a1"

    asyncio.run(scenario())


# ------------------------------------------------------------------------------------ who is a client
def test_a_client_is_the_tenant_else_a_keyed_hash_of_the_credential() -> None:
    tenants = {"acme": TenantSettings(keys=[key_digest(KEY_A), key_digest(KEY_B)])}
    s = settings("http://127.0.0.1:9", tenants=tenants)
    route = s.routes[ROUTE]

    def client(key: str | None, secret: bytes = b"s" * 32) -> str:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        return parse_options(headers, route, s, secret).client

    assert client(KEY_A) == client(KEY_B) == "tenant:acme"  # a tenant's keys share its turns
    carol = client(KEY_C)
    assert carol.startswith("key:")
    assert KEY_C not in carol
    assert carol != client("sk-other")
    assert client(KEY_C, b"t" * 32) != carol  # keyed: the hash is not the key's plain digest
    assert client(None) == ""


# ------------------------------------------------------------------------------------------ the proxy
def body(tag: str) -> dict[str, Any]:
    return {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Answer from the documents.\n\nDocuments:\n" + TEXT + f" TAG-{tag}"},
            {"role": "user", "content": "How many ships in year 12?"},
        ],
    }


def headers(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}", "x-promptzip-budget": "120"}


@pytest.fixture
def gated(upstream: FakeUpstream, request: pytest.FixtureRequest) -> Iterator[tuple[str, Recording, threading.Event]]:
    with gated_proxy(upstream.url, fair_queue=request.param) as served:
        yield served


def flood(http: httpx.Client, pool: ThreadPoolExecutor, url: str) -> list[Any]:
    """Alice fills the queue: her first chat holds the only thread, three more wait."""
    sent = []
    for i in range(4):
        sent.append(pool.submit(http.post, ROUTE, json=body(f"a{i}"), headers=headers(KEY_A)))
        wait_for_gauge(url, "compressions_admitted", i + 1)  # in the queue in the order sent
    return sent


@pytest.mark.parametrize("gated", [True], indirect=True)
def test_another_client_is_served_next_and_the_flooder_is_shed(gated: tuple[str, Recording, threading.Event]) -> None:
    url, recording, gate = gated
    with httpx.Client(base_url=url, timeout=30) as http, ThreadPoolExecutor(6) as pool:
        alice = flood(http, pool, url)
        bob = pool.submit(http.post, ROUTE, json=body("b0"), headers=headers(KEY_B))
        shed = alice[3].result(timeout=10)  # her newest waiting chat, at once, while her first still runs
        assert shed.status_code == 503
        assert shed.json()["error"]["code"] == "overloaded"
        assert int(shed.headers["retry-after"]) >= 1
        assert not bob.done()
        gate.set()
        got = bob.result(timeout=30)
        assert got.status_code == 200
        assert got.headers["x-promptzip-status"] == "compressed"
        assert [a.result(timeout=30).status_code for a in alice[:3]] == [200, 200, 200]
        assert recording.order == ["TAG-a0", "TAG-b0", "TAG-a1", "TAG-a2"]  # Bob's ran next, not last
        metrics = http.get("/metrics").text
        assert "promptzip_proxy_compressions_shed_total 1.0" in metrics
        assert "promptzip_proxy_overloaded_total 1.0" in metrics


@pytest.mark.parametrize("gated", [False], indirect=True)
def test_without_fair_queue_the_other_client_is_refused(gated: tuple[str, Recording, threading.Event]) -> None:
    url, recording, gate = gated
    with httpx.Client(base_url=url, timeout=30) as http, ThreadPoolExecutor(6) as pool:
        alice = flood(http, pool, url)
        refused = http.post(ROUTE, json=body("b0"), headers=headers(KEY_B), timeout=10)
        assert refused.status_code == 503
        gate.set()
        assert [a.result(timeout=30).status_code for a in alice] == [200] * 4
        assert recording.order == ["TAG-a0", "TAG-a1", "TAG-a2", "TAG-a3"]
        assert "promptzip_proxy_compressions_shed_total 0.0" in http.get("/metrics").text


# -------------------------------------------------------------------------------------- upstream connections
def test_a_freed_connection_goes_to_the_client_whose_turn_it_is() -> None:
    async def scenario(fair: bool) -> list[str]:
        slots, granted = FairSlots(1, fair=fair), []

        async def take(client: str, name: str) -> None:
            await slots.acquire(client)
            granted.append(name)

        await slots.acquire("A")
        tasks = [asyncio.create_task(take(c, n)) for c, n in (("A", "a1"), ("A", "a2"), ("B", "b1"))]
        await asyncio.sleep(0)
        assert (slots.in_use, slots.waiting) == (1, 3)
        for client in ("A", "B", "A") if fair else ("A", "A", "A"):  # each release, the holder of the slot's
            slots.release(client)
            await asyncio.sleep(0)
        async with asyncio.timeout(5):
            await asyncio.gather(*tasks)
        return granted

    assert asyncio.run(scenario(True)) == ["b1", "a1", "a2"]
    assert asyncio.run(scenario(False)) == ["a1", "a2", "b1"]


def test_a_wait_given_up_leaves_no_slot_taken() -> None:
    async def scenario() -> None:
        slots = FairSlots(1)
        await slots.acquire("A")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await slots.acquire("B")  # timed out while waiting
        granted_then_cancelled = asyncio.create_task(slots.acquire("C"))
        await asyncio.sleep(0)
        slots.release("A")  # the slot goes to C...
        granted_then_cancelled.cancel()  # ...which is cancelled before it runs again
        with pytest.raises(asyncio.CancelledError):
            await granted_then_cancelled
        assert (slots.in_use, slots.waiting) == (0, 0)
        async with asyncio.timeout(1):
            await slots.acquire("D")  # free at once
        assert slots.in_use == 1

    asyncio.run(scenario())


@pytest.mark.parametrize("fair", [True, False], ids=["fair", "by-arrival"])
def test_the_proxy_gives_a_freed_upstream_connection_to_the_other_client(upstream: FakeUpstream, fair: bool) -> None:
    """Two upstream connections, both held by Alice's slow answers with four more of hers waiting: Bob's request
    goes upstream as soon as one of hers ends, before the rest of hers (by arrival, after all of them)."""
    s = settings(upstream.url, max_connections=2, upstream_pools=1, fair_queue=fair)

    with live_server(create_app(s)) as url, ThreadPoolExecutor(8) as pool:
        before = len(upstream.requests)
        alice = slow_six_in_order(pool, url, upstream, KEY_A)  # two of hers are upstream, four wait
        bob = pool.submit(ask_as_given, url, KEY_B, "b0", "ok")
        assert bob.result(timeout=30).status_code == 200
        assert [a.result(timeout=30).status_code for a in alice] == [200] * 6
        order = [r.json()["messages"][0]["content"] for r in upstream.requests[before:]]
    assert sorted(order[:2]) == ["a0", "a1"]
    assert order.index("b0") == (2 if fair else 6)


def test_answers_read_whole_by_an_in_memory_transport_hold_no_connection() -> None:
    """``httpx.MockTransport`` reads each answer whole and closes it before the proxy sees it: each must give its
    upstream connection back at once (else, one connection, the second request waits out ``timeouts.pool``)."""

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"ok": True})

    s = settings("http://upstream.invalid/v1", max_connections=1, timeouts={"pool": 0.5})
    app = create_app(s, transport=httpx.MockTransport(answer))
    with TestClient(app) as client:
        chat = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
        statuses = [client.post(ROUTE, json=chat).status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
        assert app.state.proxy.upstream_slots.in_use == 0
