"""Chat compression: older turns shrink, the system prompt, the last user turn, tool calls and images do not."""

from __future__ import annotations

import json
from typing import Any

import pytest

import promptzip as pz
from promptzip._messages import message_tokens

pytestmark = pytest.mark.slow

TOOL_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_height", "arguments": json.dumps({"landmark": "Eiffel Tower", "unit": "m"})},
}


def chat(article: str) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "You are a careful travel assistant. Cite the context."},
        {"role": "user", "content": "Tell me everything about Paris landmarks.\n\n" + article},
        {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "The tower is 330 metres tall. " + article},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "text", "text": "How tall is the Eiffel Tower, in metres?"},
            ],
        },
    ]


def test_protected_parts_survive_and_the_chat_fits(fast: pz.Zipper, article: str, o200k: pz.Tokenizer) -> None:
    messages = chat(article)
    before = json.dumps(messages)
    r = fast.compress_messages(messages, budget=160)
    assert json.dumps(messages) == before  # the caller's messages are not modified
    assert r.messages is not None
    out = list(r.messages)
    assert [m["role"] for m in out] == [m["role"] for m in messages]
    assert out[0] == messages[0]
    assert out[4] == messages[4]
    assert out[2]["tool_calls"] == [TOOL_CALL]
    assert out[3]["tool_call_id"] == "call_1"
    assert r.tokens_in == message_tokens(messages, o200k.count)
    assert r.tokens_out == message_tokens(out, o200k.count) <= 160
    assert len(out[1]["content"]) < len(messages[1]["content"])
    assert "330 metres" in out[1]["content"] + out[3]["content"]


@pytest.mark.parametrize("budget", [90, 120, 200, 400])
def test_never_over_budget(fast: pz.Zipper, article: str, o200k: pz.Tokenizer, budget: int) -> None:
    r = fast.compress_messages(chat(article), budget=budget)
    assert r.messages is not None
    assert message_tokens(list(r.messages), o200k.count) == r.tokens_out <= budget


def test_rate_and_provenance(fast: pz.Zipper, article: str) -> None:
    r = fast.compress_messages(chat(article), rate=0.3)
    assert r.tokens_out <= int(0.3 * r.tokens_in)
    ids = {c.source_id for c in r.chunks}
    assert ids <= {"messages[1]", "messages[3]"}
    texts = {"messages[1]": chat(article)[1]["content"], "messages[3]": chat(article)[3]["content"]}
    for c in r.chunks:
        for span in c.kept:
            assert texts[c.source_id][span.start : span.end] in r.context


def test_protected_messages_larger_than_the_budget(fast: pz.Zipper, article: str) -> None:
    messages = [{"role": "system", "content": article}, {"role": "user", "content": "Summarize."}]
    with pytest.raises(pz.BudgetError, match=r"protected.*messages\[0\] \(system\)"):
        fast.compress_messages(messages, budget=50, scope="history")


def test_a_long_system_message_is_context_by_default(fast: pz.Zipper, article: str, o200k: pz.Tokenizer) -> None:
    instruction = "You are a travel assistant. Answer from the documents below."
    messages = [
        {"role": "system", "content": instruction + "\n\n" + article},
        {"role": "user", "content": "How tall is the Eiffel Tower?"},
    ]
    r = fast.compress_messages(messages, budget=120)
    assert r.messages is not None
    out = [dict(m) for m in r.messages]
    assert out[0]["content"].startswith(instruction + "\n\n")  # the instruction paragraph, byte for byte
    assert out[1] == messages[1]
    assert r.regions == r.regions_compressed == 1
    assert message_tokens(out, o200k.count) == r.tokens_out <= 120


def test_bad_scope(fast: pz.Zipper) -> None:
    with pytest.raises(pz.InputError, match="scope"):
        fast.compress_messages([{"role": "user", "content": "Hi"}], budget=10, scope="everything")


def test_nothing_to_compress_but_it_fits(fast: pz.Zipper) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}]
    r = fast.compress_messages(messages, budget=100)
    assert r.decision == "kept_all"
    assert r.messages is not None
    assert [dict(m) for m in r.messages] == messages


def test_result_text_is_what_the_model_reads_for_a_chat_too(bm25: pz.Zipper, article: str) -> None:
    """Result.text means one thing everywhere: for a chat, the compressed messages' texts in order."""
    messages = [
        {"role": "system", "content": "Answer from the context only."},
        {"role": "user", "content": [{"type": "text", "text": f"Context:\n{article}\n\nQuestion: How tall is it?"}]},
    ]
    r = bm25.compress_messages(messages, budget=120)
    assert r.messages is not None
    assert r.text == "Answer from the context only.\n\n" + r.messages[1]["content"][0]["text"]
    assert r.context  # the compressed context alone ...
    assert r.context != r.text  # ... is not the request
    whole = bm25.compress_messages(messages, budget=10_000)
    assert whole.decision == "kept_all"
    assert whole.text == f"Answer from the context only.\n\nContext:\n{article}\n\nQuestion: How tall is it?"


def test_a_nul_in_the_turn_being_answered_sends_it_whole_and_still_scores_by_it(bm25: pz.Zipper) -> None:
    # The turn is forwarded byte for byte (binary junk is never cut), and its words still pick the context: the NUL
    # is a blank in the question scored against (it was an InputError about a "query" the caller never passed).
    docs = "\n\n".join(f"Passage {i}. Town {i} rebuilt its harbour in {1900 + i}." for i in range(40))
    asked = "My file: \x00\x01 When did town 17 rebuild its harbour?"
    messages = [{"role": "system", "content": "Use these documents:\n\n" + docs}, {"role": "user", "content": asked}]
    r = bm25.compress_messages(messages, budget=60)
    assert r.messages[1]["content"] == asked
    assert "Town 17 rebuilt its harbour in 1917." in r.messages[0]["content"]
    assert r.tokens_out <= 60
    only = bm25.compress_messages([messages[0], {"role": "user", "content": "\x00"}], budget=60)
    assert only.messages[1]["content"] == "\x00"


def test_a_message_key_with_an_unpaired_surrogate_is_an_input_error(bm25: pz.Zipper) -> None:
    # The all-str fast path checked values, not keys: the stable history's hash then raised UnicodeEncodeError.
    chat = [{"role": "user", "content": "How tall is the tower?", "\ud800": "y"}]
    for history in ("stable", "reselect"):
        with pytest.raises(pz.InputError, match="messages"):
            bm25.compress_messages(chat, budget=500, history=history)
