"""Sparse retrieval: Okapi BM25 over a corpus, with ``bm25s``.

Why ``bm25s``: it is maintained, precomputes every document's BM25 term weights into a scipy sparse matrix at
index time, so a query is a sparse column sum (milliseconds at 100k+ chunks), and it saves and loads that matrix
as plain ``.npy``/JSON files (``allow_pickle=False``). ``rank_bm25``, the usual alternative, is unmaintained
(no release since 2022) and scores in pure Python per document and query, orders of magnitude slower on large
corpora.

Terms are promptzip's own (:func:`promptzip.retrievers.sparse.terms`: lower-cased, stop words out, light
stemming), so this retriever ranks exactly as the pipeline's :class:`~promptzip.retrievers.sparse.BM25Scorer`
does over the same chunks (``method="lucene"`` drops the constant ``k1 + 1`` factor, so scores differ from the
scorer's by that factor only). The saved index records a fingerprint of the tokenizer, and loading refuses a
folder whose terms would no longer match.

``bm25s`` builds an index in one pass and cannot add or remove documents, so ``add`` and ``delete`` mark the
index stale and the next query (or ``save``) rebuilds it from the kept term lists. A rebuild costs far more than a
query (``evals/results/retrieval.md``), so add in batches rather than one chunk at a time between queries. Only
chunks that share at least one term with the query are returned (a zero BM25 score is no evidence), so
``retrieve`` may return fewer than ``k``.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np

from promptzip._errors import ConfigError, InputError, ModelNotAvailable
from promptzip._types import Chunk
from promptzip.retrievers._corpus import CorpusRetriever
from promptzip.retrievers.sparse import STOPWORDS, terms

__all__ = ["BM25Retriever", "tokenizer_fingerprint"]

_METHODS = ("lucene", "robertson", "atire", "bm25l", "bm25+")
_PROBE = (
    "The Normans' conquering armies were settling quickly; studies of flies, carried goods and 1066 records "
    "seemingly agree: running, played, denied, happily, cities, boxes."
)


def tokenizer_fingerprint() -> str:
    """A short hash of what :func:`terms` makes of a probe text and of the stop-word list."""
    digest = hashlib.sha256(" ".join(terms(_PROBE)).encode())
    digest.update(" ".join(sorted(STOPWORDS)).encode())
    return digest.hexdigest()[:16]


def _bm25s() -> Any:
    try:
        import bm25s
    except ImportError as exc:
        raise ModelNotAvailable("BM25 retrieval needs bm25s: pip install 'promptzip[retrieval]'") from exc
    return bm25s


class BM25Retriever(CorpusRetriever):
    """BM25 over the chunks added to it; ``score`` is the BM25 score (``k1=1.2``, ``b=0.75``, Lucene's variant).

    >>> bm25 = BM25Retriever()
    >>> bm25.add(chunks)                                   # doctest: +SKIP
    >>> bm25.retrieve("Gustave Eiffel", k=3)               # doctest: +SKIP

    ``add``/``delete``/``save``/``load``/the empty corpus behave as in
    :class:`~promptzip.retrievers.fusion.CorpusRetriever`; see the module docstring for rebuilds.
    """

    name = "bm25"
    kind = "bm25"

    def __init__(self, *, k1: float = 1.2, b: float = 0.75, method: str = "lucene") -> None:
        super().__init__()
        if method not in _METHODS:
            raise ConfigError(f"unknown BM25 method {method!r}; known: {', '.join(_METHODS)}")
        if isinstance(k1, bool) or not isinstance(k1, int | float) or not k1 > 0:
            raise ConfigError(f"k1 must be a positive number, got {k1!r}")
        if isinstance(b, bool) or not isinstance(b, int | float) or not 0.0 <= b <= 1.0:
            raise ConfigError(f"b must be in [0, 1], got {b!r}")
        self.k1 = float(k1)
        self.b = float(b)
        self.method = method
        self._tokens: dict[str, list[str]] | None = {}  # None after load, until an add or delete needs them
        self._engine: Any = None
        self._order: list[str] = []
        self._stale = False

    # -- adding and deleting: keep the term lists, rebuild lazily
    def _prepare(self, items: Sequence[tuple[str, Chunk]]) -> Any:
        return [terms(chunk.text) for _, chunk in items]

    def _add(self, items: Sequence[tuple[str, Chunk]], payload: Any) -> None:
        tokens = self._term_lists()
        for (key, _), words in zip(items, payload, strict=True):
            tokens[key] = words
        self._stale = True

    def _delete(self, ids: Sequence[str]) -> None:
        tokens = self._term_lists()
        for key in ids:
            del tokens[key]
        self._stale = True

    def _term_lists(self) -> dict[str, list[str]]:
        if self._tokens is None:  # loaded from disk: the matrix is there, the term lists are not
            self._tokens = {key: terms(chunk.text) for key, chunk in self._records.items()}
        return self._tokens

    def _built(self) -> Any:
        if self._engine is None or self._stale:
            tokens = self._term_lists()
            order = list(self._records)
            engine = _bm25s().BM25(k1=self.k1, b=self.b, method=self.method)
            engine.index([tokens[key] for key in order], show_progress=False)
            self._engine, self._order, self._stale = engine, order, False
        return self._engine

    # -- searching
    def _search(self, query: str, k: int) -> list[tuple[str, float]]:
        engine = self._built()
        vocab = engine.vocab_dict
        words = [w for w in dict.fromkeys(terms(query)) if w in vocab]
        if not words:
            return []
        scores = np.asarray(engine.get_scores(words), dtype=np.float64)
        hits = np.flatnonzero(scores > 0)
        best = hits[np.argsort(-scores[hits], kind="stable")][:k]
        return [(self._order[i], float(scores[i])) for i in best.tolist()]

    # -- persistence
    def _dump(self) -> tuple[dict[str, bytes], dict[str, Any]]:
        files: dict[str, bytes] = {}
        if self._records:
            engine = self._built()
            with tempfile.TemporaryDirectory(prefix="promptzip-bm25-") as tmp:
                engine.save(tmp, show_progress=False)
                files = {p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir()) if p.is_file()}
        state = {
            "params": {"k1": self.k1, "b": self.b, "method": self.method},
            "tokenizer": tokenizer_fingerprint(),
            "order": list(self._order) if self._records else [],
        }
        return files, state

    @classmethod
    def _restore(
        cls,
        folder: Path,
        state: Mapping[str, Any],
        files: Mapping[str, bytes],
        records: Sequence[tuple[str, Chunk]],
        **options: Any,
    ) -> Self:
        where = folder / "manifest.json"
        try:
            params = dict(state["params"])
            saved_tokenizer = str(state["tokenizer"])
            order = [str(key) for key in state["order"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{where}: malformed BM25 state ({exc!r})") from exc
        if options:
            raise ConfigError(f"BM25Retriever.load takes no options, got {sorted(options)}")
        if saved_tokenizer != tokenizer_fingerprint():
            raise ConfigError(
                f"the BM25 index at {folder} was built with a different tokenizer (fingerprint {saved_tokenizer}, "
                f"now {tokenizer_fingerprint()}): re-index the corpus"
            )
        try:
            retriever = cls(**params)
        except TypeError as exc:
            raise InputError(f"{where}: malformed BM25 parameters {params!r}") from exc
        if not records:
            return retriever
        if order != [key for key, _ in records]:
            raise InputError(f"{where}: the BM25 document order does not match the chunk records")
        try:
            engine = _bm25s().BM25.load(str(folder), mmap=False, allow_pickle=False, show_progress=False)
            num_docs = int(engine.scores["num_docs"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InputError(f"the BM25 index files in {folder} cannot be read: {exc}") from exc
        if num_docs != len(records):
            raise InputError(
                f"the BM25 index in {folder} holds {num_docs} documents; the manifest lists {len(records)}"
            )
        retriever._engine, retriever._order, retriever._tokens = engine, order, None
        return retriever
