"""Word-level pruning from per-word keep scores, shared by every token scorer (classifier, self-information).

A text is cut into *units*: whitespace-separated runs, with leading and trailing punctuation split off
(``"(Paris),"`` → ``(``, ``Paris``, ``),``) so a scorer can drop a comma without the word before it. Scorers return
one score per unit (:class:`~promptzip.TokenScores`); :func:`prune_scores` keeps the best units at a rate, a token
target or a probability threshold, and cuts the output **from the original text by offsets** — it never
detokenizes, so case, Unicode and the spelling inside kept words survive, and no two words are merged:

* two kept units that were neighbours keep the original text between them;
* where units were removed between them, they are joined by one space, by a line break when the removed stretch
  held one (line structure, speaker turns and Markdown survive), or by nothing when the next unit is punctuation
  that was attached to the removed word (``tower Paris,`` → ``tower,``).

Force-keep rules (applied before the budget, so they are never traded away): numbers and anything with a digit,
IDs (``AB-1234``, ``#93``, ``@user``, all-caps codes), URLs, e-mail addresses, code identifiers (``snake_case``,
``camelCase``, ``dotted.names``, ``call(``), speaker labels at line starts (``Alice:``, ``Dr. Smith:``) and the
caller's own tokens. Forced units are kept even when they alone exceed the target.

Utility of a pruned text is the sum of its kept units' scores (scores are keep-probabilities in [0, 1]).

The compressors here put pruning into the pipeline: :class:`TokenPruneCompressor` (task-agnostic, per-chunk keep
rates chosen by the knapsack) and :class:`PrunedExtractiveCompressor` (the ``balanced`` preset: extractive
relevance first, then pruning inside the sentences it keeps). Token scores are query-agnostic and cached by
content hash and scorer fingerprint, so pruning the same text at another rate costs no model call.
"""

from __future__ import annotations

import math
import re
from abc import abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from promptzip._cache import Cache, NullCache, decode_array, encode_array, make_key
from promptzip._errors import ConfigError, InputError
from promptzip._roles import Compressor, TokenScorer, drop_variant, keep_variant
from promptzip._tokenizers import Tokenizer
from promptzip._types import Chunk, Span, TokenScores, Variant

__all__ = [
    "BatchTokenScorer",
    "Pruned",
    "PrunedExtractiveCompressor",
    "RandomTokenScorer",
    "TokenPruneCompressor",
    "WordLengthScorer",
    "cached_token_scores",
    "forced_mask",
    "group_tokens",
    "phrase_groups",
    "prune_scores",
    "word_units",
]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

_RUN = re.compile(r"\S+")
_LEAD = "([{\"'“‘«¿¡<"
_TRAIL = ")]}\"'”’».,;:!?…>"
_ABBREVIATION = re.compile(r"(?:[^\W\d_]\.){2,}")
_PUNCT_ONLY = re.compile(r"[^\w]+")
# Every alternative can only start at the beginning of a word (look-behinds), so a 200k-character "word" costs
# linear time, never quadratic backtracking.
_FORCED = re.compile(
    r"(?:https?|ftp)://\S+|(?<!\S)www\.\S+"  # URLs
    r"|(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+"  # e-mail addresses
    r"|[#@$]\w+"  # #93, @user, $HOME
    r"|(?<!\w)\w*\d\w*"  # numbers, and any word with a digit (AB-1234, 3rd, v2)
    r"|(?<![\w.])\w+(?:[._]\w+)+"  # snake_case, dotted.names
    r"|\b[a-z]+[A-Z]\w*"  # camelCase
    r"|\b[A-Z]{2,}\b"  # all-caps codes and acronyms
    r"|(?<!\w)\w+(?=\()"  # call(
)
_SPEAKER = re.compile(r"^[ \t]*[^\W\d_][\w.'’-]*(?:[ \t]+[^\W\d_][\w.'’-]*){0,2}:(?=\s|$)", re.MULTILINE)


