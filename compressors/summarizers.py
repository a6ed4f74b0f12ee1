"""Summarizers: the generators behind the abstractive compressor.

A :class:`Summarizer` turns one text into a shorter one, optionally focused on a question. The public
:meth:`Summarizer.summarize` validates its input and calls one protected method; backends:

* :class:`LocalSummarizer`: a local Hugging Face causal LM (SmolLM2-135M-Instruct by default, the packaged GGUF
  converted once) or a seq2seq folder, greedy, on the CPU; loaded on first use, once per process.
* :class:`OpenAISummarizer`: any OpenAI-compatible ``/chat/completions`` endpoint over HTTP. Every failure
  (timeout, unreachable, non-2xx, a body that is not a chat completion) is an :class:`UpstreamError`; the API key
  never appears in a message, a log line, a fingerprint or a cache key.

Both register in ``registries.summarizers`` (``local``, ``openai``). A summarizer of your own::

    class Lead(Summarizer):
        name = "lead"

        def _summarize(self, text, query, max_tokens):
            return " ".join(text.split()[:max_tokens])
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from promptzip._deadline import check, remaining
from promptzip._errors import ConfigError, InputError, UpstreamError, check_int
from promptzip._fingerprint import derived_fingerprint
from promptzip._torch_threads import torch_threads

__all__ = ["PROMPT_VERSION", "LocalSummarizer", "OpenAISummarizer", "Summarizer", "summary_messages"]

PROMPT_VERSION = "1"
"""Part of every summarizer fingerprint: bump when the prompt changes, so cached summaries are not reused."""

SYSTEM = (
    "You shorten documents for another AI model. Write a short summary of the text you are given. Copy numbers, "
    "dates, amounts, names and identifiers exactly as they are written in the text. Never add a fact, name or "
    "number that is not in the text. Reply with the summary only."
)


def summary_messages(text: str, query: str | None, max_tokens: int) -> list[dict[str, str]]:
    """The chat messages both backends send: a word limit from ``max_tokens``, and a focus when a query is given."""
    words = max(5, math.floor(0.7 * max_tokens))
    ask = f"Summarize the text in at most {words} words."
    if query:
        ask += f" Keep the facts needed to answer: {query}"
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"Text:\n{text}\n\n{ask}"}]


class Summarizer(ABC):
    """Summarizes one text in at most about ``max_tokens`` tokens (``query``: keep what answers it).

    ``max_tokens`` is a target, not a guarantee: callers count the result in their own tokenizer and reject what
    is too long. Implementations raise :class:`UpstreamError` when their backend fails.
    """

    name = "summarizer"

    def summarize(self, text: str, *, query: str | None = None, max_tokens: int) -> str:
        if not isinstance(text, str):
            raise InputError(f"text must be str, not {type(text).__name__}")
        if not text.strip():
            raise InputError("cannot summarize an empty text")
        if query is not None and not isinstance(query, str):
            raise InputError(f"query must be str or None, not {type(query).__name__}")
        check_int(max_tokens, "max_tokens", error=InputError)
        summary = self._summarize(text, (query or "").strip() or None, max_tokens)
        return summary.strip()

    @abstractmethod
    def _summarize(self, text: str, query: str | None, max_tokens: int) -> str: ...

    @property
    def fingerprint(self) -> str:
        return f"{self.name}:p{PROMPT_VERSION}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.fingerprint})"


# ---------------------------------------------------------------------------------------------------- local


class LocalSummarizer(Summarizer):
    """Greedy summaries from a local model: a registry key (``smollm2-135m``), a folder or a cached hub id.

    Causal LMs get the chat template; folders whose config says ``is_encoder_decoder`` (t5, bart) load as seq2seq
    models and get the plain prompt. ``slack``: new tokens allowed per requested token (tokenizers differ);
    a summary cut off by that limit is trimmed back to its last full sentence.
    """

    name = "local"

    def __init__(self, model: str = "smollm2-135m", *, slack: float = 1.25, threads: int | None = None) -> None:
        if not isinstance(model, str) or not model.strip():
            raise ConfigError("model must be a registry name, a folder or a hub id")
        if slack < 1.0:
            raise ConfigError(f"slack must be at least 1, got {slack}")
        self.model = model
        self.slack = slack
        self.threads = threads
        self._lock = threading.Lock()

    @property
    def fingerprint(self) -> str:
        return derived_fingerprint(self, skip=("threads",), values={"prompt": PROMPT_VERSION})

    def _load(self) -> tuple[Any, Any, bool]:
        from promptzip._causal_lm import causal_lm_folder, load_causal_lm

        folder = causal_lm_folder(self.model)
        if _is_encoder_decoder(folder):
            from promptzip._models import load_once

            model, tokenizer = load_once("seq2seq-lm", folder, _load_seq2seq)
            return model, tokenizer, True
        model, tokenizer = load_causal_lm(self.model)
        return model, tokenizer, False

    def _summarize(self, text: str, query: str | None, max_tokens: int) -> str:
        import torch

        model, tokenizer, seq2seq = self._load()
        messages = summary_messages(text, query, max_tokens)
        if seq2seq:
            prompt = f"{messages[1]['content']}"
            enc = tokenizer(prompt, return_tensors="pt", truncation=True)
        else:
            rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            enc = tokenizer(rendered, return_tensors="pt", add_special_tokens=False)
        inputs = {k: enc[k] for k in ("input_ids", "attention_mask") if k in enc}  # no token_type_ids (BERT-style)
        limit = math.ceil(self.slack * max_tokens) + 4
        check("the summarizer")
        # Generation stops by itself at the deadline (transformers' max_time); the check after it turns the cut
        # summary into DeadlineExceeded instead of a truncated result.
        left = remaining()
        timed = {} if left is None else {"max_time": max(0.01, left)}
        with self._lock, torch.inference_mode(), torch_threads(self.threads):
            out = model.generate(
                **inputs,
                max_new_tokens=limit,
                do_sample=False,
                num_beams=1,
                pad_token_id=tokenizer.pad_token_id,
                **timed,
            )
        check("the summarizer")
        new = out[0] if seq2seq else out[0, inputs["input_ids"].shape[1] :]
        summary = str(tokenizer.decode(new, skip_special_tokens=True)).strip()
        if len(new) >= limit:  # cut off by the limit: drop the unfinished sentence when a finished one exists
            summary = _last_full_sentence(summary)
        return summary


def _is_encoder_decoder(folder: Path) -> bool:
    config = folder / "config.json"
    if not config.is_file():
        return False
    try:
        return bool(json.loads(config.read_text(encoding="utf-8")).get("is_encoder_decoder", False))
    except (OSError, ValueError):
        return False


def _load_seq2seq(path: Path) -> tuple[Any, Any]:
    from promptzip._models import load_hf_folder

    return load_hf_folder(path, "AutoModelForSeq2SeqLM", what="seq2seq model")


_SENTENCE_END = re.compile(r"[.!?][\"')\]]?(?=\s)")
_CLAUSE_END = re.compile(r"[,;](?=\s)")


def _last_full_sentence(text: str) -> str:
    """A generation cut off by its token limit, back to its last finished sentence (or, when it has none, its last
    finished clause, closed with a period): a half-written number such as "1." of "1.5%" must not survive."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    if ends:
        return text[: ends[-1]]
    clauses = [m.start() for m in _CLAUSE_END.finditer(text)]
    return text[: clauses[-1]] + "." if clauses else text


