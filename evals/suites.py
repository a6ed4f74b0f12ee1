"""Eval suites: what is compressed, for which question, at which ratios, and what counts as kept.

Two regimes, because they answer different questions:

* **query-aware** (the question is known; ratios 10x, 20x, 50x — at 4x plain sentence selection already keeps
  98-100% of SQuAD answers, so low ratios tell nothing there):

  - ``squad-qa``: SQuAD v1.1 dev, the *whole article* (~6.5k o200k tokens median) as context for one question;
    the gold paragraph is known. Questions are a deterministic uniform sample (``sample_questions``, seed 0).
  - ``quoref-qa`` / ``drop-qa``: a Quoref or DROP passage (400 / 240 tokens median: too short to compress 10-50x
    on its own) placed among 9 distractor passages of other questions (~3-4k tokens, position drawn per item), so
    the gold passage plays the gold paragraph's part. DROP keeps only questions whose answer string occurs in the
    passage (~36%; the rest need arithmetic, and retention of a string that is not there means nothing).
  - ``gsm8k-qa``: GSM8K test off Wikipedia: an "article" of :data:`GSM8K_ARTICLE` consecutive problems, each
    paragraph a problem with its worked solution (:func:`promptzip.evals.records.gsm8k_articles`; a SQuAD
    article's size), the question one problem's asking sentence, the answer its final number. Only questions whose
    answer is in their own paragraph, in no other paragraph of the article and not in the question are kept
    (:func:`gsm8k_usable`), so a retained answer means the gold problem reached the output.

  - ``shifts-reddit-qa`` / ``shifts-new_wiki-qa``: the cross-domain protocol's held-out domain and its in-domain
    reference (:mod:`promptzip.evals.shift_suites`).

* **task-agnostic** (no question: compress once, cache, reuse; ratios 2x, 3x, 5x):

  - ``squad-agnostic``: whole SQuAD articles, compressed once each; every question of the article is a target
    (retention counts questions, clustered by article, so its interval is optimistic).
  - ``gsm8k-agnostic``: the GSM8K articles compressed once each; every kept question of the article is a target.
  - ``cnn_dm`` / ``xsum``: bigbench ``factuality_of_summary`` articles; what counts is how much of the reference
    summary's content survives (:func:`promptzip.evals.metrics.summary_recall`).

Budgets are per item: ``floor(o200k tokens of the context / ratio)``, and every output is measured in o200k.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from promptzip._types import Span
from promptzip.evals import data
from promptzip.evals.metrics import answer_retained
from promptzip.evals.records import Question, SquadArticle, gsm8k_articles

__all__ = [
    "AGNOSTIC_RATIOS",
    "GSM8K_ARTICLE",
    "QUERY_RATIOS",
    "SUITES",
    "SUITE_DATA",
    "Item",
    "Suite",
    "Target",
    "build_suite",
    "gsm8k_usable",
    "slow_subset",
    "withdrawn_suites",
]

QUERY_RATIOS = (10.0, 20.0, 50.0)
AGNOSTIC_RATIOS = (2.0, 3.0, 5.0)
SUITES = (
    "squad-qa",
    "quoref-qa",
    "drop-qa",
    "gsm8k-qa",
    "shifts-reddit-qa",
    "shifts-new_wiki-qa",
    "squad-agnostic",
    "gsm8k-agnostic",
    "cnn_dm",
    "xsum",
)
GSM8K_ARTICLE = 40  # problems per article: contexts the size of SQuAD dev articles (tokens_in in results.md)
_DISTRACTORS = 9
_MIN_SUMMARY_DOC_TOKENS = 150


@dataclass(frozen=True, slots=True)
class Target:
    """Something the compressed context should keep: answer strings, and the gold paragraph they come from."""

    answers: tuple[str, ...]
    gold: Span | None = None


@dataclass(frozen=True, slots=True)
class Item:
    """One context to compress. ``documents`` are its paragraphs / passages as spans of ``context`` (llmlingua
    takes a list of documents); ``group`` is the article or source (the slow baselines take one item per group)."""

    id: str
    context: str
    question: str | None
    targets: tuple[Target, ...] = ()
    documents: tuple[Span, ...] = ()
    reference: str | None = None
    group: str = ""

    def document_texts(self) -> list[str]:
        if not self.documents:
            return [self.context]
        return [self.context[s.start : s.end] for s in self.documents]


@dataclass(frozen=True, slots=True)
class Suite:
    name: str
    regime: str  # "query-aware" | "task-agnostic"
    kind: str  # "qa" (answer retention) | "summary" (reference-summary recall)
    ratios: tuple[float, ...]
    items: tuple[Item, ...]
    description: str
    notes: tuple[str, ...] = field(default=())


def _join(texts: Sequence[str]) -> tuple[str, tuple[Span, ...]]:
    spans: list[Span] = []
    pos = 0
    for i, text in enumerate(texts):
        if i:
            pos += 2
        spans.append(Span(pos, pos + len(text)))
        pos += len(text)
    return "\n\n".join(texts), tuple(spans)


def _squad_qa(n: int, *, quick: bool, seed: int) -> Suite:
    articles = data.load_squad_dev()
    if quick:  # the two shortest articles, a few questions each: small and fast, still real
        articles = sorted(articles, key=lambda a: len(a.context))[:2]
    pairs = data.sample_questions(articles, min(n, sum(len(a.questions) for a in articles)), seed=seed)
    items = tuple(
        Item(
            id=q.id,
            context=a.context,
            question=q.question,
            targets=(Target(q.answers, Span(a.gold_paragraph(q).start, a.gold_paragraph(q).end)),),
            documents=tuple(Span(p.start, p.end) for p in a.paragraphs),
            group=a.title,
        )
        for a, q in pairs
    )
    return Suite(
        "squad-qa",
        "query-aware",
        "qa",
        QUERY_RATIOS,
        items,
        "SQuAD v1.1 dev, whole article as context, one question",
    )


def _passage_qa(task: str, n: int, *, quick: bool, seed: int) -> Suite:
    every = data.load_passage_qa(task)
    usable = [q for q in every if answer_retained(q.passage, q.answers)]
    rng = random.Random(f"{task}:{seed}")
    picks = rng.sample(usable, min(n, len(usable)))
    # Distractors are the passages of the other sampled questions: a bounded pool, so a run embeds each passage
    # once (whatever the method caches), and every passage is real text of the same kind.
    pool = {q.passage for q in picks} | {q.passage for q in rng.sample(every, _DISTRACTORS + 1)}
    if len(pool) < 4 * _DISTRACTORS:  # a small sample (--quick): questions share passages, so widen the pool
        pool |= {q.passage for q in random.Random(f"{task}:{seed}:pool").sample(every, 4 * _DISTRACTORS)}
    passages = sorted(pool)
    items = []
    for q in picks:
        distractors: list[str] = []
        for _ in range(100 * _DISTRACTORS):
            p = passages[rng.randrange(len(passages))]
            if p != q.passage and p not in distractors and not answer_retained(p, q.answers):
                distractors.append(p)
                if len(distractors) == _DISTRACTORS:
                    break
        else:
            raise data.DataError(f"{task}: not enough distractor passages for {q.id}")
        position = rng.randrange(_DISTRACTORS + 1)
        texts = [*distractors[:position], q.passage, *distractors[position:]]
        context, spans = _join(texts)
        items.append(
            Item(
                id=q.id,
                context=context,
                question=q.question,
                targets=(Target(q.answers, spans[position]),),
                documents=spans,
                group=q.id,
            )
        )
    dropped = len(every) - len(usable)
    notes = (f"{dropped} of {len(every)} questions dropped: the answer string is not in the passage",)
    return Suite(
        f"{task}-qa",
        "query-aware",
        "qa",
        QUERY_RATIOS,
        tuple(items),
        f"{task.capitalize() if task == 'quoref' else task.upper()} passage among {_DISTRACTORS} distractor passages",
        notes if dropped else (),
    )


def _whole_article(article: SquadArticle, targets: Sequence[Target]) -> Item:
    """A whole article compressed without a question, ``targets`` what it should keep (the task-agnostic suites)."""
    return Item(
        id=article.title,
        context=article.context,
        question=None,
        targets=tuple(targets),
        documents=tuple(Span(p.start, p.end) for p in article.paragraphs),
        group=article.title,
    )


def _squad_agnostic(n: int, *, quick: bool, seed: int) -> Suite:
    articles = data.load_squad_dev()
    if quick:
        articles = sorted(articles, key=lambda a: len(a.context))[:2]
    order = list(range(len(articles)))
    random.Random(seed).shuffle(order)
    items = tuple(
        _whole_article(
            a, [Target(q.answers, Span(a.gold_paragraph(q).start, a.gold_paragraph(q).end)) for q in a.questions]
        )
        for a in (articles[i] for i in order[:n])
    )
    return Suite(
        "squad-agnostic",
        "task-agnostic",
        "qa",
        AGNOSTIC_RATIOS,
        items,
        "SQuAD v1.1 dev articles compressed without a question; every question of the article is a target",
        ("targets are clustered by article: the Wilson interval treats them as independent and is optimistic",),
    )


def gsm8k_usable(article: SquadArticle) -> list[Question]:
    """The questions of a GSM8K article whose answer is retained from their own paragraph and from no other
    paragraph, and not from the question: "5" or "20" occur in many solutions, and retaining them tells nothing."""
    texts = [p.text for p in article.paragraphs]
    kept = []
    for q in article.questions:
        if not answer_retained(texts[q.paragraph_index], q.answers) or answer_retained(q.question, q.answers):
            continue
        if not any(answer_retained(t, q.answers) for i, t in enumerate(texts) if i != q.paragraph_index):
            kept.append(q)
    return kept


def _gsm8k(quick: bool) -> tuple[list[SquadArticle], tuple[str, ...]]:
    problems = data.load_gsm8k_test()
    articles = gsm8k_articles(problems, GSM8K_ARTICLE)
    used = len(articles) * GSM8K_ARTICLE
    questions = sum(len(a.questions) for a in articles)
    usable = sum(len(gsm8k_usable(a)) for a in articles)
    notes = (
        f"{len(articles)} articles of {GSM8K_ARTICLE} consecutive test problems (the last {len(problems) - used} "
        f"problems are left out); {questions - usable} of {questions} questions dropped: the answer string is also "
        "in another problem of the article or in the question",
    )
    if quick:  # the two shortest articles: small and fast, still real
        articles = sorted(articles, key=lambda a: len(a.context))[:2]
    return articles, notes


def _gold(article: SquadArticle, question: Question) -> Span:
    paragraph = article.gold_paragraph(question)
    return Span(paragraph.start, paragraph.end)


def _gsm8k_qa(n: int, *, quick: bool, seed: int) -> Suite:
    articles, notes = _gsm8k(quick)
    pairs = [(a, q) for a in articles for q in gsm8k_usable(a)]
    # the draw order is kept, so the first k items of a sample are themselves a uniform sample (like squad-qa)
    picks = random.Random(f"gsm8k:{seed}").sample(pairs, min(n, len(pairs)))
    items = tuple(
        Item(
            id=q.id,
            context=a.context,
            question=q.question,
            targets=(Target(q.answers, _gold(a, q)),),
            documents=tuple(Span(p.start, p.end) for p in a.paragraphs),
            group=a.title,
        )
        for a, q in picks
    )
    return Suite(
        "gsm8k-qa",
        "query-aware",
        "qa",
        QUERY_RATIOS,
        items,
        f"GSM8K test, {GSM8K_ARTICLE} problems with worked solutions as context, one problem's asking sentence",
        notes,
    )


def _gsm8k_agnostic(n: int, *, quick: bool, seed: int) -> Suite:
    articles, notes = _gsm8k(quick)
    order = list(range(len(articles)))
    random.Random(f"gsm8k:{seed}").shuffle(order)
    items = tuple(
        _whole_article(a, [Target(q.answers, _gold(a, q)) for q in gsm8k_usable(a)])
        for a in (articles[i] for i in order[:n])
    )
    return Suite(
        "gsm8k-agnostic",
        "task-agnostic",
        "qa",
        AGNOSTIC_RATIOS,
        items,
        f"GSM8K test articles ({GSM8K_ARTICLE} problems with worked solutions) compressed without a question; "
        "every kept question of the article is a target",
        (*notes, "targets are clustered by article: the Wilson interval treats them as independent and is optimistic"),
    )


def _summaries(corpus: str, n: int, *, quick: bool, seed: int) -> Suite:
    from promptzip._tokenizers import get_tokenizer

    tok = get_tokenizer("o200k_base")
    pairs = [p for p in data.load_summary_pairs(corpus) if tok.count(p.document) >= _MIN_SUMMARY_DOC_TOKENS]
    random.Random(f"{corpus}:{seed}").shuffle(pairs)
    items = []
    for p in pairs[:n]:
        paragraphs = [t.strip() for t in p.document.split("\n") if t.strip()]
        context, spans = _join(paragraphs)
        items.append(Item(id=p.id, context=context, question=None, documents=spans, reference=p.summary, group=p.id))
    return Suite(
        corpus,
        "task-agnostic",
        "summary",
        AGNOSTIC_RATIOS,
        tuple(items),
        f"{'CNN/DailyMail' if corpus == 'cnn_dm' else 'XSum'} articles (bigbench factuality_of_summary), "
        "reference-summary recall",
        (f"documents under {_MIN_SUMMARY_DOC_TOKENS} o200k tokens are left out",),
    )


_BUILDERS: dict[str, Callable[..., Suite]] = {
    "squad-qa": _squad_qa,
    "quoref-qa": lambda n, **kw: _passage_qa("quoref", n, **kw),
    "drop-qa": lambda n, **kw: _passage_qa("drop", n, **kw),
    "squad-agnostic": _squad_agnostic,
    "gsm8k-qa": _gsm8k_qa,
    "gsm8k-agnostic": _gsm8k_agnostic,
    "cnn_dm": lambda n, **kw: _summaries("cnn_dm", n, **kw),
    "xsum": lambda n, **kw: _summaries("xsum", n, **kw),
    "shifts-reddit-qa": lambda n, **kw: _shifts("shifts-reddit-qa", n, **kw),
    "shifts-new_wiki-qa": lambda n, **kw: _shifts("shifts-new_wiki-qa", n, **kw),
}


def _shifts(name: str, n: int, **kw: bool | int) -> Suite:
    from promptzip.evals.shift_suites import shift_suite  # it builds on this module's records

    return shift_suite(name, n, **kw)  # type: ignore[arg-type]


# The data set each suite is built from (``promptzip.evals.data``).
SUITE_DATA: dict[str, str] = {
    "squad-qa": "squad",
    "quoref-qa": "quoref",
    "drop-qa": "drop",
    "squad-agnostic": "squad",
    "cnn_dm": "summaries",
    "xsum": "summaries",
    "gsm8k-qa": "gsm8k",
    "gsm8k-agnostic": "gsm8k",
    "shifts-reddit-qa": "squad_shifts",
    "shifts-new_wiki-qa": "squad_shifts",
}


def withdrawn_suites(names: Sequence[str]) -> dict[str, str]:
    """The suites among ``names`` whose data can no longer be fetched, each with the reason (no network)."""
    from promptzip.evals._fetch import unavailable_reason

    reasons = {name: unavailable_reason(SUITE_DATA[name]) for name in names if name in SUITE_DATA}
    return {name: reason for name, reason in reasons.items() if reason is not None}


def build_suite(name: str, n: int, *, quick: bool = False, seed: int = 0) -> Suite:
    """The suite ``name`` with at most ``n`` items (``n`` questions, articles or documents)."""
    builder = _BUILDERS.get(name)
    if builder is None:
        raise data.DataError(f"unknown suite {name!r}; known: {', '.join(SUITES)}")
    return builder(n, quick=quick, seed=seed)


def slow_subset(items: Sequence[Item], n: int) -> list[Item]:
    """The first item of each of the first ``n`` distinct groups, in order: what the slow baselines run on (one
    question per article, so n questions are n different contexts)."""
    seen: set[str] = set()
    out: list[Item] = []
    for item in items:
        if item.group not in seen:
            seen.add(item.group)
            out.append(item)
            if len(out) == n:
                break
    return out