def word_units(text: str) -> tuple[IntArray, IntArray]:
    """Start and end offsets of the units of ``text`` (see the module docstring); whitespace is in no unit."""
    starts: list[int] = []
    ends: list[int] = []
    for m in _RUN.finditer(text):
        a, b = m.span()
        run = m.group()
        lead = len(run) - len(run.lstrip(_LEAD))
        trail = len(run) - len(run.rstrip(_TRAIL))
        if lead + trail >= len(run):  # punctuation only: one unit
            starts.append(a)
            ends.append(b)
            continue
        if trail and run[-1] == "." and _ABBREVIATION.fullmatch(run, lead, len(run) - trail + 1):
            trail -= 1  # "U.S." keeps its final period
        if lead:
            starts.append(a)
            ends.append(a + lead)
        starts.append(a + lead)
        ends.append(b - trail)
        if trail:
            starts.append(b - trail)
            ends.append(b)
    return np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)


def _mark_spans(starts: IntArray, ends: IntArray, spans: Iterable[tuple[int, int]]) -> BoolArray:
    """Units that overlap any of ``spans`` (vectorized: one searchsorted per side, a cumulative sum)."""
    pairs = np.asarray(list(spans), dtype=np.int64).reshape(-1, 2)
    n = len(starts)
    if not n or not len(pairs):
        return np.zeros(n, dtype=bool)
    lo = np.searchsorted(ends, pairs[:, 0], side="right")
    hi = np.searchsorted(starts, pairs[:, 1], side="left")
    ok = hi > lo
    marks = np.zeros(n + 1, dtype=np.int64)
    np.add.at(marks, lo[ok], 1)
    np.add.at(marks, hi[ok], -1)
    return np.cumsum(marks[:n]) > 0


def forced_mask(
    text: str,
    starts: IntArray,
    ends: IntArray,
    *,
    force_tokens: Sequence[str] = (),
    extra: Iterable[tuple[int, int]] = (),
) -> BoolArray:
    """Units that must survive pruning: the built-in rules, ``force_tokens`` (whole words, or any occurrence for
    tokens that are not words, such as ``"?"``) and the ``extra`` character spans (Markdown structure, say)."""
    spans: list[tuple[int, int]] = [m.span() for m in _FORCED.finditer(text)]
    spans.extend(m.span() for m in _SPEAKER.finditer(text) if all(w[0].isupper() for w in m.group().split()))
    spans.extend(extra)
    words = [t for t in force_tokens if t and t.strip()]
    if words:
        alternatives = "|".join(
            rf"(?<!\w){re.escape(t.strip())}(?!\w)" if re.search(r"\w", t) else re.escape(t.strip())
            for t in sorted(words, key=len, reverse=True)
        )
        spans.extend(m.span() for m in re.finditer(alternatives, text))
    return _mark_spans(starts, ends, spans)


def group_tokens(
    starts: IntArray,
    ends: IntArray,
    token_starts: IntArray,
    token_ends: IntArray,
    values: FloatArray,
    *,
    how: str = "mean",
) -> FloatArray:
    """Aggregate per-token ``values`` onto units by character offsets, for any tokenizer.

    A token belongs to the first unit it overlaps (a leading space in the token is skipped); a unit that no
    token starts in (a comma merged into the word token before it) takes the value of the token covering it.
    ``how``: ``"mean"`` (keep-probabilities) or ``"sum"`` (self-information: the bits of the unit).
    """
    n = len(starts)
    out = np.zeros(n, dtype=np.float64)
    if not n:
        return out
    values = np.asarray(values, dtype=np.float64)
    token_starts = np.asarray(token_starts, dtype=np.int64)
    token_ends = np.asarray(token_ends, dtype=np.int64)
    real = token_ends > token_starts
    token_starts, token_ends, values = token_starts[real], token_ends[real], values[real]
    unit = np.searchsorted(ends, token_starts, side="right")
    inside = unit < n
    inside[inside] &= starts[unit[inside]] < token_ends[inside]
    unit, vals = unit[inside], values[inside]
    sums = np.bincount(unit, weights=vals, minlength=n)
    counts = np.bincount(unit, minlength=n)
    has = counts > 0
    out[has] = sums[has] / counts[has] if how == "mean" else sums[has]
    if (~has).any() and len(token_starts):
        # units without a token of their own: the token that covers their first character
        order = np.argsort(token_starts, kind="stable")
        ts, te, tv = token_starts[order], token_ends[order], values[order]
        j = np.searchsorted(ts, starts[~has], side="right") - 1
        covered = (j >= 0) & (te[np.maximum(j, 0)] > starts[~has])
        fill = np.where(covered, tv[np.maximum(j, 0)], 0.0)
        out[~has] = fill if how == "mean" else fill * 0.5
    return out


