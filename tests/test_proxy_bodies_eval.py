"""The proxy-bodies eval runs end to end on one client sending 1 MB bodies: two fresh ``promptzip proxy`` processes
(bodies read on the event loop, and on a thread past ``thread_body_bytes``) in front of a fake upstream in its own
process answer every ordinary request and every large body 200, and the report renders with both side by side
(latencies are the eval's, not asserted here)."""

from __future__ import annotations

import json
import sys

import pytest

from promptzip.evals.proxy_bodies import ON_LOOP, Bodies, build_report, markdown


def test_the_bodies_are_a_short_chat_beside_many_numbers_and_a_chat_of_many_messages() -> None:
    body = json.loads(Bodies(mb=1).body())
    assert body["messages"] == [{"role": "user", "content": "Summarise."}]
    assert len(body["metadata"]["values"]) == 500_000
    many = Bodies(mb=1).body("messages")
    assert 0.99e6 < len(many) < 1.01e6
    assert {json.dumps(m) for m in json.loads(many)["messages"]} == {'{"role": "user", "content": "Go."}'}
    with pytest.raises(ValueError, match="at most 10 MB"):
        Bodies(mb=11)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the proxy's resources from /proc")
def test_both_proxies_answer_every_ordinary_request_and_every_large_body() -> None:
    report = build_report(Bodies(clients=1, mb=1, requests=3, over_s=0.5), "c")
    assert [a["arm"] for a in report["arms"]] == ["on the loop", "on a thread"]
    assert [a["thread_body_bytes"] for a in report["arms"]] == [ON_LOOP, "default"]
    for arm in report["arms"]:
        assert [p["phase"] for p in arm["phases"]] == ["baseline", "numbers", "as given", "messages"]
        for p in arm["phases"]:
            assert p["ordinary"]["answered_200"] == 3
        for p in arm["phases"][1:]:
            assert p["large_bodies"] >= 1
            assert p["large_statuses"] == {"200": p["large_bodies"]}
    page = markdown(report)
    assert "| on a thread | numbers | 3 / 3 |" in page
    assert "## Side by side" in page
    assert "| numbers | " in page.split("## Side by side")[1]
