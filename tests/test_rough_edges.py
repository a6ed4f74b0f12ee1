"""Rough edges a new user hits when following the README (issue 22): offline tiktoken with a cache folder of one's
own, every packaged model in ``promptzip models``, LangChain budgets as ``pz.compress`` reads them, no empty
message content, SQLAlchemy-style SQLite URLs, one ``date`` header through the proxy, a short ``Result`` repr."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import tiktoken
import tiktoken.load
import tiktoken.registry

import promptzip as pz
from promptzip._cache import cache_from_url
from promptzip._messages import MINIMAL_TEXT, message_tokens
from promptzip._sqlite_cache import SQLiteCache
from promptzip._tokenizers import TiktokenTokenizer, packaged_rank_file, tiktoken_rank_file
from promptzip.cli import main

QUESTION = "When did town 5 rebuild its harbour?"
DOCS = " ".join(f"Passage {i}. Town {i} rebuilt its harbour in {1900 + i} after a storm." for i in range(40))
# Shares no word with QUESTION, so BM25 scores it 0 and a tight budget drops it whole.
CHATTER = " ".join("Bananas are yellow fruit grown in warm places." for _ in range(30))
UPSTREAM_DATE = "Mon, 01 Jan 2001 00:00:00 GMT"


# ------------------------------------------------------------------------------------------ 1. tiktoken offline
@pytest.fixture
def offline_tiktoken(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """tiktoken with no encoding built yet in this process and no network: a download attempt fails as it does
    offline, and promptzip's compiled copy of the rank files off, so that tiktoken reads them. Returns the
    TIKTOKEN_CACHE_DIR seen by each rank-file read."""
    if packaged_rank_file("o200k_base") is None:
        pytest.skip("litellm's packaged tiktoken files are not installed")
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    monkeypatch.setenv("PROMPTZIP_COMPILED_RANKS", "0")

    def no_network(blobpath: str) -> bytes:
        raise ConnectionError(f"offline: {blobpath}")

    seen: list[str | None] = []
    read_cached: Callable[..., bytes] = tiktoken.load.read_file_cached

    def spy(blobpath: str, expected_hash: str | None = None) -> bytes:
        seen.append(os.environ.get("TIKTOKEN_CACHE_DIR"))
        return read_cached(blobpath, expected_hash)

    monkeypatch.setattr(tiktoken.load, "read_file", no_network)
    monkeypatch.setattr(tiktoken.load, "read_file_cached", spy)
    return seen


def test_a_user_tiktoken_cache_without_the_file_falls_back_to_the_packaged_one(
    offline_tiktoken: list[str | None], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = tmp_path / "my-tiktoken-cache"
    mine.mkdir()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(mine))

    assert TiktokenTokenizer("o200k_base").count("How tall is the Eiffel Tower?") == 7
    assert offline_tiktoken
    assert str(mine) not in offline_tiktoken
    assert list(mine.iterdir()) == []  # the user's cache is not written to
    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(mine)  # and the user's setting is back


def test_a_user_tiktoken_cache_that_holds_the_file_is_used(
    offline_tiktoken: list[str | None], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    packaged = packaged_rank_file("o200k_base")
    assert packaged is not None
    mine = tmp_path / "my-tiktoken-cache"
    mine.mkdir()
    shutil.copy(packaged, mine / packaged.name)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(mine))

    assert tiktoken_rank_file("o200k_base") == ("tiktoken-cache", mine / packaged.name)
    assert TiktokenTokenizer("o200k_base").count("How tall is the Eiffel Tower?") == 7
    assert offline_tiktoken == [str(mine)]


# ------------------------------------------------------------------------------------ 2. promptzip models
def test_models_lists_every_packaged_model() -> None:
    out = io.StringIO()
    assert main(["models", "--json"], stdout=out, stderr=io.StringIO()) == 0
    rows = {row["name"]: row for row in json.loads(out.getvalue())}
    root = Path(__file__).resolve().parent.parent  # the repo: its folders install as promptzip.compressors, ...
    packaged = [p.name for kind in ("compressors", "retrievers") for p in (root / kind / "models").iterdir()]
    assert {"minilm-tc", "minilm-qa", "soft-minilm-smollm2"} <= set(packaged)
    for name in packaged:
        assert rows[name]["status"] == "available", rows.get(name)
    assert rows["minilm-tc"]["kind"] == "token-classifier"
    assert Path(rows["minilm-tc"]["path"], "manifest.json").is_file()
    assert rows["soft-minilm-smollm2"]["kind"] == "soft-encoder"
    # litellm ships no r50k_base file: it is not claimed as packaged
    assert rows["r50k_base"]["status"] == ("available" if tiktoken_rank_file("r50k_base") else "missing")


# ------------------------------------------------------------------------------------------ 3. LangChain budgets
def test_langchain_adapters_take_a_budget_as_pz_compress_does(bm25: pz.Zipper) -> None:
    pytest.importorskip("langchain_core")
    from langchain_core.documents import Document

    from promptzip.integrations.langchain import PromptZipCompressor, PromptZipRunnable

    docs = [Document(page_content=p) for p in DOCS.split(". Passage")]
    outs = [
        [d.page_content for d in PromptZipCompressor(budget=b, zipper=bm25).compress_documents(docs, QUESTION)]
        for b in (pz.Budget(tokens=60), 60)
    ]
    assert outs[0]
    assert outs[0] == outs[1]
    for cls in (PromptZipCompressor, PromptZipRunnable):
        assert cls(budget=pz.Budget(tokens=800), zipper=bm25)._spec() == pz.Budget(tokens=800)
        assert cls(budget=pz.Budget(rate=0.3), zipper=bm25)._spec() == pz.Budget(rate=0.3)
        # a float is what pz.compress makes of it: a BudgetError that spells the intended call, not pydantic's error
        for value, spelling in ((800.0, "budget=800"), (0.3, "rate=0.3")):
            with pytest.raises(pz.BudgetError, match=f"did you mean {spelling}") as raised:
                cls(budget=value, zipper=bm25)
            with pytest.raises(pz.BudgetError) as direct:
                pz.compress(DOCS, question=QUESTION, budget=value)
            assert str(raised.value) == str(direct.value)
        with pytest.raises(pz.BudgetError, match="str"):
            cls(budget="800", zipper=bm25)
    prompt = f"Answer from the context.\n\nContext:\n{DOCS}\n\nQuestion: {QUESTION}"
    out = PromptZipRunnable(budget=pz.Budget(tokens=60), zipper=bm25).invoke(prompt)
    assert out.endswith(QUESTION)
    assert bm25.tokenizer.count(out) <= 60


# ------------------------------------------------------------------------------- 4. no empty message content
def _chat(assistant: Any) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Tell me about fruit."},
        {"role": "assistant", "content": assistant},
        {"role": "user", "content": f"Context:\n{DOCS}\n\nQuestion: {QUESTION}"},
    ]


def test_a_message_whose_text_all_went_keeps_a_minimal_counted_text(bm25: pz.Zipper) -> None:
    r = bm25.compress_messages(_chat(CHATTER), budget=80)
    assert r.messages is not None
    assert r.messages[2]["content"] == MINIMAL_TEXT == "…"
    assert all(m["content"] for m in r.messages)
    assert r.tokens_out == message_tokens(r.messages, bm25.tokenizer.count) <= 80  # the "…" is counted

    parts = bm25.compress_messages(
        _chat([{"type": "text", "text": CHATTER}, {"type": "text", "text": CHATTER}]), budget=80
    )
    assert parts.messages is not None
    assert [p["text"] for p in parts.messages[2]["content"]] == [MINIMAL_TEXT, ""]
    assert parts.tokens_out == message_tokens(parts.messages, bm25.tokenizer.count) <= 80

    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    beside = bm25.compress_messages(_chat([{"type": "text", "text": CHATTER}, image]), budget=80)
    assert beside.messages is not None
    assert beside.messages[2]["content"] == [{"type": "text", "text": ""}, image]  # the image is its content


# ------------------------------------------------------------------------------------------ 5. SQLite URLs
def test_sqlite_urls_follow_sqlalchemy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))

    def path_of(url: str) -> Path:
        cache = cache_from_url(url)
        assert isinstance(cache, SQLiteCache)
        return cache.path

    assert path_of("sqlite:///rel.db") == tmp_path / "rel.db"
    assert path_of("sqlite:///sub/rel.db") == tmp_path / "sub" / "rel.db"
    assert path_of(f"sqlite:///{tmp_path}/abs.db") == tmp_path / "abs.db"  # sqlite:////tmp/.../abs.db
    assert path_of("sqlite:///~/.cache/promptzip/cache.db") == tmp_path / "home" / ".cache" / "promptzip" / "cache.db"
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert path_of("sqlite:///rel.db") == tmp_path / "elsewhere" / "rel.db"  # the working directory of the call
    with pytest.raises(pz.ConfigError, match="no host"):
        cache_from_url("sqlite://somehost/x.db")
    assert not (tmp_path / "rel.db").exists()  # resolving a URL touches nothing


# --------------------------------------------------------------------------------------- 6. one date header
@pytest.fixture(scope="module")
def dated_live() -> Iterator[str]:
    from proxy_helpers import bm25, settings

    from promptzip.integrations.proxy import create_app
    from promptzip.integrations.proxy.testing import FakeUpstream, live_server

    with (
        FakeUpstream(headers=(("date", UPSTREAM_DATE),)) as upstream,
        live_server(create_app(settings(upstream.url), zipper_factory=bm25)) as url,
    ):
        yield url


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/chat/completions", {"model": "gpt-4o", "messages": _chat(CHATTER)}),
        ("POST", "/v1/chat/completions", {"model": "gpt-4o", "messages": _chat(CHATTER), "stream": True}),
        ("GET", "/v1/models", None),
        ("GET", "/healthz", None),
    ],
    ids=["chat", "stream", "passthrough", "healthz"],
)
def test_the_proxy_sends_one_date_header(dated_live: str, method: str, path: str, body: Any) -> None:
    headers = {"x-promptzip-budget": "120"} if body else {}
    response = httpx.request(method, dated_live + path, json=body, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    dates = response.headers.get_list("date")
    assert len(dates) == 1, dates
    assert dates[0] != UPSTREAM_DATE  # uvicorn's own; the upstream's is dropped


# -------------------------------------------------------------------------------------------- 7. Result repr
def test_result_repr_is_short_and_says_what_happened(bm25: pz.Zipper) -> None:
    long_text = DOCS * 5
    r = bm25.compress(long_text, question=QUESTION, budget=60)
    text = repr(r)
    assert len(text) < 300, text
    for part in (f"tokens_in={r.tokens_in}", f"tokens_out={r.tokens_out}", "budget=60", f"ratio={r.ratio:.1f}"):
        assert part in text
    assert f"decision={r.decision!r}" in text
    assert f"chunks={len(r.chunks)}" in text
    assert repr(r.text[:20])[:-1] in text
    assert f"({len(r.text)} chars)" in text
    assert dataclasses.replace(r) == r
    assert dataclasses.replace(r, text="other") != r
    chat = bm25.compress_messages(_chat(CHATTER), budget=80)
    assert "messages=4" in repr(chat)
