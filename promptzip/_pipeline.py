"""The pipeline: split → score/propose → select → assemble → verify, in one direction.

A :class:`Zipper` is cheap to build, reusable and thread-safe (it holds no per-request state); its models load on
first use and are shared by every Zipper in the process.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from promptzip._assembly import Assembly
from promptzip._budget_scope import budget_scope
from promptzip._cache import Cache, MemoryCache, cache_from_url
from promptzip._deadline import check
from promptzip._errors import BudgetError, ConfigError, InputError, check_int
from promptzip._inputs import Context, as_sources, check_text
from promptzip._policy import BudgetPolicy, Policy
from promptzip._presets import configure
from promptzip._pricing import CachePricing
from promptzip._registry import registries
from promptzip._request_memo import request_scope
from promptzip._roles import Compressor
from promptzip._select import decision, provenance, select_with_tags
from promptzip._split import chunk_source
from promptzip._tokenizers import Tokenizer, get_tokenizer
from promptzip._types import Budget, Chunk, Result, Source, Variant
from promptzip._version import __version__

__all__ = ["REORDERS", "Zipper", "record_timing"]

REORDERS = ("original", "relevance", "lost_in_the_middle")

_timings: contextvars.ContextVar[dict[str, float] | None] = contextvars.ContextVar("promptzip_timings", default=None)


def record_timing(stage: str, seconds: float) -> None:
    """Add ``seconds`` to ``Result.timings[stage]`` of the compression running in this context (a compressor's
    own stage inside ``propose``, e.g. ``"summarize"``); outside a compression it does nothing. Each call of
    ``Zipper.compress`` has its own dict in its own context, so concurrent requests never mix."""
    timings = _timings.get()
    if timings is not None:
        timings[stage] = timings.get(stage, 0.0) + seconds


class Zipper(Assembly):
    """Compresses context to a token budget with one compressor and one policy.

    >>> zipper = Zipper.from_preset("fast", target="gpt-4o", cache="memory")  # doctest: +SKIP
    >>> zipper.compress(text, question="Who?", budget=Budget(tokens=300)).text  # doctest: +SKIP
    """

    def __init__(
        self,
        compressor: Compressor,
        *,
        policy: Policy | None = None,
        target: str | Tokenizer = "gpt-4o",
        reorder: str = "original",
        separator: str = "\n\n",
        max_chunk_chars: int = 2000,
        name: str = "custom",
        cache: str | Cache | None = None,
    ) -> None:
        if not callable(getattr(compressor, "propose", None)):
            hint = f"; for a named stack use Zipper.from_preset({compressor!r})" if isinstance(compressor, str) else ""
            raise ConfigError(f"compressor must be a promptzip.Compressor, not {type(compressor).__name__}{hint}")
        if policy is not None and not callable(getattr(policy, "select", None)):
            raise ConfigError(f"policy must be a promptzip.Policy, not {type(policy).__name__}")
        if reorder not in REORDERS:
            raise ConfigError(f"unknown reorder {reorder!r}; use one of {', '.join(REORDERS)}")
        check_int(max_chunk_chars, "max_chunk_chars", minimum=100)
        if not isinstance(separator, str):
            raise ConfigError(f"separator must be a str, not {type(separator).__name__}")
        self.compressor = compressor
        self.policy: Policy = policy if policy is not None else BudgetPolicy()
        self.tokenizer = get_tokenizer(target)
        # The model named, where one was: gpt-5 and gpt-4o share a tokenizer, not their cache prices.
        self.target = target if isinstance(target, str) else self.tokenizer.name
        self.reorder = reorder
        self.separator = separator
        self.max_chunk_chars = max_chunk_chars
        self.name = name
        # What the Zipper keeps beyond its components' own caches: conversation state (cache-stable history) and
        # what structured reduction dropped (promptzip.expand). A preset's Zipper shares its components' cache, so
        # both reach every process and replica that shares it; a hand-built one without a cache keeps them in memory.
        # A URL (``"memory"``, ``"sqlite:///..."``) as from_preset takes it; None is memory here, not the SQLite file.
        self.cache: Cache = cache_from_url(cache) if cache is not None else MemoryCache()

    @classmethod
    def from_preset(
        cls,
        name: str = "fast",
        *,
        target: str | Tokenizer = "gpt-4o",
        cache: str | Cache | None = None,
        reorder: str = "original",
        progress: bool = False,
        **options: Any,
    ) -> Zipper:
        """A Zipper for a named stack (``fast``, ...). ``cache``: a URL (``sqlite:///path``, ``memory``, ``none``)
        or a Cache; ``None`` is the SQLite cache under the user's cache folder. Options go to the preset."""
        if not isinstance(name, str):
            raise ConfigError(f"preset must be a name, not {type(name).__name__}")
        factory = registries.presets.get(name)
        preset = configure(factory, name, options)  # a misspelled option fails here, naming the valid ones
        store = cache_from_url(cache)
        if preset is not None:
            parts = preset.build(cache=store, progress=progress)
        else:  # a plug-in's plain factory function
            parts = factory(cache=store, progress=progress, **options)
        return cls(parts.compressor, target=target, reorder=reorder, name=name, cache=store)

    @property
    def fingerprint(self) -> str:
        raw = f"promptzip {__version__}|{self.compressor.fingerprint}|{self.policy!r}|{self.tokenizer.fingerprint}"
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"Zipper(name={self.name!r}, compressor={self.compressor.name!r}, target={self.tokenizer.name!r})"

    # ---------------------------------------------------------------------------------------------- public API
    def compress(
        self,
        context: Context,
        *,
        question: str | None = None,
        instruction: str | None = None,
        budget: Budget | int | None = None,
        rate: float | None = None,
        reorder: str | None = None,
        query: str | None = None,
    ) -> Result:
        """Compress ``context`` (a text, a Chunk, or a list of them) so that instruction + context + question fit
        ``budget`` tokens of the target model.

        ``question`` is both scored against and placed after the context; ``query`` is only scored against (for
        callers that place the question themselves, e.g. a LangChain prompt). Give one or the other.
        """
        spec = Budget.coerce(budget, rate=rate)
        sources = as_sources(context)
        question = _optional_text(question, "question")
        instruction = _optional_text(instruction, "instruction")
        query = _optional_text(query, "query")
        if question and query:
            raise ConfigError("give either question= (scored and kept) or query= (scored only), not both")
        return self._run(sources, question, instruction, spec, reorder or self.reorder, query=query)

    async def acompress(
        self,
        context: Context,
        *,
        question: str | None = None,
        instruction: str | None = None,
        budget: Budget | int | None = None,
        rate: float | None = None,
        reorder: str | None = None,
        query: str | None = None,
    ) -> Result:
        """``compress`` in a worker thread, so the event loop keeps serving while models run."""
        return await asyncio.to_thread(
            functools.partial(
                self.compress,
                context,
                question=question,
                instruction=instruction,
                budget=budget,
                rate=rate,
                reorder=reorder,
                query=query,
            )
        )

    def compress_messages(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        budget: Budget | int | None = None,
        rate: float | None = None,
        question: str | None = None,
        scope: str = "all",
        history: str = "stable",
        conversation: str | None = None,
        pricing: CachePricing | None = None,
        partition: str = "",
    ) -> Result:
        """Compress a chat: see :func:`promptzip._messages.compress_messages`. ``scope="all"`` (default) compresses
        the context found in every message (system and last user turn included); ``"history"`` only earlier turns.

        ``history="stable"`` (default) sends what an earlier request of the same conversation sent for its messages
        again byte for byte, so the provider's prompt cache keeps hitting, and compresses what was appended;
        ``"reselect"`` compresses the whole chat afresh. ``conversation`` names the conversation (else it is
        recognised by its messages); ``pricing`` is the target's cache prices (:func:`promptzip.pricing_for`).
        ``partition`` keeps callers apart: conversation state and the originals of cut tool outputs
        (``promptzip.expand``) are found only under the partition they were made in (the proxy's: per credential).
        See :mod:`promptzip._conversation` and :mod:`promptzip._structured`.
        """
        from promptzip._conversation import compress_conversation

        with request_scope():  # the layouts and vectors of its messages, for every pass and budget it tries
            return compress_conversation(
                self,
                messages,
                Budget.coerce(budget, rate=rate),
                question=question,
                scope=scope,
                history=history,
                conversation=conversation,
                pricing=pricing,
                partition=partition,
            )

    def compress_prompt(
        self,
        prompt: str | bytes,
        *,
        budget: Budget | int | None = None,
        rate: float | None = None,
        question: str | None = None,
    ) -> Result:
        """Compress a whole string prompt (a rendered template): its instruction and question are found and kept
        byte for byte, only its context regions shrink, and ``Result.text`` is the prompt with them replaced.
        See :mod:`promptzip._understand`."""
        from promptzip._messages import compress_prompt

        return compress_prompt(self, prompt, Budget.coerce(budget, rate=rate), question=question)

    async def acompress_messages(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        budget: Budget | int | None = None,
        rate: float | None = None,
        question: str | None = None,
        scope: str = "all",
        history: str = "stable",
        conversation: str | None = None,
        pricing: CachePricing | None = None,
        partition: str = "",
    ) -> Result:
        """``compress_messages`` in a worker thread."""
        return await asyncio.to_thread(
            functools.partial(
                self.compress_messages,
                messages,
                budget=budget,
                rate=rate,
                question=question,
                scope=scope,
                history=history,
                conversation=conversation,
                pricing=pricing,
                partition=partition,
            )
        )

    def compress_sources(
        self,
        sources: Sequence[Source],
        *,
        budget: Budget | int,
        query: str | None = None,
        reserved: int = 0,
        extra_input_tokens: int = 0,
        tags: Mapping[str, int] | None = None,
        queries: Mapping[str, str] | None = None,
    ) -> Result:
        """Per-source assembly: compress ``sources`` under one budget for a caller that builds its own output
        (a chat, a template, a document list) from ``Result.outputs``, each source's text in source order.

        ``reserved`` tokens of the budget go to parts the caller keeps verbatim around the sources (instruction,
        question, message framing); ``extra_input_tokens`` counts those parts into ``tokens_in``; ``tags`` is each
        source's once-only cost (the tags around a document, which leave with it). ``query`` is scored against,
        never placed; ``queries`` gives a source (by id) a query of its own instead (an earlier turn of a chat,
        scored against the question it was retrieved for). The sources keep their order (the caller places them)."""
        spec = Budget.coerce(budget)
        sources = _checked_sources(sources)
        reserved = check_int(reserved, "reserved", minimum=0, error=InputError)
        if isinstance(extra_input_tokens, bool) or not isinstance(extra_input_tokens, int):
            raise InputError(f"extra_input_tokens must be an int, got {extra_input_tokens!r}")
        for name, mapping in (("tags", tags), ("queries", queries)):
            if mapping is not None and not isinstance(mapping, Mapping):
                raise InputError(f"{name} must be a mapping of source ids, not {type(mapping).__name__}")
        for sid, cost in (tags or {}).items():
            check_int(cost, f"tags[{sid!r}]", minimum=0, error=InputError)
        return self._run(
            [(s, 0) for s in sources],
            None,
            None,
            spec,
            "original",
            extra_fixed=reserved,
            tokens_in_extra=extra_input_tokens,
            query=_optional_text(query, "query"),
            source_overhead=tags,
            queries=queries,
        )

    # ---------------------------------------------------------------------------------------------- internals
    def _run(
        self,
        sources: list[tuple[Source, int]],
        question: str | None,
        instruction: str | None,
        spec: Budget,
        reorder: str,
        *,
        extra_fixed: int = 0,
        tokens_in_extra: int = 0,
        query: str | None = None,
        source_overhead: Mapping[str, int] | None = None,
        queries: Mapping[str, str] | None = None,
    ) -> Result:
        """One compression. ``query``, when given, scores relevance without being part of the output (chat mode:
        the last user turn stays in its own message); otherwise the question does both."""
        query = query or question
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        if reorder not in REORDERS:
            raise ConfigError(f"unknown reorder {reorder!r}; use one of {', '.join(REORDERS)}")
        tokens_in, limit, fixed = self._room(sources, question, instruction, spec, extra_fixed, tokens_in_extra)
        sep = self.tokenizer.count(self.separator)
        available = limit - fixed
        chunks = [_shift(c, offset) for source, offset in sources for c in self._chunks(source)]
        timings["split"] = time.perf_counter() - t0

        t = time.perf_counter()

        def cost(context: str) -> int:  # what all of the context adds to the request, exactly
            sent = self.tokenizer.count(self.assemble(instruction or "", context, question or ""))
            return sent + extra_fixed - fixed

        groups, whole = self._groups(chunks, query, available, sep, timings, queries or {}, cost)
        timings["propose"] = time.perf_counter() - t

        t = time.perf_counter()
        try:
            # All of the context fits, counted as it would be sent, its documents' tags too: the policy is given
            # the room its per-chunk estimate needs for all of it, which may be more than the exact count, so it
            # does not drop a chunk that fits.
            tags = sum((source_overhead or {}).values())
            room = available
            if whole is not None and whole + tags <= available:
                room = max(available, sum(g[0].tokens + sep for g in groups) + tags)
            chosen = select_with_tags(self.policy, groups, room, sep, source_overhead or {})
        except BudgetError as exc:
            raise BudgetError(
                f"protected context needs {exc.required} tokens but only {available} are left after the "
                f"instruction and question (budget {limit})",
                budget=limit,
                required=(exc.required or 0) + fixed,
            ) from exc
        timings["select"] = time.perf_counter() - t

        t = time.perf_counter()
        context, text, chosen = self._fit(chosen, groups, instruction, question, limit, reorder)
        tokens_out = self.tokenizer.count(text) + extra_fixed
        timings["assemble"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t0
        return Result(
            text=text,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            budget=limit,
            chunks=tuple(provenance(v, g) for v, g in zip(chosen, groups, strict=True)),
            context=context,
            decision=decision(chosen, groups, query),
            timings=timings,
            fingerprint=self.fingerprint,
            sources=tuple(s for s, _ in sources),
            outputs=self._outputs(chosen, [s for s, _ in sources]),
        )

    def _chunks(self, source: Source) -> list[Chunk]:
        if source.protected:  # the user protected all of it: one chunk, kept whole
            return [Chunk(source.text, source.id, 0, len(source.text), {"kind": "protected"}, protected=True)]
        return chunk_source(
            source.text, source.id, max_chunk_chars=self.max_chunk_chars, lenient_tags=source.lenient_tags
        )

    def _groups(
        self,
        chunks: list[Chunk],
        query: str | None,
        available: int,
        sep: int,
        timings: dict[str, float],
        queries: Mapping[str, str],
        cost: Callable[[str], int],
    ) -> tuple[list[list[Variant]], int | None]:
        """Each chunk's variants, and the tokens of all of the context when it fits ``available`` (else None):
        keep-or-drop when it does, else the compressor's proposals, one call per query (a source's own from
        ``queries``, else ``query``), in chunk order."""
        whole = self._whole(chunks, available, sep, cost)
        if whole is not None:
            return whole
        check("splitting")
        by_query: dict[str | None, list[int]] = {}
        for i, c in enumerate(chunks):
            by_query.setdefault(queries.get(c.source_id, query), []).append(i)
        proposed: dict[int, list[Variant]] = {}
        token = _timings.set(timings)
        try:
            # the budget: what the context may take (the cascade reads only what it can use); the request memo:
            # what a scorer's later passes ask for again, past the bounds of its own memo
            with budget_scope(available), request_scope():
                for q, picked in by_query.items():
                    found = self.compressor.propose([chunks[i] for i in picked], q, self.tokenizer)
                    proposed.update(zip(picked, found, strict=True))
        finally:
            _timings.reset(token)
        groups = [proposed[i] for i in range(len(chunks))]
        check("the compressor")
        return groups, None


def _checked_sources(sources: object) -> list[Source]:
    if isinstance(sources, str | bytes) or not isinstance(sources, Sequence):
        raise InputError(f"sources must be a sequence of promptzip.Source, not {type(sources).__name__}")
    for i, s in enumerate(sources):
        if not isinstance(s, Source):
            raise InputError(f"sources[{i}] must be a promptzip.Source, not {type(s).__name__}")
        if not isinstance(s.id, str):
            raise InputError(f"sources[{i}].id must be str, not {type(s.id).__name__}")
        check_text(s.text, f"sources[{i}].text", allow_empty=True, allow_nul=True)
    return list(sources)


def _optional_text(value: object, where: str) -> str | None:
    if value is None:
        return None
    text = check_text(value, where, allow_empty=True)
    return text.strip() or None


def _shift(chunk: Chunk, offset: int) -> Chunk:
    if not offset:
        return chunk
    return Chunk(chunk.text, chunk.source_id, chunk.start + offset, chunk.end + offset, chunk.metadata, chunk.protected)
