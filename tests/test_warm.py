"""Warm paths: counts and splits remembered per text (and still exact), ``promptzip warm`` and
``DenseRetriever.add(..., warm_cache=True)`` filling the cache a later compression reads, and the proxy command's
warm-up before it serves.

``slow`` tests load the packaged encoders (the ``fast`` stack)."""

from __future__ import annotations

import argparse
import io
import json
import random
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

import promptzip as pz
from promptzip._cache import MemoryCache, make_key
from promptzip._errors import ConfigError
from promptzip._presets import PresetParts
from promptzip._registry import registries
from promptzip._split import chunk_source, sentence_spans
from promptzip._tokenizers import TextMemo, get_tokenizer, text_memos_disabled
from promptzip._types import Chunk
from promptzip._warm import WarmReport, warm_compressor, warm_texts
from promptzip.cli import main as cli
from promptzip.compressors.extractive import ExtractiveCompressor
from promptzip.retrievers.sparse import BM25Scorer

SOTU = (resources.files("promptzip") / "_sample" / "sotu.txt").read_text(encoding="utf-8")

TEXTS = [
    "",
    " ",
    "hello world",
    "  leading and trailing spaces  ",
    "Ünïcödé façade, naïve café — “quotes” and ‘apostrophes’… It's we'll THEY'RE.",
    "日本語のテキストと한국어 텍스트, Ελληνικά, русский, العربية, עברית",
    "emoji 😀👍🏽🇫🇷 and a ZWJ family 👨‍👩‍👧‍👦",
    "e\u0301 combining accents, NBSP\u00a0and\u2028line separators\u0085 and tabs\tinside",
    "code: def f(x):\n\treturn {'k': [1, 2.5e-3]}  # comment\r\n",
    "numbers 1234567 3.14159 1,000,000 and dates 2024-07-26, urls https://example.com/a/b?c=d",
    "a.\n\nb!\n \n/c? ... (d) [e] {f} \"g\" 'h'",
    SOTU,  # about 10.7k tokens
    SOTU * 4,  # about 43k tokens: longer than the memo keeps
]
ENCODINGS = ["o200k_base", "cl100k_base", "p50k_base"]


def _fresh(encoding: str, text: str) -> int:
    """The count straight from the encoder, nothing remembered."""
    return len(get_tokenizer(encoding)._encoding().encode_ordinary(text)) if text else 0  # type: ignore[attr-defined]


# -- counts: remembered, in one thread, added up where provably exact ---------------------------------------------
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_remembered_counts_equal_fresh_counts(encoding: str) -> None:
    tok = get_tokenizer(encoding)
    fresh = [_fresh(encoding, t) for t in TEXTS]
    assert [tok.count(t) for t in TEXTS] == fresh
    assert [tok.count(t) for t in TEXTS] == fresh  # now from the memo
    assert tok.count_many(TEXTS) == fresh
    with text_memos_disabled():
        assert tok.count_many(TEXTS) == fresh
        assert tok.count_many(TEXTS * 30) == fresh * 30  # a batch of any size, in the calling thread


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_joined_counts_equal_the_count_of_the_joined_text(encoding: str) -> None:
    """count_joined adds up its parts only where the encoding cannot merge across the cut: every split of every
    text, at spaces, newlines and inside words, counts as the whole."""
    tok = get_tokenizer(encoding)
    rng = random.Random(7)
    sentences = [s for t in TEXTS[:11] for s in (t, " " + t, t.strip()) if s]
    sentences += [SOTU[a:b] for a, b in sentence_spans(SOTU)[:200]]
    cases = 0
    for _ in range(3000):
        picked = rng.sample(sentences, rng.randint(1, 6))
        parts = [
            p if i == 0 or rng.random() < 0.3 else rng.choice([" ", "\n", "  ", "\n\n", ""]) + p
            for i, p in enumerate(picked)
        ]
        assert tok.count_joined(parts) == _fresh(encoding, "".join(parts)), parts
        cases += 1
    for text in TEXTS:  # cut anywhere, even inside a word or a multi-byte character's neighbourhood
        cuts = sorted(rng.sample(range(len(text) + 1), min(len(text) + 1, 6)))
        parts = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        assert tok.count_joined(parts) == _fresh(encoding, text)
    assert cases == 3000


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_joined_counts_across_line_breaks_equal_the_count_of_the_joined_text(encoding: str) -> None:
    """Documents, separators and questions joined as a prompt is assembled: cuts after a line break (trailing
    spaces, punctuation or a carriage return before it) before any kind of next part count as the whole."""
    tok = get_tokenizer(encoding)
    rng = random.Random(11)
    ends = ["", ".", "  ", ":", "?!", " -", ")", "\r", "\u3002"]
    breaks = ["\n", "\n\n", "\r\n", " \n", ".\n\n", "\n\n\n", "\t\n"]
    starts = ["What", "what", "1999", " Who", "(a)", "<doc>", "#", "«Quoi", "\u00e9t\u00e9", "'s", "\u4f60\u597d", "-"]
    bodies = [SOTU[a:b] for a, b in sentence_spans(SOTU)[:60]]
    for _ in range(2000):
        parts: list[str] = []
        for _ in range(rng.randint(1, 5)):
            parts += [rng.choice(bodies) + rng.choice(ends), rng.choice(breaks)]
        parts.append(rng.choice(starts) + " " + rng.choice(bodies))
        if rng.random() < 0.3:  # a separator glued to its document, as a memoized run
            parts[0:2] = ["".join(parts[0:2])]
        assert tok.count_joined(parts) == _fresh(encoding, "".join(parts)), parts


