"""Cache-stable history: later turns send the prefix an earlier turn sent, byte for byte, and compress only what was
appended; edits invalidate, interleaved clients and replicas behave, and the proxy, ``wrap`` and the Runnable all
get it (real BM25 stacks, the real openai SDK against the real proxy, a recording fake upstream on 127.0.0.1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest
from proxy_helpers import settings

import promptzip as pz
from promptzip._cache import Cache, cache_from_url
from promptzip._messages import message_tokens
from promptzip.compressors.extractive import ExtractiveCompressor
from promptzip.integrations.proxy import create_app
from promptzip.integrations.proxy.testing import FakeUpstream, live_server
from promptzip.retrievers.sparse import BM25Scorer

SAMPLE = (Path(pz.__file__).parent / "_sample" / "sotu.txt").read_text()
PARAGRAPHS = [p for p in SAMPLE.split("\n\n") if len(p) > 200]


def zipper(cache: Cache | None = None) -> pz.Zipper:
    return pz.Zipper(ExtractiveCompressor(BM25Scorer(), min_relevance=None), target="gpt-4o", name="bm25", cache=cache)


def turn(t: int) -> dict[str, Any]:
    docs = "\n\n".join(PARAGRAPHS[t * 3 : t * 3 + 3])
    return {"role": "user", "content": f"Documents:\n{docs}\n\nQuestion: what does the speech say in part {t}?"}


def conversation(turns: int) -> list[dict[str, Any]]:
    msgs: list[dict[str, Any]] = [{"role": "system", "content": "Answer from the documents."}]
    for t in range(turns):
        msgs.append(turn(t))
        if t < turns - 1:
            msgs.append({"role": "assistant", "content": f"Part {t} is about the economy."})
    return msgs


def sent_prefix_is_kept(before: pz.Result, after: pz.Result) -> bool:
    assert before.messages is not None
    assert after.messages is not None
    return list(after.messages[: len(before.messages)]) == list(before.messages)


@pytest.mark.parametrize("budget", [pz.Budget(rate=0.3), pz.Budget(rate=0.5)])
def test_later_turns_send_the_earlier_prefix_byte_for_byte(budget: pz.Budget) -> None:
    z = zipper()
    previous = None
    count = z.tokenizer.count
    for t in range(1, 7):
        msgs = conversation(t)
        r = z.compress_messages(msgs, budget=budget)
        assert r.messages is not None
        assert r.tokens_in == message_tokens(msgs, count)  # accounted against the original request
        assert r.tokens_out == message_tokens(list(r.messages), count) <= r.budget
        assert r.messages[-1] == msgs[-1] or len(str(r.messages[-1]["content"])) < len(msgs[-1]["content"])
        if previous is not None:
            assert sent_prefix_is_kept(previous, r)
            assert r.reused_messages == len(previous.messages or ())
        previous = r


def test_reselect_is_stateless_and_stable_compresses_the_same_first_turn() -> None:
    msgs = conversation(3)
    stable = zipper().compress_messages(msgs, rate=0.3)
    reserve = min(64, stable.budget // 10)  # left free for the next turn's question
    reselect = zipper().compress_messages(msgs, budget=stable.budget - reserve, history="reselect")
    assert stable.messages == reselect.messages  # a request seen for the first time: one knapsack either way
    assert stable.budget == int(0.3 * stable.tokens_in)
    assert stable.reused_messages == reselect.reused_messages == 0
    z = zipper()
    first = z.compress_messages(conversation(2), rate=0.3, history="reselect")
    second = z.compress_messages(conversation(3), rate=0.3, history="reselect")
    assert second.reused_messages == 0
    assert first.messages is not None


def test_an_edited_turn_invalidates_what_came_after_it() -> None:
    z = zipper()
    z.compress_messages(conversation(2), rate=0.3)
    z.compress_messages(conversation(3), rate=0.3)
    edited = conversation(4)
    edited[3] = {"role": "user", "content": turn(1)["content"].replace("Question:", "Question (edited): why")}
    r = z.compress_messages(edited, rate=0.3)
    assert r.messages is not None
    assert r.reused_messages <= 3  # at most the turns before the edit
    assert "(edited)" in str(r.messages[3]["content"])  # the edit is sent, never the old turn's state
    assert r.tokens_out <= r.budget


def test_tight_token_budgets_compact_the_history_and_then_reuse_it() -> None:
    z = zipper()
    results = [z.compress_messages(conversation(t), budget=700) for t in range(1, 8)]
    assert all(r.tokens_out <= 700 for r in results)
    # once the conversation outgrows the budget, the history is compacted and later turns build on it
    assert any(r.reused_messages > 0 for r in results[2:])
    for r in results:
        assert r.messages is not None
        assert r.messages[-1]["content"].endswith("?")


def test_interleaved_conversations_and_conversation_ids_keep_their_own_state() -> None:
    z = zipper()
    a = conversation(2)
    b = [dict(m) for m in a]
    b[1] = turn(5)
    ra = z.compress_messages(a, rate=0.3)
    rb = z.compress_messages(b, rate=0.3)
    a2 = [*a, {"role": "assistant", "content": "ok"}, turn(6)]
    b2 = [*b, {"role": "assistant", "content": "ok"}, turn(7)]
    rb2 = z.compress_messages(b2, rate=0.3)  # B's next turn arrives first
    ra2 = z.compress_messages(a2, rate=0.3)
    assert sent_prefix_is_kept(ra, ra2)
    assert sent_prefix_is_kept(rb, rb2)
    # a named conversation shares nothing with another name or with the anonymous one
    named = z.compress_messages(a2, rate=0.3, conversation="chat-1")
    assert named.reused_messages == 0


def test_replicas_sharing_a_cache_continue_each_others_conversations(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    one, two = zipper(cache_from_url(url)), zipper(cache_from_url(url))
    first = one.compress_messages(conversation(2), rate=0.3)
    second = two.compress_messages(conversation(3), rate=0.3)
    assert second.reused_messages == 4
    assert sent_prefix_is_kept(first, second)


def test_a_prefix_without_a_cache_discount_is_recompressed() -> None:
    z = zipper()
    z.compress_messages(conversation(2), rate=0.3)
    # a provider that caches nothing shorter than a million tokens gives reuse no discount; one that caches from
    # the first token gives it every turn
    never = pz.CachePricing(input=2.0, cached=0.2, min_prefix=1_000_000)
    always = pz.CachePricing(input=2.0, cached=0.2, min_prefix=0)
    assert z.compress_messages(conversation(3), rate=0.3, pricing=always).reused_messages == 4
    assert z.compress_messages(conversation(3), rate=0.3, pricing=never).reused_messages in (0, 4)


def test_bad_options() -> None:
    z = zipper()
    with pytest.raises(pz.InputError, match="history"):
        z.compress_messages(conversation(1), rate=0.3, history="sometimes")
    with pytest.raises(pz.InputError, match="conversation"):
        z.compress_messages(conversation(1), rate=0.3, conversation=7)  # type: ignore[arg-type]
    with pytest.raises(pz.ConfigError):
        pz.CachePricing(input=-1, cached=0)
    with pytest.raises(pz.ConfigError):
        pz.CachePricing(input=1, cached=0, breakpoints="yes")  # type: ignore[arg-type]


def test_pricing_defaults() -> None:
    assert pz.pricing_for("gpt-4o").discount == pytest.approx(0.5)
    assert pz.pricing_for("claude-sonnet-4-5").discount == pytest.approx(0.9)
    assert pz.pricing_for("claude-3-5-haiku-latest").min_prefix == 2048
    assert pz.pricing_for("claude-sonnet-4-5").breakpoints
    assert not pz.pricing_for("gpt-4o").breakpoints
    assert pz.pricing_for("openai/gpt-4o-mini").input == 0.15
    p = pz.pricing_for("gpt-4o")
    assert p.cached_tokens(1023) == 0
    assert p.cached_tokens(1024) == 1024
    assert p.cached_tokens(1300) == 1280


# ------------------------------------------------------------------------------------------------ the doors
def shared_bm25(preset: str, target: str, cache: Cache) -> pz.Zipper:
    return pz.Zipper(ExtractiveCompressor(BM25Scorer(), min_relevance=None), target=target, name=preset, cache=cache)


def sent_messages(upstream: FakeUpstream) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = upstream.requests[-1].json()["messages"]
    return messages


def test_the_proxy_keeps_the_prefix_per_credential_and_across_replicas(tmp_path: Path, upstream: FakeUpstream) -> None:
    conf = settings(upstream.url, cache=f"sqlite:///{tmp_path / 'proxy.db'}", cache_key_secret="s" * 32)
    headers = {"x-promptzip-rate": "0.3"}
    with (
        live_server(create_app(conf, zipper_factory=shared_bm25)) as one,
        live_server(create_app(conf, zipper_factory=shared_bm25)) as two,
    ):
        alice = [openai.OpenAI(base_url=u + "/v1", api_key="sk-alice", max_retries=0) for u in (one, two)]
        bob = openai.OpenAI(base_url=two + "/v1", api_key="sk-bob", max_retries=0)
        alice[0].chat.completions.create(model="gpt-4o", messages=conversation(2), extra_headers=headers)  # type: ignore[arg-type]
        first = sent_messages(upstream)
        raw = alice[1].chat.completions.with_raw_response.create(
            model="gpt-4o",
            messages=conversation(3),  # type: ignore[arg-type]
            extra_headers=headers,
        )
        assert raw.headers["x-promptzip-history"] == "stable"
        assert raw.headers["x-promptzip-reused-messages"] == "4"  # the client can see the prefix was kept
        second = sent_messages(upstream)
        assert second[: len(first)] == first  # the other replica continued the conversation from the shared cache
        bob.chat.completions.create(model="gpt-4o", messages=conversation(3), extra_headers=headers)  # type: ignore[arg-type]
        fresh = zipper().compress_messages(conversation(3), rate=0.3)  # a Zipper that has seen nothing
        assert sent_messages(upstream) == list(fresh.messages or ())  # bob starts afresh: nothing of alice's state
        assert second != sent_messages(upstream)  # (so alice's prefix was kept by reuse, not by chance)
        with pytest.raises(openai.BadRequestError):
            alice[0].chat.completions.create(
                model="gpt-4o",
                messages=conversation(1),  # type: ignore[arg-type]
                extra_headers={**headers, "x-promptzip-history": "never"},
            )
        with pytest.raises(openai.BadRequestError):
            alice[0].chat.completions.create(
                model="gpt-4o",
                messages=conversation(1),  # type: ignore[arg-type]
                extra_headers={**headers, "x-promptzip-conversation": "x" * 201},
            )


def test_wrap_and_the_runnable_keep_the_prefix(upstream: FakeUpstream) -> None:
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
    from langchain_core.prompt_values import ChatPromptValue

    from promptzip.integrations.langchain import PromptZipRunnable

    z = zipper()
    client = pz.wrap(openai.OpenAI(base_url=upstream.url, api_key="sk-test", max_retries=0), zipper=z, rate=0.3)
    client.chat.completions.create(model="gpt-4o", messages=conversation(2))
    first = sent_messages(upstream)
    client.chat.completions.create(model="gpt-4o", messages=conversation(3))
    assert sent_messages(upstream)[: len(first)] == first

    def lc(msgs: list[dict[str, Any]]) -> ChatPromptValue:
        kinds = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}
        return ChatPromptValue(messages=[kinds[m["role"]](content=m["content"]) for m in msgs])

    runnable = PromptZipRunnable(zipper=zipper(), budget=pz.Budget(rate=0.3))
    out1 = runnable.invoke(lc(conversation(2))).to_messages()
    out2 = runnable.invoke(lc(conversation(3))).to_messages()
    assert [m.content for m in out2[: len(out1)]] == [m.content for m in out1]


def test_wrap_prices_each_call_by_its_model(upstream: FakeUpstream) -> None:
    """A wrapped client weighs a conversation with the prices of the model each call names (a Claude model behind
    an OpenAI-compatible endpoint: read at breakpoints, writes at a premium), as the proxy does, not with its
    target's (gpt-4o)."""
    claude, gpt = pz.pricing_for("claude-sonnet-4-5"), pz.pricing_for("gpt-4o")
    client = pz.wrap(
        openai.OpenAI(base_url=upstream.url, api_key="sk-test", max_retries=0), zipper=zipper(), budget=4000
    )
    as_claude, as_gpt = zipper(), zipper()
    differ = 0
    for t in range(1, 12):
        msgs = conversation(t)
        client.chat.completions.create(model="claude-sonnet-4-5", messages=msgs)
        want = as_claude.compress_messages(msgs, budget=4000, pricing=claude).messages
        assert want is not None
        assert sent_messages(upstream) == [dict(m) for m in want]
        differ += want != as_gpt.compress_messages(msgs, budget=4000, pricing=gpt).messages
    assert differ  # the model's prices changed what went out


