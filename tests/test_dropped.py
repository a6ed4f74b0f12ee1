"""``Result.dropped``: what the model did not get, verbatim, from real compressions with the packaged models.

Every non-whitespace character of an open source is either in a kept span or in exactly one dropped span (``<pz>``
tags, markup for promptzip, in neither); protected sources have no dropped spans.
"""

from __future__ import annotations

import json
from collections.abc import Collection

import pytest

import promptzip as pz

pytestmark = pytest.mark.slow

QUESTION = "How tall is the tower?"


def coverage(result: pz.Result, source: pz.Source, offset: int = 0) -> tuple[set[int], set[int]]:
    """(kept, dropped) positions of ``source`` (in its own text), checking that no position is both, that no two
    dropped spans overlap, and that each dropped span's text is the source's."""
    kept = {
        i - offset
        for c in result.chunks
        if c.source_id == source.id
        for s in c.kept
        for i in range(s.start, s.end)
        if offset <= i < offset + len(source.text)
    }
    dropped: set[int] = set()
    for d in result.dropped:
        if d.source_id != source.id or not offset <= d.start < offset + len(source.text):
            continue
        a, b = d.start - offset, d.end - offset
        assert source.text[a:b] == d.text
        assert d.text == d.text.strip()
        assert d.text
        span = set(range(a, b))
        assert not span & dropped, d
        assert not span & kept, d
        dropped |= span
    return kept, dropped


def assert_covered(text: str, kept: set[int], dropped: set[int], *, markup: Collection[int] = ()) -> None:
    """Every character of ``text`` but whitespace and ``markup`` is kept or dropped, and no markup is dropped."""
    seen = kept | dropped | set(markup)
    missing = [i for i, ch in enumerate(text) if not ch.isspace() and i not in seen]
    assert not missing, f"neither kept nor dropped: {text[missing[0] : missing[0] + 40]!r}"
    assert not dropped & set(markup)


def test_kept_and_dropped_cover_the_source(fast: pz.Zipper, article: str) -> None:
    r = fast.compress(article, question=QUESTION, budget=60)
    (source,) = r.sources
    kept, dropped = coverage(r, source)
    assert_covered(article, kept, dropped)
    assert r.dropped
    assert [d.source_id for d in r.dropped] == ["0"] * len(r.dropped)
    assert [d.start for d in r.dropped] == sorted(d.start for d in r.dropped)
    texts = " ".join(d.text for d in r.dropped)
    assert "Bananas are elongated" in texts
    assert "330 metres" in r.text
    assert "330 metres" not in texts
    for d in r.dropped:  # a dropped span reached the model in no verbatim form
        assert d.text not in r.context


def test_sentences_dropped_inside_a_kept_paragraph(fast: pz.Zipper, article: str) -> None:
    # A budget between one sentence and one paragraph: the extractive stack keeps single sentences, so spans are
    # dropped between kept ones of the same chunk.
    r = fast.compress(article, question="How wide is the base of the tower?", budget=40)
    kinds = {c.kind for c in r.chunks}
    assert kinds - {"keep", "drop"}, kinds  # some chunk kept part of itself
    (source,) = r.sources
    kept, dropped = coverage(r, source)
    assert_covered(article, kept, dropped)
    partial = [c for c in r.chunks if c.kept and (c.kept[0].start > c.start or c.kept[-1].end < c.end)]
    assert partial
    for c in partial:  # the rest of the chunk is in a dropped span (maximal: it may run on from the chunk before)
        assert any(d.start < c.end and d.end > c.start for d in r.dropped), c


def test_several_sources_and_a_protected_one(fast: pz.Zipper, article: str) -> None:
    note = pz.Chunk("Internal ticket 7731: keep this exact text. Owner: R. Moreau.", source_id="ticket", protected=True)
    fruit = "Bananas are yellow. Plantains are cooked before eating. Apples are crisp and sweet in autumn."
    r = fast.compress([article, note, fruit], question=QUESTION, budget=90)
    assert note.text in r.text
    assert [s.id for s in r.sources] == ["0", "ticket", "2"]
    assert not [d for d in r.dropped if d.source_id == "ticket"]
    for source in r.sources:
        if not source.protected:
            kept, dropped = coverage(r, source)
            assert_covered(source.text, kept, dropped)
    assert {d.source_id for d in r.dropped} == {"0", "2"}


def test_nothing_dropped_when_everything_fits(fast: pz.Zipper, article: str) -> None:
    r = fast.compress(article, question=QUESTION, budget=5000)
    assert r.decision == "kept_all"
    assert r.dropped == ()
    assert r.to_dict()["dropped"] == []


