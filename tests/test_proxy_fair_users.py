"""End users who share one key take turns inside its turns: an app that serves many people with one API key names
each in the body (OpenAI's ``safety_identifier`` or ``user``, Anthropic's ``metadata.user_id``), and one user's batch
no longer holds up the key's other users; naming many users never gives a key more than its own turn.

The queue and the slots are driven on an event loop with futures the test settles; the proxy's behaviour runs through
a real uvicorn server on 127.0.0.1 in front of the fake upstream, with one compression thread and a compressor that
waits behind a gate."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from proxy_helpers import Recording, Runs, ask_as_given, gated_proxy, settings, slow_six_in_order, wait_for_gauge

from promptzip.integrations.proxy import create_app
from promptzip.integrations.proxy._fair import FairQueue, FairSlots
from promptzip.integrations.proxy._options import parse_options, with_end_user
from promptzip.integrations.proxy.testing import FakeUpstream, live_server

ROUTE = "/v1/chat/completions"
KEY = "sk-app-0000000000000000000000000000000000"
SECRET = b"s" * 32
TEXT = " ".join(
    f"Line {i} of the ledger lists {i * 11} crates and {i * 2} barrels landed that week." for i in range(40)
)


class Refused(Exception):
    pass


# ------------------------------------------------------------------------------------- the queue alone
def submit(queue: FairQueue, runs: Runs, client: str, user: str, name: str) -> asyncio.Future[Any]:
    return queue.submit(client, runs.start(name), expires=1e18, refused=Refused, user=user)


@pytest.mark.parametrize(
    ("second_user", "fair", "expected"),
    [
        ("u2", True, ["a0", "b0", "c0", "a1", "a2", "a3"]),  # B's turn, then the key's other user, then u1 again
        ("u1", True, ["a0", "b0", "a1", "a2", "a3", "c0"]),  # one user: its chats in the order they came
        ("u2", False, ["a0", "a1", "a2", "a3", "c0", "b0"]),  # by arrival
    ],
)
def test_users_of_one_key_take_its_turns_in_turn(second_user: str, fair: bool, expected: list[str]) -> None:
    async def scenario() -> list[str]:
        queue, runs = FairQueue(20, 1, fair=fair), Runs()
        for i in range(4):
            submit(queue, runs, "A", "u1", f"a{i}")
        submit(queue, runs, "A", second_user, "c0")
        submit(queue, runs, "B", "", "b0")
        await runs.finish_all(6)
        return runs.started

    assert asyncio.run(scenario()) == expected


def test_naming_many_users_gives_a_key_no_more_than_its_turn() -> None:
    async def scenario() -> list[str]:
        queue, runs = FairQueue(20, 1), Runs()
        for i in range(4):
            submit(queue, runs, "A", f"user-{i}", f"a{i}")  # a new user for every chat
        for i in range(3):
            submit(queue, runs, "B", "", f"b{i}")
        await runs.finish_all(7)
        return runs.started

    assert asyncio.run(scenario()) == ["a0", "b0", "a1", "b1", "a2", "b2", "a3"]


def test_a_full_queue_sheds_the_newest_wait_of_the_users_holding_the_most() -> None:
    async def scenario() -> None:
        queue, runs = FairQueue(4, 1), Runs()
        batch = [submit(queue, runs, "A", "batch", f"a{i}") for i in range(4)]  # a0 runs, 3 wait: full
        alice = [submit(queue, runs, "A", "alice", "alice0")]  # the same key: the batch's newest goes
        with pytest.raises(Refused):
            await batch[3]
        alice.append(submit(queue, runs, "A", "alice", "alice1"))  # 3 against her 2 after it: a2 goes too
        with pytest.raises(Refused):
            await batch[2]
        assert (queue.held("A"), queue.held("A", "batch"), queue.held("A", "alice")) == (4, 2, 2)
        with pytest.raises(Refused):  # 2 against 3: she would be over her share, so she is the one refused
            submit(queue, runs, "A", "alice", "alice2")
        bob = submit(queue, runs, "B", "", "b0")  # another key: A holds the most, and one of its users pays
        with pytest.raises(Refused):
            await batch[1]  # tied at 2 with alice: the one whose wait began first
        await runs.finish_all(4)
        assert runs.started == ["a0", "b0", "alice0", "alice1"]
        assert [await f for f in (batch[0], *alice, bob)] == ["a0", "alice0", "alice1", "b0"]
        assert queue.admitted == 0

    asyncio.run(scenario())


def test_a_freed_connection_goes_to_the_user_whose_turn_it_is() -> None:
    async def scenario(fair: bool) -> list[str]:
        slots, granted = FairSlots(1, fair=fair), []

        async def take(user: str, name: str) -> None:
            await slots.acquire("A", user)
            granted.append(name)
            await asyncio.sleep(0)
            slots.release("A", user)

        await slots.acquire("A", "batch")
        tasks = [asyncio.create_task(take(u, n)) for u, n in (("batch", "a1"), ("batch", "a2"), ("alice", "c1"))]
        await asyncio.sleep(0)
        assert (slots.in_use, slots.waiting) == (1, 3)
        slots.release("A", "batch")
        async with asyncio.timeout(5):
            await asyncio.gather(*tasks)
        assert (slots.in_use, slots.waiting) == (0, 0)
        return granted

    assert asyncio.run(scenario(True)) == ["c1", "a1", "a2"]
    assert asyncio.run(scenario(False)) == ["a1", "a2", "c1"]


# ------------------------------------------------------------------------------------ who is a user
@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"safety_identifier": "u-42", "user": "other", "metadata": {"user_id": "x"}}, "u-42"),
        ({"user": "u-42", "metadata": {"user_id": "x"}}, "u-42"),
        ({"metadata": {"user_id": "u-42"}}, "u-42"),  # Anthropic's
        ({"user": "", "metadata": {"user_id": "u-42"}}, "u-42"),
        ({"user": 42}, None),  # not a name: the upstream's business
        ({"metadata": "u-42"}, None),
        ({}, None),
    ],
)
def test_the_user_is_the_one_the_body_names_as_a_keyed_hash(body: dict[str, Any], named: str | None) -> None:
    s = settings("http://127.0.0.1:9")
    options = parse_options({"authorization": f"Bearer {KEY}"}, s.routes[ROUTE], s, SECRET)
    user = with_end_user(options, body, SECRET).user
    if named is None:
        assert user == ""
        return
    assert user
    assert named not in user
    assert user == with_end_user(options, {"user": named}, SECRET).user
    assert user != with_end_user(options, {"user": named}, b"t" * 32).user  # keyed by the proxy's secret
    assert with_end_user(options, body, SECRET).client == options.client  # the key's turn stays the key's


def test_a_body_that_is_not_an_object_names_no_user() -> None:
    s = settings("http://127.0.0.1:9")
    options = parse_options({}, s.routes[ROUTE], s, SECRET)
    assert with_end_user(options, ["user"], SECRET) is options


# ------------------------------------------------------------------------------------------ the proxy
def body(tag: str, user: str) -> dict[str, Any]:
    return {
        "model": "gpt-4o",
        "user": user,
        "messages": [
            {"role": "system", "content": "Answer from the documents.\n\nDocuments:\n" + TEXT + f" TAG-{tag}"},
            {"role": "user", "content": "How many crates in week 12?"},
        ],
    }


@pytest.fixture
def gated(upstream: FakeUpstream) -> Iterator[tuple[str, Recording, threading.Event]]:
    with gated_proxy(upstream.url) as served:
        yield served


def test_the_proxy_serves_another_user_of_the_same_key_next(gated: tuple[str, Recording, threading.Event]) -> None:
    url, recording, gate = gated
    headers = {"authorization": f"Bearer {KEY}", "x-promptzip-budget": "120"}
    with httpx.Client(base_url=url, timeout=30) as http, ThreadPoolExecutor(6) as pool:
        batch = []
        for i in range(4):  # the batch user's first chat holds the only thread, three more wait: full
            batch.append(pool.submit(http.post, ROUTE, json=body(f"a{i}", "batch-job"), headers=headers))
            wait_for_gauge(url, "compressions_admitted", i + 1)  # in the queue in the order sent
        alice = pool.submit(http.post, ROUTE, json=body("alice", "alice@example.com"), headers=headers)
        shed = batch[3].result(timeout=10)  # the batch's newest waiting chat, while its first still runs
        assert shed.status_code == 503
        assert shed.json()["error"]["code"] == "overloaded"
        assert not alice.done()
        gate.set()
        got = alice.result(timeout=30)
        assert got.status_code == 200
        assert got.headers["x-promptzip-status"] == "compressed"
        assert [b.result(timeout=30).status_code for b in batch[:3]] == [200, 200, 200]
        assert recording.order == ["TAG-a0", "TAG-alice", "TAG-a1", "TAG-a2"]  # hers ran next, not last
        assert "promptzip_proxy_compressions_shed_total 1.0" in http.get("/metrics").text


@pytest.mark.parametrize("fair", [True, False], ids=["fair", "by-arrival"])
def test_a_chat_sent_as_given_takes_its_users_turn_for_an_upstream_connection(
    upstream: FakeUpstream, fair: bool
) -> None:
    """``x-promptzip-disable`` chats of one key, two upstream connections: the batch user's slow chats hold both and
    four more of its wait; another user's chat goes up as soon as one ends (before, all of a key's chats sent as
    given were one user, so it went last). A body that is not JSON is still sent, its turn the key's."""
    s = settings(upstream.url, max_connections=2, upstream_pools=1, fair_queue=fair)

    with live_server(create_app(s)) as url, ThreadPoolExecutor(8) as pool:
        before = len(upstream.requests)
        batch = slow_six_in_order(pool, url, upstream, KEY, "batch-job")  # two of its chats are upstream, four wait
        alice = pool.submit(ask_as_given, url, KEY, "alice", "ok", "alice@example.com")
        assert alice.result(timeout=30).status_code == 200
        assert [b.result(timeout=30).status_code for b in batch] == [200] * 6
        order = [r.json()["messages"][0]["content"] for r in upstream.requests[before:]]
        with httpx.Client(base_url=url, timeout=30) as http:
            raw = http.post(ROUTE, content=b"not json", headers={"x-promptzip-disable": "true"})
        assert raw.status_code == 200  # the fake upstream answers whatever it is sent
        assert upstream.requests[-1].body == b"not json"
    assert sorted(order[:2]) == ["a0", "a1"]
    assert order.index("alice") == (2 if fair else 6)