def test_wrap_covers_beta_and_compact_and_reads_prompt_cache_key(upstream: FakeUpstream) -> None:
    client = pz.wrap(openai.OpenAI(base_url=upstream.url, api_key="sk-test", max_retries=0), zipper=zipper(), rate=0.3)
    long = conversation(3)
    count = pz.get_tokenizer("gpt-4o").count
    client.beta.chat.completions.create(model="gpt-4o", messages=long)  # type: ignore[arg-type]
    assert message_tokens(sent_messages(upstream), count) <= 0.3 * message_tokens(long, count)
    client.responses.compact(model="gpt-4o", input=long)  # type: ignore[arg-type]
    assert upstream.requests[-1].target == "/v1/responses/compact"
    compacted = upstream.requests[-1].json()["input"]
    assert message_tokens(compacted, count) <= 0.3 * message_tokens(long, count)

    # prompt_cache_key names the conversation: the same turns under another key start afresh
    keyed = pz.wrap(openai.OpenAI(base_url=upstream.url, api_key="sk-test", max_retries=0), zipper=zipper(), rate=0.3)
    keyed.chat.completions.create(model="gpt-4o", messages=conversation(2), prompt_cache_key="user-1")
    first = sent_messages(upstream)
    keyed.chat.completions.create(model="gpt-4o", messages=conversation(3), prompt_cache_key="user-1")
    assert sent_messages(upstream)[: len(first)] == first
    keyed.chat.completions.create(model="gpt-4o", messages=conversation(3), prompt_cache_key="user-2")
    fresh = zipper().compress_messages(conversation(3), rate=0.3)
    assert sent_messages(upstream) == list(fresh.messages or ())


