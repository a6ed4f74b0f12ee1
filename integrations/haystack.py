"""Haystack adapter: a pipeline component that compresses the documents of one query under one budget.

>>> from promptzip.integrations.haystack import PromptZipDocumentCompressor  # doctest: +SKIP
>>> pipeline.add_component("compressor", PromptZipDocumentCompressor(budget=800, target="gpt-4o"))  # doctest: +SKIP
>>> pipeline.connect("retriever.documents", "compressor.documents")  # doctest: +SKIP
>>> pipeline.connect("compressor.documents", "prompt_builder.documents")  # doctest: +SKIP

All documents of a run go into one :meth:`promptzip.Zipper.compress` call, so they share one budget, measured in
the target tokenizer on the documents' contents joined with the Zipper's separator (a blank line); what the prompt
template writes around them comes on top. The query only scores relevance; the prompt places it. Documents that
already fit come back whole.

Each returned document is a new ``Document`` with the same id, score, blob and embeddings, its content replaced by
the pipeline's own output for it (``Result.outputs``), and its meta extended with provenance under
``meta["promptzip"]``: ``kept`` (the ``[start, end]`` character spans of the original content that survived),
``tokens_in``, ``tokens_out`` and ``relevance``. A document of which nothing was kept is dropped; one without text
content (a blob) passes as it is, and one with a blob keeps it (only text is compressed). The order is the
retriever's (Haystack's ``LostInTheMiddleRanker`` can follow for another).

``run_async`` runs the compression in a worker thread (Haystack's ``AsyncPipeline`` uses it). ``to_dict`` /
``from_dict`` carry the init parameters; a component built around a ready ``zipper`` cannot be serialized (a
:class:`promptzip.ConfigError` says so). Importing :mod:`promptzip` never imports Haystack; only importing this
module does. promptzip's own errors propagate as themselves; input that is not documents is an ``InputError``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import Any

try:
    from haystack import Document, component, default_from_dict, default_to_dict
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("promptzip.integrations.haystack needs haystack-ai: pip install 'promptzip[haystack]'") from exc

from promptzip._errors import ConfigError, InputError
from promptzip._inputs import check_text
from promptzip._pipeline import Zipper
from promptzip._types import Budget
from promptzip.integrations._documents import check_settings, compress_texts

__all__ = ["PROVENANCE_KEY", "PromptZipDocumentCompressor"]

PROVENANCE_KEY = "promptzip"


@component
class PromptZipDocumentCompressor:
    """Compress retrieved documents to one shared token budget (a Haystack component).

    Give ``budget`` (an int number of tokens or a :class:`promptzip.Budget`) or ``rate`` (the kept fraction), and
    either a ``preset`` (built on first use, or by ``warm_up``, with ``target`` and ``cache``; ``cache`` is a URL:
    ``sqlite:///path``, ``memory``, ``none``, None for the SQLite cache in the user's cache folder) or a ready
    ``zipper``. The settings are read once, at construction.
    """

    def __init__(
        self,
        *,
        budget: int | Budget | None = None,
        rate: float | None = None,
        preset: str = "fast",
        target: str = "gpt-4o",
        cache: str | None = None,
        zipper: Zipper | None = None,
    ) -> None:
        self._compression = check_settings(budget, rate, preset, target, cache, zipper)
        self.preset, self.target, self.cache = preset, target, cache
        self._given_zipper = zipper is not None

    @property
    def spec(self) -> Budget:
        """The budget every run's documents share."""
        return self._compression.spec

    def warm_up(self) -> None:
        """Build the Zipper now (Haystack calls this before a pipeline runs), not at the first query."""
        _ = self._compression.zipper

    @component.output_types(documents=list[Document])
    def run(self, documents: list[Document], query: str) -> dict[str, list[Document]]:
        """The documents that survive, compressed, in the given order, with provenance in their meta.

        :param documents: the retrieved documents.
        :param query: the question they should answer; it scores relevance and is not added to any document.
        :returns: ``{"documents": [...]}``.
        """
        docs, texts = _check_documents(documents)
        return {"documents": self._compress(docs, texts, _query(query))}

    @component.output_types(documents=list[Document])
    async def run_async(self, documents: list[Document], query: str) -> dict[str, list[Document]]:
        """:meth:`run` with the compression in a worker thread, so the event loop keeps serving while models run."""
        docs, texts = _check_documents(documents)
        return {"documents": await asyncio.to_thread(self._compress, docs, texts, _query(query))}

    def to_dict(self) -> dict[str, Any]:
        """The init parameters, for ``Pipeline.dumps``; a Budget is written as its two numbers."""
        if self._given_zipper:
            raise ConfigError(
                "a PromptZipDocumentCompressor built around a ready zipper cannot be serialized: "
                "give preset=, target= and cache= instead"
            )
        spec = self.spec
        return default_to_dict(
            self, budget=spec.tokens, rate=spec.rate, preset=self.preset, target=self.target, cache=self.cache
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PromptZipDocumentCompressor:
        """The component that :meth:`to_dict` wrote (``Pipeline.loads``)."""
        return default_from_dict(cls, data)

    def _compress(self, docs: list[Document], texts: list[str | None], query: str | None) -> list[Document]:
        pieces = compress_texts(self._compression.zipper, [t or "" for t in texts], self.spec, query, what="documents")
        out: list[Document] = []
        for doc, text, piece in zip(docs, texts, pieces, strict=True):
            if piece is None:  # no text to compress: a blob-only document passes as it is, an empty one is dropped
                if text is None or doc.blob is not None:
                    out.append(doc)
            elif piece.text or doc.blob is not None:  # only text is compressed: a document's blob always stays
                meta = {**doc.meta, PROVENANCE_KEY: piece.provenance()}
                out.append(dataclasses.replace(doc, content=piece.text, meta=meta))  # same id: it is passed on
        return out


# ---------------------------------------------------------------------------------------------------- helpers
def _check_documents(documents: object) -> tuple[list[Document], list[str | None]]:
    if isinstance(documents, str | bytes) or not isinstance(documents, Sequence):
        raise InputError(f"documents must be a list of haystack Documents, not {type(documents).__name__}")
    texts: list[str | None] = []
    for i, doc in enumerate(documents):
        if not isinstance(doc, Document):
            raise InputError(f"documents[{i}] must be a haystack Document, not {type(doc).__name__}")
        content = doc.content
        texts.append(None if content is None else check_text(content, f"documents[{i}].content", allow_empty=True))
    return list(documents), texts


def _query(query: object) -> str | None:
    return check_text(query, "query", allow_empty=True).strip() or None
