"""Abstractive compression (RECOMP's abstractive half): summaries as one more variant per chunk, under a fidelity
check, so the budget policy can trade a chunk's sentences for a shorter rewrite only where that pays.

:class:`AbstractiveCompressor` wraps an inner compressor (the ``balanced`` stack in the ``max`` preset). For the
``max_chunks`` most relevant open chunks it asks a :class:`~promptzip.compressors.summarizers.Summarizer` for a
summary at each ``targets`` fraction of the chunk's tokens and adds it as a ``summary@<fraction>`` variant, with
its exact cost in the request's tokenizer, no verbatim spans (``kept=()``), and utility
``U_keep · fidelity share · discount``.

Fidelity: the facts of a text are its numbers (decimals, dates, percents, amounts), IDs (letters mixed with
digits, hex, e-mails, URLs) and capitalized names (:func:`extract_facts`). A summary is rejected, and the chunk
keeps its extractive and pruned variants only, when it

* is empty, longer than the chunk or than its target,
* misses a fact that matters: with a query, those of the sentences most relevant to it (sharing its content
  words, or holding the inner compressor's densest variant); without one, every number and ID of the chunk,
* or holds a number or ID that is not in the chunk (a hallucination).

A failing backend (timeout, unreachable endpoint, missing model) never fails the request: the request goes on
with the inner variants, and a warning is logged once per reason. Summaries are cached by summarizer
fingerprint, target size and text (and the query only for query-focused summaries), so a chunk is summarized once
per size, ever; a rejected summary is cached too (its verdict is recomputed, cheaply, from the cached text).
Generation time is reported in ``Result.timings["summarize"]``.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from promptzip._cache import Cache, NullCache, decode_json, encode_json, make_key
from promptzip._errors import ConfigError, InputError, PromptZipError
from promptzip._fingerprint import derived_fingerprint
from promptzip._pipeline import record_timing
from promptzip._roles import Compressor
from promptzip._split import sentence_spans
from promptzip._tokenizers import Tokenizer
from promptzip._types import Chunk, Variant
from promptzip.compressors.summarizers import Summarizer

__all__ = ["AbstractiveCompressor", "Facts", "Verdict", "check_summary", "extract_facts", "required_facts"]

logger = logging.getLogger("promptzip")

_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"'()\[\]]+[^\s<>\"'()\[\].,;:!?]")
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_TOKEN = re.compile(r"[A-Za-z0-9]+(?:[-_./:#][A-Za-z0-9]+)*")
_UNIT = re.compile(r"\d+(?:[.,]\d+)*-?[a-z]+")  # 81-storey, 5km, 1st, 1980s: a number with a unit, not an ID
_NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?")
_NAME = re.compile(r"[A-Z][A-Za-z'’]*[A-Za-z](?:[ \t]+[A-Z][A-Za-z'’]*[A-Za-z])*")
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    """a about after all also an and any are as at be because been before being between both but by can could did
    do does during each for from had has have he her here him his how i if in into is it its just may me more most
    my no not of on one only or other our out over own same she should so some such than that the their them then
    there these they this those through to too under until up very was we were what when where which while who whom
    why will with would you your""".split()
)


@dataclass(frozen=True, slots=True)
class Facts:
    """What must survive a rewrite: canonical numbers, lower-cased IDs and lower-cased names. ``id_numbers`` are
    the digit groups inside the IDs (a summary that writes one of them alone invents nothing)."""

    numbers: frozenset[str] = frozenset()
    ids: frozenset[str] = frozenset()
    names: frozenset[str] = frozenset()
    id_numbers: frozenset[str] = frozenset()

    @property
    def count(self) -> int:
        return len(self.numbers) + len(self.ids) + len(self.names)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The fidelity check of one summary: ``reason`` is ``""`` when accepted; ``share`` is the estimated share of
    the source's information it keeps, in [0, 1]."""

    reason: str
    detail: str = ""
    share: float = 0.0

    @property
    def accepted(self) -> bool:
        return not self.reason


def _canonical_number(raw: str) -> str:
    digits = raw.replace(",", "")
    whole, _, frac = digits.partition(".")
    frac = frac.rstrip("0")
    return f"{int(whole)}.{frac}" if frac else str(int(whole))


def _blank(text: str, start: int, end: int) -> str:
    return text[:start] + " " * (end - start) + text[end:]


