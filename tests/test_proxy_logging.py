"""What the proxy logs and what its answers' headers say, against a real uvicorn server on 127.0.0.1 in front of
:class:`FakeUpstream`: ``--log-level`` sets up the ``promptzip.proxy`` logger; one structured line per request, with
no content, key or header value; warnings that name a problem without quoting the user's text; a chat that merely
mentions ``</pz>`` is still compressed; exactly one ``date`` header and never the upstream's ``server``. Also the
load script's pure helpers."""

from __future__ import annotations

import importlib.util
import itertools
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from proxy_helpers import Exploding, bm25, settings

import promptzip
from promptzip._errors import InputError
from promptzip._pipeline import Zipper
from promptzip._split import parse_tags
from promptzip._understand import understand
from promptzip.evals._redis_server import free_port
from promptzip.integrations.proxy import create_app
from promptzip.integrations.proxy.testing import FakeUpstream, live_server

ROOT = Path(__file__).resolve().parents[1]
SECRET = "sk-live-SECRET-4f9a"
MARKER = "ZEBRA-CONTENT-MARKER"
UPSTREAM_DATE = "Mon, 01 Jan 2001 00:00:00 GMT"
LONG = " ".join(f"Sentence {i} talks about topic {i % 7} and the number {i * 13}." for i in range(300))
BIG = {
    "model": "gpt-4o",
    "messages": [
        {"role": "user", "content": f"{LONG} {MARKER}"},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "What is said about topic 3?"},
    ],
}
SMALL = {"model": "gpt-4o", "messages": [{"role": "user", "content": f"Hi {MARKER}"}]}


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(headers=(("date", UPSTREAM_DATE), ("server", "fake-upstream/9.9"))) as fake:
        yield fake


@pytest.fixture(scope="module")
def live(upstream: FakeUpstream) -> Iterator[str]:
    with live_server(create_app(settings(upstream.url), zipper_factory=bm25)) as url:
        yield url


def _wait(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _fields(line: str) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in line.split()[1:])


# ------------------------------------------------------------------------------------------------ the CLI
def _run_cli(upstream: FakeUpstream, level: str, tmp_path: Path) -> str:
    port = free_port()
    log = tmp_path / f"proxy-{level}.log"
    command = [sys.executable, "-P", "-m", "promptzip.integrations.proxy", "--upstream", upstream.url]
    command += ["--port", str(port), "--cache", "memory", "--log-level", level]
    if level != "info":  # one run warms up, as `promptzip proxy` does by default; the others start at once
        command.append("--no-warmup")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with log.open("wb") as err:
        proxy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, env=env)
        try:
            base = f"http://127.0.0.1:{port}"

            def healthy() -> bool:
                assert proxy.poll() is None, log.read_text()
                try:
                    return httpx.get(base + "/healthz", timeout=2).status_code == 200
                except httpx.TransportError:
                    return False

            _wait(healthy, timeout=60)
            r = httpx.get(f"{base}/v1/models?api_key={SECRET}", headers={"authorization": f"Bearer {SECRET}"})
            assert r.status_code == 200
        finally:
            proxy.send_signal(signal.SIGINT)
            proxy.wait(20)
    return log.read_text()


@pytest.mark.parametrize("level", ["debug", "info", "warning"])
def test_log_level_sets_up_the_proxy_logger(upstream: FakeUpstream, level: str, tmp_path: Path) -> None:
    err = _run_cli(upstream, level, tmp_path)
    shown = level != "warning"
    assert ("promptzip proxy ready: upstream" in err) is shown, err
    assert ("request method=GET route=passthrough status=200" in err) is shown, err
    assert ("route=healthz status=200" in err) is shown, err
    assert SECRET not in err
    assert "api_key" not in err


