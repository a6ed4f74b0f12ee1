"""LLMLingua's ``PromptCompressor`` on top of promptzip, for code written against ``llmlingua``.

Change the import and keep the calls::

    # from llmlingua import PromptCompressor
    from promptzip.compat.llmlingua import PromptCompressor

    compressor = PromptCompressor()  # no 7B download, no GPU: promptzip's "fast" preset
    out = compressor.compress_prompt(contexts, instruction="", question=q, target_token=200)
    out["compressed_prompt"], out["origin_tokens"], out["compressed_tokens"], out["ratio"], out["rate"]

What the arguments become (everything else LLMLingua accepts is in :data:`IGNORED_ARGUMENTS`; any other keyword
is a :class:`~promptzip.ConfigError` that names the accepted ones, so a misspelling never passes silently):

=========================  ==========================================================================================
``rate``                   ``Budget(rate=...)``: the kept fraction of the whole prompt's tokens
``target_token``           ``Budget(tokens=...)`` on the whole assembled prompt; wins over ``rate`` when > 0 (0 or
                           below, LLMLingua's ``-1`` default among them, leaves ``rate`` in charge); ``inf`` and
                           ``nan`` are a :class:`~promptzip.BudgetError`, never a silent choice of ``rate``
``instruction``            kept verbatim (surrounding whitespace trimmed), placed before the context
``question``               kept verbatim, placed after the context, and what relevance is measured against
``force_tokens``           with a token-level preset (``balanced``, ``max``) the pruner never removes them from a
                           sentence it keeps; with the sentence-level ``fast`` preset kept sentences are verbatim, so
                           they survive wherever their sentence does. As in LLMLingua-2 with its context-level
                           filter, a sentence or context that is dropped takes its force tokens with it. Tokens that
                           are only whitespace (``"\\n"``) are not forced: the pruner keeps or drops words.
                           (``force_reserve_digit`` needs no flag: the pruner always keeps words with digits.)
``force_context_ids``      those contexts become ``Chunk(protected=True)``: kept whole, never shortened
``reorder_context``        ``"original"`` → ``original``, ``"sort"`` → ``relevance``, ``"two_stage"`` (most
                           relevant at both ends) → ``lost_in_the_middle``
=========================  ==========================================================================================

Constructor: ``use_llmlingua2=True`` picks the token-level ``balanced`` preset (promptzip's distilled
LLMLingua-2-style token classifier after extractive selection), otherwise ``fast``; ``preset=`` chooses one
directly. ``model_name``, ``device_map``, ``model_config``, ``open_api_config`` and ``llmlingua2_config`` are
accepted and ignored: promptzip loads its own packaged models on the CPU, lazily.

Counting is in the target model's tokenizer (``target="gpt-4o"`` by default, o200k), not GPT-3.5's.
Numbers may be numpy's (``np.int64(200)``, ``np.float32(0.5)``, ``force_context_ids=[np.int64(0)]``), never bools.
``origin_tokens`` and ``compressed_tokens`` are the whole prompt's tokens (instruction + contexts + question, joined
by blank lines) before and after, and ``ratio``, ``rate`` and ``saving`` are LLMLingua's strings (``"3.2x"``,
``"31.2%"``, ``", Saving $0.1 in GPT-4."``, at its $0.06 per 1K tokens). Unlike LLMLingua, a budget smaller than the
instruction and question is a :class:`~promptzip.BudgetError`, never a silent overrun, with contexts or without.
"""

from __future__ import annotations

import difflib
import math
import re
import threading
from collections.abc import Mapping, Sequence
from numbers import Integral, Real
from typing import Any, Final, NotRequired, TypedDict

from promptzip._cache import Cache
from promptzip._errors import BudgetError, ConfigError, InputError
from promptzip._pipeline import Zipper
from promptzip._tokenizers import Tokenizer
from promptzip._types import Budget, Chunk

__all__ = ["IGNORED_ARGUMENTS", "IGNORED_INIT_ARGUMENTS", "CompressedPrompt", "PromptCompressor"]