def extract_facts(text: str) -> Facts:
    """Numbers, IDs and capitalized names of ``text`` (regular expressions; no model).

    >>> sorted(extract_facts("Invoice INV-2024-0042 of $1,083.50 was sent to Ada Lovelace on 26 July.").numbers)
    ['1083.5', '26']
    """
    ids: set[str] = set()
    for pattern in (_URL, _EMAIL):
        for m in pattern.finditer(text):
            ids.add(m.group().lower())
            text = _blank(text, m.start(), m.end())
    id_numbers: set[str] = set()
    for m in _TOKEN.finditer(text):
        token = m.group()
        if any(ch.isdigit() for ch in token) and any(ch.isalpha() for ch in token) and not _UNIT.fullmatch(token):
            ids.add(token.lower())
            id_numbers.update(_canonical_number(n) for n in _NUMBER.findall(token))
            text = _blank(text, m.start(), m.end())
    numbers = frozenset(_canonical_number(n) for n in _NUMBER.findall(text))
    return Facts(numbers, frozenset(ids), _names(text), frozenset(id_numbers))


def _names(text: str) -> frozenset[str]:
    """Runs of capitalized words without leading stopwords; a single word that starts a sentence counts only when
    it is capitalized somewhere else too (so "However" and "It" are not names)."""
    inner: set[str] = set()
    initial: set[str] = set()
    for m in _NAME.finditer(text):
        words = m.group().split()
        while words and words[0].lower() in _STOP:
            words.pop(0)
        if not words:
            continue
        name = " ".join(words).lower()
        before = text[: m.start()].rstrip()
        at_start = not before or before[-1] in ".!?:\"'\n"
        (initial if at_start and len(m.group().split()) == 1 else inner).add(name)
    return frozenset(inner | (initial & inner))


def _content(text: str) -> set[str]:
    """Content-word stems (lower case, no stopwords, first five letters) for overlap counts."""
    return {w[:5] for w in _WORD.findall(text.lower()) if w not in _STOP and (len(w) >= 3 or w.isdigit())}


def _mentions(summary: str, words: set[str], name: str) -> bool:
    if re.search(rf"(?<!\w){re.escape(name)}(?!\w)", summary):
        return True
    last = name.split()[-1]
    return len(last) >= 3 and last in words


def required_facts(text: str, query: str | None, focus: Sequence[tuple[int, int]] = ()) -> Facts:
    """The facts of ``text`` a summary must keep. With a query: the facts of the (at most two) sentences sharing
    the most content words with it, and of the sentences that overlap ``focus`` (character ranges of ``text``,
    e.g. the inner compressor's densest variant). Without one: every number and ID."""
    whole = extract_facts(text)
    if not query:
        return Facts(whole.numbers, whole.ids, id_numbers=whole.id_numbers)
    wanted = _content(query)
    spans = sentence_spans(text)
    overlaps = [len(wanted & _content(text[a:b])) for a, b in spans]
    best = max(overlaps, default=0)
    ranked = sorted((i for i, o in enumerate(overlaps) if best and o == best), key=lambda i: i)[:2]
    chosen = set(ranked) | {i for i, (a, b) in enumerate(spans) if any(s < b and a < e for s, e in focus)}
    numbers: set[str] = set()
    ids: set[str] = set()
    names: set[str] = set()
    for i in sorted(chosen):
        sentence = text[spans[i][0] : spans[i][1]]
        facts = extract_facts(sentence)
        numbers |= facts.numbers
        ids |= facts.ids
        lower = sentence.lower()
        names |= {n for n in whole.names if re.search(rf"(?<!\w){re.escape(n)}(?!\w)", lower)}
    return Facts(frozenset(numbers), frozenset(ids), frozenset(names))


def check_summary(summary: str, source: str, required: Facts) -> Verdict:
    """Reject a summary that invents a number or ID, or misses a required fact; else estimate the share of the
    source it keeps: the mean of its fact coverage and its content-word coverage (word coverage alone when the
    source has no facts)."""
    if not summary.strip():
        return Verdict("empty")
    have = extract_facts(summary)
    src = extract_facts(source)
    lower_source = source.lower()
    invented = sorted(have.numbers - src.numbers - src.id_numbers) + sorted(
        i for i in have.ids if i not in src.ids and i not in lower_source
    )
    if invented:
        return Verdict("hallucinated number", ", ".join(invented[:5]))
    lower = summary.lower()
    words = set(_WORD.findall(lower))
    present = have.numbers | have.id_numbers
    missing = (
        sorted(required.numbers - present)
        + sorted(i for i in required.ids if i not in have.ids and i not in lower)
        + sorted(n for n in required.names if not _mentions(lower, words, n))
    )
    if missing:
        return Verdict("missing fact", ", ".join(missing[:5]))
    source_words = _content(source)
    word_share = len(source_words & _content(summary)) / len(source_words) if source_words else 1.0
    if not src.count:
        return Verdict("", share=min(1.0, word_share))
    kept = (
        len(src.numbers & present)
        + sum(1 for i in src.ids if i in have.ids or i in lower)
        + sum(1 for n in src.names if _mentions(lower, words, n))
    )
    return Verdict("", share=min(1.0, 0.5 * (kept / src.count + word_share)))