def test_huggingface_counts_are_remembered_and_exact() -> None:
    tok = get_tokenizer("hf:minilm")
    expected = [len(tok.encode(t)) for t in TEXTS[:11]]
    assert tok.count_many(TEXTS[:11]) == expected
    assert [tok.count(t) for t in TEXTS[:11]] == expected
    assert tok.count_joined(["Paris is ", "in France."]) == len(tok.encode("Paris is in France."))


def test_the_memo_is_bounded_and_keyed_by_the_text() -> None:
    memo: TextMemo[int] = TextMemo(max_chars=1000, max_items=10, max_text=100)
    for i in range(100):
        memo.put(f"text {i}", i)
    assert len(memo) <= 22  # two generations of at most 10 (and a little)
    assert memo.get("text 99") == 99
    assert memo.get("text 0") is None  # aged out
    memo.put("x" * 101, 1)
    assert memo.get("x" * 101) is None  # too long to keep
    memo.put("same", 1)
    assert memo.get("".join(["sa", "me"])) == 1  # an equal text, another object
    with text_memos_disabled():
        assert memo.get("same") is None
    assert memo.get("same") == 1


# -- splits: remembered, and the same ----------------------------------------------------------------------------
def test_remembered_splits_equal_fresh_splits() -> None:
    tagged = "Intro here.\n\n<pz keep>Keep this.</pz>\n\n```py\ncode()\n```\n\n<pz rate=0.5>Half of this. Or so.</pz>"
    for text in [SOTU, tagged, "One.\n\nTwo. Three.", "x" * 5000]:
        first = chunk_source(text, "a", max_chunk_chars=300)
        first.append(Chunk("mutating a returned list changes nothing"))
        again = chunk_source(text, "b", max_chunk_chars=300)  # another source id, the split remembered
        with text_memos_disabled():
            fresh = chunk_source(text, "b", max_chunk_chars=300)
        assert again == fresh
        assert [(c.protected, dict(c.metadata)) for c in again] == [(c.protected, dict(c.metadata)) for c in fresh]
        spans = sentence_spans(text)
        spans.append((0, 0))
        with text_memos_disabled():
            fresh_spans = sentence_spans(text)
        assert sentence_spans(text) == fresh_spans
    assert [c.protected for c in chunk_source(tagged, "t")] == [False, True, True, False]
    assert chunk_source(tagged, "t")[3].metadata == {"kind": "paragraph", "rate": 0.5}
    assert len(chunk_source(SOTU, "s", max_chunk_chars=2000)) < len(chunk_source(SOTU, "s", max_chunk_chars=300))


# -- compression is unchanged: every variant's cost is its text's exact count --------------------------------------
@pytest.fixture
def bm25_zipper() -> pz.Zipper:
    return pz.Zipper(ExtractiveCompressor(BM25Scorer(), min_relevance=None, clauses=True), target="o200k_base")