def test_the_proxy_takes_cache_prices_per_route(tmp_path: Path) -> None:
    from promptzip.integrations.proxy import load_settings
    from promptzip.integrations.proxy._options import parse_options

    conf = tmp_path / "proxy.toml"
    conf.write_text(
        'upstream = "http://127.0.0.1:9/v1"\n'
        '[routes."/v1/messages".pricing]\ninput = 3.0\ncached = 0.3\nwrite = 3.75\nmin_prefix = 2048\n'
        "breakpoints = true\n"
    )
    s = load_settings(conf)
    route = s.routes["/v1/messages"]
    options = parse_options({}, route, s, b"k" * 32)
    assert options.pricing == pz.CachePricing(input=3.0, cached=0.3, write=3.75, min_prefix=2048, breakpoints=True)
    assert parse_options({}, s.routes["/v1/chat/completions"], s, b"k" * 32).pricing is None  # the target's
    bad = tmp_path / "bad.toml"
    bad.write_text('upstream = "http://127.0.0.1:9/v1"\npricing = {input = -1, cached = 0}\n')
    with pytest.raises(pz.ConfigError):
        load_settings(bad)


def test_the_proxy_reads_prompt_cache_key_from_the_body(tmp_path: Path, upstream: FakeUpstream) -> None:
    conf = settings(upstream.url, cache=f"sqlite:///{tmp_path / 'keyed.db'}", cache_key_secret="s" * 32)
    headers = {"x-promptzip-rate": "0.3"}
    with live_server(create_app(conf, zipper_factory=shared_bm25)) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="sk-alice", max_retries=0)

        def ask(turns: int, key: str) -> list[dict[str, Any]]:
            client.chat.completions.create(
                model="gpt-4o",
                messages=conversation(turns),  # type: ignore[arg-type]
                prompt_cache_key=key,
                extra_headers=headers,
            )
            return sent_messages(upstream)

        first = ask(2, "user-1")
        assert ask(3, "user-1")[: len(first)] == first  # the same key continues the conversation
        fresh = zipper().compress_messages(conversation(3), rate=0.3)
        assert ask(3, "user-2") == list(fresh.messages or ())  # another key starts afresh
        assert upstream.requests[-1].json()["prompt_cache_key"] == "user-2"  # and reaches the upstream