# ---------------------------------------------------------------------------------------------------- endpoint


class OpenAISummarizer(Summarizer):
    """Summaries from an OpenAI-compatible endpoint: ``POST {base_url}/chat/completions``, temperature 0.

    ``api_key`` or, when it is ``None``, the environment variable named by ``api_key_env`` (read at each call,
    never stored in a cache, a fingerprint or a message). ``extra_body`` is merged into every request (e.g.
    ``{"max_completion_tokens": 200}`` for endpoints that want it). ``slack`` as in :class:`LocalSummarizer`.

    >>> s = OpenAISummarizer("https://api.openai.com/v1", model="gpt-4o-mini")  # doctest: +SKIP
    >>> s.summarize(report, query="What changed in Q3?", max_tokens=120)  # doctest: +SKIP
    """

    name = "openai"

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        api_key: str | None = None,
        api_key_env: str | None = "OPENAI_API_KEY",
        timeout: float = 30.0,
        slack: float = 1.25,
        extra_body: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(base_url, str) or urlsplit(base_url).scheme not in ("http", "https"):
            raise ConfigError(f"base_url must be an http(s) URL, got {_safe_url(str(base_url))!r}")
        if not isinstance(model, str) or not model:
            raise ConfigError("model must be a non-empty model name")
        if timeout <= 0:
            raise ConfigError(f"timeout must be positive, got {timeout}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key = api_key
        self.api_key_env = api_key_env
        self.timeout = float(timeout)
        self.slack = slack
        self.extra_body = dict(extra_body or {})

    @property
    def fingerprint(self) -> str:
        extra = json.dumps(self.extra_body, sort_keys=True, default=str)
        # the key, where it is read from and the timeout change no summary; the URL without its credentials
        return derived_fingerprint(
            self,
            skip=("api_key", "api_key_env", "timeout"),
            values={"base_url": _safe_url(self.base_url), "extra_body": extra, "prompt": PROMPT_VERSION},
        )

    def _key(self) -> str | None:
        if self._api_key is not None:
            return self._api_key
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    def _summarize(self, text: str, query: str | None, max_tokens: int) -> str:
        import httpx

        url = f"{self.base_url}/chat/completions"
        where = _safe_url(url)
        key = self._key()
        headers = {"authorization": f"Bearer {key}"} if key else {}
        body: dict[str, Any] = {
            "model": self.model,
            "messages": summary_messages(text, query, max_tokens),
            "temperature": 0,
            "max_tokens": math.ceil(self.slack * max_tokens) + 4,
            **self.extra_body,
        }
        try:
            with httpx.Client(timeout=self.timeout) as client:
                response = client.post(url, json=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise UpstreamError(f"the summarizer endpoint {where} timed out after {self.timeout:g}s") from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(f"could not reach the summarizer endpoint {where}: {_redact(str(exc), key)}") from exc
        if not response.is_success:
            raise UpstreamError(
                f"the summarizer endpoint {where} answered {response.status_code}: {_excerpt(response.text, key)}",
                status_code=response.status_code,
            )
        try:
            payload = response.json()
        except ValueError as exc:
            raise UpstreamError(
                f"the summarizer endpoint {where} did not answer JSON: {_excerpt(response.text, key)}",
                status_code=response.status_code,
            ) from exc
        content = _content(payload)
        if content is None or not content.strip():
            raise UpstreamError(
                f"the summarizer endpoint {where} answered without choices[0].message.content",
                status_code=response.status_code,
            )
        return content


def _content(payload: Any) -> str | None:
    try:
        content = payload["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None
    return content if isinstance(content, str) else None


def _safe_url(url: str) -> str:
    """``url`` without user info, query or fragment (where credentials may hide)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _redact(text: str, key: str | None) -> str:
    return text.replace(key, "***") if key else text


def _excerpt(text: str, key: str | None, limit: int = 200) -> str:
    flat = " ".join(_redact(text, key).split())
    return flat if len(flat) <= limit else flat[:limit] + "..."
