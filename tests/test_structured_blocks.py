"""Data pasted inside a message (a fenced JSON, log or HTML block, or a bare JSON value, among the words of a user
turn or a tool result) is cut by its reducer like a whole tool output, while the words around it keep their reading:
the question is found with the block in place and goes out byte for byte (real BM25 stacks, the real ``openai`` and
``anthropic`` SDKs against the real proxy, a recording fake upstream on 127.0.0.1)."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import anthropic
import httpx
import openai
import pytest
from proxy_helpers import settings

import promptzip as pz
from promptzip._cache import Cache
from promptzip._messages import message_tokens, question_of
from promptzip._structured_blocks import split_layout, structured_blocks
from promptzip._understand import understand
from promptzip.compressors.extractive import ExtractiveCompressor
from promptzip.integrations.proxy import create_app
from promptzip.integrations.proxy.testing import FakeUpstream, live_server
from promptzip.retrievers.sparse import BM25Scorer

EXPAND_ID = re.compile(r"pz-[0-9a-f]{16}")
QUESTION = "What is the status of order A-1042?"
ORDERS = json.dumps(
    [
        {"order": f"A-{1000 + i}", "status": ("pending", "shipped", "delivered")[i % 3], "total": i * 7.5}
        for i in range(300)
    ],
    indent=2,
)
LOG = "\n".join(
    "2024-05-01T10:00:00Z ERROR payment gateway timeout for order ORD-77231"
    if i == 150
    else f"2024-05-01T10:{i // 60:02d}:{i % 60:02d}Z INFO worker-{i % 4} processed batch {i}"
    for i in range(300)
)

CUSTOMERS = json.dumps([{"customer": i, "city": f"Town {i}", "since": 2000 + i % 20} for i in range(200)], indent=1)
CODE = "def f(x):\n    return x\n" * 80


def zipper(cache: Cache | None = None) -> pz.Zipper:
    return pz.Zipper(ExtractiveCompressor(BM25Scorer(), min_relevance=None), target="gpt-4o", name="bm25", cache=cache)


def fenced(tag: str, body: str) -> str:
    return f"```{tag}\n{body}\n```"


def the_json_in(text: str) -> Any:
    return json.loads(text.split("```json\n", 1)[1].split("\n```", 1)[0])


# ---------------------------------------------------------------------------------------------------- finding
@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        (f"Here is the response:\n{fenced('json', ORDERS)}\n\n{QUESTION}", ["json"]),
        (f"Here is the response:\n{fenced('', ORDERS)}\n\n{QUESTION}", ["json"]),
        (f"Here is the response:\n~~~\n{ORDERS}\n~~~\n{QUESTION}", ["json"]),
        (f"Here is the response:\n{ORDERS}\n\n{QUESTION}", ["json"]),  # bare, on lines of its own
        (f"{QUESTION}\n\n{fenced('log', LOG)}\n\nand the orders:\n{fenced('json', ORDERS)}", ["log", "json"]),
        (f"The page:\n{fenced('html', '<h1>Orders</h1>' + '<p>Order A-1 is late.</p>' * 80)}\nWhy?", ["html"]),
    ],
)
def test_data_blocks_are_found_with_their_kind(text: str, kinds: list[str]) -> None:
    blocks = structured_blocks(text)
    assert [kind for *_, kind in blocks] == kinds
    for outer_a, a, b, outer_b, _ in blocks:
        assert outer_a <= a < b <= outer_b
        assert text[a:b].strip() in (ORDERS, LOG) or text[a:b].startswith("<h1>")
        assert not text[a:b].startswith("```")
        assert not text[a:b].endswith("```")


@pytest.mark.parametrize(
    "text",
    [
        ORDERS,  # one JSON value: a tool result's treatment, elsewhere
        f"Why does this fail?\n{fenced('python', CODE)}",  # code is asked about whole
        f"Is this valid?\n{fenced('json', ORDERS[:-40])}",  # says JSON, is not
        f"Short:\n{fenced('json', json.dumps([1, 2, 3]))}\nWhat is the sum?",  # too short to be worth a cut
        f"Unclosed:\n```log\n{LOG}\n\n{QUESTION}",
        f"Inside a code block:\n```markdown\n{ORDERS}\n```\n{QUESTION}",
        "Prose only. " * 400,
    ],
)
def test_other_texts_have_no_data_blocks(text: str) -> None:
    assert structured_blocks(text) == []


def test_a_block_inside_a_document_element_is_left_in_place() -> None:
    text = f"Answer from the documents.\n\n<document>\n{fenced('json', ORDERS)}\n</document>\n\n{QUESTION}"
    layout = understand(text, role="user", last_user=True)
    blocks = structured_blocks(text)
    assert len(blocks) == 1
    (piece,) = split_layout(layout, blocks)
    assert piece[:2] == (0, len(text))


def test_the_question_is_found_without_the_block() -> None:
    for text in (
        f"Here is the API response:\n{fenced('json', ORDERS)}\n\n{QUESTION}",
        f"Here is the API response:\n{ORDERS}\n\n{QUESTION}",
    ):
        chat = [{"role": "user", "content": text}]
        found = question_of(chat)
        assert found is not None
        assert QUESTION in found
        assert "A-1000" not in found


def test_pathological_fences_are_read_in_linear_time() -> None:
    # a fence with no closing line used to be sought again for each later fence; blanks after a fence's info words
    # were retried at each of their characters
    texts = [
        "".join(f"````x{i}\n" for i in range(40_000)) + "```\n" * 40_000,
        "".join("`" * (3 + i % 500) + "x\n" for i in range(40_000)),
        "```x" + " " * 400_000 + "y\nz",
        "text\n" + "[" * 50_000 + "\n" + "{\n" * 50_000,
    ]
    for text in texts:
        started = time.perf_counter()
        assert structured_blocks(text) == []
        assert time.perf_counter() - started < 20, "a guard against quadratic scans, not a timing"


# ----------------------------------------------------------------------------------------------- compression
@pytest.mark.parametrize(
    "text",
    [
        f"Here is the API response:\n{fenced('json', ORDERS)}\n\n{QUESTION}",
        f"{QUESTION} Here is the data:\n\n{fenced('json', ORDERS)}",
    ],
)
def test_a_json_block_in_the_turn_being_answered_is_cut_and_the_question_kept(text: str) -> None:
    z = zipper()
    chat = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": text}]
    r = z.compress_messages(chat, rate=0.1)
    assert r.messages is not None
    assert r.tokens_out == message_tokens(list(r.messages), z.tokenizer.count) <= r.budget < r.tokens_in
    assert r.decision == "compressed"
    out = r.messages[1]["content"]
    assert QUESTION in out
    assert r.messages[0] == chat[0]
    kept = the_json_in(out)  # still valid JSON, between its fences, with the original keys
    items = [item for item in kept if isinstance(item, dict)]
    assert {"order", "status", "total"} == set(items[0])
    assert {"order": "A-1042", "status": "pending", "total": 315.0} in items
    assert f"{300 - len(items)} of 300 items omitted" in kept[-1]
    (eid,) = set(EXPAND_ID.findall(out))
    assert pz.expand(eid, cache=z.cache) == ORDERS
    with pytest.raises(pz.ExpandNotFound):
        pz.expand(eid, cache=z.cache, scope="another-caller")


REQUEST = "Find the orders that are still pending and count them."


@pytest.mark.parametrize(
    "text",
    [
        f"Here is the API response:\n\n{fenced('json', ORDERS)}\n\n{REQUEST}",
        f"Here is the API response:\n{ORDERS}\n\n{REQUEST}",
        f"The log of the last hour:\n{fenced('log', LOG)}\n{REQUEST}",
    ],
)
def test_a_request_without_a_question_mark_after_the_data_is_the_question(text: str) -> None:
    # after a lead-in ending in a colon, understanding read the request as more of the pasted text: it was cut
    chat = [{"role": "user", "content": text}]
    assert REQUEST in (question_of(chat) or "")
    r = zipper().compress_messages(chat, rate=0.05)
    assert r.messages is not None
    assert r.tokens_out <= r.budget < r.tokens_in
    assert r.messages[0]["content"].endswith(REQUEST)


def test_long_words_after_the_data_are_still_context() -> None:
    notes = "\n\n".join(f"Note {i}: the warehouse in town {i} ships on weekday {i % 5}." for i in range(40))
    r = zipper().compress_messages(
        [{"role": "user", "content": f"Data:\n{fenced('json', ORDERS)}\n\n{notes}"}], rate=0.1
    )
    assert r.messages is not None
    assert notes not in r.messages[0]["content"]  # cut like any context, not kept whole as a question
    assert r.tokens_out <= r.budget


def test_a_bare_json_block_is_cut_and_stays_on_its_lines() -> None:
    z = zipper()
    text = f"Here is the API response:\n{ORDERS}\n\n{QUESTION}"
    r = z.compress_messages([{"role": "user", "content": text}], rate=0.1)
    assert r.messages is not None
    out = r.messages[0]["content"]
    head, _, rest = out.partition("\n")
    assert head == "Here is the API response:"
    body, _, tail = rest.rpartition("\n\n")
    assert tail == QUESTION
    assert {"order": "A-1042", "status": "pending", "total": 315.0} in json.loads(body)


def test_blocks_in_an_earlier_turn_a_tool_result_and_the_last_turn_are_cut() -> None:
    z = zipper()
    chat = [
        {"role": "system", "content": "You are an operations assistant."},
        {"role": "user", "content": f"Our customers, for reference:\n\n{fenced('json', CUSTOMERS)}\n\nThanks."},
        {"role": "assistant", "content": "Let me look up the orders.", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "orders", "arguments": "{}"}},
        ]},
        {"role": "tool", "tool_call_id": "c1", "content": f"Found 300 orders.\n{fenced('json', ORDERS)}"},
        {"role": "user", "content": f"The service log:\n{fenced('log', LOG)}\nWhich order timed out, and what is "
         "the status of order A-1042?"},
    ]  # fmt: skip
    r = z.compress_messages(chat, budget=1500)
    assert r.messages is not None
    assert r.tokens_out == message_tokens(list(r.messages), z.tokenizer.count) <= 1500
    # the words around the earlier blocks are context the knapsack may drop (here at about 15x); the blocks are
    # cut inside their fences
    customers = r.messages[1]["content"]
    assert "```json\n" in customers
    assert customers.removesuffix("Thanks.").rstrip().endswith("\n```")
    assert isinstance(the_json_in(customers), list)
    tool = r.messages[3]["content"]
    assert "```json\n" in tool
    assert {"order": "A-1042", "status": "pending", "total": 315.0} in the_json_in(tool)
    log = r.messages[4]["content"]
    assert log.startswith("The service log:\n```log\n")
    assert log.endswith("\n```\nWhich order timed out, and what is the status of order A-1042?")
    assert "ERROR payment gateway timeout for order ORD-77231" in log
    assert len(log) < len(chat[4]["content"]) / 4
    ids = set(EXPAND_ID.findall(customers + tool + log))
    assert {pz.expand(i, cache=z.cache) for i in ids} == {CUSTOMERS, ORDERS, LOG}


def test_a_json_block_in_the_system_prompt_is_cut_for_the_users_question() -> None:
    # a fenced block in a system prompt was context the splitter keeps whole: no budget below it could be met
    z = zipper()
    system = f"You are a support agent. Answer from the orders below.\n\n{fenced('json', ORDERS)}\n\nBe brief."
    chat = [{"role": "system", "content": system}, {"role": "user", "content": QUESTION}]
    r = z.compress_messages(chat, rate=0.1)
    assert r.messages is not None
    assert r.tokens_out <= r.budget < r.tokens_in
    sent = r.messages[0]["content"]
    assert sent.startswith("You are a support agent. Answer from the orders below.\n\n```json\n")
    assert sent.endswith("\n```\n\nBe brief.")
    assert {"order": "A-1042", "status": "pending", "total": 315.0} in the_json_in(sent)
    assert r.messages[1] == chat[1]


def test_a_request_that_fits_is_untouched() -> None:
    chat = [{"role": "user", "content": f"Here is the API response:\n{fenced('json', ORDERS)}\n\n{QUESTION}"}]
    r = zipper().compress_messages(chat, budget=50_000)
    assert list(r.messages or ()) == chat
    assert r.decision == "kept_all"


def test_a_text_marked_up_with_promptzips_tags_is_read_by_them_whole() -> None:
    # cut around a block, <pz keep> and its </pz> would land in different pieces and no longer pair up
    z = zipper()
    keep = f"<pz keep>Here is the data:\n{fenced('json', ORDERS)}\n</pz>\n\n{QUESTION}"
    with pytest.raises(pz.BudgetError):  # the user asked for all of it: it does not fit a tenth
        z.compress_messages([{"role": "user", "content": keep}], rate=0.1)
    rate = f"Here is the data:\n<pz rate=0.5>{fenced('json', ORDERS)}</pz>\n\n{QUESTION}"
    r = z.compress_messages([{"role": "user", "content": rate}], rate=0.1)
    assert r.messages is not None
    assert r.tokens_out <= r.budget
    assert "<pz" not in r.messages[0]["content"]  # the tags were read, as markup, not cut apart


def test_the_context_around_blocks_is_numbered_as_one_text() -> None:
    docs = "\n\n".join(f"Note {i}: the warehouse in town {i} ships on weekday {i % 5}." for i in range(40))
    text = f"Notes:\n{docs}\n\n{fenced('json', ORDERS)}\n\nMore notes:\n{docs}\n\n{fenced('log', LOG)}\n\n{QUESTION}"
    r = zipper().compress_messages([{"role": "user", "content": text}], rate=0.2)
    assert r.messages is not None
    ids = [c.source_id for c in r.chunks if not c.kind.startswith("reduce@")]
    assert len(set(ids)) >= 2
    assert all(re.fullmatch(r"messages\[0\]#\d+", i) for i in ids)
    # each cut block is a source of its own, named by where it starts in the message, its original whole
    blocks = {c.source_id: c.kind for c in r.chunks if c.kind.startswith("reduce@")}
    assert sorted(blocks.values()) == ["reduce@json", "reduce@log"]
    sources = {s.id: s.text for s in r.sources}
    for sid in blocks:
        at = int(sid.removeprefix("messages[0]@"))
        assert text[at:].startswith(sources[sid])
    assert sorted(sources[sid] for sid in blocks) == sorted([ORDERS, LOG])
    out = r.messages[0]["content"]
    assert out.endswith(QUESTION)
    assert out.count("```") == 4  # both blocks keep both fences


# -------------------------------------------------------------------------------------------------- the doors
def shared(preset: str, target: str, cache: Cache) -> pz.Zipper:
    return zipper(cache)  # the proxy's own cache: its expand endpoint reads what the reducers stored there


def test_the_proxy_cuts_a_pasted_block_for_both_sdks_and_expands_it_for_the_same_key(upstream: FakeUpstream) -> None:
    text = f"Here is the API response:\n{fenced('json', ORDERS)}\n\n{QUESTION}"
    with live_server(create_app(settings(upstream.url), zipper_factory=shared)) as url:
        with openai.OpenAI(base_url=url + "/v1", api_key="sk-alice", max_retries=0) as client:
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-4o",
                messages=[{"role": "user", "content": [{"type": "text", "text": text}]}],
                extra_headers={"x-promptzip-budget": "1000"},
            )
        assert raw.headers["x-promptzip-status"] == "compressed"
        assert int(raw.headers["x-promptzip-tokens-out"]) <= 1000
        (part,) = upstream.requests[-1].json()["messages"][0]["content"]
        assert part["text"].startswith("Here is the API response:\n```json\n")
        assert part["text"].endswith(f"\n```\n\n{QUESTION}")
        assert {"order": "A-1042", "status": "pending", "total": 315.0} in the_json_in(part["text"])
        (eid,) = set(EXPAND_ID.findall(part["text"]))
        got = httpx.get(f"{url}/v1/promptzip/expand/{eid}", headers={"authorization": "Bearer sk-alice"})
        assert got.status_code == 200
        assert got.json()["text"] == ORDERS
        other = httpx.get(f"{url}/v1/promptzip/expand/{eid}", headers={"authorization": "Bearer sk-bob"})
        assert other.status_code == 404
        assert ORDERS[:40] not in other.text

        with anthropic.Anthropic(base_url=url, api_key="sk-ant-alice", max_retries=0) as claude:
            answer = claude.messages.with_raw_response.create(
                model="claude-sonnet-4-5",
                max_tokens=64,
                messages=[{"role": "user", "content": text}],
                extra_headers={"x-promptzip-budget": "1000"},
            )
            assert answer.headers["x-promptzip-status"] == "compressed"
            sent = upstream.requests[-1].json()["messages"][0]["content"]
            sent = sent if isinstance(sent, str) else "".join(block["text"] for block in sent)
            assert sent.endswith(QUESTION)
            assert {"order": "A-1042", "status": "pending", "total": 315.0} in the_json_in(sent)

            system = claude.messages.with_raw_response.create(  # the data in the system prompt
                model="claude-sonnet-4-5",
                max_tokens=64,
                system=f"Answer from these orders.\n\n{fenced('json', ORDERS)}",
                messages=[{"role": "user", "content": QUESTION}],
                extra_headers={"x-promptzip-budget": "1000"},
            )
        assert system.headers["x-promptzip-status"] == "compressed"
        body = upstream.requests[-1].json()
        prompt = body["system"] if isinstance(body["system"], str) else "".join(b["text"] for b in body["system"])
        assert prompt.startswith("Answer from these orders.\n\n```json\n")
        assert {"order": "A-1042", "status": "pending", "total": 315.0} in the_json_in(prompt)
        assert body["messages"] == [{"role": "user", "content": QUESTION}]


def test_a_request_looks_for_a_texts_blocks_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # the question is found first and the request planned after: the second read takes what the first found
    import promptzip._structured_blocks as blocks

    seen: list[str] = []
    fenced_blocks = blocks._fenced

    def counted(text: str) -> Any:
        seen.append(text)
        return fenced_blocks(text)

    monkeypatch.setattr(blocks, "_fenced", counted)
    text = f"Here is the API response:\n{fenced('json', ORDERS)}\n\n{QUESTION}"
    r = zipper().compress_messages([{"role": "user", "content": text}], rate=0.1)
    assert r.decision == "compressed"
    assert seen == [text]
    seen.clear()
    structured_blocks(text)
    structured_blocks(text)
    assert seen == [text, text]  # outside a request nothing is kept