def test_a_zipper_without_a_cache_still_remembers_its_conversations() -> None:
    from promptzip._cache import NullCache

    z = zipper(NullCache())  # cache="none": no cached results, but a conversation is still recognised
    first = z.compress_messages(conversation(2), rate=0.3)
    second = z.compress_messages(conversation(3), rate=0.3)
    assert second.reused_messages == 4
    assert sent_prefix_is_kept(first, second)
    other = zipper(NullCache())  # and each Zipper has its own
    assert other.compress_messages(conversation(3), rate=0.3).reused_messages == 0


def test_compaction_keeps_the_cached_head_it_can() -> None:
    """A compacting request keeps the leading messages the provider caches (from its minimum cacheable prefix up to
    a share of the compacted history) as they were sent; with a minimum no head reaches, they are rewritten."""

    def compaction_heads(min_prefix: int) -> list[int]:
        z = zipper()
        price = pz.CachePricing(input=1.0, cached=0.5, min_prefix=min_prefix)
        heads, previous = [], None
        for t in range(1, 12):
            r = z.compress_messages(conversation(t), budget=900, pricing=price)
            assert r.messages is not None
            assert r.tokens_out <= 900
            if previous is not None and r.reused_messages == 0:  # a compaction
                same = 0
                while same < min(len(previous), len(r.messages)) and previous[same] == r.messages[same]:
                    same += 1
                heads.append(message_tokens(list(r.messages[:same]), z.tokenizer.count) if same else 0)
            previous = list(r.messages)
        return heads

    cached, uncached = compaction_heads(150), compaction_heads(100_000)
    assert len(cached) == len(uncached) >= 2
    assert any(c >= 150 for c in cached)  # a compaction was served a cacheable head
    assert sum(cached) > sum(uncached)