def phrase_groups(text: str, starts: IntArray, ends: IntArray, *, max_words: int = 4) -> IntArray:
    """A phrase id per unit: phrases end at punctuation, line breaks and function words, and hold at most
    ``max_words`` units (a light, dependency-free stand-in for Selective Context's noun phrases)."""
    n = len(starts)
    ids = np.zeros(n, dtype=np.int64)
    phrase = 0
    size = 0
    for i in range(n):
        word = text[starts[i] : ends[i]]
        gap = text[ends[i - 1] : starts[i]] if i else ""
        boundary = (
            i == 0
            or size >= max_words
            or "\n" in gap
            or bool(_PUNCT_ONLY.fullmatch(word))
            or bool(_PUNCT_ONLY.fullmatch(text[starts[i - 1] : ends[i - 1]]))
            or word.lower() in _FUNCTION_WORDS
        )
        if boundary and i:
            phrase += 1
            size = 0
        ids[i] = phrase
        size += 1
    return ids


_FUNCTION_WORDS = frozenset(
    "a an the and or but nor of in on at to for from by with as is are was were be been being that which who whom"
    " whose this these those it its into onto than then so if".split()
)


# --------------------------------------------------------------------------------------------------- pruning


@dataclass(frozen=True, slots=True, eq=False)
class Pruned:
    """A pruned text: ``kept`` are character spans of the scored text (shifted by ``offset``); ``mask`` marks the
    kept units; ``tokens`` is exact when a tokenizer was given (else the number of kept units)."""

    text: str
    kept: tuple[Span, ...]
    mask: BoolArray
    tokens: int
    utility: float
    forced: int


def _assemble(
    text: str, starts: IntArray, ends: IntArray, mask: BoolArray, offset: int
) -> tuple[str, tuple[Span, ...]]:
    idx = np.flatnonzero(mask)
    if not len(idx):
        return "", ()
    # runs of consecutive kept units are copied verbatim; runs are joined by a separator
    breaks = np.flatnonzero(np.diff(idx) > 1)
    run_first = np.concatenate(([idx[0]], idx[breaks + 1]))
    run_last = np.concatenate((idx[breaks], [idx[-1]]))
    parts: list[str] = []
    spans: list[Span] = []
    for k, (f, last) in enumerate(zip(run_first.tolist(), run_last.tolist(), strict=True)):
        a, b = int(starts[f]), int(ends[last])
        if k:
            prev = int(run_last[k - 1])
            gap = text[int(ends[prev]) : a]
            if "\n" in gap:
                parts.append("\n\n" if re.search(r"\n[ \t\r\f\v]*\n", gap) else "\n")
            elif a > 0 and not text[a - 1].isspace() and _PUNCT_ONLY.fullmatch(text[a : int(ends[f])]):
                parts.append("")
            else:
                parts.append(" ")
        parts.append(text[a:b])
        spans.append(Span(a + offset, b + offset))
    return "".join(parts), tuple(spans)