@pytest.mark.parametrize("text", [SOTU[:20000], "Line one.\nLine two.\n\nPara, with: clauses; many — of them.\n" * 40])
def test_variant_costs_are_exact_counts(bm25_zipper: pz.Zipper, text: str) -> None:
    tok = bm25_zipper.tokenizer
    chunks = chunk_source(text, "0")
    groups = bm25_zipper.compressor.propose(chunks, "What did the President propose for college?", tok)
    variants = [v for g in groups for v in g]
    assert len(variants) > len(chunks)
    for v in variants:
        assert v.tokens == _fresh("o200k_base", v.text), v.text[:80]
    memo = bm25_zipper.compress(text, question="college tuition", budget=300)
    with text_memos_disabled():
        fresh = bm25_zipper.compress(text, question="college tuition", budget=300)
    assert (memo.text, memo.tokens_in, memo.tokens_out) == (fresh.text, fresh.tokens_in, fresh.tokens_out)
    assert memo.tokens_out == _fresh("o200k_base", memo.text) <= 300


def test_remembered_joiners_give_the_variants_a_fresh_compressor_gives(bm25_zipper: pz.Zipper) -> None:
    """A chunk's stitched variants are remembered across questions (compressors/_stitching.py Joiner): every
    question's proposals equal those of a compressor that remembers nothing, and the memo stays bounded."""
    from promptzip.compressors._stitching import STITCHED

    tok = bm25_zipper.tokenizer
    chunks = chunk_source(SOTU[:30000], "0")
    compressor = bm25_zipper.compressor
    questions = ["college tuition", "What about the minimum wage?", "Who pays for Social Security?", "taxes"] * 3
    for q in questions:
        remembered = compressor.propose(chunks, q, tok)
        with text_memos_disabled():
            fresh = compressor.propose(chunks, q, tok)
        assert [[(v.kind, v.text, v.tokens, v.kept, v.utility) for v in g] for g in remembered] == [
            [(v.kind, v.text, v.tokens, v.kept, v.utility) for v in g] for g in fresh
        ]
    joiners = compressor._joiners  # type: ignore[attr-defined]
    assert 0 < len(joiners) <= joiners.max_items
    for memo in (joiners._young, joiners._old):
        assert all(len(j._stitched) <= STITCHED for j in memo.values())


# -- warm_texts on a model-free stack -------------------------------------------------------------------------
def test_warm_texts_reports_what_it_did(bm25_zipper: pz.Zipper) -> None:
    report = warm_texts(bm25_zipper, [("doc", SOTU[:6000]), "<pz keep>unclosed", "Short one."], files=3)
    assert isinstance(report, WarmReport)
    chunks = chunk_source(SOTU[:6000], "d")
    assert (report.files, report.chunks) == (3, len(chunks) + 1)
    assert report.sentences == sum(len(sentence_spans(c.text)) for c in chunks) + 1
    assert len(report.skipped) == 1
    assert report.skipped[0].startswith("1: ")
    assert "skipped" in report.summary()
    assert report.sentences_per_second > 0


def test_a_compressor_that_cannot_warm_is_a_config_error() -> None:
    class Plain(pz.Compressor):  # type: ignore[misc]
        def _propose(self, chunks: Any, query: Any, tokenizer: Any) -> Any:
            return [[] for _ in chunks]

    with pytest.raises(ConfigError, match="cannot warm"):
        warm_compressor(Plain(), [Chunk("A sentence.")])