def whole_heads(price: pz.CachePricing, budget: int, turns: int = 11) -> list[int]:
    """Over a conversation of ``turns`` turns under ``budget``: for each compaction, the tokens of the longest whole
    earlier request it starts with (0: none), the prefix a breakpoint cache would read."""
    z = zipper()
    sent: list[list[dict[str, Any]]] = []
    heads = []
    for t in range(1, turns + 1):
        r = z.compress_messages(conversation(t), budget=budget, pricing=price)
        assert r.messages is not None
        assert r.tokens_out <= budget
        now = list(r.messages)
        if sent and r.reused_messages == 0 and r.decision == "compressed":  # a compaction
            whole = max((len(s) for s in sent if now[: len(s)] == s), default=0)
            heads.append(message_tokens(now[:whole], z.tokenizer.count) if whole else 0)
        sent.append(now)
    return heads


def test_a_breakpoint_cache_gets_a_whole_earlier_request_as_the_compacted_head() -> None:
    """Where the provider reads its cache only at breakpoints (Anthropic), a compaction keeps as its head a whole
    request sent before (the only prefixes such a cache holds), so the compacting request is still partly read from
    the cache."""
    price = pz.CachePricing(input=3.0, cached=0.3, write=3.75, min_prefix=150, breakpoints=True)
    heads = whole_heads(price, 1500)
    assert len(heads) >= 2
    assert all(h >= 150 for h in heads)  # every compaction was read a whole earlier request from the cache