# LLMLingua's compress_prompt / compress_prompt_llmlingua2 / structured_compress_prompt parameters that steer its own
# algorithm (segment sizes, iterative perplexity windows, ranking back-ends, word labels). promptzip's preset decides
# those things, so they are accepted and have no effect.
IGNORED_ARGUMENTS: Final = (
    "iterative_size",
    "force_context_number",
    "use_sentence_level_filter",
    "use_context_level_filter",
    "use_token_level_filter",
    "keep_split",
    "keep_first_sentence",
    "keep_last_sentence",
    "keep_sentence_number",
    "high_priority_bonus",
    "context_budget",
    "token_budget_ratio",
    "condition_in_question",
    "dynamic_context_compression_ratio",
    "condition_compare",
    "add_instruction",
    "rank_method",
    "concate_question",
    "context_segs",
    "context_segs_rate",
    "context_segs_compress",
    "target_context",
    "context_level_rate",
    "context_level_target_token",
    "return_word_label",
    "word_sep",
    "label_sep",
    "token_to_word",
    "force_reserve_digit",
    "drop_consecutive",
    "chunk_end_tokens",
    "strict_preserve_uncompressed",
    "segment_size",
)
IGNORED_INIT_ARGUMENTS: Final = ("model_name", "device_map", "model_config", "open_api_config", "llmlingua2_config")
MAPPED_ARGUMENTS: Final = (
    "context",
    "instruction",
    "question",
    "rate",
    "target_token",
    "force_tokens",
    "force_context_ids",
    "reorder_context",
)
_REORDER: Final = {"original": "original", "sort": "relevance", "two_stage": "lost_in_the_middle"}
# Presets whose pruner takes force_tokens (the token-level stacks of promptzip.compressors._register).
_FORCE_TOKEN_PRESETS: Final = ("balanced", "max")
_BUILTIN_PRESETS: Final = ("fast", "balanced", "max")
_MAX_FORCE_SETS: Final = 16  # Zippers kept per PromptCompressor, one per distinct force_tokens set (models are shared)
_GPT4_DOLLARS_PER_TOKEN: Final = 0.06 / 1000  # the price LLMLingua's "saving" string assumes
_LINGUA_TAG: Final = re.compile(r"<(/?)llmlingua\b([^<>]*)>", re.IGNORECASE)


class CompressedPrompt(TypedDict):
    """What ``compress_prompt`` returns, key for key as LLMLingua does (``compressed_prompt_list`` only from
    ``compress_prompt_llmlingua2``)."""

    compressed_prompt: str
    origin_tokens: int
    compressed_tokens: int
    ratio: str
    rate: str
    saving: str
    compressed_prompt_list: NotRequired[list[str]]