# ------------------------------------------------------------------------------------------ the request line
def test_one_structured_line_per_request_without_content(live: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="promptzip")
    auth = {"authorization": f"Bearer {SECRET}"}

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "promptzip.proxy.access"]

    with httpx.Client(base_url=live, timeout=30, headers=auth) as http:
        answers = [
            http.post("/v1/chat/completions", json=SMALL),
            http.post("/v1/chat/completions", json=BIG),
            http.post("/v1/chat/completions", json=BIG),  # a result-cache hit
            http.post("/v1/chat/completions", json={**BIG, "stream": True}),
            http.get("/v1/models", params={"key": SECRET}),
            http.get("/healthz"),
            http.get("/nowhere"),
        ]
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 200, 200, 404]
    _wait(lambda: len(lines()) >= len(answers))
    time.sleep(0.1)
    assert len(lines()) == len(answers)  # one line per request, no more
    logged = [_fields(line) for line in lines()]
    keys = ["method", "route", "status", "pz_status", "reason", "error", "tokens_in", "tokens_out"]
    keys += ["compress_ms", "total_ms", "cache"]
    assert all(list(f) == keys for f in logged)
    chats = [f for f in logged if f["route"] == "/v1/chat/completions"]
    assert sorted((f["pz_status"], f["cache"]) for f in chats) == [
        ("compressed", "hit"),
        ("compressed", "hit"),
        ("compressed", "miss"),
        ("passthrough", "-"),
    ]
    small = next(f for f in chats if f["pz_status"] == "passthrough")
    assert small["reason"] == "below-min-tokens"
    for f in chats:
        assert (f["method"], f["status"]) == ("POST", "200")
        assert f["tokens_in"].isdigit()
        assert f["tokens_out"].isdigit()
        assert float(f["compress_ms"]) >= 0
        assert float(f["total_ms"]) > 0
    big = [f for f in chats if f["pz_status"] == "compressed"]
    assert all(int(f["tokens_out"]) < int(f["tokens_in"]) for f in big)
    others = sorted((f["method"], f["route"], f["status"], f["pz_status"], f["compress_ms"]) for f in logged)
    assert ("GET", "passthrough", "200", "-", "-") in others
    assert ("GET", "healthz", "200", "-", "-") in others
    assert ("GET", "not_found", "404", "-", "-") in others
    promptzip_text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("promptzip"))
    for secret in (SECRET, MARKER, "topic", "key="):
        assert secret not in promptzip_text


# ------------------------------------------------------------------------------------------------ warnings


@pytest.mark.parametrize("fail_mode", ["open", "closed"])
@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (InputError(f"unknown <pz> attribute 'Paris' in {MARKER}", position=3), "kind=InputError code=cannot_compress"),
        (RuntimeError(f"cannot handle {MARKER}"), "kind=RuntimeError code=internal_error"),
    ],
)
def test_warnings_name_the_problem_not_the_text(
    upstream: FakeUpstream, caplog: pytest.LogCaptureFixture, fail_mode: str, error: Exception, kind: str
) -> None:
    caplog.set_level(logging.INFO, logger="promptzip")
    app = create_app(
        settings(upstream.url, fail_mode=fail_mode),
        zipper_factory=lambda preset, target, cache: Zipper(Exploding(error), target=target),
    )
    raw = json.dumps(BIG).encode()
    with live_server(app) as url:
        r = httpx.post(url + "/v1/chat/completions", content=raw, timeout=30)
    assert r.status_code == (200 if fail_mode == "open" else 422 if isinstance(error, InputError) else 500)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert kind in warnings[0]
    assert f"body_bytes={len(raw)}" in warnings[0]
    assert ("position=3" in warnings[0]) is isinstance(error, InputError)
    everything = "\n".join(r.getMessage() for r in caplog.records)
    assert MARKER not in everything
    assert "Paris" not in everything


@pytest.mark.parametrize("text", ["ab <pz Paris>x</pz>", "<pz keep>x</pz Paris>", "ab <pz keep=Paris>x</pz>"])
def test_tag_errors_give_a_position_not_the_text(text: str) -> None:
    with pytest.raises(InputError) as info:
        parse_tags(text)
    assert "Paris" not in str(info.value)
    assert f"position {info.value.position}" in str(info.value)


# ------------------------------------------------------------------------------------------- literal </pz>
def _pz_chat() -> list[dict[str, Any]]:
    docs = "\n\n".join(f"Passage {i}. " + LONG[i * 300 : i * 300 + 900] for i in range(12))
    docs += "\n\nThe closing tag </pz> ends a region; <pz Paris> is not a tag."
    return [
        {"role": "system", "content": "Answer from the context only."},
        {"role": "user", "content": f'Context:\n{docs}\n\nQuestion: what does the string "</pz>" do in topic 3?'},
    ]


def test_literal_tags_are_protected_where_they_stand() -> None:
    text = _pz_chat()[1]["content"]
    layout = understand(text)
    literal = [text[r.start : r.end] for r in layout.regions if r.kind == "protected"]
    assert {"</pz>", "<pz Paris>"} <= set(literal)
    context = [text[layout.regions[i].start : layout.regions[i].end] for i in layout.context]
    assert context
    assert not any("<pz" in c or "</pz" in c for c in context)
    assert layout.question == 'what does the string "</pz>" do in topic 3?'
    kept = "<pz keep>ID-7 stays</pz> and a stray </pz> then " + LONG
    layout = understand(kept, role="assistant", last_user=False, history=True)
    assert "<pz keep>ID-7 stays</pz>" in [kept[r.start : r.end] for r in layout.regions if r.kind == "protected"]


