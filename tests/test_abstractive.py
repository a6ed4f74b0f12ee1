"""The abstractive compressor: summaries as variants under a fidelity check, the summarizer backends (a local
causal LM, an OpenAI-compatible endpoint over real loopback HTTP), their caching, fallback and timing."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_openai import FakeOpenAI, Reply

import promptzip as pz
from promptzip._cache import MemoryCache
from promptzip._errors import ConfigError, InputError, UpstreamError
from promptzip._registry import registries
from promptzip._roles import Compressor
from promptzip._split import chunk_source
from promptzip.compressors.abstractive import AbstractiveCompressor, check_summary, extract_facts, required_facts
from promptzip.compressors.extractive import ExtractiveCompressor
from promptzip.compressors.summarizers import LocalSummarizer, OpenAISummarizer, Summarizer
from promptzip.testing import CompressorContract, KeywordScorer

INVOICE = (
    "Invoice INV-2024-0042 was issued by Northwind Traders on 14 March 2024 for a total of $12,480.50. "
    "The invoice covers 320 units of the Model X7 router. Payment is due within 30 days, and a late fee of 1.5% "
    "applies per month. The account manager, Maria Lopez, approved the order after a review of the customer's "
    "credit history and of the previous orders. Delivery was scheduled for the warehouse in Rotterdam."
)
PICNIC = (
    "The staff picnic took place in the park behind the office. Several teams brought food, and there were games "
    "for the children in the afternoon. Most people agreed that the weather was pleasant and that the music was "
    "good, although the sandwiches ran out early. Next year the organisers would like a larger tent."
)
GARDEN = (
    "The garden behind the library has a pond, a few old apple trees and a bench that faces the river. Volunteers "
    "water the flower beds during the summer, and in the autumn they collect the fallen leaves for compost. The "
    "gate is locked at sunset, but the path along the river stays open for walkers and cyclists."
)
DOC = f"{INVOICE}\n\n{PICNIC}\n\n{GARDEN}"
QUESTION = "What was the total of invoice INV-2024-0042?"
GOOD = "Northwind Traders invoice INV-2024-0042 of 14 March 2024 totals $12,480.50."
KEY = "sk-test-secret-0123456789"


class Scripted(Summarizer):
    """A summarizer that answers from a script (the invoice) and the first words of anything else."""

    name = "scripted"

    def __init__(self, invoice: str = GOOD) -> None:
        self.invoice = invoice
        self.calls: list[tuple[str, str | None, int]] = []

    def _summarize(self, text: str, query: str | None, max_tokens: int) -> str:
        self.calls.append((text, query, max_tokens))
        if text.startswith("Invoice"):
            return self.invoice
        return " ".join(text.split()[: max(1, max_tokens // 3)])


def _zipper(summarizer: Summarizer, **options: object) -> pz.Zipper:
    settings: dict[str, object] = {"targets": (0.3,), "cache": MemoryCache(), **options}
    return pz.Zipper(AbstractiveCompressor(ExtractiveCompressor(KeywordScorer()), summarizer, **settings))  # type: ignore[arg-type]


def _kinds(r: pz.Result) -> list[str]:
    return [c.kind for c in r.chunks]


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(reply=GOOD) as server:
        yield server


def _endpoint(fake: FakeOpenAI, **options: object) -> OpenAISummarizer:
    settings: dict[str, object] = {"model": "mini", "api_key": KEY, "timeout": 5.0, **options}
    return OpenAISummarizer(fake.url + "/v1", **settings)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ fidelity


def test_facts_are_numbers_ids_and_names() -> None:
    facts = extract_facts(
        "Ada Lovelace paid $1,083.50 (12.5%) on 2024-07-26 for INV-2024-0042 and 0xFF12; the 81-storey tower. "
        "Write to ops@example.com or see https://example.com/a?b=1. However, it was late."
    )
    assert facts.numbers == {"1083.5", "12.5", "2024", "7", "26", "81"}
    assert facts.ids == {"inv-2024-0042", "0xff12", "ops@example.com", "https://example.com/a?b=1"}
    assert facts.names == {"ada lovelace"}  # "However" starts a sentence and is not a name
    assert extract_facts("It cost 1,000 then 1000.00").numbers == {"1000"}


def test_the_check_rejects_missing_facts_and_inventions_and_accepts_a_faithful_summary() -> None:
    required = required_facts(INVOICE, QUESTION)
    assert {"12480.5", "14", "2024"} <= required.numbers
    assert "inv-2024-0042" in required.ids
    assert "320" not in required.numbers  # a sentence the question does not ask about
    ok = check_summary(GOOD, INVOICE, required)
    assert ok.accepted
    assert 0.0 < ok.share < 1.0
    missing = check_summary("Northwind Traders issued invoice INV-2024-0042 on 14 March 2024.", INVOICE, required)
    assert (missing.reason, missing.detail) == ("missing fact", "12480.5")
    invented = check_summary(GOOD + " It was paid on 2 April.", INVOICE, required)
    assert (invented.reason, invented.detail) == ("hallucinated number", "2")
    assert check_summary(GOOD.replace("0042", "0043"), INVOICE, required).reason == "hallucinated number"
    # Without a question every number and ID of the source matters.
    assert check_summary(GOOD, INVOICE, required_facts(INVOICE, None)).reason == "missing fact"


# ------------------------------------------------------------------------------------------------ the policy


def test_a_summary_wins_where_it_is_the_best_value_and_budgets_hold() -> None:
    summarizer = Scripted()
    zipper = _zipper(summarizer)
    tok = zipper.tokenizer
    fixed = tok.count(QUESTION) + tok.count(zipper.separator)
    first_sentence = INVOICE.split(". ")[0] + "."
    budget = fixed + tok.count(GOOD) + 2
    assert tok.count(first_sentence) > budget - fixed  # the best extract does not fit; the summary does
    r = zipper.compress(DOC, question=QUESTION, budget=budget)
    assert r.tokens_out <= budget
    assert _kinds(r)[0] == "summary@0.3"
    assert r.chunks[0].text == GOOD
    assert r.chunks[0].kept == ()
    assert "$12,480.50" in r.context
    assert r.timings["summarize"] > 0
    # With room for the whole invoice, its own sentences beat its summary.
    roomy = zipper.compress(DOC, question=QUESTION, budget=fixed + tok.count(INVOICE) + 4)
    assert _kinds(roomy)[0] in ("keep", "extract")
    for b in range(fixed + 1, tok.count(DOC) + fixed + 10, 7):
        assert tok.count(zipper.compress(DOC, question=QUESTION, budget=b).text) <= b


@pytest.mark.parametrize(
    ("summary", "reason"),
    [
        ("Northwind Traders issued invoice INV-2024-0042 on 14 March 2024.", "missing fact"),
        ("Invoice INV-2024-0042 of 14 March 2024 from Northwind Traders: $13,000.", "hallucinated number"),
        (" ".join([GOOD] * 3), "too long"),
    ],
)
def test_a_rejected_summary_falls_back_with_one_warning(
    summary: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    zipper = _zipper(Scripted(summary))
    chunks = chunk_source(DOC, "doc")
    with caplog.at_level(logging.WARNING, logger="promptzip"):
        groups = zipper.compressor.propose(chunks, QUESTION, zipper.tokenizer)
        zipper.compressor.propose(chunks, QUESTION, zipper.tokenizer)
        r = zipper.compress(DOC, question=QUESTION, budget=60)
    assert not [v for v in groups[0] if v.kind.startswith("summary")]
    assert r.tokens_out <= 60
    assert not _kinds(r)[0].startswith("summary")
    warned = [rec.getMessage() for rec in caplog.records if reason in rec.getMessage()]
    assert len(warned) == 1, caplog.text  # once per reason
    verdicts = zipper.compressor.verdicts  # type: ignore[attr-defined]
    rejected = sum(n for k, n in verdicts.items() if k.startswith("rejected:"))
    assert verdicts["accepted"] + rejected == verdicts["generated"] > 0  # every summary offered got one verdict
    assert verdicts[f"rejected:{reason}"] >= 3  # this reason in each of the three calls


def test_protected_chunks_are_never_summarized() -> None:
    code = "```python\n" + "\n".join(f"total_{i} = compute_total({i}, 'INV-2024-0042')" for i in range(12)) + "\n```"
    keep = "<pz keep>" + INVOICE.replace("Invoice", "Receipt") + "</pz>"
    summarizer = Scripted()
    zipper = _zipper(summarizer, min_chunk_tokens=8)
    r = zipper.compress(
        f"{DOC}\n\n{code}\n\n{keep}", question=QUESTION, budget=450
    )  # under the 550 tokens of the input: something must be cut
    assert summarizer.calls
    assert all(not text.startswith(("```", "Receipt")) for text, _, _ in summarizer.calls)
    assert code in r.text
    assert INVOICE.replace("Invoice", "Receipt") in r.text
    assert all(c.kind == "keep" for c in r.chunks if c.protected)


def test_small_chunks_and_irrelevant_requests_are_not_summarized() -> None:
    summarizer = Scripted()
    zipper = _zipper(summarizer, max_chunks=1)
    zipper.compress(DOC, question=QUESTION, budget=80)
    assert [text for text, _, _ in summarizer.calls] == [INVOICE]  # the most relevant chunk only
    assert summarizer.calls[0][1] == QUESTION
    assert summarizer.calls[0][2] == 30
    short = _zipper(summarizer)
    summarizer.calls.clear()
    short.compress("A short note. It has 2 sentences.", question="What note?", budget=10)
    assert summarizer.calls == []


def test_bad_input_and_settings() -> None:
    s = Scripted()
    for text in ("", "   "):
        with pytest.raises(InputError):
            s.summarize(text, max_tokens=10)
    with pytest.raises(InputError):
        s.summarize(b"bytes", max_tokens=10)  # type: ignore[arg-type]
    for bad in (0, -3, True, 2.5):
        with pytest.raises(InputError):
            s.summarize("Some text.", max_tokens=bad)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="empty"):
        _zipper(s).compress("", question=QUESTION, budget=50)
    inner = ExtractiveCompressor(KeywordScorer())
    for options in ({"targets": (1.5,)}, {"targets": ()}, {"discount": 0.0}, {"max_chunks": -1}):
        with pytest.raises(ConfigError):
            AbstractiveCompressor(inner, s, **options)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        OpenAISummarizer("ftp://example.com", model="m")


class TestAbstractiveContract(CompressorContract):
    def make_compressor(self) -> Compressor:
        return AbstractiveCompressor(ExtractiveCompressor(KeywordScorer()), Scripted(), min_chunk_tokens=8)


# ------------------------------------------------------------------------------------------------ the endpoint


def test_endpoint_summaries_become_variants(fake: FakeOpenAI) -> None:
    zipper = _zipper(_endpoint(fake))
    tok = zipper.tokenizer
    budget = tok.count(QUESTION) + tok.count(zipper.separator) + tok.count(GOOD) + 2
    r = zipper.compress(DOC, question=QUESTION, budget=budget)
    assert _kinds(r)[0] == "summary@0.3"
    assert r.tokens_out <= budget
    (sent,) = [q for q in fake.requests if INVOICE in q.json()["messages"][-1]["content"]]
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    body = sent.json()
    assert body["model"] == "mini"
    assert body["temperature"] == 0
    assert body["max_tokens"] >= 30
    assert INVOICE in body["messages"][-1]["content"]
    assert QUESTION in body["messages"][-1]["content"]


def test_a_slow_endpoint_times_out_into_a_fallback(fake: FakeOpenAI, caplog: pytest.LogCaptureFixture) -> None:
    fake.push(Reply(delay_s=1.5))
    zipper = _zipper(_endpoint(fake, timeout=0.3))
    with caplog.at_level(logging.WARNING, logger="promptzip"):
        r = zipper.compress(DOC, question=QUESTION, budget=60)
    assert r.tokens_out <= 60
    assert not any(k.startswith("summary") for k in _kinds(r))
    assert "timed out after 0.3s" in caplog.text
    assert "extractive variants only" in caplog.text
    assert len(fake.requests) == 1  # after the first failure the request stops asking


@pytest.mark.parametrize(
    "reply",
    [
        Reply(status=200, body=b"<html>not json</html>"),
        Reply(status=200, body=json.dumps({"choices": []}).encode()),
        Reply(status=200, body=json.dumps({"choices": [{"message": {"content": ""}}]}).encode()),
    ],
)
def test_a_garbage_answer_falls_back(fake: FakeOpenAI, reply: Reply, caplog: pytest.LogCaptureFixture) -> None:
    fake.push(reply)
    zipper = _zipper(_endpoint(fake))
    with caplog.at_level(logging.WARNING, logger="promptzip"):
        r = zipper.compress(DOC, question=QUESTION, budget=60)
    assert r.tokens_out <= 60
    assert not any(k.startswith("summary") for k in _kinds(r))
    assert "UpstreamError" in caplog.text
    assert KEY not in caplog.text


@pytest.mark.parametrize("status", [401, 500])
def test_errors_are_upstream_errors_without_the_key(fake: FakeOpenAI, status: int) -> None:
    echo = json.dumps({"error": {"message": f"Incorrect API key provided: {KEY}"}}).encode()
    fake.push(Reply(status=status, body=echo))
    with pytest.raises(UpstreamError) as info:
        _endpoint(fake).summarize(INVOICE, max_tokens=30)
    assert info.value.status_code == status
    assert str(status) in str(info.value)
    assert KEY not in str(info.value)
    assert "***" in str(info.value)
    dead = OpenAISummarizer("http://127.0.0.1:9/v1", model="m", api_key=KEY, timeout=2.0)
    with pytest.raises(UpstreamError, match="could not reach") as info:
        dead.summarize(INVOICE, max_tokens=30)
    assert KEY not in str(info.value)
    assert KEY not in dead.fingerprint
    assert KEY not in repr(dead)


def test_the_key_can_come_from_an_environment_variable(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PZ_TEST_SUMMARY_KEY", KEY)
    s = _endpoint(fake, api_key=None, api_key_env="PZ_TEST_SUMMARY_KEY")
    assert s.summarize(INVOICE, max_tokens=30) == GOOD
    assert fake.last().headers["authorization"] == f"Bearer {KEY}"
    assert KEY not in s.fingerprint
    monkeypatch.delenv("PZ_TEST_SUMMARY_KEY")
    s.summarize(INVOICE, max_tokens=30)
    assert "authorization" not in fake.last().headers


def test_summaries_are_cached_and_query_agnostic_ones_shared(fake: FakeOpenAI) -> None:
    cache = MemoryCache()
    agnostic = _zipper(_endpoint(fake), cache=cache, query_focused=False)
    agnostic.compress(DOC, question=QUESTION, budget=60)
    asked = len(fake.requests)
    assert asked == 3  # one per chunk of enough size
    assert all("Keep the facts" not in r.json()["messages"][-1]["content"] for r in fake.requests)
    again = agnostic.compress(DOC, question="Who approved the order for Northwind Traders?", budget=60)
    assert len(fake.requests) == asked  # another question, the same summaries: no new request
    assert "summarize" in again.timings
    # Another compressor with the same cache and settings reuses them too; a query-focused one asks again.
    _zipper(_endpoint(fake), cache=cache, query_focused=False).compress(DOC, question="When?", budget=60)
    assert len(fake.requests) == asked
    focused = _zipper(_endpoint(fake), cache=cache)
    focused.compress(DOC, question=QUESTION, budget=60)
    assert len(fake.requests) == 2 * asked
    focused.compress(DOC, question=QUESTION, budget=90)
    assert len(fake.requests) == 2 * asked


# ------------------------------------------------------------------------------------------------ registration


def test_registered_summarizers_compressor_and_max_preset(fake: FakeOpenAI) -> None:
    from promptzip.compressors.token_prune import PrunedExtractiveCompressor
    from promptzip.compressors.token_scores import WordLengthScorer

    assert {"local", "openai"} <= set(registries.summarizers.names())
    assert isinstance(registries.summarizers.create("local"), LocalSummarizer)
    endpoint = registries.summarizers.create("openai", base_url=fake.url + "/v1", model="mini", api_key=KEY)
    compressor = registries.compressors.create(
        "summarize", inner=ExtractiveCompressor(KeywordScorer()), summarizer=endpoint
    )
    assert isinstance(compressor, AbstractiveCompressor)
    assert compressor.summarizer is endpoint
    assert "max" in registries.presets
    parts = registries.presets.get("max")(classifier=WordLengthScorer(), summaries=True).build(cache=MemoryCache())
    assert isinstance(parts.compressor, AbstractiveCompressor)
    assert isinstance(parts.compressor.inner, PrunedExtractiveCompressor)
    assert isinstance(parts.compressor.summarizer, LocalSummarizer)  # built, not loaded
    assert parts.compressor.summarizer.model == "smollm2-135m"


def test_max_summarizes_only_when_asked() -> None:
    """Summaries are off by default (evals/results/max_summaries.md): max is then the balanced stack; summaries=True
    or a summarizer of one's own turns them on, and summaries=False wins over a summarizer."""
    from promptzip._errors import ConfigError
    from promptzip.compressors.token_prune import PrunedExtractiveCompressor
    from promptzip.compressors.token_scores import WordLengthScorer

    preset = registries.presets.get("max")
    off = preset(classifier=WordLengthScorer()).build(cache=MemoryCache())
    assert isinstance(off.compressor, PrunedExtractiveCompressor)
    assert "summaries off" in off.description
    balanced = registries.presets.get("balanced")(classifier=WordLengthScorer()).build(cache=MemoryCache())
    assert off.compressor.fingerprint == balanced.compressor.fingerprint  # the same stack, the same cache entries
    own = preset(classifier=WordLengthScorer(), summarizer=LocalSummarizer("smollm2-135m")).build(cache=MemoryCache())
    assert isinstance(own.compressor, AbstractiveCompressor)
    vetoed = preset(classifier=WordLengthScorer(), summarizer="local", summaries=False).build(cache=MemoryCache())
    assert isinstance(vetoed.compressor, PrunedExtractiveCompressor)
    with pytest.raises(ConfigError, match="summaries"):
        preset(summaries="yes")


