"""Tokenizers: the budget is counted in the target model's own tokens.

``get_tokenizer(target)`` accepts an OpenAI model name (``gpt-4o``, ``gpt-4``, ``gpt-3.5-turbo``), a tiktoken
encoding (``o200k_base``, ``cl100k_base``), ``hf:<name or path>``, a registered model key or a local tokenizer
folder. tiktoken encodings work offline from the rank files that the ``litellm`` package ships (MODELS.md): when
they are installed, tiktoken is pointed at them for the one call that builds the encoding, unless the user's own
cache (``TIKTOKEN_CACHE_DIR``, or tiktoken's older ``DATA_GYM_CACHE_DIR``) already holds that encoding's file, which
is then used as it is. promptzip never writes into the user's cache.

Counting is the pipeline's most repeated operation: a request counts its input, every chunk and every variant of
every chunk, and the next request over the same text counts the same sentences again. The built-in tokenizers
therefore keep the counts of recent texts (:class:`TextMemo`, keyed by the text itself, so equal texts always get
the one count the encoder gave them), count in the calling thread (tiktoken's batch call starts a thread pool per
call, which cost more than the counting on warm requests), and :meth:`Tokenizer.count_joined` adds up the counts of
a text's parts where the encoding provably splits there (:meth:`TiktokenTokenizer.count_joined`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

from promptzip._blank_runs import encode_guarded
from promptzip._errors import ConfigError, InputError, ModelNotAvailable
from promptzip._models import package_dir, resolve_model
from promptzip._registry import registries

__all__ = ["HFTokenizer", "TextMemo", "TiktokenTokenizer", "Tokenizer", "get_tokenizer", "text_memos_disabled"]

V = TypeVar("V")

TIKTOKEN_ENCODINGS = ("o200k_base", "cl100k_base", "p50k_base", "r50k_base")
_NEWLINE_CUT_ENCODINGS = frozenset({"o200k_base", "cl100k_base"})  # TiktokenTokenizer.count_joined
# Used when tiktoken's own model table does not know a name (it matches prefixes, this is the fallback).
_MODEL_PREFIXES: tuple[tuple[str, str], ...] = (
    ("gpt-4o", "o200k_base"),
    ("gpt-4.1", "o200k_base"),
    ("gpt-4.5", "o200k_base"),
    ("gpt-5", "o200k_base"),
    ("o1", "o200k_base"),
    ("o3", "o200k_base"),
    ("o4", "o200k_base"),
    ("chatgpt-4o", "o200k_base"),
    ("gpt-4", "cl100k_base"),
    ("gpt-3.5", "cl100k_base"),
    ("text-embedding-3", "cl100k_base"),
    ("text-embedding-ada-002", "cl100k_base"),
    ("text-davinci-003", "p50k_base"),
)


class Tokenizer(ABC):
    """Counts, encodes and decodes text in one model's tokens.

    Subclasses implement :meth:`encode` and :meth:`decode`; :meth:`count` is ``len(encode(text))`` unless a
    subclass has a faster exact way.
    """

    name: str = "tokenizer"

    @abstractmethod
    def encode(self, text: str) -> list[int]: ...

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str: ...

    def count(self, text: str) -> int:
        if not text:
            return _empty(text)
        return len(self.encode(text))

    def count_many(self, texts: Sequence[str]) -> list[int]:
        return [self.count(t) for t in texts]

    def count_joined(self, parts: Sequence[str]) -> int:
        """``count("".join(parts))``, exactly; a tokenizer that knows where its encoding splits may add up the
        (remembered) counts of the parts instead of counting the whole again."""
        return self.count("".join(parts))

    @property
    def fingerprint(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def _empty(text: object) -> int:
    """The count of a falsy ``text``: 0 for ``""``; anything else (``None``, ``b""``, ``[]``) is not a text, and
    counting it as 0 would let it through a budget unseen. Checked only here, off the hot path of real texts."""
    if isinstance(text, str):
        return 0
    raise InputError(f"only a str can be counted, not {type(text).__name__}")


_memos_on = True  # switched off only by text_memos_disabled(), to measure what the memos save


@contextlib.contextmanager
def text_memos_disabled() -> Iterator[None]:
    """Within this block every :class:`TextMemo` misses and stores nothing (for benchmarks: the same work with
    the counts and splits of earlier requests forgotten). Process-wide; not for concurrent use."""
    global _memos_on
    previous, _memos_on = _memos_on, False
    try:
        yield
    finally:
        _memos_on = previous


class TextMemo(Generic[V]):
    """Values of a pure function of a text (a token count, a split), for the texts seen lately.

    Keyed by the text itself, so a value is only ever reused for an equal text. Two generations bound the memory:
    new entries go to the young dict; when it holds ``max_chars`` characters (or ``max_items`` entries) it becomes
    the old one and the previous old one is dropped; a hit in the old one moves up. Texts longer than
    ``max_text`` characters are not kept. No lock: every step is one dict operation, and a race can only lose an
    entry, never return a wrong value, since the value is a function of the key.
    """

    __slots__ = ("_chars", "_old", "_young", "max_chars", "max_items", "max_text")

    def __init__(self, *, max_chars: int = 4_000_000, max_items: int = 1 << 16, max_text: int = 1_000_000) -> None:
        self.max_chars = max_chars
        self.max_items = max_items
        self.max_text = max_text
        self._young: dict[str, V] = {}
        self._old: dict[str, V] = {}
        self._chars = 0

    def __len__(self) -> int:
        return len(self._young) + len(self._old)

    def get(self, text: str) -> V | None:
        if not _memos_on:
            return None
        value = self._young.get(text)
        if value is None:
            value = self._old.get(text)
            if value is not None:
                self._store(text, value)
        return value

    def put(self, text: str, value: V) -> None:
        if _memos_on and len(text) <= self.max_text:
            self._store(text, value)

    def clear(self) -> None:
        self._young, self._old, self._chars = {}, {}, 0

    def _store(self, text: str, value: V) -> None:
        self._young[text] = value
        self._chars += len(text) + 48  # a dict entry costs about this much beside its text
        if self._chars > self.max_chars or len(self._young) > self.max_items:
            self._old, self._young, self._chars = self._young, {}, 0


_tiktoken_lock = threading.Lock()
# Where tiktoken downloads each encoding's rank file from; tiktoken caches a file under the sha1 of this address,
# the name under which litellm ships the files too.
_RANK_FILES = {
    name: f"https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken" for name in TIKTOKEN_ENCODINGS
}


def _rank_file_name(encoding: str) -> str:
    return hashlib.sha1(_RANK_FILES[encoding].encode()).hexdigest()


def _packaged_tiktoken_dir() -> Path | None:
    root = package_dir("litellm")
    folder = root / "litellm_core_utils" / "tokenizers" if root else None
    return folder if folder is not None and folder.is_dir() else None


def packaged_rank_file(encoding: str) -> Path | None:
    """The packaged (litellm) rank file of a tiktoken encoding, or None when it is not installed."""
    folder = _packaged_tiktoken_dir()
    file = folder / _rank_file_name(encoding) if folder is not None and encoding in _RANK_FILES else None
    return file if file is not None and file.is_file() else None


def _user_cache_dir() -> str | None:
    """The cache folder the user gave tiktoken (its own order: TIKTOKEN_CACHE_DIR, then DATA_GYM_CACHE_DIR)."""
    for name in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if name in os.environ:
            return os.environ[name]
    return None


def tiktoken_rank_file(encoding: str) -> tuple[str, Path] | None:
    """Where a tiktoken encoding loads from offline: ``("tiktoken-cache", file)`` when the user's own cache folder
    holds its rank file, else ``("packaged", file)`` when litellm ships it, else None (tiktoken would download)."""
    user = _user_cache_dir()
    if user and encoding in _RANK_FILES and Path(user, _rank_file_name(encoding)).is_file():
        return "tiktoken-cache", Path(user, _rank_file_name(encoding))
    packaged = packaged_rank_file(encoding)
    return ("packaged", packaged) if packaged is not None else None


class TiktokenTokenizer(Tokenizer):
    """A tiktoken encoding. Special-token text such as ``<|endoftext|>`` is counted as ordinary text.

    Counts are remembered per text (:class:`TextMemo`) and computed in the calling thread.
    """

    def __init__(self, encoding: str) -> None:
        if encoding not in TIKTOKEN_ENCODINGS:
            raise ConfigError(f"unknown tiktoken encoding {encoding!r}; known: {', '.join(TIKTOKEN_ENCODINGS)}")
        self.name = encoding
        self._enc: Any = None
        self.counts: TextMemo[int] = TextMemo()

    def _encoding(self) -> Any:
        if self._enc is None:
            self._enc = _load_tiktoken(self.name)
        return self._enc

    def encode(self, text: str) -> list[int]:
        return self._encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        if isinstance(ids, str | bytes) or not isinstance(ids, Iterable):
            raise InputError(f"decode takes a list of token ids, not {type(ids).__name__}")
        try:
            return str(self._encoding().decode(list(ids)))
        except (KeyError, OverflowError, TypeError, ValueError) as exc:  # tiktoken's words for an id it lacks
            raise InputError(f"cannot decode these ids with {self.name}: {exc}") from exc

    def count(self, text: str) -> int:
        if not text:
            return _empty(text)
        n = self.counts.get(text)
        if n is None:
            n = len(self._encode(text))
            self.counts.put(text, n)
        return n

    def _encode(self, text: str) -> list[int]:
        try:
            # long runs of blanks are encoded in parts (promptzip._blank_runs): tiktoken panics on a million
            ids: list[int] = encode_guarded(self._encoding().encode_ordinary, text, self.name)
        except TypeError as exc:  # tiktoken's own error for anything but a str
            raise InputError(f"only a str can be encoded, not {type(text).__name__}") from exc
        return ids

    def count_many(self, texts: Sequence[str]) -> list[int]:
        # One thread: ``encode_ordinary_batch`` starts a thread pool on every call, which costs more than counting
        # the few hundred short, mostly remembered texts of a request.
        return [self.count(t) for t in texts]

    def count_joined(self, parts: Sequence[str]) -> int:
        """The count of ``"".join(parts)``, as the sum of the counts of the runs of parts between safe cuts.

        A cut before a part that starts with a space (U+0020), after one that ends with a non-space character, is
        safe in every tiktoken encoding: their pre-tokenizer patterns (o200k, cl100k, p50k/r50k) have no piece that
        holds a non-space character followed by a space, no look-behind, and their only look-aheads and anchors
        (``\\s+(?!\\S)``, ``\\s++$``) concern whitespace runs, which cannot end at such a cut. So the pieces
        of the whole are the pieces of the runs, each piece is encoded on its own, and the counts add up exactly.
        A sentence stitched to others by a space is thus counted once, ever, whatever it is joined to.

        In cl100k and o200k a cut after a part that ends with a line break, before one that starts with a
        non-whitespace character, is safe too: a piece that holds a line break is a whitespace run ending in line
        breaks (``\\s*[\\r\\n]+``, tried before the look-ahead patterns and greedy whatever follows) or punctuation
        followed by line breaks, and no piece starts with a line break followed by anything else. So a document
        joined to a new question by a blank line is counted once too. (GPT-2's patterns split a whitespace run
        before a non-space character, so p50k and r50k do not get this cut.)"""
        total = 0
        run: list[str] = []
        newline_cuts = self.name in _NEWLINE_CUT_ENCODINGS
        for part in parts:
            if not part:
                continue
            if run and (
                (part[0] == " " and not run[-1][-1].isspace())  # str.isspace() covers the regex class \s
                or (newline_cuts and run[-1][-1] in "\r\n" and not part[0].isspace())
            ):
                total += self.count(run[0] if len(run) == 1 else "".join(run))
                run = [part]
            else:
                run.append(part)
        if run:
            total += self.count(run[0] if len(run) == 1 else "".join(run))
        return total


def _load_tiktoken(name: str) -> Any:
    from promptzip._tiktoken_ranks import load_encoding

    with _tiktoken_lock:
        found = tiktoken_rank_file(name)
        if found is None:
            return _user_tiktoken(name)
        where, rank_file = found
        # The user's own cache wins when it holds the file (tiktoken reads it there); else the packaged file.
        slow = (lambda: _packaged(name, rank_file)) if where == "packaged" else (lambda: _user_tiktoken(name))
        return load_encoding(name, rank_file, slow)


def _user_tiktoken(name: str) -> Any:
    """The encoding as tiktoken loads it itself: from the user's own cache folder when it holds the file (it wins
    over the packaged file), else through tiktoken's download."""
    import tiktoken

    try:
        return tiktoken.get_encoding(name)
    except Exception as exc:  # tiktoken raises requests', OSError or ValueError (hash) errors here
        raise ModelNotAvailable(
            f"tiktoken encoding {name!r} is not available offline: pip install --no-deps litellm==1.109.1 "
            "(it ships the rank files) or put its file in TIKTOKEN_CACHE_DIR",
            model=name,
        ) from exc


