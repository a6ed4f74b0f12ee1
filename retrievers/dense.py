"""Dense relevance: cosine similarity of sentence-encoder embeddings, cached by content hash.

An embedding depends only on the text and the encoder, so each distinct text is encoded once, ever, when a cache
is given. Without a query, a chunk's score is its similarity to the centroid of the request (centrality).

The encoder runs in ``precision="auto"`` by default: bfloat16 where the CPU computes it natively (faster than
float32, with embeddings that agree with float32's to within rounding; measured by ``make bench``), else float32; see
:mod:`promptzip._precision`. The precision is part of the fingerprint, so cached embeddings of one never stand in
for another's (a saved FAISS index records only the weights: its vectors stay searchable across precisions).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from promptzip._cache import Cache, NullCache, decode_array, encode_array, make_key
from promptzip._errors import InputError
from promptzip._models import resolve_model
from promptzip._precision import precision_tag, resolve_precision
from promptzip._request_memo import request_memo
from promptzip._roles import Scorer
from promptzip._tokenizers import TextMemo
from promptzip._types import Chunk
from promptzip.retrievers._dense_encoders import LIGHT_ENV, TORCH_ENV, DenseEncoders, State

__all__ = ["LIGHT_ENV", "TORCH_ENV", "DenseScorer", "weights_fingerprint"]

logger = logging.getLogger("promptzip")

_fingerprints: dict[str, str] = {}
_fp_lock = threading.Lock()
_LIGHT_STATE_TEXTS = 64  # beyond this many sentences, loading the packed heavy encoder pays for itself
_MEMO_MAX = 1 << 16  # the most vectors (~1.5 KB each for MiniLM) a request may grow the memo to
_REQUEST_VECTORS = "dense.vectors"  # the request memo's dict of vectors by "emb:"/"query:" key (_request_memo)
_REQUEST_KEYS = "dense.keys:"  # + the "emb:" namespace: the request memo's dict of sentence keys by text


def weights_fingerprint(path: Path) -> str:
    """sha256 (first 16 hex) of a model folder's weight files; computed once per process."""
    key = str(path)
    with _fp_lock:
        if key not in _fingerprints:
            digest = hashlib.sha256()
            files = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")) if path.is_dir() else [path]
            for file in files:
                with file.open("rb") as fh:
                    while block := fh.read(1 << 20):
                        digest.update(block)
            _fingerprints[key] = digest.hexdigest()[:16]
        return _fingerprints[key]


