"""Soft compression: a context becomes a few vectors in a local decoder's embedding space (xRAG / CompLLM style).

``SoftEncoder`` cuts each text into segments of ``segment_tokens`` encoder tokens and encodes every segment on
its own with the packaged all-MiniLM-L6-v2 (frozen), so the cost is linear in the length and every segment is
cached by content (key: the segment's encoder ids + the encoder's fingerprint). A segment's token states are
mean-pooled into ``k = ceil(tokens / ratio)`` groups of consecutive tokens (``ratio=None``: ``k = 1``, xRAG), and
a small trained projector (linear map + MLP branch) maps each group to the decoder's hidden size; its output is
normalized and multiplied by a learned scale. The scale starts small (full-norm vectors that mean nothing yet
derail a frozen decoder: answer NLL 12 vs 5.6 with no context) and training is free to grow it towards the norm
of the decoder's own token embeddings (≈ 3.2; the manifest records both). The projector is trained by
``promptzip train soft-encoder`` (:mod:`promptzip.training.soft`) against a frozen SmolLM2-135M and
shipped as package data (``models/soft-minilm-smollm2/``: ``projector.safetensors`` + ``manifest.json``).

Status, measured (``evals/results/soft.md``): the packaged projector, trained for 61 CPU steps, does **not** help
yet — on 60 SQuAD dev questions the answer NLL per token is 6.21 with the soft context vs 5.75 with none (paired
difference +0.45, 95% CI [+0.19, +0.73]) and no better than another article's soft vectors, while an extractive
context of the same token cost scores 4.08 and the full paragraph 3.47. So soft prompts are an API and a training
recipe here, not a preset option; a projector must beat no context on that bench before a preset uses it.

>>> enc = SoftEncoder.from_pretrained()  # doctest: +SKIP
>>> soft = enc.encode(paragraph)  # SoftPrompt: vectors [n, 576] float32, per-segment char spans  # doctest: +SKIP
>>> model, tok = load_causal_lm("smollm2-135m")  # doctest: +SKIP
>>> embeds, mask = inputs_embeds(soft, model, tok, after=qa_suffix("Who built it?"))  # soft_decoder  # doctest: +SKIP
>>> model.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=16)  # doctest: +SKIP

Empty input (no text, or a text with no encoder token) is an :class:`InputError`: a soft prompt of zero vectors
would silently ask the question with no context. A decoder whose hidden size differs from the projector's is a
:class:`ConfigError` naming both sizes.

Serialization. :meth:`SoftPrompt.to_bytes` is a safetensors file (one float32 tensor ``vectors`` of shape
``[n_vectors, hidden]``; the metadata holds ``segments`` as JSON ``[[source, start, end, vectors], ...]``,
``tokens_in``, ``decoder``, ``hidden_size`` and ``fingerprint``); :meth:`SoftPrompt.from_bytes` reads it back.

Feeding a decoder: :mod:`promptzip.compressors.soft_decoder` places the vectors between embedded text
(``inputs_embeds``) and writes the prompt-embeddings payload of servers such as vLLM.

The vectors only mean something to the decoder the projector was trained for (``SoftPrompt.decoder``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from promptzip._cache import Cache, NullCache, cache_from_url, decode_array, encode_array, make_key
from promptzip._errors import ConfigError, InputError, ModelNotAvailable

__all__ = [
    "SOFT_DEFAULT",
    "SoftConfig",
    "SoftEncoder",
    "SoftPrompt",
    "SoftSegment",
    "build_projector",
    "packaged_dir",
    "register_soft",
]

SOFT_DEFAULT = "soft-minilm-smollm2"
"""Name of the projector trained by ``promptzip train soft-encoder`` and shipped as package data."""


def packaged_dir() -> Path:
    """The folder of the shipped projector (``manifest.json`` + ``projector.safetensors``)."""
    return Path(__file__).resolve().parent / "models" / SOFT_DEFAULT


@dataclass(frozen=True, slots=True, kw_only=True)
class SoftConfig:
    """What decides the vectors (stored in the manifest's ``config``)."""

    encoder: str = "minilm"
    decoder: str = "smollm2-135m"
    segment_tokens: int = 64
    ratio: int | None = 4  # encoder tokens per vector; None: one vector per segment (xRAG)
    encoder_size: int = 384
    hidden_size: int = 576
    projector_hidden: int = 1024
    init_norm: float = 1.0  # output norm before training (the learned scale starts here)

    def __post_init__(self) -> None:
        if self.segment_tokens < 1 or (self.ratio is not None and self.ratio < 1):
            raise ConfigError("segment_tokens and ratio must be at least 1")
        if min(self.encoder_size, self.hidden_size, self.projector_hidden) < 1:
            raise ConfigError("sizes must be positive")

    def vectors_for(self, tokens: int) -> int:
        """How many vectors a segment of ``tokens`` encoder tokens becomes."""
        return 1 if self.ratio is None else math.ceil(tokens / self.ratio)

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> SoftConfig:
        return cls(**{k: raw[k] for k in cls.__slots__ if k in raw})


@dataclass(frozen=True, slots=True)
class SoftSegment:
    """One encoded segment: ``[start, end)`` characters of input text ``source``, and how many vectors it gave."""

    source: int
    start: int
    end: int
    vectors: int


@dataclass(frozen=True, slots=True, eq=False)
class SoftPrompt:
    """Soft context vectors for one decoder: ``vectors`` is float32 ``[n_vectors, hidden_size]``, in segment order."""

    vectors: npt.NDArray[np.float32]
    segments: tuple[SoftSegment, ...]
    tokens_in: int  # encoder tokens encoded
    decoder: str
    hidden_size: int
    fingerprint: str

    @property
    def n_vectors(self) -> int:
        return int(self.vectors.shape[0])

    def to_bytes(self) -> bytes:
        """A safetensors file: tensor ``vectors`` plus the other fields as metadata (module docstring)."""
        from safetensors.numpy import save

        meta = {
            "segments": json.dumps([[s.source, s.start, s.end, s.vectors] for s in self.segments]),
            "tokens_in": str(self.tokens_in),
            "decoder": self.decoder,
            "hidden_size": str(self.hidden_size),
            "fingerprint": self.fingerprint,
            "format": "promptzip-soft-prompt/1",
        }
        return bytes(save({"vectors": np.ascontiguousarray(self.vectors, dtype=np.float32)}, metadata=meta))

    @classmethod
    def from_bytes(cls, data: bytes) -> SoftPrompt:
        """Read :meth:`to_bytes`' output; anything else is an :class:`InputError`."""
        from safetensors.numpy import load

        try:
            size = int.from_bytes(data[:8], "little")
            meta = json.loads(bytes(data[8 : 8 + size]).decode("utf-8")).get("__metadata__") or {}
            if meta.get("format") != "promptzip-soft-prompt/1":
                raise InputError("not a promptzip soft prompt")
            vectors = np.asarray(load(bytes(data))["vectors"], dtype=np.float32)
            segments = tuple(SoftSegment(*map(int, s)) for s in json.loads(meta["segments"]))
            hidden = int(meta["hidden_size"])
        except InputError:
            raise
        except Exception as exc:  # safetensors raises its own error types for a bad header
            raise InputError(f"cannot read a soft prompt: {exc}") from exc
        if vectors.ndim != 2 or vectors.shape[1] != hidden or sum(s.vectors for s in segments) != len(vectors):
            raise InputError("soft prompt vectors do not match its metadata")
        return cls(vectors, segments, int(meta["tokens_in"]), meta["decoder"], hidden, meta["fingerprint"])


def build_projector(config: SoftConfig) -> Any:
    """The trainable projector: LayerNorm, then a linear map plus a GELU MLP branch, normalized to unit length and
    multiplied by a learned scale (so the vectors keep the norm of the decoder's token embeddings)."""
    import torch
    from torch import nn

    class Projector(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm = nn.LayerNorm(config.encoder_size, elementwise_affine=False)
            self.linear = nn.Linear(config.encoder_size, config.hidden_size)
            self.fc1 = nn.Linear(config.encoder_size, config.projector_hidden)
            self.fc2 = nn.Linear(config.projector_hidden, config.hidden_size)
            self.log_scale = nn.Parameter(torch.tensor(math.log(max(config.init_norm, 1e-4))))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.norm(x)
            h = self.linear(x) + self.fc2(torch.nn.functional.gelu(self.fc1(x)))
            out: torch.Tensor = h / h.norm(dim=-1, keepdim=True).clamp(min=1e-6) * self.log_scale.exp()
            return out

    return Projector()


def load_encoder(name: str = "minilm") -> tuple[Any, Any]:
    """``(BertModel, tokenizer)`` of the frozen MiniLM encoder, loaded once per process (token-level states)."""
    from promptzip._models import load_once, resolve_model

    def _load(path: Path) -> tuple[Any, Any]:
        try:
            from transformers import AutoModel, AutoTokenizer
        except ImportError as exc:
            raise ModelNotAvailable("soft prompts need the models extra: pip install 'promptzip[models]'") from exc
        from promptzip.compressors.token_classifier import _hf_quiet

        _hf_quiet()
        try:
            model = AutoModel.from_pretrained(str(path), local_files_only=True)
            tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except Exception as exc:  # transformers raises OSError, ValueError... for a bad folder
            raise ModelNotAvailable(f"could not load the soft encoder's base from {path}: {exc}", model=name) from exc
        model.eval()
        model.requires_grad_(False)
        return model, tokenizer

    loaded: tuple[Any, Any] = load_once("soft-encoder-base", resolve_model(name).path, _load)
    return loaded


@dataclass(frozen=True, slots=True)
class _Piece:
    source: int
    start: int
    end: int
    ids: tuple[int, ...]
    offsets: tuple[tuple[int, int], ...]  # character span of each token in the source text


@dataclass(slots=True)
class SoftEncoder:
    """Text → :class:`SoftPrompt` (module docstring). Build it with :meth:`from_pretrained`; models load lazily."""

    config: SoftConfig
    projector_path: Path | None = None  # None: an untrained projector (tests, and the start of training)
    cache: Cache = field(default_factory=NullCache)
    batch_size: int = 16
    segments_encoded: int = 0  # segments run through the encoder (cache misses), for stats and tests
    _projector: Any = field(default=None, init=False, repr=False)
    _fingerprint: str | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, *, cache: Cache | str | None = None) -> SoftEncoder:
        """The projector in folder ``path`` (``manifest.json`` + ``projector.safetensors``); ``None`` or
        ``"soft-minilm-smollm2"``: the packaged one. Reads only the manifest; models load on first use."""
        if path is None or str(path) == SOFT_DEFAULT:
            folder = packaged_dir()
        else:
            from promptzip._models import resolve_model

            folder = resolve_model(str(path)).path
        manifest = folder / "manifest.json"
        weights = folder / "projector.safetensors"
        if not manifest.is_file() or not weights.is_file():
            raise ModelNotAvailable(
                f"no soft-encoder projector in {folder}; train one: promptzip train soft-encoder", model=str(path)
            )
        raw = json.loads(manifest.read_text(encoding="utf-8"))
        return cls(SoftConfig.from_json(raw["config"]), weights, cache=cache_from_url(cache))

    @property
    def fingerprint(self) -> str:
        """Encoder weights + projector weights + segmenting parameters: the cache namespace of the vectors."""
        if self._fingerprint is None:
            from promptzip._models import resolve_model
            from promptzip.retrievers.dense import weights_fingerprint

            if self.projector_path is not None:
                projector = hashlib.sha256(self.projector_path.read_bytes()).hexdigest()[:16]
            else:
                projector = "untrained"
            base = weights_fingerprint(resolve_model(self.config.encoder).path)
            self._fingerprint = (
                f"soft:{base}:{projector}:S={self.config.segment_tokens}:r={self.config.ratio}"
                f":H={self.config.hidden_size}"
            )
        return self._fingerprint

    def projector(self) -> Any:
        """The projector module (loaded on first use, frozen, CPU)."""
        if self._projector is None:
            import torch

            with torch.device("meta"):
                module = build_projector(self.config)
            if self.projector_path is not None:
                from safetensors.torch import load_file

                module.load_state_dict(load_file(str(self.projector_path)), assign=True)
            else:
                module = module.to_empty(device="cpu")
                gen = torch.Generator().manual_seed(0)
                with torch.no_grad():
                    for p in module.parameters():
                        p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
            module.eval()
            module.requires_grad_(False)
            self._projector = module
        return self._projector

    # --------------------------------------------------------------------------------------------- encode

    def encode(self, text: str | Sequence[str]) -> SoftPrompt:
        """Soft vectors of one text or of several chunks (``SoftSegment.source`` is the chunk's index)."""
        texts = [text] if isinstance(text, str) else list(text)
        if not texts:
            raise InputError("nothing to encode: no text given")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise InputError(f"text {i} must be str, not {type(t).__name__}", position=i)
            if not t.strip():
                raise InputError(f"text {i} is empty: a soft prompt needs text to encode", position=i)
        pieces = self.segment(texts)
        keys = [
            make_key("soft-segment:" + self.fingerprint, np.asarray(p.ids, dtype=np.int32).tobytes()) for p in pieces
        ]
        found: dict[str, np.ndarray] = {}
        for key, raw in self.cache.get_many(sorted(set(keys))).items():
            try:
                array = decode_array(raw)
            except InputError:
                continue
            if array.ndim == 2 and array.shape[1] == self.config.hidden_size and array.dtype == np.float32:
                found[key] = array
        todo = [i for i, k in enumerate(keys) if k not in found]
        if todo:
            vectors = self.project(self.pooled_states([pieces[i].ids for i in todo]))
            self.segments_encoded += len(todo)
            fresh = {keys[i]: v for i, v in zip(todo, vectors, strict=True)}
            self.cache.put_many({k: encode_array(v) for k, v in fresh.items()})
            found.update(fresh)
        arrays = [found[k] for k in keys]
        return SoftPrompt(
            vectors=np.concatenate(arrays).astype(np.float32, copy=False),
            segments=tuple(SoftSegment(p.source, p.start, p.end, len(a)) for p, a in zip(pieces, arrays, strict=True)),
            tokens_in=sum(len(p.ids) for p in pieces),
            decoder=self.config.decoder,
            hidden_size=self.config.hidden_size,
            fingerprint=self.fingerprint,
        )

    def segment(self, texts: Sequence[str]) -> list[_Piece]:
        """Consecutive runs of ``segment_tokens`` encoder tokens of every text, with their character spans."""
        _, tokenizer = load_encoder(self.config.encoder)
        encoded = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        size = self.config.segment_tokens
        out: list[_Piece] = []
        for i, (ids, offsets) in enumerate(zip(encoded["input_ids"], encoded["offset_mapping"], strict=True)):
            if not ids:
                raise InputError(f"text {i} has no encoder token: a soft prompt needs text to encode", position=i)
            for s in range(0, len(ids), size):
                part = offsets[s : s + size]
                spans = tuple((int(a), int(z)) for a, z in part)
                out.append(_Piece(i, spans[0][0], spans[-1][1], tuple(int(t) for t in ids[s : s + size]), spans))
        return out

    def group_bounds(self, tokens: int) -> list[int]:
        """Token boundaries of a segment's ``k`` groups: group ``g`` is tokens ``[b[g], b[g + 1])``."""
        if self.config.ratio is None:
            return [0, tokens]
        k = self.config.vectors_for(tokens)
        return [min(g * self.config.ratio, tokens) for g in range(k + 1)]

    def pooled_states(self, segments: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """Frozen-encoder states of each segment (``[CLS] ids [SEP]`` on its own), mean-pooled into its ``k``
        groups: float32 ``[k, encoder_size]`` each. The projector's input (training caches these)."""
        import torch

        model, tokenizer = load_encoder(self.config.encoder)
        head = [tokenizer.cls_token_id] if tokenizer.cls_token_id is not None else []
        tail = [tokenizer.sep_token_id] if tokenizer.sep_token_id is not None else []
        pad = tokenizer.pad_token_id or 0
        device = next(model.parameters()).device
        out: list[np.ndarray] = [np.zeros(0, dtype=np.float32)] * len(segments)
        order = sorted(range(len(segments)), key=lambda j: -len(segments[j]))
        with torch.inference_mode():
            for b in range(0, len(order), self.batch_size):
                rows = order[b : b + self.batch_size]
                width = max(len(segments[j]) for j in rows) + len(head) + len(tail)
                ids = torch.full((len(rows), width), pad, dtype=torch.long)
                mask = torch.zeros((len(rows), width), dtype=torch.long)
                for r, j in enumerate(rows):
                    row = [*head, *segments[j], *tail]
                    ids[r, : len(row)] = torch.tensor(row)
                    mask[r, : len(row)] = 1
                states = model(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
                states = states.float().cpu().numpy()
                for r, j in enumerate(rows):
                    tokens = states[r, len(head) : len(head) + len(segments[j])]
                    bounds = self.group_bounds(len(tokens))
                    out[j] = np.stack([tokens[a:z].mean(0) for a, z in itertools.pairwise(bounds)])
        return [a.astype(np.float32, copy=False) for a in out]

    def project(self, pooled: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Projector outputs (float32 ``[k, hidden_size]``) of pooled encoder states."""
        import torch

        if not pooled:
            return []
        projector = self.projector()
        sizes = [len(p) for p in pooled]
        with torch.inference_mode():
            flat = projector(torch.from_numpy(np.concatenate(pooled).astype(np.float32)))
        parts = np.split(flat.float().numpy(), np.cumsum(sizes)[:-1])
        return [np.ascontiguousarray(p, dtype=np.float32) for p in parts]


def register_soft(registries: Any) -> None:
    """Register the packaged projector as a model name (``soft-minilm-smollm2``)."""
    from promptzip._models import ModelSpec

    spec = ModelSpec(
        key=SOFT_DEFAULT,
        kind="soft-encoder",
        description="MiniLM → SmolLM2-135M soft-prompt projector (promptzip train soft-encoder), packaged",
        package="promptzip.compressors",
        subpath=f"models/{SOFT_DEFAULT}",
        license="Apache-2.0",
    )
    registries.models.register(SOFT_DEFAULT, spec, help=spec.description)