class PromptCompressor:
    """A drop-in for ``llmlingua.PromptCompressor``: see the module docstring for what each argument becomes.

    promptzip's own keyword-only settings: ``preset`` (overrides the choice from ``use_llmlingua2``), ``target`` (the
    tokenizer that counts), ``cache`` (a URL or Cache, as for ``Zipper.from_preset``), ``options`` (passed to the
    preset; by default a built-in preset runs with ``min_relevance=None``, because LLMLingua always returns context
    and never decides to send none) and ``zipper`` (a ready Zipper for every call; its compressor's own
    ``force_tokens`` then apply, not the call's).
    """

    def __init__(
        self,
        model_name: str = "",
        device_map: str = "cpu",
        model_config: Mapping[str, Any] | None = None,
        open_api_config: Mapping[str, Any] | None = None,
        use_llmlingua2: bool = False,
        llmlingua2_config: Mapping[str, Any] | None = None,
        *,
        preset: str | None = None,
        target: str | Tokenizer = "gpt-4o",
        cache: str | Cache | None = None,
        options: Mapping[str, Any] | None = None,
        zipper: Zipper | None = None,
        **unknown: Any,
    ) -> None:
        _reject(unknown, ("use_llmlingua2", "preset", "target", "cache", "options", "zipper"), "PromptCompressor()")
        if zipper is not None and not isinstance(zipper, Zipper):
            raise ConfigError(f"zipper must be a promptzip.Zipper, not {type(zipper).__name__}")
        self.preset = preset if preset is not None else ("balanced" if use_llmlingua2 else "fast")
        if not isinstance(self.preset, str):
            raise ConfigError(f"preset must be a name, not {type(self.preset).__name__}")
        if options is None:
            options = {"min_relevance": None} if self.preset in _BUILTIN_PRESETS else {}
        self.options = dict(options)
        self._target, self._cache, self._zipper = target, cache, zipper
        self._zippers: dict[tuple[str, ...], Zipper] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PromptCompressor(preset={self.preset!r}, target={self._target!r})"

    # ------------------------------------------------------------------------------------------ LLMLingua's API
    def compress_prompt(
        self,
        context: str | Sequence[str],
        instruction: str = "",
        question: str = "",
        rate: float = 0.5,
        target_token: float = -1,
        *,
        force_tokens: Sequence[str] = (),
        force_context_ids: Sequence[int] | None = None,
        reorder_context: str = "original",
        **ignored: Any,
    ) -> CompressedPrompt:
        """Compress ``context`` (one text or a list of them) so that instruction + context + question keep
        ``rate`` of their tokens, or fit ``target_token`` tokens when that is positive.

        Raises :class:`~promptzip.ConfigError` for an unknown keyword or value, :class:`~promptzip.BudgetError` when
        the budget is smaller than what is kept verbatim, :class:`~promptzip.InputError` for input that is not text.
        """
        _reject(ignored, MAPPED_ARGUMENTS, "compress_prompt()")
        spec = _budget(rate, target_token)
        answer, _ = self._compress(
            context, instruction, question, spec, force_tokens, force_context_ids, reorder_context
        )
        return answer

    def compress_prompt_llmlingua2(
        self,
        context: str | Sequence[str],
        rate: float = 0.5,
        target_token: float = -1,
        *,
        force_tokens: Sequence[str] = (),
        force_context_ids: Sequence[int] | None = None,
        **ignored: Any,
    ) -> CompressedPrompt:
        """LLMLingua-2's entry point: no instruction or question; ``compressed_prompt_list`` holds each kept
        context's compressed text, in the order of the contexts (contexts dropped whole are left out)."""
        mapped = ("context", "rate", "target_token", "force_tokens", "force_context_ids")
        _reject(ignored, mapped, "compress_prompt_llmlingua2()")
        spec = _budget(rate, target_token)
        answer, outputs = self._compress(context, "", "", spec, force_tokens, force_context_ids, "original")
        answer["compressed_prompt_list"] = outputs
        return answer

    def structured_compress_prompt(
        self,
        context: str | Sequence[str],
        instruction: str = "",
        question: str = "",
        rate: float = 0.5,
        target_token: float = -1,
        **kwargs: Any,
    ) -> CompressedPrompt:
        """LLMLingua's structured prompts: ``<llmlingua, compress=False>…</llmlingua>`` becomes ``<pz keep>`` (kept
        verbatim); ``<llmlingua, rate=0.4>`` becomes ``<pz rate=0.4>``, that region's rate (a rate in (0, 1], else
        an :class:`~promptzip.InputError`): token-level presets prune it at that rate, sentence-level ``fast``
        offers only selections of at most that fraction of each paragraph (the most relevant sentence where none
        is that short), and the call's ``rate`` or ``target_token`` still caps the whole prompt; a bare
        ``<llmlingua>`` is an untagged region. Tags are removed from the output, as LLMLingua does."""
        texts = [_structured(t, i) for i, t in enumerate(_contexts(context))]
        return self.compress_prompt(
            texts, instruction=instruction, question=question, rate=rate, target_token=target_token, **kwargs
        )

    # ------------------------------------------------------------------------------------------ promptzip side
    def zipper_for(self, force_tokens: tuple[str, ...] = ()) -> Zipper:
        """The Zipper that serves calls with these ``force_tokens`` (built on first use and kept: a token-level
        preset's pruner holds its force tokens, so each distinct set gets its own; the models are shared)."""
        if self._zipper is not None:
            return self._zipper
        key = force_tokens if self.preset in _FORCE_TOKEN_PRESETS else ()
        with self._lock:
            zipper = self._zippers.get(key)
            if zipper is None:
                if len(self._zippers) >= _MAX_FORCE_SETS:  # a caller that varies its force tokens per call
                    del self._zippers[next(iter(self._zippers))]
                options = {**self.options, **({"force_tokens": key} if key else {})}
                zipper = Zipper.from_preset(self.preset, target=self._target, cache=self._cache, **options)
                self._zippers[key] = zipper
            return zipper

    def _compress(
        self,
        context: object,
        instruction: object,
        question: object,
        spec: Budget,
        force_tokens: object,
        force_context_ids: object,
        reorder_context: object,
    ) -> tuple[CompressedPrompt, list[str]]:
        """LLMLingua's answer and each kept context's compressed text, in context order."""
        texts = _contexts(context)
        zipper = self.zipper_for(_force_tokens(force_tokens))
        order = _reorder(reorder_context)
        protected = _protected_ids(force_context_ids, len(texts))
        chunks = [Chunk(t, str(i), protected=i in protected) for i, t in enumerate(texts) if t.strip()]
        instruction, question = _text(instruction, "instruction"), _text(question, "question")
        if not chunks:  # nothing to compress: LLMLingua returns the instruction and question as they are
            text = zipper.assemble(instruction.strip(), question.strip())
            n = zipper.tokenizer.count(text)
            # A token budget is still a hard cap, as with contexts (the module's promise: never a silent overrun).
            # A rate is left alone: it is a fraction of what can be compressed, and here there is nothing to compress
            # (LLMLingua's default rate=0.5 would otherwise make every question-only call an error).
            if spec.tokens is not None and n > spec.tokens:
                raise BudgetError(
                    f"instruction and question alone need {n} tokens but the budget is {spec.tokens}",
                    budget=spec.tokens,
                    required=n,
                )
            return _answer(text, n, n), []
        result = zipper.compress(
            chunks, instruction=instruction or None, question=question or None, budget=spec, reorder=order
        )
        outputs = [result.outputs.get(c.source_id, "") for c in chunks]
        return _answer(result.text, result.tokens_in, result.tokens_out), [o for o in outputs if o]


