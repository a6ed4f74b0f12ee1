"""The proxy-uploads eval runs end to end on small bodies: a fresh ``promptzip proxy`` process in front of the fake
upstream forwards a streamed upload and a body it reads whole, both arriving byte for byte, and the report renders
(the memory figures themselves are the eval's, not asserted here)."""

from __future__ import annotations

import sys

import pytest

from promptzip.evals.proxy_uploads import markdown, run_uploads


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the proxy's peak memory from /proc")
def test_both_bodies_reach_the_upstream_whole() -> None:
    cases = run_uploads(4, whole_mib=1)
    assert [(c["case"], c["status"], c["upstream_received_whole"]) for c in cases] == [
        ("streamed", 200, True),
        ("read whole", 200, True),
    ]
    assert all(c["peak_rss_after_mib"] >= c["peak_rss_before_mib"] > 0 for c in cases)
    report = {
        "command": "c",
        "date": "d",
        "load_before": "0",
        "load_after": "0",
        "cpus": 2,
        "python": "3",
        "cases": cases,
    }
    assert "| streamed | 4.0 | 200 | yes |" in markdown(report)
