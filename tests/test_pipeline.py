"""The pipeline end to end with the real packaged models: budgets, protection, provenance, ordering, caching."""

from __future__ import annotations

import asyncio

import pytest

import promptzip as pz
from promptzip._sqlite_cache import SQLiteCache

pytestmark = pytest.mark.slow


def test_keeps_the_answer_and_respects_the_budget(fast: pz.Zipper, article: str, o200k: pz.Tokenizer) -> None:
    # 80 tokens: the answer's sentence (30) and another. At 60 the default stack keeps the opening paragraph's two
    # sentences instead: they inherit its relevance (chunk_weight 0.3: "The Eiffel Tower is ...", "It is named
    # after ..."), and together they outweigh the 330-metres sentence, whose own score only ties the first's.
    r = fast.compress(article, question="How tall is the Eiffel Tower?", budget=pz.Budget(tokens=80))
    assert "330 metres" in r.text
    assert r.tokens_out == o200k.count(r.text) <= 80
    assert r.tokens_in == o200k.count(article + "\n\nHow tall is the Eiffel Tower?")
    assert r.ratio == pytest.approx(r.tokens_in / r.tokens_out)
    assert r.decision == "compressed"
    assert "Bananas" not in r.text
    assert r.text.endswith("How tall is the Eiffel Tower?")


@pytest.mark.parametrize("budget", [12, 17, 25, 40, 64, 100, 150, 250, 400])
def test_never_over_budget_and_kept_spans_are_real(
    fast: pz.Zipper, article: str, o200k: pz.Tokenizer, budget: int
) -> None:
    r = fast.compress(article, question="When was the tower built?", budget=budget)
    assert o200k.count(r.text) == r.tokens_out <= budget
    for c in r.chunks:
        assert c.tokens_out <= c.tokens_in
        for span in c.kept:
            assert article[span.start : span.end] in r.context
    assert sum(c.tokens_out for c in r.chunks) <= budget


def test_rate_budget(fast: pz.Zipper, article: str) -> None:
    r = fast.compress(article, question="What is the banana?", rate=0.3)
    assert r.tokens_out <= int(0.3 * r.tokens_in)
    assert "Bananas" in r.context


def test_instruction_and_question_are_kept_verbatim(fast: pz.Zipper, article: str) -> None:
    instruction = "Answer in one word. Use only the context below!"
    question = "Who designed the tower?"
    r = fast.compress(article, question=question, instruction=instruction, budget=50)
    assert r.text.startswith(instruction + "\n\n")
    assert r.text.endswith("\n\n" + question)
    with pytest.raises(pz.BudgetError) as info:
        fast.compress(article, question=question, instruction=instruction, budget=8)
    assert info.value.required is not None
    assert info.value.required > 8


def test_protected_regions_survive(fast: pz.Zipper, article: str) -> None:
    code = "```python\ndef height_m() -> int:\n    return 330\n```"
    keep = "Ticket ID: EFT-2024-XK9"
    text = f"{article}\n\n{code}\n\n<pz keep>{keep}</pz>\n\nMore filler about bananas and plantains."
    r = fast.compress(text, question="What fruit is a plantain?", budget=90)
    assert code in r.text
    assert keep in r.text
    assert "<pz" not in r.text
    protected = [c for c in r.chunks if c.protected]
    assert len(protected) == 2
    assert all(c.kind == "keep" for c in protected)
    with pytest.raises(pz.BudgetError):
        fast.compress(text, question="What fruit is a plantain?", budget=20)