def test_chunks_with_offsets_report_document_offsets(fast: pz.Zipper, article: str) -> None:
    """Two retrieved chunks of one document (one source id, two offsets, out of document order): dropped spans are
    in the document's coordinates, as kept spans are."""
    second = article.index("The tower is 330")
    first_end = article.index("\n\nThe tower is 330")
    late = pz.Chunk(article[second:], "eiffel.txt", second)
    early = pz.Chunk(article[:first_end], "eiffel.txt", 0)
    r = fast.compress([late, early], question=QUESTION, budget=45)
    assert r.dropped
    for d in r.dropped:
        assert d.source_id == "eiffel.txt"
        assert article[d.start : d.end] == d.text
    for source, offset in zip(r.sources, (second, 0), strict=True):
        kept, dropped = coverage(r, source, offset)
        assert_covered(source.text, kept, dropped)
    assert any(d.start < first_end for d in r.dropped)
    assert any(d.start >= second for d in r.dropped)


def test_tags_are_neither_kept_nor_dropped(fast: pz.Zipper, article: str) -> None:
    head, _, tail = article.partition("Bananas")
    text = f"{head}<pz rate=0.5>Bananas{tail}</pz>\n\n<pz keep>Ticket 7731 stays.</pz>"
    r = fast.compress(text, question=QUESTION, budget=70)
    assert "Ticket 7731 stays." in r.text
    (source,) = r.sources
    kept, dropped = coverage(r, source)
    markup = {i for tag in ("<pz rate=0.5>", "</pz>", "<pz keep>") for i in _occurrences(text, tag)}
    assert_covered(text, kept, dropped, markup=markup)
    assert not any("<pz" in d.text or "</pz>" in d.text for d in r.dropped)


def _occurrences(text: str, tag: str) -> set[int]:
    out: set[int] = set()
    start = text.find(tag)
    while start >= 0:
        out |= set(range(start, start + len(tag)))
        start = text.find(tag, start + 1)
    return out


def test_to_dict_lists_the_dropped_spans(fast: pz.Zipper, article: str) -> None:
    r = fast.compress(article, question=QUESTION, budget=60)
    payload = json.loads(json.dumps(r.to_dict()))
    assert payload["dropped"] == [
        {"source_id": d.source_id, "start": d.start, "end": d.end, "text": d.text} for d in r.dropped
    ]
    assert all(article[d["start"] : d["end"]] == d["text"] for d in payload["dropped"])


def test_a_chat_reports_the_regions_it_cut(fast: pz.Zipper, article: str) -> None:
    messages = [
        {"role": "system", "content": f"Answer from the context.\n\nContext:\n{article}"},
        {"role": "user", "content": QUESTION},
    ]
    r = fast.compress_messages(messages, budget=90)
    assert r.dropped
    by_id = {s.id: s for s in r.sources}
    for d in r.dropped:
        assert by_id[d.source_id].text[d.start : d.end] == d.text
        assert d.text in article


def test_a_summarized_chunk_counts_as_dropped() -> None:
    """A summary is a rewrite with no verbatim span (``kept=()``): its chunk's words did not reach the model."""
    text = "First paragraph, kept.\n\nSecond paragraph, which a summarizer rewrote in fewer words than these."
    second = text.index("Second")
    chunks = (
        pz.ChunkResult("0", 0, 22, "keep", 5, 5, (pz.Span(0, 22),), 1.0, text="First paragraph, kept."),
        pz.ChunkResult("0", second, len(text), "summary@0.5", 15, 6, (), 0.5, text="A rewritten second."),
    )
    r = pz.Result(
        text="First paragraph, kept.\n\nA rewritten second.",
        tokens_in=20,
        tokens_out=11,
        budget=12,
        chunks=chunks,
        sources=(pz.Source("0", text),),
    )
    assert r.dropped == (pz.Dropped("0", second, len(text), text[second:]),)


def test_word_level_pruning_drops_runs_of_words(article: str) -> None:
    """The balanced stack prunes inside sentences (``keep+prune@r``): the dropped spans are runs of words between
    kept ones, and kept and dropped still cover the source."""
    balanced = pz.Zipper.from_preset("balanced", cache="memory")
    r = balanced.compress(article, question=QUESTION, rate=0.4)
    assert any("prune" in c.kind for c in r.chunks), {c.kind for c in r.chunks}
    (source,) = r.sources
    kept, dropped = coverage(r, source)
    assert_covered(article, kept, dropped)
    pruned = [c for c in r.chunks if "prune" in c.kind]
    assert any(c.start < d.start and d.end < c.end for c in pruned for d in r.dropped)  # cut inside a chunk