# ---------------------------------------------------------------------------------------------------- helpers
def _reject(kwargs: Mapping[str, Any], mapped: Sequence[str], where: str) -> None:
    """A ConfigError for the first keyword that is neither mapped nor in :data:`IGNORED_ARGUMENTS` (or, for the
    constructor, ``IGNORED_INIT_ARGUMENTS``), naming the accepted ones and the closest match."""
    ignored = IGNORED_INIT_ARGUMENTS if where == "PromptCompressor()" else IGNORED_ARGUMENTS
    unknown = sorted(k for k in kwargs if k not in mapped and k not in ignored)
    if unknown:
        close = difflib.get_close_matches(unknown[0], [*mapped, *ignored], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"{where} got an unexpected keyword argument {unknown[0]!r}{hint}; it accepts {', '.join(mapped)}, and "
            f"LLMLingua's {', '.join(ignored)} without effect (see promptzip.compat.llmlingua)"
        )


def _contexts(context: object) -> list[str]:
    if isinstance(context, str):
        return [context]
    if isinstance(context, Sequence) and not isinstance(context, bytes | bytearray):
        texts = list(context)
        for i, item in enumerate(texts):
            if not isinstance(item, str):
                raise InputError(f"context[{i}] must be str, not {type(item).__name__}")
        return texts
    raise InputError(f"context must be a str or a list of str, not {type(context).__name__}")


