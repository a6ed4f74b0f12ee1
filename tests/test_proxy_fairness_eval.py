"""The proxy-fairness eval runs end to end on a small load: two fresh ``promptzip proxy`` processes (the real
``fast`` preset) with one compression thread, a queue of three and two upstream connections. With the fair queue
the quiet client is never refused a compression (when the queue is full the flooder holds a waiting chat to shed)
and its upstream requests are all answered; every answer is a 200 or a 503, each counted; nothing is shed without
the fair queue; and the report renders. Latencies are the eval's, not asserted here."""

from __future__ import annotations

import dataclasses

import pytest

from promptzip.evals.proxy_fairness import Load, build_report, markdown

LOAD = Load(
    flood=6,
    quiet=2,
    seconds=8.0,
    quiet_after=2.0,
    pause_s=0.2,
    chars=2500,
    threads=1,
    queue=3,
    deadline=20,
    upstream_flood=5,
    connections=2,
    slow_s=1.0,
    upstream_seconds=4.0,
)


@pytest.mark.slow
def test_the_quiet_client_is_served_beside_a_flood() -> None:
    report = build_report(LOAD, "c")
    fair, fifo = report["runs"]
    assert (fair["fair_queue"], fifo["fair_queue"]) == (True, False)
    assert fair["phases"]["compression"]["quiet"]["statuses"] == {"200": LOAD.quiet}
    assert fifo["metrics"]["compressions_shed_total"] == 0
    for run in (fair, fifo):
        compression, upstream = run["phases"]["compression"], run["phases"]["upstream"]
        assert compression["quiet"]["requests"] == upstream["quiet"]["requests"] == LOAD.quiet
        assert compression["flooder"]["requests"] >= LOAD.flood
        assert upstream["flooder"]["statuses"] == {"200": upstream["flooder"]["requests"]}
        assert upstream["quiet"]["outcomes"] == {"passthrough": LOAD.quiet}
        for side in (compression["quiet"], compression["flooder"]):
            assert set(side["statuses"]) <= {"200", "503"}
        refused = sum(a["status"] == 503 for a in run["answers"])
        assert run["metrics"]["overloaded_total"] == refused  # every 503 is a refusal or a shed chat, counted
    assert fair["phases"]["upstream"]["quiet"]["statuses"] == {"200": LOAD.quiet}
    text = markdown(report)
    assert "| compression | fair (default) | quiet | 2 | 200 2 |" in text
    assert "| upstream | by arrival (--no-fair-queue) | quiet | 2 |" in text


@pytest.mark.slow
def test_another_user_of_the_same_key_is_served_beside_a_flood() -> None:
    """``--shared-key``: both clients send with one API key and name themselves in the body's ``user``; only the
    compression phase runs, and with the fair queue the quiet user is never refused."""
    load = dataclasses.replace(LOAD, shared_key=True, seconds=6.0)
    report = build_report(load, "c --shared-key")
    fair, fifo = report["runs"]
    for run in (fair, fifo):
        assert list(run["phases"]) == ["compression"]
        assert {a["phase"] for a in run["answers"]} == {"compression"}
    assert fair["phases"]["compression"]["quiet"]["statuses"] == {"200": LOAD.quiet}
    assert fifo["metrics"]["compressions_shed_total"] == 0
    text = markdown(report)
    assert "# Proxy: one user of an API key floods it" in text
    assert "| compression | fair (default) | quiet | 2 | 200 2 |" in text
    assert "**upstream**" not in text