@pytest.mark.slow
def test_a_chat_that_mentions_the_closing_tag_is_compressed() -> None:
    messages = _pz_chat()
    result = promptzip.compress_messages(messages, rate=0.3, cache="memory")
    assert result.messages is not None
    assert result.tokens_out < 0.5 * result.tokens_in
    sent = result.messages[1]["content"]
    assert sent.endswith('Question: what does the string "</pz>" do in topic 3?')


def test_a_chat_that_mentions_the_closing_tag_is_compressed_by_the_proxy(live: str, upstream: FakeUpstream) -> None:
    r = httpx.post(live + "/v1/chat/completions", json={"model": "gpt-4o", "messages": _pz_chat()}, timeout=30)
    assert r.status_code == 200
    assert r.headers["x-promptzip-status"] == "compressed", r.headers
    assert int(r.headers["x-promptzip-tokens-out"]) < int(r.headers["x-promptzip-tokens-in"])
    assert upstream.requests[-1].json()["messages"][1]["content"].endswith('"</pz>" do in topic 3?')


# -------------------------------------------------------------------------------------------------- headers
def _raw(url: str, request: bytes) -> list[tuple[str, str]]:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
    return [(k.strip().lower(), v.strip()) for k, _, v in (line.partition(":") for line in head)]


def _post(body: dict[str, Any], extra: str = "") -> bytes:
    raw = json.dumps(body).encode()
    head = f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n{extra}"
    return f"{head}content-length: {len(raw)}\r\nconnection: close\r\n\r\n".encode() + raw


@pytest.mark.parametrize(
    "request_",
    [
        _post(BIG),
        _post({**BIG, "stream": True}),
        _post(SMALL, "x-fake-mode: status:429\r\n"),
        b"GET /v1/models HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        b"GET /nowhere HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\nconnection: close\r\n\r\n{",
    ],
    ids=["chat", "stream", "upstream-429", "passthrough", "healthz", "not-found", "bad-json"],
)
def test_exactly_one_date_and_never_the_upstreams_server(live: str, request_: bytes) -> None:
    headers = _raw(live, request_)
    dates = [v for k, v in headers if k == "date"]
    assert len(dates) == 1, headers
    assert dates[0] != UPSTREAM_DATE  # the server's own: see RESPONSE_DROP in _requests.py
    assert parsedate_to_datetime(dates[0]).year >= 2024
    assert not any("fake-upstream" in v for _, v in headers)
    assert sum(k == "server" for k, _ in headers) <= 1


# ---------------------------------------------------------------------------------------------- load script
def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("loadtest_proxy", ROOT / "scripts" / "loadtest_proxy.py")
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_the_load_scripts_bodies_are_distinct_and_sized() -> None:
    script = _load_script()
    bodies = script.Bodies(seed=1)
    chats = [bodies.rag(4000) for _ in range(5)] + [bodies.rag(8000) for _ in range(5)]
    assert len({json.dumps(c, sort_keys=True) for c in chats}) == len(chats)
    sizes = [sum(len(m["content"]) for m in c["messages"]) for c in chats]
    assert all(4000 * 4 < n < 4000 * 6 for n in sizes[:5])
    assert all(8000 * 4 < n < 8000 * 6 for n in sizes[5:])
    markers = [set(re.findall(r"\[\d+\]", c["messages"][-1]["content"] + c["messages"][0]["content"])) for c in chats]
    assert all(len(a & b) < 5 for a, b in itertools.pairwise(markers))  # no embedding-cache reuse
    assert bodies.small() != bodies.small()
    for clients in (1, 4, 16, 100):
        roles = script.allocate(clients, script.ROLES)
        assert len(roles) == clients
        assert clients < len(script.ROLES) or set(roles) == set(script.ROLES)
    make = script.makers(bodies, chats[:2], "balanced")
    assert [make["cold"]()[0] for _ in range(4)] == ["cold-4k", "cold-8k", "cold-4k", "cold-8k"]
    name, _, extra = make["adversarial"]()
    assert (name, extra) == ("adversarial", {"x-promptzip-preset": "balanced"})
    assert make["stream"]()[1]["stream"] is True