def test_chunks_keep_their_source_coordinates(fast: pz.Zipper, article: str) -> None:
    offset = article.index("The tower is 330")
    end = article.index("Bananas")
    chunk = pz.Chunk(article[offset:end], source_id="wiki", start=offset)
    other = pz.Chunk("Paris is the capital of France.", source_id="atlas")
    r = fast.compress([chunk, other], question="How high is the observation deck?", budget=45)
    kept = [(c.source_id, s) for c in r.chunks for s in c.kept]
    assert kept, r
    for source_id, span in kept:
        if source_id == "wiki":
            assert offset <= span.start < span.end <= end
            assert article[span.start : span.end] in r.text
    assert "276 m" in r.text
    assert {s.id for s in r.sources} == {"wiki", "atlas"}


def test_lost_in_the_middle_puts_the_most_relevant_first(fast: pz.Zipper, article: str) -> None:
    r = fast.compress(article, question="How tall is the tower in metres?", budget=400, reorder="lost_in_the_middle")
    best = max((c for c in r.chunks if c.tokens_out), key=lambda c: c.relevance)
    assert r.context.startswith(article[best.kept[0].start : best.kept[0].end])
    same = fast.compress(article, question="How tall is the tower in metres?", budget=400)
    assert sorted(r.context.split("\n\n")) == sorted(same.context.split("\n\n"))


def test_no_relevant_context_is_a_result(fast: pz.Zipper, article: str) -> None:
    r = fast.compress(article, question="What is the airspeed velocity of an unladen swallow?", budget=100)
    assert r.decision == "no_relevant_context"
    assert r.context == ""
    assert r.text == "What is the airspeed velocity of an unladen swallow?"
    assert all(not c.kept for c in r.chunks)


def test_without_a_question_keeps_central_sentences(fast: pz.Zipper, article: str, o200k: pz.Tokenizer) -> None:
    r = fast.compress(article, budget=pz.Budget(rate=0.4))
    assert 0 < r.tokens_out <= int(0.4 * r.tokens_in)
    assert "tower" in r.context.lower()


def test_everything_fits_means_kept_all(fast: pz.Zipper, article: str) -> None:
    r = fast.compress(article, question="How tall is the tower?", budget=5000)
    assert r.decision == "kept_all"
    assert r.context == "\n\n".join(p.strip() for p in article.split("\n\n"))


def test_a_budget_the_input_fits_exactly_keeps_all_of_it(bm25: pz.Zipper, article: str) -> None:
    # The knapsack's per-chunk estimate counts a separator per chunk and each chunk apart, more than the request
    # takes: at a budget of exactly the input's tokens (rate=1.0) a passage was dropped.
    short = [
        "The tower is 330 metres tall. It was finished in 1889.",
        "Bananas are yellow and grow in bunches in the tropics.",
        "Paris hosted the 2024 Olympics from 26 July.",
    ]
    for docs in (short, article.split("\n\n")):
        whole = bm25.compress(docs, question="How tall?", budget=100_000)
        for budget in range(whole.tokens_in, whole.tokens_in + 8):
            r = bm25.compress(docs, question="How tall?", budget=budget)
            assert (r.decision, r.context, r.dropped) == ("kept_all", whole.context, ())
        assert bm25.compress(docs, question="How tall?", rate=1.0).context == whole.context
        assert bm25.compress(docs, question="How tall?", budget=whole.tokens_in - 1).decision == "compressed"


def test_near_duplicates_are_not_sent_twice(fast: pz.Zipper) -> None:
    para = "The tower is 330 metres tall. It was finished in 1889."
    r = fast.compress([para, para.upper(), para], question="How tall is the tower?", budget=40)
    assert r.context.lower().count("330 metres") == 1


def test_deterministic(fast: pz.Zipper, article: str) -> None:
    a = fast.compress(article, question="Who is the tower named after?", budget=70)
    b = fast.compress(article, question="Who is the tower named after?", budget=70)
    assert a.text == b.text
    assert a.chunks == b.chunks


def test_acompress(fast: pz.Zipper, article: str) -> None:
    async def run() -> list[pz.Result]:
        return await asyncio.gather(
            *(fast.acompress(article, question="How tall is the tower?", budget=b) for b in (30, 60, 90))
        )

    results = asyncio.run(run())
    assert [r.budget for r in results] == [30, 60, 90]
    assert all(r.tokens_out <= r.budget for r in results)