# -- the real fast stack: warm, then a compression reads only the question ----------------------------------------
class _Counting:
    """Counts the encoder passes over sentences (a DenseScorer's own passes and its token-vector passes)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from promptzip.retrievers.dense import DenseScorer

        self.passes = 0
        for name in ("_encode", "_missing_states"):
            original = getattr(DenseScorer, name)
            monkeypatch.setattr(DenseScorer, name, self._wrap(original))

    def _wrap(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.passes += 1
            return original(*args, **kwargs)

        return counted


def _query_key(zipper: pz.Zipper, question: str) -> str:
    dense = zipper.compressor.scorer.dense  # type: ignore[attr-defined]
    return make_key("query:" + dense.query_fingerprint, question)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    paragraphs = SOTU.split("\n\n")
    (folder / "speech.txt").write_text("\n\n".join(paragraphs[:12]), encoding="utf-8")
    (folder / "sub" / "more.txt").write_text("\n\n".join(paragraphs[12:20]), encoding="utf-8")
    (folder / "notes.md").write_text("# Notes\n\nNot matched by the glob.", encoding="utf-8")
    (folder / "sub" / "blob.txt").write_bytes(b"\x00\x01\x02 not text")
    (folder / ".hidden.txt").write_text("Hidden files are left out.", encoding="utf-8")
    return folder


@pytest.mark.slow
def test_warm_command_then_a_compression_reads_only_its_question(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'cache.db'}"
    out, err = io.StringIO(), io.StringIO()
    assert cli(["warm", str(corpus), "--glob", "*.txt", "--cache", url, "--json"], stdout=out, stderr=err) == 0
    summary = json.loads(out.getvalue())
    assert summary["files"] == 2
    assert summary["sentences"] > 100
    assert summary["sentences_per_second"] > 0
    assert len(summary["skipped"]) == 1
    assert "blob.txt" in summary["skipped"][0]
    assert "warmed 2 file(s)" in err.getvalue()

    text = (corpus / "speech.txt").read_text(encoding="utf-8")
    question = "What did the President propose to make college more affordable?"
    counting = _Counting(monkeypatch)
    zipper = pz.Zipper.from_preset("fast", cache=url)  # new scorers: nothing in their memos, all from the cache
    before = zipper.cache.misses
    missed: list[str] = []
    get_many = zipper.cache.get_many
    monkeypatch.setattr(zipper.cache, "get_many", lambda keys: _record(get_many, keys, missed))
    monkeypatch.setattr(zipper.cache, "get", lambda key: _record(get_many, [key], missed).get(key))
    r = zipper.compress(text, question=question, budget=300)
    assert r.decision == "compressed"
    assert r.tokens_out <= 300
    assert counting.passes == 0  # no encoder pass over the text's sentences or clauses
    assert missed == [_query_key(zipper, question)]  # the only miss: the new question's embedding
    assert zipper.cache.misses - before == 1

    cold = pz.Zipper.from_preset("fast", cache="memory")  # the control: without the warm-up, passes run
    cold.compress(text, question=question, budget=300)
    assert counting.passes > 0


def _record(get_many: Callable[[list[str]], dict[str, bytes]], keys: list[str], missed: list[str]) -> dict[str, bytes]:
    found = get_many(list(keys))
    missed.extend(k for k in dict.fromkeys(keys) if k not in found)
    return found


@pytest.mark.slow
def test_dense_retriever_warms_the_compression_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    from promptzip.retrievers.faiss_index import DenseRetriever

    cache = MemoryCache()
    paragraphs = [p for p in SOTU.split("\n\n")[1:30] if p.strip()]
    chunks = [Chunk(p, source_id=f"p{i}") for i, p in enumerate(paragraphs)]
    retriever = DenseRetriever(cache=cache, progress=False)
    ids = retriever.add(chunks[:20], warm_cache=True)
    assert len(ids) == 20
    retriever.add(chunks[20:])  # not warmed

    question = "What did the President say about the minimum wage?"
    hits = retriever.retrieve(question, k=5)
    warmed = [h for h in hits if int(h.source_id[1:]) < 20]
    assert warmed
    counting = _Counting(monkeypatch)
    zipper = pz.Zipper.from_preset("fast", cache=cache)
    r = zipper.compress(warmed, question=question, budget=60)
    assert r.decision == "compressed"
    assert r.tokens_out <= 60
    assert counting.passes == 0
    zipper.compress([chunks[25]], question=question, budget=40)  # a chunk added without warm_cache
    assert counting.passes > 0


def test_dense_retriever_warm_cache_needs_a_cache() -> None:
    from promptzip.retrievers.faiss_index import DenseRetriever

    retriever = DenseRetriever(progress=False)
    with pytest.raises(ConfigError, match="needs a cache"):
        retriever.add([Chunk("Nothing is indexed when the warm-up cannot run.")], warm_cache=True)
    assert len(retriever) == 0
    with pytest.raises(ConfigError):
        DenseRetriever(cache=MemoryCache(), progress=False).add([Chunk("x y z")], warm_cache=3.5)  # type: ignore[arg-type]


# -- the proxy command warms up before it serves ---------------------------------------------------------------
@pytest.fixture
def cheap_preset(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A model-free preset under a name of its own, recording each compression it runs."""
    compressed: list[str] = []

    class Recording(ExtractiveCompressor):
        def _propose(self, chunks: Any, query: Any, tokenizer: Any) -> Any:
            compressed.append(query)
            return super()._propose(chunks, query, tokenizer)

    def factory(*, cache: Any, progress: bool = False) -> PresetParts:
        return PresetParts(Recording(BM25Scorer(), min_relevance=None), "BM25 only, for the warm-up tests")

    monkeypatch.setitem(registries.presets._factories, "warmup-test", factory)
    return compressed


