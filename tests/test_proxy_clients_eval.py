"""The proxy-clients eval runs end to end on a few attackers and limits of a second or two: a fresh ``promptzip proxy``
process closes every slowloris at its header timeout with 408, answers every trickled body 408 at its body timeout,
closes idle connections holding every slot to make room for ordinary requests, which are answered, answers 503 to
each connection over a cap of busy ones (an ordinary request included; a health check is answered) and 408 to the
busy ones; clients that take a long answer far slower than the buffers between them and the proxy hold per send
timeout get all of it, byte for byte, while clients beside them that take none are dropped; ordinary requests are
answered 200 beside the attackers and after the floods, the upstream receives nothing else, the ``/metrics``
counters match what the attackers saw, and the report renders (latencies are the eval's, not asserted here)."""

from __future__ import annotations

import sys

import pytest

from promptzip.evals.proxy_clients import Scale, Trickle, build_report, markdown

SCALE = Scale(
    slowloris=5,
    trickle=3,
    readers=3,
    cap=8,
    flood=11,
    headers_s=1.5,
    body_s=1.0,
    send_s=1.0,
    requests=5,
    drip_s=0.1,
    trickle_s=0.25,
)
# 256 KiB a second at most, each: a quarter of what a send timeout (1 s) would have to see taken for the proxy's
# writes to resume (the kernel's buffer for a loopback connection grows to 4 MiB)
TRICKLE = Trickle(readers=3, stalled=2, rate=256 << 10)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the proxy's open files from /proc")
def test_slow_and_many_clients_are_closed_and_ordinary_requests_answered() -> None:
    report = build_report(SCALE, "c", TRICKLE)
    phases = {p["phase"]: p for p in report["phases"]}
    names = ["baseline", "slowloris", "body trickle", "slow readers", "idle flood", "busy flood", "after the flood"]
    assert list(phases) == [*names, "trickle readers"]
    for name in ("baseline", "slowloris", "body trickle", "slow readers", "idle flood", "after the flood"):
        assert phases[name]["ordinary"]["statuses"] == {"200": SCALE.requests}, name
    assert phases["slowloris"]["attackers_open_at_end"] > 0  # answered while attackers were open
    assert phases["body trickle"]["attackers_open_at_end"] > 0

    def group(phase: str, i: int = 0) -> tuple[int, int, dict[str, int]]:
        a = phases[phase]["attackers"][i]
        return a["count"], a["closed_by_proxy"], a["answers"]

    assert group("slowloris") == (5, 5, {"408": 5})
    assert group("body trickle") == (3, 3, {"408": 3})
    assert group("slow readers") == (3, 3, {"none (never read)": 3})  # dropped, by the proxy's counter
    assert phases["slow readers"]["attackers"][0]["seconds"]["min"] >= SCALE.send_s
    idle = phases["idle flood"]
    made_room, timed_out = group("idle flood", 0), group("idle flood", 1)
    assert idle["idle_connections"] == SCALE.flood + SCALE.requests
    assert made_room[0] + timed_out[0] == idle["idle_connections"]
    assert made_room[0] >= idle["made_room_at_least"] == 3 + 5
    assert made_room[2] == {"none": made_room[0]}  # they had sent nothing: closed without an answer
    assert timed_out[2] == {"none": timed_out[0]}
    assert timed_out[0] > 0  # some held on until the header timeout: the cap was full throughout
    assert idle["healthz_status"] == 200
    assert group("busy flood", 0) == (8, 8, {"408": 8})  # busy: their bodies never came
    assert group("busy flood", 1) == (3, 3, {"503": 3})
    assert phases["busy flood"]["ordinary"]["statuses"] == {"503": 1}
    assert phases["busy flood"]["healthz_status"] == 200  # a probe is answered past the cap (its connection closed)
    # Never before the bound (the proxy's clock starts after the client's); an attacker it did not close would be ours.
    assert phases["slowloris"]["attackers"][0]["seconds"]["min"] >= SCALE.headers_s - 0.01
    assert phases["body trickle"]["attackers"][0]["seconds"]["min"] >= SCALE.body_s - 0.01
    assert phases["slowloris"]["proxy_during"]["open_files"] >= phases["baseline"]["proxy_after"]["open_files"] + 5
    assert phases["slowloris"]["proxy_after"]["open_files"] < phases["slowloris"]["proxy_during"]["open_files"]

    assert {k: report["metrics"][k] for k in report["expected_metrics"]} == report["expected_metrics"]
    assert report["expected_metrics"]["connections_refused{max_client_connections}"] == 3 + 2
    # the slow readers' chats reached it too: they were answered, at length
    # and the trickle phase's: its readers', the stalled clients' beside them, and the answer read at once
    chats = 7 * SCALE.requests + 3 + 3 + 2 + 1
    assert report["upstream_received"] == {"chats": chats, "all requests": chats}
    assert report["ordinary_answered_200"] == 7 * SCALE.requests
    assert not any("Traceback" in line for line in report["proxy_log_head"])

    trickle = phases["trickle readers"]
    assert trickle["ordinary"]["statuses"] == {"200": SCALE.requests}
    readers = trickle["trickle_readers"]
    assert readers["whole_answers"] == 3  # byte for byte
    assert readers["answer_bytes"] > 3 << 20
    assert readers["seconds"]["min"] > readers["answer_bytes"] / TRICKLE.rate - 1  # it read slowly
    assert group("trickle readers") == (2, 2, {"none (never read)": 2})  # dropped beside them
    assert trickle["attackers"][0]["seconds"]["min"] >= SCALE.send_s

    text = markdown(report)
    assert "| slowloris | 5 request line, a byte at a time | 5 | 408: 5 |" in text
    assert "| busy flood | 3 over the cap, each sending a request | 3 | 503: 3 |" in text
    assert "| `bodies_refused{timeouts.body}` | 11 | 11 |" in text
    assert "| `connections_refused{timeouts.send}` | 5 | 5 |" in text
    assert "nothing else from an attacker" in text
    assert f"| 3 | 3 | {readers['answer_bytes']} | 262144 | 262144 | " in text
