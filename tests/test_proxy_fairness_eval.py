"""The proxy-fairness eval runs end to end on a small load: two fresh ``promptzip proxy`` processes (the real
``fast`` preset) with one compression thread and a queue of three, a flooder keeping six chats in flight. With the
fair queue the quiet client is never refused (when the queue is full the flooder holds a waiting chat to
shed); every answer is a 200 or a 503, each counted; nothing is shed without it; and the report renders. Latencies
are the eval's, not asserted here."""

from __future__ import annotations

import pytest

from promptzip.evals.proxy_fairness import Load, build_report, markdown

LOAD = Load(flood=6, quiet=2, seconds=8.0, quiet_after=2.0, pause_s=0.2, chars=2500, threads=1, queue=3, deadline=20)


@pytest.mark.slow
def test_the_quiet_client_is_never_refused_beside_a_flood() -> None:
    report = build_report(LOAD, "c")
    fair, fifo = report["runs"]
    assert (fair["fair_queue"], fifo["fair_queue"]) == (True, False)
    assert fair["quiet"]["statuses"] == {"200": LOAD.quiet}
    assert fifo["metrics"]["compressions_shed_total"] == 0
    for run in (fair, fifo):
        assert run["quiet"]["requests"] == LOAD.quiet
        assert run["flooder"]["requests"] >= LOAD.flood
        assert set(run["flooder"]["statuses"]) <= {"200", "503"}
        assert set(run["quiet"]["statuses"]) <= {"200", "503"}
        refused = sum(a["status"] == 503 for a in run["answers"])
        assert run["metrics"]["overloaded_total"] == refused  # every 503 is a refusal or a shed chat, counted
    text = markdown(report)
    assert "| fair (default) | quiet | 2 | 200 2 |" in text
    assert "by arrival (--no-fair-queue)" in text