def prune_scores(
    scores: TokenScores,
    *,
    rate: float | None = None,
    target_tokens: int | None = None,
    threshold: float | None = None,
    tokenizer: Tokenizer | None = None,
    within: BoolArray | None = None,
    forced: BoolArray | None = None,
    force_tokens: Sequence[str] = (),
    offset: int = 0,
) -> Pruned:
    """Keep the best-scoring units of ``scores.text`` by exactly one of:

    * ``rate``: the kept fraction of the text's tokens (of the units ``within``, when given);
    * ``target_tokens``: at most this many tokens (exact in ``tokenizer``; forced units may exceed it);
    * ``threshold``: every unit whose keep-probability is at least this (LLMLingua #150).

    Units are taken by descending score (ties: earlier first) until the next does not fit. ``within`` limits the
    candidates (a variant's sentences); ``forced`` overrides the built-in force-keep rules.
    """
    if sum(x is not None for x in (rate, target_tokens, threshold)) != 1:
        raise ConfigError("give exactly one of rate=, target_tokens= or threshold=")
    if rate is not None and not (0.0 < rate <= 1.0):
        raise ConfigError(f"rate is the kept fraction and must be in (0, 1], got {rate}")
    if target_tokens is not None and target_tokens < 0:
        raise ConfigError(f"target_tokens must be ≥ 0, got {target_tokens}")
    text = scores.text
    starts = np.asarray(scores.starts, dtype=np.int64)
    ends = np.asarray(scores.ends, dtype=np.int64)
    values = np.asarray(scores.scores, dtype=np.float64)
    n = len(starts)
    candidates = np.ones(n, dtype=bool) if within is None else np.asarray(within, dtype=bool)
    force = forced_mask(text, starts, ends, force_tokens=force_tokens) if forced is None else forced
    force = force & candidates
    if threshold is not None:
        mask = candidates & ((values >= threshold) | force)
        return _finish(text, starts, ends, values, mask, force, tokenizer, offset)

    costs = _unit_costs(text, starts, ends, tokenizer)
    if target_tokens is None:
        assert rate is not None
        total = (
            int(costs[candidates].sum())
            if tokenizer is None
            else _exact_total(text, starts, ends, candidates, tokenizer)
        )
        target = math.floor(rate * total)
    else:
        target = target_tokens
    mask = _greedy(values, costs, candidates, force, target)
    result = _finish(text, starts, ends, values, mask, force, tokenizer, offset)
    # the joined text may tokenize a little longer than the sum of its units: tighten until it fits
    budget = target
    for _ in range(12):
        if tokenizer is None or result.tokens <= target or not (mask & ~force).any():
            break
        budget -= max(1, result.tokens - target)
        mask = _greedy(values, costs, candidates, force, budget)
        result = _finish(text, starts, ends, values, mask, force, tokenizer, offset)
    return result


def _exact_total(text: str, starts: IntArray, ends: IntArray, candidates: BoolArray, tokenizer: Tokenizer) -> int:
    joined, _ = _assemble(text, starts, ends, candidates, 0)
    return tokenizer.count(joined)


def _unit_costs(text: str, starts: IntArray, ends: IntArray, tokenizer: Tokenizer | None) -> IntArray:
    """Tokens of each unit on its own (with a leading space), counting each distinct unit once."""
    if tokenizer is None:
        return np.ones(len(starts), dtype=np.int64)
    words = [text[a:b] for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]
    distinct = list(dict.fromkeys(words))
    counts = dict(zip(distinct, tokenizer.count_many([" " + w for w in distinct]), strict=True))
    return np.fromiter((counts[w] for w in words), dtype=np.int64, count=len(words))