def _packaged(name: str, rank_file: Path) -> Any:
    """The encoding from the rank file litellm ships, so that a cache folder set for other encodings (or an empty
    one) does not send tiktoken to the network."""
    import tiktoken

    folder = rank_file.parent
    previous = os.environ.get("TIKTOKEN_CACHE_DIR")  # it wins over DATA_GYM_CACHE_DIR in tiktoken
    os.environ["TIKTOKEN_CACHE_DIR"] = str(folder)
    try:
        return tiktoken.get_encoding(name)
    except Exception as exc:
        raise ModelNotAvailable(
            f"tiktoken encoding {name!r} could not be loaded from {folder}: {exc}", model=name
        ) from exc
    finally:
        if previous is None:
            os.environ.pop("TIKTOKEN_CACHE_DIR", None)
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = previous


class HFTokenizer(Tokenizer):
    """A Hugging Face tokenizer from a local folder (or a hub id in the local cache); no special tokens added."""

    def __init__(self, name_or_path: str) -> None:
        self.name = name_or_path
        self._tok: Any = None
        self.counts: TextMemo[int] = TextMemo()

    def _backend(self) -> Any:
        if self._tok is None:
            resolved = resolve_model(self.name)
            try:
                from tokenizers import Tokenizer as FastTokenizer
            except ImportError as exc:
                raise ModelNotAvailable("HF tokenizers need the models extra: pip install 'promptzip[models]'") from exc
            path = resolved.path if resolved.path.is_dir() else resolved.path.parent
            file = path / "tokenizer.json"
            if file.exists():
                tok = FastTokenizer.from_file(str(file))
            else:
                from transformers import AutoTokenizer

                try:
                    tok = AutoTokenizer.from_pretrained(str(path), use_fast=True).backend_tokenizer
                except Exception as exc:
                    raise ModelNotAvailable(
                        f"no tokenizer could be loaded from {path}: {exc}", model=self.name
                    ) from exc
            # tokenizer.json files often carry the model's padding/truncation (MiniLM: pad and cut to 128);
            # a token count must see the whole text and nothing else.
            tok.no_padding()
            tok.no_truncation()
            self._tok = tok
        return self._tok

    def encode(self, text: str) -> list[int]:
        return list(self._backend().encode(text, add_special_tokens=False).ids) if text else []

    def decode(self, ids: Sequence[int]) -> str:
        return str(self._backend().decode(list(ids), skip_special_tokens=False))

    def count(self, text: str) -> int:
        return self.count_many([text])[0]

    def count_many(self, texts: Sequence[str]) -> list[int]:
        counts = [self.counts.get(t) if t else _empty(t) for t in texts]
        todo = list(dict.fromkeys(t for t, n in zip(texts, counts, strict=True) if n is None))
        if todo:
            encoded = self._backend().encode_batch(todo, add_special_tokens=False)
            fresh = {t: len(e.ids) for t, e in zip(todo, encoded, strict=True)}
            for t, n in fresh.items():
                self.counts.put(t, n)
            counts = [fresh[t] if n is None else n for t, n in zip(texts, counts, strict=True)]
        return [int(n or 0) for n in counts]