class DenseScorer(Scorer):
    """Bi-encoder cosine relevance (packaged all-MiniLM-L6-v2 by default).

    ``precision``: ``"auto"`` (bfloat16 where native, else float32), ``"float32"``, ``"bfloat16"`` or ``"int8"``.

    ``packed`` (default): texts are laid end to end in rows of 128 word pieces with block-diagonal attention
    (:mod:`promptzip.retrievers._packed`), exact for BERT-type mean-pooling encoders like the packaged one: no
    padding is computed, and the encoder runs on full rows. On the 1k- and 4k-token bench inputs this took a cold
    request from 0.28 / 0.92 s to 0.17 / 0.65 s. Other encoders, int8 scorers (their activations are quantized per
    batch, so packing would change their vectors) and ``packed=False`` go through sentence-transformers' ``encode``:
    longest first, ``batch_size`` (16) to a batch, each batch padded to its longest member.

    For a mean-pooling BERT folder such as the packaged ones, the packed pass of float32 and bfloat16 scorers runs on
    the torch module of :mod:`promptzip.retrievers._torch_bert` (the folder's ``tokenizer.json`` and safetensors,
    the Hugging Face BERT's operations in its order): the same token vectors and offsets as the sentence-transformers
    model's packed pass, without importing sentence-transformers or transformers (seconds of a new process; torch
    alone is a fraction of that). An int8 scorer over such a folder runs that module's int8 copy in the batches of
    sentence-transformers' ``encode`` (:class:`~promptzip.retrievers._dense_encoders.Int8Batches`), so its vectors
    are the library's too. Set ``PROMPTZIP_TORCH_ENCODER=0`` to use the sentence-transformers model instead.

    The last ``memo`` embeddings (and query embeddings) are also kept in memory by the scorer itself, so the
    scoring passes of one request never encode a text twice, with or without a cache; a request of more sentences
    grows the memo to twice its size (up to 65,536 vectors), so repeated long inputs do not evict themselves. Inside
    a compression, the vectors a request has seen are also held in its request memo (:mod:`promptzip._request_memo`)
    until it ends, so a request larger than the memo does not encode its first sentences again in its next passes.

    Queries are embedded in float32 by float32 and bfloat16 scorers alike (a query is one text: bfloat16 would save
    about 2 ms there, and float32 is what it approximates), so a query's vector does not depend on which encoder a
    process has loaded; int8 scorers embed queries with their int8 model. Until a torch encoder is loaded for
    sentences, queries (and the token vectors of up to 64 sentences whose clauses are pooled) come from the NumPy
    encoder of :mod:`promptzip.retrievers._light`, which imports none of torch, transformers or
    sentence-transformers: a new process whose sentences are all cached compresses in a fraction of a second more
    than the import of promptzip. A bfloat16 scorer's clause vectors pooled there are float32's, within bfloat16's
    rounding of what its own pass would give. Set ``PROMPTZIP_LIGHT_ENCODER=0`` to use the heavy model throughout.

    Scoring also keeps the token vectors of up to ``states`` word pieces (float16, about 0.75 KB each), so
    :meth:`score_spans` can pool a clause's vector from the pass that scored its sentence instead of encoding it
    again.
    """

    name = "dense"

    def __init__(
        self,
        model: str = "minilm",
        *,
        cache: Cache | None = None,
        batch_size: int = 16,
        progress: bool = False,
        precision: str = "auto",
        memo: int = 4096,
        states: int = 32768,
        packed: bool = True,
    ) -> None:
        self.model_name = model
        self.precision = resolve_precision(precision)
        self.cache: Cache = cache if cache is not None else NullCache()
        self.batch_size = batch_size
        self.progress = progress
        self.memo = max(0, memo)
        self._fingerprint: str | None = None
        self._capacity = self.memo  # grows with the largest request (see the class docstring)
        self._keys: TextMemo[str] = TextMemo()  # sentence text → its "emb:" cache key (a sha256 per text)
        self._recent: OrderedDict[str, np.ndarray] = OrderedDict()
        self._recent_lock = threading.Lock()
        self.states = max(0, states)
        self.packed = packed
        self._states: OrderedDict[str, State] = OrderedDict()
        self._state_tokens = 0
        self.encoders = DenseEncoders(model, self.precision, packed=packed)  # which encoder runs (_dense_encoders)

    @property
    def fingerprint(self) -> str:
        """The encoder's weights and precision: what an embedding of one text depends on."""
        if self._fingerprint is None:
            resolved = resolve_model(self.model_name)
            weights = weights_fingerprint(resolved.path)
            self._fingerprint = f"dense:{self.model_name}:{weights}{precision_tag(self.precision)}"
        return self._fingerprint

    @property
    def query_fingerprint(self) -> str:
        """What a query's embedding depends on: the weights in float32, or the int8 model (class docstring)."""
        if self.precision == "int8":
            return self.fingerprint
        return self.fingerprint.removesuffix(precision_tag(self.precision))

    def _remember(self, fresh: dict[str, np.ndarray]) -> None:
        if not self._capacity:
            return
        shared = request_memo(_REQUEST_VECTORS)
        if shared is not None:  # the whole request, for its next passes (the memo below keeps its last _capacity)
            shared.update(fresh)
        items = list(fresh.items())[-self._capacity :]  # a corpus-sized batch would only evict itself
        with self._recent_lock:
            for key, vector in items:
                self._recent[key] = vector
                self._recent.move_to_end(key)
            while len(self._recent) > self._capacity:
                self._recent.popitem(last=False)

    def _fit_memo(self, texts: int) -> None:
        """Grow the memo to twice a request's ``texts`` (capped), so that a request's own vectors, and those of the
        one before it, stay in memory for its next passes and the next request."""
        if self._capacity and 2 * texts > self._capacity:
            self._capacity = max(self._capacity, min(2 * texts, _MEMO_MAX))

    def _sentence_keys(self, texts: Sequence[str]) -> list[str]:
        """The "emb:" cache keys of ``texts``, each hashed once while the text is remembered (the passes of one
        request and the requests after it ask for the same sentences)."""
        namespace = "emb:" + self.fingerprint
        memo = self._keys
        # the keys the running request hashed, past the memo's bound too (a request of more sentences than it holds
        # would hash its first ones again on each pass); per namespace, as two scorers may share a request
        shared: dict[str, str] | None = request_memo(_REQUEST_KEYS + namespace)
        keys = []
        for text in texts:
            key = memo.get(text)
            if key is None:
                key = shared.get(text) if shared is not None else None
                if key is None:
                    key = make_key(namespace, text)
                    if shared is not None:
                        shared[text] = key
                memo.put(text, key)
            keys.append(key)
        return keys

    def _recall(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """The vectors of ``keys`` in the memo, then those the running request has seen and the memo dropped (a
        request of more texts than the memo holds), so the passes of one request never encode a text twice."""
        with self._recent_lock:
            found = {k: self._recent[k] for k in keys if k in self._recent}
        shared = request_memo(_REQUEST_VECTORS) if self._capacity and len(found) < len(keys) else None
        if shared:
            found.update({k: shared[k] for k in keys if k not in found and k in shared})
        return found

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-normalized embeddings, one row per text; texts in the memo or the cache are not encoded again."""
        return self._vectors(texts, keep_states=False)

    def _vectors(self, texts: Sequence[str], *, keep_states: bool) -> np.ndarray:
        keys = self._sentence_keys(texts)
        self._fit_memo(len(keys))
        vectors: dict[str, np.ndarray] = self._recall(keys)
        stored = self.cache.get_many(sorted(set(keys) - set(vectors)))
        vectors.update({k: decode_array(v) for k, v in stored.items()})
        missing: dict[str, int] = {}
        for i, key in enumerate(keys):
            if key not in vectors:
                missing.setdefault(key, i)
        if missing:
            todo = list(missing.items())
            encoded, _ = self._encode([texts[i] for _, i in todo], keep_states=keep_states)
            fresh = {key: encoded[j] for j, (key, _) in enumerate(todo)}
            vectors.update(fresh)
            self.cache.put_many({k: encode_array(v) for k, v in fresh.items()})
        self._remember(vectors)
        dim = next(iter(vectors.values())).shape[0] if vectors else 0
        out = np.empty((len(texts), dim), dtype=np.float32)
        for i, key in enumerate(keys):
            out[i] = vectors[key]
        return out

    def _encode(self, texts: list[str], *, keep_states: bool) -> tuple[np.ndarray, list[State]]:
        """Unit embeddings of ``texts``; with ``keep_states``, also each text's contextual token vectors (float16)
        and their character offsets, remembered for :meth:`embed_spans` while they fit in ``states`` tokens."""
        progress = self.progress and len(texts) > 256
        packer = self.encoders.packer()
        kept: list[State] = []
        if packer is not None:
            encoded = packer.encode(texts, states=keep_states, progress=progress)
            vectors = encoded.vectors
            kept = list(zip(encoded.states, encoded.offsets, strict=True))
        else:
            vectors, kept = self.encoders.encode_batched(
                texts, batch_size=self.batch_size, keep_states=keep_states, progress=progress
            )
        if keep_states and self.states:
            with self._recent_lock:
                for text, state in zip(texts, kept, strict=True):
                    self._keep_state(text, state)
        return _unit(vectors.astype(np.float32)), kept  # normalized in float32: bfloat16 norms are off by ~1e-3

    def _keep_state(self, text: str, state: State) -> None:
        size = len(state[0])
        if size > self.states:
            return
        old = self._states.pop(text, None)
        self._state_tokens += size - (len(old[0]) if old is not None else 0)
        self._states[text] = state
        while self._state_tokens > self.states:
            _, dropped = self._states.popitem(last=False)
            self._state_tokens -= len(dropped[0])

    def embed_query(self, query: str) -> np.ndarray:
        """The unit-normalized float32 embedding of one query, kept in the scorer's memo and in the cache.

        Cached queries cost ~1.5 KB each and let a repeated question (a CLI re-run, a restarted proxy, an eval
        rerun) in a new process skip every encoder. A query is encoded in float32 (int8 scorers aside) by the light
        encoder until a heavy encoder is loaded for sentences (:mod:`promptzip.retrievers._dense_encoders`), then by
        that encoder's float32 original (the torch BERT's, or the sentence-transformers model's). The encoders
        truncate to ``max_seq_length`` word pieces (256 for all-MiniLM-L6-v2), so a huge query costs its
        tokenization, not a longer forward pass.
        """
        key = make_key("query:" + self.query_fingerprint, query)  # its own namespace: never an "emb:" entry
        found = self._recall([key])
        if key in found:
            return found[key].copy()
        unit = self._stored_query(key)
        if unit is None:
            unit = _unit(self.encoders.encode_query(query)[None, :])[0]
            self.cache.put(key, encode_array(unit))
        self._remember({key: unit})
        return unit.copy()

    def _stored_query(self, key: str) -> np.ndarray | None:
        stored = self.cache.get(key)
        if stored is None:
            return None
        try:
            vector = decode_array(stored)
        except InputError as exc:  # a foreign or damaged entry is a miss, like any cache failure
            logger.debug("ignoring a cached query embedding: %s", exc)
            return None
        return vector.astype(np.float32) if vector.ndim == 1 else None

    def embed_spans(self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]]) -> np.ndarray:
        """Unit embeddings of character spans of ``texts`` (flat, in order), read from one forward pass over each
        text: a span's vector is the mean of the contextual token vectors inside it (the encoder's own mean
        pooling, restricted to the span). Cached by (text, span); a span past the encoder's length limit is
        encoded on its own."""
        namespace = "span:" + self.fingerprint
        keys = [make_key(namespace, f"{a}:{b}|{t}") for t, pairs in zip(texts, spans, strict=True) for a, b in pairs]
        vectors = self._recall(keys)
        vectors.update({k: decode_array(v) for k, v in self.cache.get_many(sorted(set(keys) - set(vectors))).items()})
        todo: dict[int, list[tuple[str, int, int]]] = {}
        k = 0
        for i, pairs in enumerate(spans):
            for a, b in pairs:
                if keys[k] not in vectors:
                    todo.setdefault(i, []).append((keys[k], a, b))
                k += 1
        if todo:
            fresh = self._pool_spans([texts[i] for i in todo], list(todo.values()))
            vectors.update(fresh)
            self.cache.put_many({key: encode_array(v) for key, v in fresh.items()})
            self._remember(fresh)
        if not keys:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([vectors[key] for key in keys]).astype(np.float32)

    def _pool_spans(
        self, texts: Sequence[str], wanted: Sequence[Sequence[tuple[str, int, int]]]
    ) -> dict[str, np.ndarray]:
        with self._recent_lock:
            states = {t: self._states[t] for t in texts if t in self._states}
        missing = sorted({t for t in texts if t not in states})
        if missing:  # sentences scored before in another process (the cache) or evicted: one pass over them
            states.update(zip(missing, self._missing_states(missing), strict=True))
        out: dict[str, np.ndarray] = {}
        alone: dict[str, str] = {}
        for text, pairs in zip(texts, wanted, strict=True):
            state, offsets = states[text]
            starts, ends = offsets[:, 0], offsets[:, 1]
            real = ends > starts  # special tokens have empty offsets
            for key, a, b in pairs:
                inside = real & (starts < b) & (ends > a)
                if inside.any():
                    out[key] = state[inside].astype(np.float32).mean(axis=0)
                else:  # past the encoder's length limit
                    alone[key] = text[a:b]
        if out:
            keys = list(out)
            pooled = _unit(np.stack([out[k] for k in keys]))
            out = {k: pooled[j] for j, k in enumerate(keys)}
        if alone:
            encoded = self.embed(list(alone.values()))
            out.update({k: encoded[j] for j, k in enumerate(alone)})
        return out

    def _missing_states(self, texts: list[str]) -> list[State]:
        """Token vectors of ``texts`` for span pooling. Until the heavy model is loaded, a few sentences (those whose
        sentence vectors came from the cache, the usual case in a new process) go through the light encoder, whose
        token vectors equal the float32 heavy model's within float32 rounding (a bfloat16 model's within bfloat16
        rounding); many go through the packed heavy pass."""
        light = self.encoders.light_encoder() if len(texts) <= _LIGHT_STATE_TEXTS else None
        if light is None:
            return self._encode(texts, keep_states=True)[1]
        _, tokens, offsets = light.encode_states(texts)
        kept: list[State] = list(zip(tokens, offsets, strict=True))
        if self.states:
            with self._recent_lock:
                for text, state in zip(texts, kept, strict=True):
                    self._keep_state(text, state)
        return kept

    def _score_spans(
        self, chunks: Sequence[Chunk], spans: Sequence[Sequence[tuple[int, int]]], query: str | None
    ) -> Sequence[float]:
        """Cosine relevance of spans in their context (:meth:`embed_spans`): no forward pass beyond one per chunk."""
        return self._cosines(self.embed_spans([c.text for c in chunks], spans), query)

    def _score_pooled(
        self, chunks: Sequence[Chunk], parts: Sequence[Sequence[tuple[int, int]]], query: str | None
    ) -> Sequence[float]:
        """Cosine relevance of each chunk through the mean of its parts' unit vectors, weighted by their length in
        characters (what mean pooling over the whole would weigh them by, minus the context across parts): the
        parts' vectors are in the memo once they were scored, so a paragraph costs no forward pass. A chunk without
        parts is encoded whole."""
        texts = [c.text[a:b] for c, pairs in zip(chunks, parts, strict=True) for a, b in pairs]
        whole = [c.text for c, pairs in zip(chunks, parts, strict=True) if not pairs]
        vectors = self._vectors(texts + whole, keep_states=True)
        pooled = np.empty((len(chunks), vectors.shape[1]), dtype=np.float32)
        at, alone = 0, len(texts)
        for i, pairs in enumerate(parts):
            if pairs:
                weights = np.asarray([b - a for a, b in pairs], dtype=np.float32)[:, None]
                pooled[i] = (vectors[at : at + len(pairs)] * weights).sum(axis=0)
                at += len(pairs)
            else:
                pooled[i] = vectors[alone]
                alone += 1
        return self._cosines(_unit(pooled), query)

    def _score(self, chunks: Sequence[Chunk], query: str | None) -> Sequence[float]:
        return self._cosines(self._vectors([c.text for c in chunks], keep_states=True), query)

    def _cosines(self, emb: np.ndarray, query: str | None) -> list[float]:
        """Cosine of each unit row with the query, or without one with the rows' centroid (centrality)."""
        q = self.embed_query(query) if query else _unit(emb.mean(axis=0, keepdims=True))[0]
        return [float(s) for s in emb @ q.astype(np.float32)]


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)