@dataclass(frozen=True, slots=True)
class _Plan:
    """One chunk to summarize: its group, whole size, best inner utility, densest variant and targets."""

    index: int
    tokens: int
    utility: float
    relevance: float
    focus: tuple[tuple[int, int], ...]
    targets: tuple[tuple[float, int], ...]


class AbstractiveCompressor(Compressor):
    """Adds fidelity-checked summaries of the most relevant chunks to an inner compressor's variants.

    ``targets``: summary sizes as fractions of the chunk's tokens; ``max_chunks``: how many chunks (most relevant
    first) are summarized per request; chunks under ``min_chunk_tokens`` are not. ``discount`` scales a summary's
    utility (a rewrite is never quite the source). ``query_focused``: summaries are asked to keep what answers the
    query (cached per query); ``False`` makes them query-agnostic, reused across every question.

    >>> inner = Zipper.from_preset("balanced").compressor  # doctest: +SKIP
    >>> AbstractiveCompressor(inner, LocalSummarizer("smollm2-135m"), cache=MemoryCache())  # doctest: +SKIP
    """

    name = "abstractive"

    def __init__(
        self,
        inner: Compressor,
        summarizer: Summarizer,
        *,
        cache: Cache | None = None,
        targets: Sequence[float] = (0.25, 0.5),
        max_chunks: int = 4,
        min_chunk_tokens: int = 48,
        discount: float = 0.9,
        query_focused: bool = True,
    ) -> None:
        if not isinstance(inner, Compressor):
            raise ConfigError(f"inner must be a Compressor, not {type(inner).__name__}")
        if not isinstance(summarizer, Summarizer):
            raise ConfigError(f"summarizer must be a Summarizer, not {type(summarizer).__name__}")
        clean = tuple(sorted({float(t) for t in targets}))
        if not clean or any(not 0.0 < t < 1.0 for t in clean):
            raise ConfigError(f"summary targets must be fractions in (0, 1), got {targets!r}")
        if max_chunks < 0 or min_chunk_tokens < 1:
            raise ConfigError("max_chunks must be >= 0 and min_chunk_tokens >= 1")
        if not 0.0 < discount <= 1.0:
            raise ConfigError(f"discount must be in (0, 1], got {discount}")
        self.inner = inner
        self.summarizer = summarizer
        self.cache: Cache = cache if cache is not None else NullCache()
        self.targets = clean
        self.max_chunks = max_chunks
        self.min_chunk_tokens = min_chunk_tokens
        self.discount = discount
        self.query_focused = query_focused
        self._reported: set[str] = set()
        self._lock = threading.Lock()
        # What became of the summaries this compressor offered, over its life: "generated" (new or cached),
        # "accepted", "rejected:<reason>". For monitoring, and the max check (evals/max_summaries.py).
        self.verdicts: Counter[str] = Counter()

    @property
    def fingerprint(self) -> str:
        return derived_fingerprint(self)

    def _propose(self, chunks: Sequence[Chunk], query: str | None, tokenizer: Tokenizer) -> list[list[Variant]]:
        groups = [list(g) for g in self.inner.propose(chunks, query, tokenizer)]
        plans = self._plans(chunks, groups, tokenizer)
        if not plans:
            return groups
        t = time.perf_counter()
        try:
            summaries = self._summaries(chunks, plans, query)
        finally:
            record_timing("summarize", time.perf_counter() - t)
        found = [
            (plan, fraction, target, summaries[plan.index, target])
            for plan in plans
            for fraction, target in plan.targets
            if (plan.index, target) in summaries
        ]
        counts = tokenizer.count_many([text for *_, text in found])
        with self._lock:
            self.verdicts["generated"] += len(found)
        for (plan, fraction, target, text), n in zip(found, counts, strict=True):
            chunk = chunks[plan.index]
            if n > target or n >= plan.tokens:
                verdict = Verdict("too long", f"{n} tokens for a target of {target}")
            else:
                verdict = check_summary(text, chunk.text, required_facts(chunk.text, query, plan.focus))
            with self._lock:
                self.verdicts["accepted" if verdict.accepted else f"rejected:{verdict.reason}"] += 1
            if not verdict.accepted:
                self._report(
                    f"rejected:{verdict.reason}",
                    f"abstractive: a summary was rejected ({verdict.reason}); its chunk keeps the extractive variants",
                    verdict.detail,
                )
                continue
            utility = plan.utility * verdict.share * self.discount
            groups[plan.index].append(Variant(chunk, f"summary@{fraction:g}", text, n, utility, (), plan.relevance))
        return groups

    def _plans(self, chunks: Sequence[Chunk], groups: list[list[Variant]], tokenizer: Tokenizer) -> list[_Plan]:
        """The chunks worth summarizing, most relevant first."""
        plans: list[_Plan] = []
        for i, (chunk, group) in enumerate(zip(chunks, groups, strict=True)):
            texts = [v for v in group if v.text]
            if chunk.protected or not texts or self.max_chunks == 0:
                continue
            keep = next((v for v in group if v.kind == "keep"), None)
            whole = keep.tokens if keep is not None else tokenizer.count(chunk.text)
            utility = max(v.utility for v in group)
            if whole < self.min_chunk_tokens or utility <= 0:
                continue
            region = chunk.metadata.get("rate") if chunk.metadata else None
            targets = tuple(
                (f, math.floor(f * whole))
                for f in self.targets
                if (region is None or f <= float(region)) and math.floor(f * whole) >= 8
            )
            if not targets:
                continue
            dense = [v for v in texts if v.kind != "keep" and v.utility > 0 and v.tokens > 0]
            best = max(dense, key=lambda v: v.utility / v.tokens, default=None)
            focus = tuple((s.start - chunk.start, s.end - chunk.start) for s in best.kept) if best else ()
            relevance = max(v.relevance for v in group)
            plans.append(_Plan(i, whole, utility, relevance, focus, targets))
        plans.sort(key=lambda p: (-p.relevance, -p.utility, p.index))
        return plans[: self.max_chunks]

    def _summaries(self, chunks: Sequence[Chunk], plans: list[_Plan], query: str | None) -> dict[tuple[int, int], str]:
        """Summary texts by (group, target tokens): cached ones, then the misses, generated in plan order until the
        backend fails (then the rest of this request goes without)."""
        focus = query if self.query_focused and query else None
        namespace = "summary:" + self.summarizer.fingerprint
        keys = {
            (p.index, target): make_key(namespace, str(target), chunks[p.index].text, *((focus,) if focus else ()))
            for p in plans
            for _, target in p.targets
        }
        found = self.cache.get_many(sorted(set(keys.values())))
        out: dict[tuple[int, int], str] = {}
        for slot, key in keys.items():
            raw = found.get(key)
            if raw is None:
                continue
            try:
                value = decode_json(raw)
            except InputError:
                continue
            if isinstance(value, dict) and isinstance(value.get("text"), str):
                out[slot] = value["text"]
        fresh: dict[str, str] = {}
        for slot, key in keys.items():
            if slot in out:
                continue
            if key in fresh:
                out[slot] = fresh[key]
                continue
            index, target = slot
            try:
                text = self.summarizer.summarize(chunks[index].text, query=focus, max_tokens=target)
            except PromptZipError as exc:
                self._report(
                    f"failed:{type(exc).__name__}:{getattr(exc, 'status_code', None)}",
                    f"abstractive: the summarizer {self.summarizer.name!r} failed ({type(exc).__name__}: {exc}); "
                    "this request goes on with extractive variants only",
                    "",
                )
                break
            out[slot] = fresh[key] = text
            self.cache.put(key, encode_json({"text": text}))
        return out

    def _report(self, reason: str, message: str, detail: str) -> None:
        """Log ``message`` as a warning the first time ``reason`` happens, at debug level afterwards."""
        with self._lock:
            first = reason not in self._reported
            self._reported.add(reason)
        if first:
            logger.warning("%s", message)
        logger.debug("%s%s", message, f": {detail}" if detail else "")