def _greedy(values: FloatArray, costs: IntArray, candidates: BoolArray, force: BoolArray, target: int) -> BoolArray:
    mask = force.copy()
    room = target - int(costs[force].sum())
    open_ = np.flatnonzero(candidates & ~force)
    if room <= 0 or not len(open_):
        return mask
    order = open_[np.argsort(-values[open_], kind="stable")]
    fits = np.cumsum(costs[order]) <= room
    stop = int(np.argmin(fits)) if not fits.all() else len(order)
    mask[order[:stop]] = True
    return mask


def _tidy(text: str, starts: IntArray, ends: IntArray, mask: BoolArray, force: BoolArray) -> BoolArray:
    """Punctuation split off a word goes with it: a trailing ``,`` or ``)`` only when the word before it is kept,
    a leading ``(`` only when the word after it is kept (no ``Alice:)`` junk)."""
    n = len(starts)
    if n < 2:
        return mask
    glued = np.flatnonzero(starts[1:] == ends[:-1])  # unit glued+1 touches unit glued
    if not len(glued):
        return mask
    mask = mask.copy()
    for i in glued.tolist():
        left, right = text[starts[i] : ends[i]], text[starts[i + 1] : ends[i + 1]]
        orphan = mask[i + 1] and not mask[i] and not force[i + 1] and _PUNCT_ONLY.fullmatch(right)
        if orphan and (not left or left[-1] not in _LEAD):
            mask[i + 1] = False
        if mask[i] and not mask[i + 1] and not force[i] and _PUNCT_ONLY.fullmatch(left) and left[-1] in _LEAD:
            mask[i] = False
    return mask


def _finish(
    text: str,
    starts: IntArray,
    ends: IntArray,
    values: FloatArray,
    mask: BoolArray,
    force: BoolArray,
    tokenizer: Tokenizer | None,
    offset: int,
) -> Pruned:
    mask = _tidy(text, starts, ends, mask, force)
    out, spans = _assemble(text, starts, ends, mask, offset)
    tokens = tokenizer.count(out) if tokenizer is not None else int(mask.sum())
    return Pruned(out, spans, mask, tokens, float(values[mask].sum()), int(force.sum()))


# ------------------------------------------------------------------------------------- scorers and caching


class BatchTokenScorer(TokenScorer):
    """A token scorer that scores many texts in one batched model call (windows of all texts together).

    Subclasses implement :meth:`_score_texts`; ``token_scores`` and the compressors go through it. Scores are
    keep-probabilities in [0, 1], one per :func:`word_units` unit.
    """

    name = "batch-token-scorer"

    def _token_scores(self, chunk: Chunk) -> TokenScores:
        return self.token_scores_many([chunk.text])[0]

    def token_scores_many(self, texts: Sequence[str], question: str | None = None) -> list[TokenScores]:
        """Scores of many texts in one batched call; ``question`` only for scorers with a conditioned mode."""
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise InputError(f"text {i} must be str, not {type(t).__name__}")
        units = [word_units(t) for t in texts]
        todo = [i for i, (s, _) in enumerate(units) if len(s)]
        subset = [texts[i] for i in todo]
        values = self._score_texts(subset, [units[i] for i in todo], question) if todo else []
        out = [TokenScores(t, (), (), ()) for t in texts]
        for i, v in zip(todo, values, strict=True):
            s, e = units[i]
            v = np.clip(np.nan_to_num(np.asarray(v, dtype=np.float64), nan=0.0), 0.0, 1.0)
            out[i] = TokenScores(texts[i], tuple(s.tolist()), tuple(e.tolist()), tuple(v.tolist()))
        return out

    @abstractmethod
    def _score_texts(
        self, texts: Sequence[str], units: Sequence[tuple[IntArray, IntArray]], question: str | None = None
    ) -> list[FloatArray]:
        """One score array per text, aligned with its units (``question``: conditioned mode, where supported)."""

    @property
    def fingerprint(self) -> str:
        return self.name