def _proxy(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[Any, str]:
    from promptzip.integrations.proxy._cli import add_proxy_command

    seen: list[Any] = []
    monkeypatch.setattr("promptzip.integrations.proxy._app.serve", lambda s, **kw: seen.append(s))
    parser = argparse.ArgumentParser()
    add_proxy_command(parser.add_subparsers())
    args = parser.parse_args(["proxy", "--upstream", "http://127.0.0.1:1/v1", "--cache", "memory", *argv])
    err = io.StringIO()
    assert args.func(args, io.StringIO(), err) == 0
    return seen[0], err.getvalue()


def test_proxy_command_warms_up_before_serving(cheap_preset: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from promptzip.integrations.proxy._cli import WARMUP_QUESTION

    settings, err = _proxy(["--preset", "warmup-test"], monkeypatch)
    assert settings.warmup is True  # the app's own warm-up stays on too (it finds the models loaded)
    assert cheap_preset == [WARMUP_QUESTION]  # one compression ran, before serve() was called
    ready = next(line for line in err.splitlines() if "ready in" in line)
    assert "'warmup-test'" in ready
    assert float(ready.split("ready in ")[1].split(" s")[0]) >= 0


def test_proxy_command_no_warmup(cheap_preset: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings, err = _proxy(["--preset", "warmup-test", "--no-warmup"], monkeypatch)
    assert settings.warmup is False
    assert cheap_preset == []
    assert "no warm-up" in err
    assert "ready in" not in err

    config = tmp_path / "proxy.toml"
    config.write_text('upstream = "http://127.0.0.1:1/v1"\nwarmup = false\n', encoding="utf-8")
    settings, _ = _proxy(["--preset", "warmup-test", "--config", str(config)], monkeypatch)
    assert settings.warmup is False
    assert cheap_preset == []
    settings, _ = _proxy(["--preset", "warmup-test", "--config", str(config), "--warmup"], monkeypatch)
    assert settings.warmup is True
    assert len(cheap_preset) == 1


def test_proxy_settings_built_in_code_do_not_warm_up() -> None:
    from promptzip.integrations.proxy import ProxySettings, load_settings

    assert ProxySettings(upstream="http://127.0.0.1:1/v1").warmup is False  # an app in a test starts at once
    assert load_settings(upstream="http://127.0.0.1:1/v1").warmup is False
    assert load_settings(upstream="http://127.0.0.1:1/v1", defaults={"warmup": True}).warmup is True


# -- the warm-path bench's input ------------------------------------------------------------------------------------
def test_warm_bench_input_is_sized_and_never_repeats_a_paragraph() -> None:
    from promptzip.evals._bench_inputs import warm_input
    from promptzip.evals.warm_path import _distinct

    text, questions, source = warm_input(30_000)
    paragraphs = text.split("\n\n")
    assert 29_000 <= get_tokenizer("o200k_base").count(text) <= 30_000
    assert len(set(paragraphs)) == len(paragraphs) > 100
    assert questions
    assert source
    assert warm_input(30_000) == (text, questions, source)  # the same text on every run
    asked = _distinct(questions, 3 * len(questions))
    assert len(set(asked)) == len(asked)