def _tiktoken_for_model(target: str) -> Tokenizer | None:
    name: str | None = None
    try:
        from tiktoken.model import encoding_name_for_model

        name = encoding_name_for_model(target)
    except (KeyError, ImportError):
        name = next((enc for prefix, enc in _MODEL_PREFIXES if target.startswith(prefix)), None)
    return TiktokenTokenizer(name) if name in TIKTOKEN_ENCODINGS else None


def _hf_for(target: str) -> Tokenizer | None:
    if target.startswith("hf:"):
        return HFTokenizer(target[3:])
    if Path(target).expanduser().exists() or target in registries.models:
        return HFTokenizer(target)
    return None


def _registered(target: str) -> Tokenizer | None:
    return registries.tokenizers.create(target) if target in registries.tokenizers else None


# Tried in order; the first that recognises the target wins.
_RESOLVERS: tuple[Callable[[str], Tokenizer | None], ...] = (_registered, _tiktoken_for_model, _hf_for)
_cache: dict[str, Tokenizer] = {}


def get_tokenizer(target: str | Tokenizer) -> Tokenizer:
    """The tokenizer for a target model, encoding, HF tokenizer or path; shared per process."""
    if isinstance(target, Tokenizer):
        return target
    if not isinstance(target, str) or not target.strip():
        raise ConfigError(f"target must be a model name, encoding or Tokenizer, not {target!r}")
    cached = _cache.get(target)
    if cached is not None:
        return cached
    found = next((t for t in (resolve(target) for resolve in _RESOLVERS) if t is not None), None)
    if found is None:
        raise ConfigError(
            f"unknown target tokenizer {target!r}: use an OpenAI model name (gpt-4o, gpt-4, gpt-3.5-turbo), "
            f"an encoding ({', '.join(TIKTOKEN_ENCODINGS)}), hf:<name-or-path>, or a local tokenizer folder"
        )
    _cache[target] = found
    return found


def register_tokenizers(regs: Any) -> None:
    for enc in TIKTOKEN_ENCODINGS:
        regs.tokenizers.register(enc, lambda enc=enc: TiktokenTokenizer(enc), help=f"tiktoken {enc}")