def test_sqlite_cache_scores_a_text_once(tmp_path: object, article: str) -> None:
    cache = SQLiteCache(f"{tmp_path}/c.db")
    zipper = pz.Zipper.from_preset("fast", cache=cache)
    first = zipper.compress(article, question="How tall is the tower?", budget=60)
    misses = cache.misses
    # a new Zipper (its scorer's in-memory memo is empty) on the same cache: nothing is encoded again
    second = pz.Zipper.from_preset("fast", cache=cache).compress(
        article, question="How wide is the base of the tower?", budget=60
    )
    assert cache.misses == misses + 1  # every sentence embedding came from the cache; only the new question missed
    assert cache.hits > 0
    assert first.fingerprint == second.fingerprint
    assert "125 metres" in second.text


def test_a_protected_chunk_given_as_context_is_kept_whole(bm25: pz.Zipper, article: str) -> None:
    """``Chunk(protected=True)`` passed in is never shortened or dropped, even when it is irrelevant and the
    budget is tight; a budget too small for it is a BudgetError, not a silent drop."""
    note = pz.Chunk("Internal ticket 7731: keep this exact text. Owner: R. Moreau.", source_id="ticket", protected=True)
    result = bm25.compress([note, article], question="How tall is the Eiffel Tower?", budget=60)
    assert note.text in result.context
    (ticket,) = [c for c in result.chunks if c.source_id == "ticket"]
    assert ticket.protected
    assert ticket.kept == (pz.Span(0, len(note.text)),)
    assert result.tokens_out <= 60
    assert any(c.source_id != "ticket" and c.kept for c in result.chunks)  # the rest is still compressed into it
    plain = bm25.compress([pz.Chunk(note.text, source_id="ticket"), article], question="How tall?", budget=60)
    assert not next(c for c in plain.chunks if c.source_id == "ticket").protected  # the flag is the user's, not ours
    with pytest.raises(pz.BudgetError):
        bm25.compress([note, article], question="How tall is the Eiffel Tower?", budget=5)