def test_a_chat_that_goes_on_is_lifted_over_the_minimum_cacheable_prefix() -> None:
    """A request below the provider's minimum cacheable prefix is never cached, so later turns would resend its
    prefix at full price: where the budget has room, a chat that goes on sends at least that minimum."""

    def sizes(min_prefix: int) -> list[int]:
        z = zipper()
        price = pz.CachePricing(input=1.0, cached=0.5, min_prefix=min_prefix)
        out = []
        for t in range(1, 12):
            r = z.compress_messages(conversation(t), budget=900, pricing=price)
            assert r.tokens_out <= 900
            if t > 2:  # a chat with history: the first request of it goes out alone
                out.append(r.tokens_out)
        return out

    assert min(sizes(0)) < 700  # nothing to reach: some requests go out smaller
    assert min(sizes(700)) >= 700
    # A minimum the budget cannot reach lifts nothing: each turn keeps to its fair share, not to all the room left.
    assert sum(sizes(100_000)) <= sum(sizes(0))


def test_a_cache_write_premium_lets_the_cached_head_take_more_of_a_compaction() -> None:
    """Where a cache write costs more than input (Anthropic), a rewritten token costs more than sending it
    uncompressed, so a compaction keeps a cached head that takes more of the compacted history than it may where
    writes cost nothing extra (which leaves the later history more room)."""
    plain = whole_heads(pz.CachePricing(input=3.0, cached=0.3, min_prefix=150), 2500)
    premium = whole_heads(pz.CachePricing(input=3.0, cached=0.3, write=3.75, min_prefix=150), 2500)
    assert len(plain) == len(premium) >= 1
    assert 0 < max(plain) <= 0.75 * 0.5 * 2500  # a head within the share is there: the later history keeps its room
    assert max(premium) > 0.75 * 0.5 * 2500  # with a write premium the longer one is kept, and read from the cache


def test_a_compaction_keeps_a_cached_head_over_its_share_rather_than_none() -> None:
    """Where every cached run of messages is larger than the head's share of the compacted history (large turns, as
    tool outputs are), the shortest that fits the compacted budget is kept: rewriting it would send the whole
    compacting request at full price."""
    heads = whole_heads(pz.CachePricing(input=3.0, cached=0.3, min_prefix=150), 1300)
    assert heads
    assert 0.75 * 0.5 * 1300 < heads[0] <= 0.5 * 1300  # over the share, within the compacted budget
    # a budget whose compacted history no cached run fits is compressed from its start, as before
    assert max(whole_heads(pz.CachePricing(input=3.0, cached=0.3, min_prefix=150), 1000)) == 0


def test_the_proxy_prices_a_request_by_its_model_unless_the_route_is_priced(tmp_path: Path) -> None:
    """With no pricing configured, a request for a model with published prices is weighed with them (a Claude model:
    Anthropic's cache, read at breakpoints); an unknown model keeps the target's; a configured route wins."""
    from promptzip.integrations.proxy import load_settings
    from promptzip.integrations.proxy._options import parse_options, with_model_pricing

    conf = tmp_path / "proxy.toml"
    conf.write_text(
        'upstream = "http://127.0.0.1:9/v1"\n[routes."/v1/chat/completions".pricing]\ninput = 1.0\ncached = 0.1\n'
    )
    s = load_settings(conf)
    plain = parse_options({}, s.routes["/v1/messages"], s, b"k" * 32)
    claude = with_model_pricing(plain, {"model": "claude-sonnet-4-5-20250929"}).pricing
    assert claude == pz.pricing_for("claude-sonnet-4")
    assert claude is not None
    assert claude.breakpoints
    assert with_model_pricing(plain, {"model": "my-local-llm"}).pricing is None  # the target's
    assert with_model_pricing(plain, {"model": 7}).pricing is None
    priced = parse_options({}, s.routes["/v1/chat/completions"], s, b"k" * 32)
    assert with_model_pricing(priced, {"model": "claude-sonnet-4-5"}).pricing == pz.CachePricing(input=1.0, cached=0.1)