@pytest.mark.parametrize("fair", [True, False], ids=["fair", "by-arrival"])
def test_a_pass_through_route_takes_its_users_turn_for_an_upstream_connection(
    upstream: FakeUpstream, fair: bool
) -> None:
    """Embeddings requests of one key (a route the proxy passes through), two upstream connections: the batch user's
    slow requests hold both and four more of theirs wait; another user's request goes up as soon as one ends (before,
    every request of a pass-through route went by its key alone, so it went last)."""
    s = settings(upstream.url, max_connections=2, upstream_pools=1, fair_queue=fair)

    with live_server(create_app(s)) as url, ThreadPoolExecutor(8) as pool:
        before = len(upstream.requests)
        batch = slow_six_in_order(pool, url, upstream, KEY, "batch-job", embed=True)  # two are upstream, four wait
        alice = pool.submit(ask_as_given, url, KEY, "alice", "ok", "alice@example.com", embed=True)
        assert alice.result(timeout=30).status_code == 200
        assert [b.result(timeout=30).status_code for b in batch] == [200] * 6
        sent = upstream.requests[before:]
    assert {r.target for r in sent} == {"/v1/embeddings"}
    order = [r.json()["input"] for r in sent]
    assert sorted(order[:2]) == ["a0", "a1"]
    assert order.index("alice") == (2 if fair else 6)
