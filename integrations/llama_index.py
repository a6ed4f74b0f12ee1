"""LlamaIndex adapter: a node postprocessor that compresses the nodes retrieved for one query under one budget.

>>> from promptzip.integrations.llama_index import PromptZipNodePostprocessor  # doctest: +SKIP
>>> engine = index.as_query_engine(  # doctest: +SKIP
...     similarity_top_k=8, node_postprocessors=[PromptZipNodePostprocessor(budget=800, target="gpt-4o")]
... )

All nodes of a query go into one :meth:`promptzip.Zipper.compress` call, so they share one budget, measured in the
target tokenizer on the nodes' texts joined with the Zipper's separator (a blank line, as LlamaIndex's response
synthesizers join them). The metadata lines LlamaIndex prints above each node and the prompt template come on
top of it. The query only scores relevance; the prompt places it. Nodes that already fit come back whole.

Each returned node is a copy with the same id, score, relationships and metadata, its text replaced by the
pipeline's own output for it (``Result.outputs``), and provenance under ``metadata["promptzip"]``: ``kept`` (the
``[start, end]`` character spans of the node's original text that survived), ``tokens_in``, ``tokens_out`` and
``relevance``. That key is excluded from what the LLM and the embedding model see. A text node of which nothing
was kept is dropped; a node that carries an image, audio or video keeps it (only text is compressed). The order
is the retriever's (chain LlamaIndex's ``LongContextReorder`` after this one for another).

:class:`PromptZipLLM` (:mod:`promptzip.integrations._llama_index_llm`) compresses the whole request instead: an LLM
that wraps the user's, for chat engines and agents, which put the context inside their messages.

Importing :mod:`promptzip` never imports LlamaIndex; only importing this module does. promptzip's own errors
propagate as themselves, and input that is not nodes is a :class:`promptzip.InputError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

try:
    from llama_index.core.bridge.pydantic import Field, PrivateAttr
    from llama_index.core.callbacks import CallbackManager
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.schema import BaseNode, MetadataMode, NodeWithScore, QueryBundle
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "promptzip.integrations.llama_index needs llama-index-core: pip install 'promptzip[llama_index]'"
    ) from exc

from promptzip._errors import InputError
from promptzip._inputs import check_text
from promptzip._pipeline import Zipper
from promptzip._types import Budget, Result
from promptzip.integrations._calls import Compression
from promptzip.integrations._documents import Piece, check_settings, compress_texts
from promptzip.integrations._llama_index_llm import PromptZipLLM

__all__ = ["PROVENANCE_KEY", "PromptZipLLM", "PromptZipNodePostprocessor"]

PROVENANCE_KEY = "promptzip"
# Fields through which a node carries something other than text (ImageNode, the multimodal Node): such a node is
# kept even when none of its text is, since only text is compressed.
_MEDIA_FIELDS = ("image", "image_path", "image_url", "image_resource", "audio_resource", "video_resource")


class PromptZipNodePostprocessor(BaseNodePostprocessor):
    """Compress retrieved nodes to one shared token budget (a LlamaIndex ``BaseNodePostprocessor``).

    Give ``budget`` (an int number of tokens or a :class:`promptzip.Budget`) or ``rate`` (the kept fraction), and
    either a ``preset`` (built on first use with ``target`` and ``cache``) or a ready ``zipper``. ``on_result`` is
    called with the :class:`promptzip.Result` of each query's compression (not of nodes that fit whole: they come
    back as given), before the nodes are returned; ``Result.dropped`` is what the LLM will not see, and what it
    raises propagates. The settings are read once, at construction; build a new postprocessor to change them.
    """

    budget: int | None = None
    """Hard cap in tokens of ``target`` on the joined node texts (give this or ``rate``)."""
    rate: float | None = None
    """Kept fraction of the nodes' tokens, in (0, 1] (give this or ``budget``)."""
    preset: str = "fast"
    target: str = "gpt-4o"
    cache: str | None = None
    """Cache URL (``sqlite:///path``, ``memory``, ``none``); None is the SQLite cache in the user's cache folder."""
    on_result: Callable[[Result], object] | None = Field(default=None, exclude=True)
    """Called with the Result of each compression, before its nodes are returned (not serialized, as the
    ``callback_manager`` is not)."""

    _compression: Compression = PrivateAttr()

    def __init__(
        self,
        *,
        budget: int | Budget | None = None,
        rate: float | None = None,
        preset: str = "fast",
        target: str = "gpt-4o",
        cache: str | None = None,
        zipper: Zipper | None = None,
        on_result: Callable[[Result], object] | None = None,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        # Checked before pydantic sees the values, so a bad setting is a promptzip error, not a ValidationError.
        compression = check_settings(budget, rate, preset, target, cache, zipper, on_result)
        spec = compression.spec
        # A Budget is stored as its two numbers, so to_dict/from_dict round-trip through JSON.
        fields: dict[str, Any] = {"budget": spec.tokens, "rate": spec.rate, "preset": preset, "target": target}
        fields |= {"cache": cache, "on_result": on_result}
        if callback_manager is not None:
            fields["callback_manager"] = callback_manager
        super().__init__(**fields)
        self._compression = compression

    @classmethod
    def class_name(cls) -> str:
        return "PromptZipNodePostprocessor"

    @property
    def spec(self) -> Budget:
        """The budget every query's nodes share."""
        return self._compression.spec

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        """The nodes that survive, compressed, in the retriever's order, with provenance in their metadata."""
        checked, texts = _check_nodes(nodes)
        return self._compress(checked, texts, _query(query_bundle))

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        """:meth:`_postprocess_nodes` with the compression in a worker thread, so the event loop keeps serving."""
        checked, texts = _check_nodes(nodes)
        return await asyncio.to_thread(self._compress, checked, texts, _query(query_bundle))

    def _compress(self, nodes: list[NodeWithScore], texts: list[str], query: str | None) -> list[NodeWithScore]:
        pieces = compress_texts(self._compression, texts, query, what="nodes")
        out: list[NodeWithScore] = []
        for item, piece in zip(nodes, pieces, strict=True):
            if piece is None:  # no text to compress: an image node passes as it is, an empty text node is dropped
                if _has_media(item.node):
                    out.append(item)
            elif piece.text or _has_media(item.node):  # only text is compressed: a node's media always stays
                out.append(NodeWithScore(node=_with_text(item.node, piece), score=item.score))
        return out


# ---------------------------------------------------------------------------------------------------- helpers
def _check_nodes(nodes: object) -> tuple[list[NodeWithScore], list[str]]:
    if isinstance(nodes, str | bytes) or not isinstance(nodes, Sequence):
        raise InputError(f"nodes must be a list of NodeWithScore, not {type(nodes).__name__}")
    texts: list[str] = []
    for i, item in enumerate(nodes):
        if not isinstance(item, NodeWithScore):
            raise InputError(f"nodes[{i}] must be a llama_index NodeWithScore, not {type(item).__name__}")
        texts.append(
            check_text(item.node.get_content(metadata_mode=MetadataMode.NONE), f"nodes[{i}]", allow_empty=True)
        )
    return list(nodes), texts


def _query(query_bundle: object) -> str | None:
    if query_bundle is None:
        return None
    if not isinstance(query_bundle, QueryBundle):
        raise InputError(f"query_bundle must be a llama_index QueryBundle, not {type(query_bundle).__name__}")
    return check_text(query_bundle.query_str, "query", allow_empty=True).strip() or None


def _has_media(node: BaseNode) -> bool:
    return any(getattr(node, name, None) is not None for name in _MEDIA_FIELDS)


def _with_text(node: BaseNode, piece: Piece) -> BaseNode:
    """A copy of ``node`` (same id, relationships, char offsets) with ``piece.text`` and provenance in metadata; the
    caller's node is untouched."""
    copy = node.model_copy()
    copy.set_content(piece.text)
    copy.metadata = {**node.metadata, PROVENANCE_KEY: piece.provenance()}
    # Provenance is for the application, not for the model: keep it out of the prompt and of embeddings.
    copy.excluded_llm_metadata_keys = _with_key(node.excluded_llm_metadata_keys)
    copy.excluded_embed_metadata_keys = _with_key(node.excluded_embed_metadata_keys)
    return copy


def _with_key(keys: list[str]) -> list[str]:
    return keys if PROVENANCE_KEY in keys else [*keys, PROVENANCE_KEY]