# ------------------------------------------------------------------------------------------------ a real model


class Recording(Summarizer):
    """Passes every call to a real summarizer and keeps what it answered."""

    name = "recording"

    def __init__(self, inner: Summarizer) -> None:
        self.inner = inner
        self.answers: list[tuple[int, str]] = []

    def _summarize(self, text: str, query: str | None, max_tokens: int) -> str:
        answer = self.inner.summarize(text, query=query, max_tokens=max_tokens)
        self.answers.append((max_tokens, answer))
        return answer


@pytest.mark.slow
def test_a_local_model_summarizes_within_its_limit_and_the_budget_holds() -> None:
    pytest.importorskip("torch")
    from promptzip._causal_lm import load_causal_lm

    try:
        _, tokenizer = load_causal_lm("smollm2-135m")
    except pz.ModelNotAvailable as exc:
        pytest.skip(str(exc))
    summarizer = Recording(LocalSummarizer("smollm2-135m"))
    inner = ExtractiveCompressor(KeywordScorer())
    zipper = pz.Zipper(AbstractiveCompressor(inner, summarizer, cache=MemoryCache(), targets=(0.2,), max_chunks=1))
    for budget in (45, 70):  # one generation: the second request finds the summary in the cache
        r = zipper.compress(DOC, question=QUESTION, budget=budget)
        assert zipper.tokenizer.count(r.text) == r.tokens_out <= budget
    ((max_tokens, text),) = summarizer.answers
    assert max_tokens == 20
    assert text.strip()
    assert len(tokenizer(text, add_special_tokens=False)["input_ids"]) <= 20 * 1.25 + 4
    assert r.timings["summarize"] > 0