def test_the_readme_lists_the_default_prices_as_the_code_has_them() -> None:
    """The README's table of default cache prices is promptzip's price list, row for row."""
    from promptzip._pricing import PRICING

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    rows = [line for line in readme.splitlines() if line.startswith("| `") and line.count("|") == 8]
    listed = {}
    for row in rows:
        name, *cells = (c.strip() for c in row.strip("|").split("|"))
        listed[name.strip("`")] = cells
    assert list(listed) == list(PRICING)
    for name, p in PRICING.items():
        write = "input" if p.write is None else str(p.write)
        read = "at breakpoints" if p.breakpoints else "any prefix"
        assert listed[name] == [str(p.input), str(p.cached), write, str(p.min_prefix), str(p.step), read], name


def test_a_zipper_prices_its_conversations_by_the_model_it_names() -> None:
    """gpt-5 and gpt-4o share a tokenizer, not their cache prices: a Zipper remembers the model it was built for,
    and its conversations are weighed with that model's prices unless ``pricing=`` says otherwise."""
    z = pz.Zipper(ExtractiveCompressor(BM25Scorer(), min_relevance=None), target="gpt-5")
    assert z.target == "gpt-5"
    assert z.tokenizer.name == zipper().tokenizer.name  # the same tokenizer as gpt-4o's
    assert pz.pricing_for(z.target).discount == pytest.approx(0.9)  # where gpt-4o's is 0.5
    same = pz.Zipper(ExtractiveCompressor(BM25Scorer(), min_relevance=None), target=z.tokenizer)
    assert same.target == z.tokenizer.name  # a Tokenizer object: its name
    msgs = conversation(3)
    implicit = z.compress_messages(msgs, rate=0.3)
    explicit = pz.Zipper(ExtractiveCompressor(BM25Scorer(), min_relevance=None), target="gpt-5").compress_messages(
        msgs, rate=0.3, pricing=pz.pricing_for("gpt-5")
    )
    assert implicit.messages == explicit.messages


def test_the_runnable_weighs_a_conversation_with_the_prices_it_is_given() -> None:
    """``PromptZipRunnable(pricing=...)`` (a chain that ends in a Claude model) sends what ``compress_messages``
    sends with those prices; a wrong kind of pricing is a ConfigError."""
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
    from langchain_core.prompt_values import ChatPromptValue

    from promptzip.integrations.langchain import PromptZipRunnable

    def lc(msgs: list[dict[str, Any]]) -> ChatPromptValue:
        kinds = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}
        return ChatPromptValue(messages=[kinds[m["role"]](content=m["content"]) for m in msgs])

    claude = pz.CachePricing(input=3.0, cached=0.3, write=3.75, min_prefix=150, breakpoints=True)
    priced = PromptZipRunnable(zipper=zipper(), budget=1300, pricing=claude)
    plain = PromptZipRunnable(zipper=zipper(), budget=1300)
    direct = zipper()
    differ = 0
    for t in range(1, 12):
        msgs = conversation(t)
        got = [m.content for m in priced.invoke(lc(msgs)).to_messages()]
        want = direct.compress_messages(msgs, budget=1300, pricing=claude).messages
        assert want is not None
        assert got == [m["content"] for m in want]
        differ += got != [m.content for m in plain.invoke(lc(msgs)).to_messages()]
    assert differ  # the prices changed what went out (a compaction kept its cached head)
    with pytest.raises(pz.ConfigError):
        PromptZipRunnable(zipper=zipper(), budget=1300, pricing={"input": 3.0})
    # a model name is read by pricing_for, as the other chat doors read it
    named = PromptZipRunnable(zipper=zipper(), budget=4000, pricing="claude-sonnet-4-5")
    as_claude, as_gpt = zipper(), zipper()
    differ = 0
    for t in range(1, 12):
        msgs = conversation(t)
        got = [m.content for m in named.invoke(lc(msgs)).to_messages()]
        want = as_claude.compress_messages(msgs, budget=4000, pricing=pz.pricing_for("claude-sonnet-4-5")).messages
        assert got == [m["content"] for m in want or ()]
        gpt = as_gpt.compress_messages(msgs, budget=4000, pricing=pz.pricing_for("gpt-4o")).messages
        differ += got != [m["content"] for m in gpt or ()]
    assert differ  # the name's prices, not the target's