def _text(value: object, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InputError(f"{where} must be str, not {type(value).__name__}")
    return value


def _force_tokens(value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ConfigError(f"force_tokens must be a list of str, not {type(value).__name__}")
    if not all(isinstance(t, str) for t in value):
        raise ConfigError("force_tokens must be a list of str")
    return tuple(dict.fromkeys(t for t in value if t.strip()))


def _reorder(value: object) -> str:
    if not isinstance(value, str) or value not in _REORDER:
        raise ConfigError(f"reorder_context must be one of {', '.join(_REORDER)}, got {value!r}")
    return _REORDER[value]


def _number(value: object, where: str) -> int | float:
    """``value`` as Python's number: any real number, numpy's included (``np.int64``, ``np.float32`` are no ``int``
    or ``float``), never a bool. Integers stay ints, since ``float()`` overflows on a huge one."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ConfigError(f"{where} must be a number, not {type(value).__name__}")
    return int(value) if isinstance(value, Integral) else float(value)


def _budget(rate: object, target_token: object) -> Budget:
    """``target_token`` (a token budget, when positive) wins over ``rate``, as in LLMLingua, where ``-1`` (or any
    number up to 0) means "unset". ``inf``, ``-inf`` and ``nan`` are not that sentinel but a mistake (a computed
    budget gone wrong), so they are a BudgetError rather than ``int()``'s OverflowError or a silent ``rate``."""
    target = _number(target_token, "target_token")
    if isinstance(target, float) and not math.isfinite(target):
        raise BudgetError(f"target_token must be a finite number of tokens (or -1 to use rate), got {target_token}")
    if target > 0:
        return Budget(tokens=int(target))
    kept = _number(rate, "rate")
    if not 0 < kept <= 1:  # nan fails it too; checked here as Budget's float() would overflow on a huge int
        raise BudgetError(f"rate is the kept fraction and must be in (0, 1], got {rate}")
    return Budget(rate=float(kept))


def _protected_ids(ids: object, n: int) -> frozenset[int]:
    if ids is None:
        return frozenset()
    if isinstance(ids, str) or not isinstance(ids, Sequence):
        raise ConfigError(f"force_context_ids must be a list of context indexes, not {type(ids).__name__}")
    indexes: set[int] = set()
    for i in ids:
        # numbers.Integral takes numpy's integers too (np.int64 is no int); int() makes them Python's
        if isinstance(i, bool) or not isinstance(i, Integral) or not -n <= int(i) < n:
            raise ConfigError(f"force_context_ids holds {i!r}, not an index of the {n} contexts")
        indexes.add(int(i) % n)
    return frozenset(indexes)


def _structured(text: str, index: int) -> str:
    """``text`` with LLMLingua's structure tags written as promptzip's."""

    def tag(m: re.Match[str]) -> str:
        if m.group(1):
            return "</pz>"
        keep, rate = False, None
        for raw in m.group(2).split(","):
            if not raw.strip():
                continue
            name, _, value = (s.strip() for s in raw.partition("="))
            if name == "compress" and value.lower() in ("false", "true"):
                keep = value.lower() == "false"
            elif name == "rate":
                rate = _region_rate(value, index)
            elif name != "value_type":  # value_type (JSON leaves) has no promptzip counterpart
                raise InputError(f"context[{index}]: unknown attribute {name!r} in an <llmlingua> tag")
        attrs = " keep" if keep else (f" rate={rate!r}" if rate is not None else "")
        return f"<pz{attrs}>"

    return _LINGUA_TAG.sub(tag, text)


def _region_rate(value: str, index: int) -> float:
    """A tag's ``rate=`` as a kept fraction in (0, 1], else an InputError naming the context (``rate=O.4``,
    ``rate=40``)."""
    try:
        rate = float(value.strip("\"'"))
    except ValueError:
        rate = math.nan
    if not 0.0 < rate <= 1.0:
        raise InputError(f"context[{index}]: an <llmlingua, rate=…> tag needs a rate in (0, 1], got {value!r}")
    return rate


def _answer(text: str, origin: int, compressed: int) -> CompressedPrompt:
    """LLMLingua's result dict; its ratio is 1 when nothing is left, so no division by zero reaches a caller."""
    ratio = origin / compressed if compressed else 1.0
    return {
        "compressed_prompt": text,
        "origin_tokens": origin,
        "compressed_tokens": compressed,
        "ratio": f"{ratio:.1f}x",
        "rate": f"{100 / ratio:.1f}%",
        "saving": f", Saving ${(origin - compressed) * _GPT4_DOLLARS_PER_TOKEN:.1f} in GPT-4.",
    }