class WordLengthScorer(BatchTokenScorer):
    """A model-free scorer: longer words score higher (``min(1, len / 12)``). A cheap heuristic and the test double
    of the token-level compressors (deterministic, no model)."""

    name = "word-length"

    def _score_texts(
        self, texts: Sequence[str], units: Sequence[tuple[IntArray, IntArray]], question: str | None = None
    ) -> list[FloatArray]:
        return [np.minimum(1.0, (e - s).astype(np.float64) / 12.0) for s, e in units]


class RandomTokenScorer(BatchTokenScorer):
    """Uniform random keep scores, seeded by the text and ``seed`` (the floor every real scorer must beat)."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    @property
    def fingerprint(self) -> str:
        return f"random:{self.seed}"

    def _score_texts(
        self, texts: Sequence[str], units: Sequence[tuple[IntArray, IntArray]], question: str | None = None
    ) -> list[FloatArray]:
        import hashlib

        out: list[FloatArray] = []
        for text, (s, _) in zip(texts, units, strict=True):
            seed = int.from_bytes(hashlib.sha256(f"{self.seed}:{text}".encode()).digest()[:8], "big")
            out.append(np.random.default_rng(seed).random(len(s)))
        return out


def cached_token_scores(
    scorer: TokenScorer, texts: Sequence[str], cache: Cache | None, *, question: str | None = None
) -> list[TokenScores]:
    """Token scores of ``texts``, each computed once ever when a cache is given (key: scorer fingerprint, the text
    and, in a conditioned mode, the question; value: an ``(n, 3)`` float64 array of start, end, score). Misses are
    scored in one batch."""
    cache = cache if cache is not None else NullCache()
    fp = getattr(scorer, "fingerprint", scorer.name)
    parts = (question,) if question else ()
    keys = [make_key("token-scores:" + str(fp), t, *parts) for t in texts]
    text_of = dict(zip(keys, texts, strict=True))
    found = cache.get_many(sorted(text_of))
    out: dict[str, TokenScores] = {}
    for key, raw in found.items():
        try:
            array = decode_array(raw)
        except InputError:
            continue
        if array.ndim == 2 and array.shape[1] == 3:
            text = text_of[key]
            out[key] = TokenScores(
                text,
                tuple(array[:, 0].astype(np.int64).tolist()),
                tuple(array[:, 1].astype(np.int64).tolist()),
                tuple(array[:, 2].tolist()),
            )
    missing = list(dict.fromkeys(k for k in keys if k not in out))
    if missing:
        first = {k: text_of[k] for k in missing}
        if isinstance(scorer, BatchTokenScorer):
            fresh = scorer.token_scores_many(list(first.values()), question)
        else:
            fresh = [scorer.token_scores(Chunk(t)) for t in first.values()]
        puts: dict[str, bytes] = {}
        for key, ts in zip(missing, fresh, strict=True):
            out[key] = ts
            puts[key] = encode_array(np.column_stack([ts.starts, ts.ends, ts.scores]).astype(np.float64).reshape(-1, 3))
        cache.put_many(puts)
    return [out[k] for k in keys]


# ------------------------------------------------------------------------------------------- compressors


def _check_rates(rates: Sequence[float]) -> tuple[float, ...]:
    clean = tuple(sorted({float(r) for r in rates}))
    if not clean or any(not 0.0 < r < 1.0 for r in clean):
        raise ConfigError(f"pruning rates must be in (0, 1), got {rates!r}")
    return clean


class TokenPruneCompressor(Compressor):
    """Task-agnostic token pruning: per chunk, keep / prune at each of ``rates`` / drop, with exact token counts;
    the budget policy picks each chunk's rate. Utility of a variant = sum of its kept units' keep-probabilities.

    A ``<pz rate=r>`` region is pruned at ``r`` (and the lower rates), never kept whole.

    >>> c = TokenPruneCompressor(scorer, cache=MemoryCache())  # doctest: +SKIP
    >>> c.prune("The tower is 330 metres tall.", rate=0.5).text  # doctest: +SKIP
    """

    name = "token-prune"

    def __init__(
        self,
        scorer: TokenScorer,
        *,
        cache: Cache | None = None,
        rates: Sequence[float] = (0.2, 0.33, 0.5, 0.7),
        force_tokens: Sequence[str] = (),
        conditioned: bool = False,
    ) -> None:
        if conditioned and not isinstance(scorer, BatchTokenScorer):
            raise ConfigError("conditioned=True needs a scorer with a question-conditioned mode")
        self.scorer = scorer
        self.cache: Cache = cache if cache is not None else NullCache()
        self.rates = _check_rates(rates)
        self.force_tokens = tuple(force_tokens)
        self.conditioned = conditioned

    @property
    def fingerprint(self) -> str:
        fp = getattr(self.scorer, "fingerprint", self.scorer.name)
        return f"token-prune({fp},rates={self.rates},force={self.force_tokens},cond={self.conditioned})"

    def token_scores(self, texts: Sequence[str], question: str | None = None) -> list[TokenScores]:
        """Cached token scores of ``texts`` (``question`` is used only in the conditioned mode)."""
        return cached_token_scores(self.scorer, texts, self.cache, question=question if self.conditioned else None)

    def prune(
        self,
        text: str,
        *,
        rate: float | None = None,
        target_tokens: int | None = None,
        threshold: float | None = None,
        tokenizer: Tokenizer | str | None = None,
    ) -> Pruned:
        """Prune one text directly (no budget policy): see :func:`prune_scores`. ``tokenizer`` (a Tokenizer or a
        name such as ``"gpt-4o"``) makes rates and targets exact in that model's tokens; without one they count
        units."""
        if not isinstance(text, str):
            raise InputError(f"text must be str, not {type(text).__name__}")
        from promptzip._tokenizers import get_tokenizer

        tok = get_tokenizer(tokenizer) if isinstance(tokenizer, str) else tokenizer
        (scores,) = self.token_scores([text])
        return prune_scores(
            scores,
            rate=rate,
            target_tokens=target_tokens,
            threshold=threshold,
            tokenizer=tok,
            force_tokens=self.force_tokens,
        )

    def _propose(self, chunks: Sequence[Chunk], query: str | None, tokenizer: Tokenizer) -> list[list[Variant]]:
        open_ = [i for i, c in enumerate(chunks) if not c.protected]
        scored = dict(zip(open_, self.token_scores([chunks[i].text for i in open_], query), strict=True))
        whole = tokenizer.count_many([c.text for c in chunks])
        groups: list[list[Variant]] = []
        for i, chunk in enumerate(chunks):
            if chunk.protected:
                groups.append([keep_variant(chunk, whole[i])])
                continue
            scores = scored[i]
            total = float(sum(scores.scores))
            region = chunk.metadata.get("rate") if chunk.metadata else None
            if region is None:
                rates: tuple[float, ...] = self.rates
                variants = [drop_variant(chunk), keep_variant(chunk, whole[i], total)]
            else:  # a <pz rate=r> region: pruned at r (or below), never kept whole
                rates = (*(r for r in self.rates if r < region), float(region))
                variants = [drop_variant(chunk)]
            forced = forced_mask(
                scores.text,
                np.asarray(scores.starts, dtype=np.int64),
                np.asarray(scores.ends, dtype=np.int64),
                force_tokens=self.force_tokens,
            )
            seen = {v.text for v in variants}
            for r in rates:
                p = prune_scores(scores, rate=r, tokenizer=tokenizer, forced=forced, offset=chunk.start)
                if p.text in seen:
                    continue
                seen.add(p.text)
                variants.append(Variant(chunk, f"prune@{r:g}", p.text, p.tokens, p.utility, p.kept))
            groups.append(variants)
        return groups


class PrunedExtractiveCompressor(Compressor):
    """Extractive relevance first, then token pruning inside what it keeps (the ``balanced`` preset).

    For each variant the extractive compressor proposes (its kept sentences), this adds pruned versions at each
    of ``rates`` (the kept sentences become many smaller spans). A pruned variant's utility is the extractive
    utility scaled by the share of keep-probability mass it keeps: ``U · Σ kept scores / Σ scores in the variant``,
    so relevance decides *which* sentences and the token scorer *how much of them*.
    """

    name = "pruned-extractive"

    def __init__(
        self,
        extractive: Compressor,
        scorer: TokenScorer,
        *,
        cache: Cache | None = None,
        rates: Sequence[float] = (0.33, 0.5, 0.7),
        force_tokens: Sequence[str] = (),
        max_pruned_variants: int = 8,
    ) -> None:
        self.extractive = extractive
        self.scorer = scorer
        self.cache: Cache = cache if cache is not None else NullCache()
        self.rates = _check_rates(rates)
        self.force_tokens = tuple(force_tokens)
        self.max_pruned_variants = max_pruned_variants

    @property
    def fingerprint(self) -> str:
        fp = getattr(self.scorer, "fingerprint", self.scorer.name)
        return (
            f"pruned-extractive({self.extractive.fingerprint},{fp},rates={self.rates},"
            f"force={self.force_tokens},v={self.max_pruned_variants})"
        )

    def _propose(self, chunks: Sequence[Chunk], query: str | None, tokenizer: Tokenizer) -> list[list[Variant]]:
        groups = self.extractive.propose(chunks, query, tokenizer)
        todo = [
            i for i, (c, g) in enumerate(zip(chunks, groups, strict=True)) if not c.protected and any(v.text for v in g)
        ]
        scored = dict(
            zip(todo, cached_token_scores(self.scorer, [chunks[i].text for i in todo], self.cache), strict=True)
        )
        out: list[list[Variant]] = []
        for i, (chunk, group) in enumerate(zip(chunks, groups, strict=True)):
            if i not in scored:
                out.append(list(group))
                continue
            out.append(self._prune_group(chunk, group, scored[i], tokenizer))
        return out

    def _prune_group(
        self, chunk: Chunk, group: list[Variant], scores: TokenScores, tokenizer: Tokenizer
    ) -> list[Variant]:
        starts = np.asarray(scores.starts, dtype=np.int64)
        ends = np.asarray(scores.ends, dtype=np.int64)
        values = np.asarray(scores.scores, dtype=np.float64)
        forced = forced_mask(scores.text, starts, ends, force_tokens=self.force_tokens)
        costs = _unit_costs(scores.text, starts, ends, tokenizer)
        region = chunk.metadata.get("rate") if chunk.metadata else None
        variants = list(group)
        seen = {v.text for v in group}
        bases = sorted((v for v in group if v.text), key=lambda v: -v.tokens)[: self.max_pruned_variants]
        pending: list[tuple[str, float, tuple[Span, ...], str]] = []
        for base in bases:
            within = _mark_spans(starts, ends, [(s.start - chunk.start, s.end - chunk.start) for s in base.kept])
            mass = float(values[within].sum())
            base_units = int(costs[within].sum())
            for r in self.rates:
                mask = _greedy(values, costs, within, forced & within, math.floor(r * base_units))
                mask = _tidy(scores.text, starts, ends, mask, forced)
                text, spans = _assemble(scores.text, starts, ends, mask, chunk.start)
                if not text or text in seen:
                    continue
                seen.add(text)
                share = float(values[mask].sum()) / mass if mass > 0 else float(mask.sum()) / max(1, int(within.sum()))
                pending.append((text, base.utility * share, spans, f"{base.kind}+prune@{r:g}"))
        counts = tokenizer.count_many([p[0] for p in pending])
        for (text, utility, spans, kind), n in zip(pending, counts, strict=True):
            if region is not None and len(text) > float(region) * len(chunk.text):
                continue
            variants.append(Variant(chunk, kind, text, n, utility, spans, group[0].relevance))
        return variants