@pytest.mark.parametrize("available", [30, 45, 60, 75, 90])
def test_document_tags_count_once_per_kept_source_and_the_choice_fits(available: int) -> None:
    """A source's tags (20 tokens) leave with it: the choice fits once they are counted once per kept source,
    although equal shares (5 per chunk) alone would let the knapsack open every source."""
    from promptzip._policy import BudgetPolicy
    from promptzip._roles import drop_variant, keep_variant
    from promptzip._select import select_with_tags

    groups = []
    for s in range(3):
        for k in range(4):
            chunk = pz.Chunk(f"source {s} sentence {k}.", f"s{s}", k * 30, k * 30 + 20)
            # the best sentence of each source is worth most; the rest little
            groups.append([keep_variant(chunk, 10, utility=1.0 if k == 0 else 0.2), drop_variant(chunk)])
    overhead = {"s0": 20, "s1": 20, "s2": 20}
    chosen = select_with_tags(BudgetPolicy(), groups, available, 1, overhead)
    kept = [v for v in chosen if v.text]
    opened = {v.chunk.source_id for v in kept}
    cost = sum(v.tokens + 1 for v in kept) + 20 * len(opened)
    assert cost <= available
    assert len(opened) == min(3, available // 31)  # one best sentence + its tags per source, as many as fit


def test_the_top_level_functions_take_what_the_zipper_methods_take() -> None:
    """Same keyword parameters (less the ones that pick the shared Zipper), typed, no **kwargs."""
    import inspect

    picks = {"target", "preset", "cache"}
    pairs = [
        (pz.compress, pz.Zipper.compress),
        (pz.acompress, pz.Zipper.acompress),
        (pz.compress_messages, pz.Zipper.compress_messages),
        (pz.acompress_messages, pz.Zipper.acompress_messages),
    ]
    for top, method in pairs:
        top_params = inspect.signature(top).parameters
        assert all(p.kind is not p.VAR_KEYWORD for p in top_params.values()), top.__name__
        assert set(top_params) - picks == set(inspect.signature(method).parameters) - {"self"}, top.__name__


def test_async_top_level_functions_compress_like_the_sync_ones() -> None:
    import asyncio

    text = "The tower is 330 m tall. Bananas are yellow. The fair was in 1889."
    sync = pz.compress(text, query="How tall is the tower?", budget=12, cache="memory", preset="fast")
    done = asyncio.run(pz.acompress(text, query="How tall is the tower?", budget=12, cache="memory", preset="fast"))
    assert done.context == sync.context
    chat = [{"role": "user", "content": f"Context:\n{text}\n\nQuestion: How tall is the tower?"}]
    assert asyncio.run(pz.acompress_messages(chat, budget=40, cache="memory")).messages == (
        pz.compress_messages(chat, budget=40, cache="memory").messages
    )


def test_compress_sources_is_the_per_source_assembly_the_doors_build_on(bm25: pz.Zipper, article: str) -> None:
    """One budget over several sources; each source's text in Result.outputs, in source order; ``reserved`` tokens
    stay free for what the caller keeps verbatim."""
    paragraphs = article.split("\n\n")
    sources = [pz.Source(f"s{i}", p) for i, p in enumerate(paragraphs)]
    count = bm25.tokenizer.count
    for reserved in (0, 20):
        r = bm25.compress_sources(sources, budget=80, query="How tall is the tower?", reserved=reserved)
        assert set(r.outputs) == {s.id for s in sources}
        kept = [r.outputs[s.id] for s in sources if r.outputs[s.id]]
        assert kept
        assert count(bm25.separator.join(kept)) + reserved <= 80
        for s in sources:  # each output is made of its own source's text
            assert all(part in s.text for part in r.outputs[s.id].split(bm25.separator) if part)
    assert "330 metres" in " ".join(r.outputs.values())


def test_compress_sources_scores_a_source_against_a_query_of_its_own(bm25: pz.Zipper, article: str) -> None:
    """``queries`` gives a source its own query (an earlier turn of a chat, scored against the question it was
    retrieved for); the others are scored against ``query``, under the same one budget."""
    paragraphs = article.split("\n\n")
    sources = [pz.Source("tower", paragraphs[2]), pz.Source("history", " ".join(paragraphs[:2]))]
    plain = bm25.compress_sources(sources, budget=70, query="How tall is the tower?")
    own = bm25.compress_sources(
        sources, budget=70, query="How tall is the tower?", queries={"history": "Who designed and built it?"}
    )
    assert "330 metres" in plain.outputs["tower"]
    assert "330 metres" in own.outputs["tower"]
    assert "Gustave Eiffel" not in plain.outputs["history"]
    assert "Gustave Eiffel" in own.outputs["history"]


def test_a_region_rate_no_sentence_fits_offers_the_most_relevant_sentence(bm25: pz.Zipper, article: str) -> None:
    # <pz rate=0.1> caps each paragraph's selection at a tenth of its characters: where no sentence is that short,
    # the paragraph could only be dropped (a rate of 0), and a budget with room for it sent nothing of the region.
    r = bm25.compress(f"<pz rate=0.1>{article}</pz>", question="How tall is the tower?", budget=200)
    assert "330 metres" in r.context
    assert r.tokens_out <= 200
    paragraphs = [p.strip() for p in article.split("\n\n") if p.strip()]
    kept = r.context.split("\n\n")
    assert 0 < len(kept) <= len(paragraphs)
    # each kept part is one sentence of its paragraph, never more than the rate allows when a sentence could fit
    assert all(k.count(". ") == 0 for k in kept)