@pytest.mark.slow
def test_a_seq2seq_folder_loads_as_an_encoder_decoder(tmp_path: Path) -> None:
    """A hub summarizer (BART, T5) cannot be had here: a tiny random BART with MiniLM's tokenizer takes the path."""
    torch = pytest.importorskip("torch")
    from transformers import AutoTokenizer, BartConfig, BartForConditionalGeneration

    from promptzip._models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(str(resolve_model("minilm").path))
    config = BartConfig(
        vocab_size=len(tokenizer),
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        decoder_start_token_id=tokenizer.cls_token_id,
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        BartForConditionalGeneration(config).save_pretrained(str(tmp_path))
    tokenizer.save_pretrained(str(tmp_path))
    summarizer = LocalSummarizer(str(tmp_path))
    text = summarizer.summarize("The tower is 330 metres tall. It was built in 1889.", max_tokens=8)
    assert isinstance(summarizer._load()[0], BartForConditionalGeneration)
    assert summarizer._load()[2] is True
    assert len(text.split()) <= 8 * 1.25 + 4  # each generated word piece is at most one word
    assert text == summarizer.summarize("The tower is 330 metres tall. It was built in 1889.", max_tokens=8)
    # a summarizer given its own thread count uses it for its generation only: the process keeps its own count
    before = torch.get_num_threads()
    own = LocalSummarizer(str(tmp_path), threads=before + 1)
    assert own.summarize("The tower is 330 metres tall. It was built in 1889.", max_tokens=8) == text
    assert torch.get_num_threads() == before


def test_a_cut_off_generation_ends_at_its_last_finished_sentence_or_clause() -> None:
    from promptzip.compressors.summarizers import _last_full_sentence

    assert _last_full_sentence("It is 3.5 m tall. It was built in 18") == "It is 3.5 m tall."
    assert _last_full_sentence("The total was $12,480.50, for 320 units, and a fee of 1.") == (
        "The total was $12,480.50, for 320 units."
    )
    assert _last_full_sentence("for a total") == "for a total"


def test_a_chosen_summary_reaches_the_chat_messages() -> None:
    """Issue 18's first bug: the message path rebuilds each message from the pipeline's per-source output, so a
    summary (which keeps no span of its source) arrives instead of an empty message."""
    zipper = _zipper(Scripted())
    messages = [{"role": "user", "content": f"Context:\n{DOC}\n\nQuestion: {QUESTION}"}]
    for budget in range(30, 200, 3):
        r = zipper.compress_messages(messages, budget=budget)
        assert r.tokens_out <= budget
        summaries = [c.text for c in r.chunks if c.kind.startswith("summary")]
        if summaries:
            assert r.messages is not None
            assert all(text and text in r.messages[0]["content"] for text in summaries)
            assert r.messages[0]["content"].endswith(f"Question: {QUESTION}")
            return
    raise AssertionError("no budget in range made the summary win: the test does not reach its case")