FACTS = [  # (a sentence of a turn's documents, that turn's question, its answer)
    ("The lighthouse keeper's dog is named Biscuit", "What is the lighthouse keeper's dog named?", "Biscuit"),
    ("The orchard grows eleven varieties of quince", "How many varieties of quince does the orchard grow?", "eleven"),
    ("The glacier museum opened in the spring of 1987", "When did the glacier museum open?", "1987"),
    (
        "Captain Ortega painted the ferry bright turquoise",
        "What colour did Captain Ortega paint the ferry?",
        "turquoise",
    ),
    ("The violin workshop uses maple from Bosnia", "Where does the violin workshop get its maple?", "Bosnia"),
    ("The marathon route crosses the Vltava bridge twice", "Which bridge does the marathon route cross?", "Vltava"),
    ("The bakery's sourdough starter is called Gerald", "What is the bakery's sourdough starter called?", "Gerald"),
]
RECORDS = ", as the village's historical society, its parish newsletter and several long-time residents confirm."


def fact_chat(turns: int) -> list[dict[str, Any]]:
    """A chat whose turn t asks about a fact in its own documents, among paragraphs of a speech."""
    msgs: list[dict[str, Any]] = [{"role": "system", "content": "Answer from the documents."}]
    for t in range(turns):
        fact, question, answer = FACTS[t]
        docs = [*PARAGRAPHS[t * 3 : t * 3 + 1], fact + RECORDS, *PARAGRAPHS[t * 3 + 1 : t * 3 + 3]]
        msgs.append({"role": "user", "content": "Documents:\n" + "\n\n".join(docs) + f"\n\nQuestion: {question}"})
        if t < turns - 1:
            msgs.append({"role": "assistant", "content": f"{answer}."})
    return msgs


def test_a_compacted_history_keeps_what_answered_each_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compaction scores each earlier turn's documents against that turn's own question, so a follow-up about an
    earlier turn finds its evidence; against the newest question alone (which its own documents answer), most of it
    would be dropped."""

    def facts_kept() -> int:
        z = zipper()
        for t in range(1, len(FACTS) + 1):
            r = z.compress_messages(fact_chat(t), budget=900)
            assert r.messages is not None
            assert r.tokens_out <= 900
        history = " ".join(str(m["content"]) for m in r.messages[:-1] if m["role"] != "assistant")
        return sum(answer in history for _, _, answer in FACTS[:-1])

    assert facts_kept() == len(FACTS) - 1
    monkeypatch.setattr("promptzip._conversation._Request._turn_questions", lambda self, last_user: {})
    assert facts_kept() < len(FACTS) - 2


def test_a_corrupted_conversation_entry_is_a_miss_not_an_error_about_the_chat() -> None:
    # An entry that parses but is no chat (a foreign writer, a corrupted cache) raised an InputError blaming the
    # caller's messages[0]; it is ignored, as the caches' other bad entries are.
    import json

    from promptzip._cache import MemoryCache, make_key
    from promptzip._conversation import _NAMESPACE, _chain

    for bad in ([{}, {}], [{"role": "bogus", "content": "x"}] * 2, {"prefix": [{"role": "user", "content": 5}] * 2}):
        cache = MemoryCache()
        z = zipper(cache)
        msgs = conversation(2)
        hashes = _chain(msgs, "|".join((z.fingerprint, "all", "", "")))
        cache.put(make_key(_NAMESPACE, hashes[1]), json.dumps(bad).encode())
        r = z.compress_messages(msgs, budget=pz.Budget(rate=0.5))
        assert r.messages is not None
        assert r.reused_messages == 0
        assert [m["role"] for m in r.messages] == [m["role"] for m in msgs]
