"""Token-classifier keep scores (LLMLingua-2): any Hugging Face ``AutoModelForTokenClassification`` whose label 1
means "keep", plus promptzip's own distilled CPU classifier.

* Any architecture: words are grouped from the fast tokenizer's character offsets (a unit's score is the mean
  keep-probability of its tokens), never by model-name substrings, so XLM-RoBERTa, BERT, DeBERTa or a user's own
  model all work. Special tokens are found from the tokenizer (``build_inputs_with_special_tokens``).
* Long inputs are cut into windows (``max_length``: the model's maximum length, 128 for the distilled classifier)
  that overlap by ``overlap`` tokens; each token takes its probability from the window where it sits farthest from
  an edge, and the last window is aligned to the end of the text (the last sentence always gets full context,
  LLMLingua #213). All windows of all texts of a call run in padded batches; what happens after the forward pass
  is numpy over whole arrays (LLMLingua #175).
* ``model="minilm-tc"`` (the default) is the classifier distilled here (``promptzip train token-classifier``):
  the packaged all-MiniLM-L6-v2 encoder with LoRA deltas merged into its weights and a linear head, read from the
  small artifact under ``promptzip/compressors/models/minilm-tc/``. The published LLMLingua-2 checkpoints load by
  registry key (``llmlingua-2-xlm-roberta-large``) or hub id for users who have the hub.
* BERT classifiers (the distilled one, and ``BertForTokenClassification`` folders) run on the torch module and
  ``tokenizers`` tokenizer of :mod:`promptzip.compressors._torch_classifier`: the transformers model's
  keep-probabilities bit for bit, without importing transformers (seconds of a new process).
  ``PROMPTZIP_TORCH_ENCODER=0`` (:func:`builtin_wanted`) loads them through transformers again; exporting and
  training always do.
* On a CPU the linear layers run with int8 weights (``int8=True``, the default;
  :func:`promptzip._precision.int8_model`): about twice the tokens/s of float32 for the same model.

>>> scorer = TokenClassifierScorer()  # doctest: +SKIP
>>> TokenPruneCompressor(scorer).prune("The tower is 330 metres tall.", rate=0.5).text  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from promptzip._deadline import check
from promptzip._errors import ConfigError, ModelNotAvailable
from promptzip._precision import int8_model
from promptzip.compressors.pruning import FloatArray, IntArray, group_tokens
from promptzip.compressors.token_scores import BatchTokenScorer

__all__ = [
    "DISTILLED",
    "DISTILLED_ENV",
    "TokenClassifierScorer",
    "builtin_wanted",
    "distilled_dir",
    "export_distilled",
    "exported_classifier",
    "keep_probabilities",
    "load_distilled",
    "load_token_classifier",
]

DISTILLED = "minilm-tc"
DISTILLED_ENV = "PROMPTZIP_MINILM_TC_DIR"
"""Name of the classifier distilled by ``promptzip train token-classifier`` and shipped as package data."""
# The distilled classifier reads windows of 128 word pieces overlapping by 16 (other models: 512 / 64): it agrees
# with its teacher as well there as at 512 / 64 on its held-out training texts, and attention costs less per token
# in short windows (the throughput is in evals/results/token_level.md).
DISTILLED_WINDOW = (128, 16)


def distilled_dir() -> Path:
    """The folder of the distilled classifier (``manifest.json`` + ``adapter.safetensors``): the shipped one, or
    ``$PROMPTZIP_MINILM_TC_DIR`` (another ``promptzip train token-classifier --out`` artifact, e.g. one trained
    with a source held out). Its weights' fingerprint keys the score cache, so switching reuses nothing."""
    override = os.environ.get(DISTILLED_ENV)
    return Path(override) if override else Path(__file__).resolve().parent / "models" / DISTILLED


def _hf_quiet() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]


def builtin_wanted() -> bool:
    """Whether BERT classifiers load through :mod:`promptzip.compressors._torch_classifier` (no transformers):
    yes unless ``PROMPTZIP_TORCH_ENCODER`` is off, the switch of the dense scorer's built-in torch BERT. One switch
    for both, because both run the same :class:`~promptzip.retrievers._torch_bert.TorchBert`, and turning it off
    gives back the whole stack of before (transformers and sentence-transformers) for a comparison."""
    from promptzip.retrievers._dense_encoders import TORCH_ENV, switched_off

    return not switched_off(TORCH_ENV)


def load_distilled(folder: Path | None = None, *, builtin: bool | None = None) -> tuple[Any, Any]:
    """``(model, tokenizer)`` of the distilled classifier: the packaged MiniLM weights with the artifact's LoRA
    deltas merged in (so inference costs exactly a MiniLM forward pass) and its head. ``builtin`` (default: unless
    switched off, :func:`builtin_wanted`): the torch module and ``tokenizers`` tokenizer of
    :mod:`promptzip.compressors._torch_classifier`, which give the same keep-probabilities without importing
    transformers; else (or where the base folder is not a BERT it computes exactly) a transformers
    ``BertForTokenClassification`` and its fast tokenizer, as :func:`export_distilled` and the trainer need."""
    folder = folder or distilled_dir()
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise ModelNotAvailable(
            f"the distilled classifier is missing ({manifest_path}; ${DISTILLED_ENV} names another folder); train "
            "it: promptzip train token-classifier",
            model=DISTILLED,
        )
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    from promptzip._models import resolve_model

    base = resolve_model(str(manifest.get("base", {}).get("model", "minilm")))

    adapter, lora = folder / "adapter.safetensors", manifest["hyperparameters"]
    from promptzip._models import load_once

    if builtin_wanted() if builtin is None else builtin:
        found = _builtin_loaded(folder, base.path, adapter=adapter, lora=lora)
        if found is not None:
            return found

    def _load(path: Path) -> tuple[Any, Any]:
        return build_student(base.path, adapter=adapter, lora=lora)

    loaded: tuple[Any, Any] = load_once("token-classifier", folder, _load)
    return loaded


def export_distilled(dest: Path, folder: Path | None = None) -> Path:
    """Write the distilled classifier as a plain Hugging Face folder (merged weights, config, tokenizer), for tools
    that load a folder themselves — e.g. llmlingua's LLMLingua-2 mode, which wants a folder whose name contains
    ``bert-base-multilingual-cased`` (our student is a BERT)."""
    model, tokenizer = load_distilled(folder, builtin=False)
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(dest))
    tokenizer.save_pretrained(str(dest))
    return dest


def exported_classifier() -> Path:
    """The shipped classifier exported once (:func:`export_distilled`) to a temp folder named for its weights and
    as llmlingua's LLMLingua-2 mode wants (``...bert-base-multilingual-cased...``); the folder's path."""
    import hashlib
    import json
    import tempfile

    files = json.loads((distilled_dir() / "manifest.json").read_text(encoding="utf-8"))["files"]
    tag = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:12]
    dest = Path(tempfile.gettempdir()) / f"promptzip-{tag}" / "llmlingua-2-bert-base-multilingual-cased-minilm-tc"
    if not (dest / "config.json").is_file():
        export_distilled(dest)
    return dest


def build_student(base: Path, *, adapter: Path | None = None, lora: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """The student: BERT (MiniLM) encoder + 2-label head, frozen for inference. With ``adapter``, its LoRA deltas
    are merged into the encoder's weights (``W += B @ A * lora_alpha / lora_rank``, from ``lora``: the manifest's
    hyperparameters) and its head loaded; without, the head is freshly initialised (the trainer's starting point,
    :mod:`promptzip.training.classifier`, which writes the adapter file in this layout)."""
    try:
        import torch
        from safetensors.torch import load_file
        from transformers import AutoConfig, AutoTokenizer, BertForTokenClassification
    except ImportError as exc:
        raise ModelNotAvailable("token classifiers need the models extra: pip install 'promptzip[models]'") from exc
    _hf_quiet()
    config = AutoConfig.from_pretrained(str(base), num_labels=2, local_files_only=True)
    config.id2label, config.label2id = {0: "drop", 1: "keep"}, {"drop": 0, "keep": 1}
    model: Any = BertForTokenClassification(config)
    state = load_file(str(base / "model.safetensors"))
    state = {
        k.removeprefix("bert."): v for k, v in state.items() if not k.endswith("position_ids") and "pooler" not in k
    }
    missing, unexpected = model.bert.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if "pooler" not in k]:
        raise ModelNotAvailable(f"{base} is not a BERT encoder: missing {missing[:3]}, unexpected {unexpected[:3]}")
    tokenizer = AutoTokenizer.from_pretrained(str(base), local_files_only=True)
    settings = lora or {}
    rank, alpha = int(settings.get("lora_rank", 8)), float(settings.get("lora_alpha", 16))
    if adapter is not None:
        weights = load_file(str(adapter))
        with torch.no_grad():
            for name, module in model.named_modules():
                a, b = weights.get(f"lora.{name}.A"), weights.get(f"lora.{name}.B")
                if a is not None and b is not None:
                    module.weight += (b @ a) * (alpha / rank)
            model.classifier.weight.copy_(weights["classifier.weight"])
            model.classifier.bias.copy_(weights["classifier.bias"])
    model.eval()
    model.requires_grad_(False)
    return model, tokenizer


def _builtin_loaded(key: Path, base: Path, **merge: Any) -> tuple[Any, Any] | None:
    """``(model, tokenizer)`` of ``base`` (with ``merge``: the distilled adapter and its LoRA settings) from
    :mod:`promptzip.compressors._torch_classifier`, loaded once per ``key``; ``None`` where that module does not
    compute the folder exactly (the caller loads it through transformers)."""
    from promptzip._models import load_once
    from promptzip.compressors._torch_classifier import load_classifier

    def _load(path: Path) -> tuple[Any, Any] | tuple[None, None]:
        return load_classifier(base, **merge) or (None, None)

    found: tuple[Any, Any] = load_once("token-classifier-torch", key, _load)
    return found if found[0] is not None else None


def load_token_classifier(name: str) -> tuple[Any, Any]:
    """``(model, tokenizer)`` for a token-classification model named by registry key, folder or hub id."""
    if name == DISTILLED:
        return load_distilled()
    from promptzip._models import load_once, resolve_model

    resolved = resolve_model(name)
    if builtin_wanted():
        found = _builtin_loaded(resolved.path, resolved.path)
        if found is not None:
            return found

    def _load(path: Path) -> tuple[Any, Any]:
        try:
            from transformers import AutoModelForTokenClassification, AutoTokenizer
        except ImportError as exc:
            raise ModelNotAvailable("token classifiers need the models extra: pip install 'promptzip[models]'") from exc
        _hf_quiet()
        try:
            model = AutoModelForTokenClassification.from_pretrained(str(path), local_files_only=True)
            tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except Exception as exc:  # transformers raises OSError, ValueError, KeyError... for a bad folder
            raise ModelNotAvailable(f"could not load a token classifier from {path}: {exc}", model=name) from exc
        if not getattr(tokenizer, "is_fast", False):
            raise ModelNotAvailable(f"{name}: a fast tokenizer (with offsets) is needed", model=name)
        if int(getattr(model.config, "num_labels", 0)) < 2:
            raise ModelNotAvailable(f"{name}: a keep/drop classifier needs ≥ 2 labels (label 1 = keep)", model=name)
        model.eval()
        model.requires_grad_(False)
        return model, tokenizer

    loaded: tuple[Any, Any] = load_once("token-classifier", resolved.path, _load)
    return loaded


def _max_length(model: Any, tokenizer: Any, limit: int) -> int:
    config = model.config
    positions = int(getattr(config, "max_position_embeddings", limit) or limit)
    if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert", "longformer"):
        positions -= int(getattr(config, "pad_token_id", 1) or 1) + 1  # RoBERTa positions start after padding_idx
    model_max = int(getattr(tokenizer, "model_max_length", limit) or limit)
    return max(8, min(limit, positions, model_max if model_max < 1_000_000 else limit))


def special_tokens(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The ids a tokenizer puts before and after a single sequence ([CLS] … [SEP], <s> … </s>)."""
    plain = list(tokenizer("a b", add_special_tokens=False)["input_ids"])
    full = list(tokenizer("a b", add_special_tokens=True)["input_ids"])
    for k in range(len(full) - len(plain) + 1):
        if full[k : k + len(plain)] == plain:
            return full[:k], full[k + len(plain) :]
    return [], []


def keep_probabilities(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    max_length: int = 512,
    overlap: int = 64,
    batch_size: int = 8,
) -> list[tuple[IntArray, IntArray, FloatArray]]:
    """Per-token ``(starts, ends, p_keep)`` of every text: windows with overlap, batched, label 1 = keep."""
    import torch

    length = _max_length(model, tokenizer, max_length)
    head, tail = special_tokens(tokenizer)
    room = length - len(head) - len(tail)
    if room < 4:
        raise ConfigError(f"max_length {length} leaves no room for text")
    overlap = min(max(0, overlap), room // 2)
    step = room - overlap
    encoded = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    jobs: list[tuple[int, int, int]] = []  # (text, start, length)
    for i, ids in enumerate(encoded["input_ids"]):
        n = len(ids)
        starts = [0] if n <= room else [*range(0, n - room, step), n - room]
        jobs.extend((i, s, min(room, n - s)) for s in starts)
    probs: dict[tuple[int, int], np.ndarray] = {}
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    order = sorted(range(len(jobs)), key=lambda j: -jobs[j][2])
    with torch.inference_mode():
        for b in range(0, len(order), batch_size):
            check("the token classifier")
            batch = [jobs[j] for j in order[b : b + batch_size]]
            width = max(n for _, _, n in batch) + len(head) + len(tail)
            ids_t = torch.full((len(batch), width), pad, dtype=torch.long)
            mask_t = torch.zeros((len(batch), width), dtype=torch.long)
            for r, (i, s, n) in enumerate(batch):
                row = head + list(encoded["input_ids"][i][s : s + n]) + tail
                ids_t[r, : len(row)] = torch.tensor(row)
                mask_t[r, : len(row)] = 1
            logits = model(input_ids=ids_t.to(device), attention_mask=mask_t.to(device)).logits
            p = torch.softmax(logits.float(), dim=-1)[:, len(head) :, 1].cpu().numpy().astype(np.float64)
            for r, (i, s, n) in enumerate(batch):
                probs[(i, s)] = p[r, :n]
    out: list[tuple[IntArray, IntArray, FloatArray]] = []
    for i, ids in enumerate(encoded["input_ids"]):
        n = len(ids)
        offsets = np.asarray(encoded["offset_mapping"][i], dtype=np.int64).reshape(-1, 2)
        window_starts = np.asarray([0] if n <= room else [*range(0, n - room, step), n - room], dtype=np.int64)
        values = np.zeros(n, dtype=np.float64)
        if n:
            # each token from the window whose centre is nearest (farthest from an edge): centres are sorted, so
            # the midpoints between neighbouring centres split the positions
            centres = window_starts + np.minimum(room, n - window_starts) / 2.0
            owner = np.searchsorted((centres[1:] + centres[:-1]) / 2.0, np.arange(n), side="right")
            for k, s in enumerate(window_starts.tolist()):
                mine = np.flatnonzero(owner == k)
                values[mine] = probs[(i, s)][mine - s]
        out.append((offsets[:, 0].copy(), offsets[:, 1].copy(), values))
    return out


class TokenClassifierScorer(BatchTokenScorer):
    """Per-word keep-probabilities from a token classifier (label 1 = keep); see the module docstring.

    ``model``: ``"minilm-tc"`` (the distilled default), a registry key such as ``"llmlingua-2-xlm-roberta-large"``,
    a local folder or a hub id in the local hub cache.
    """

    name = "token-classifier"

    def __init__(
        self,
        model: str = DISTILLED,
        *,
        max_length: int | None = None,
        overlap: int | None = None,
        batch_size: int = 8,
        int8: bool = True,
    ) -> None:
        default_length, default_overlap = DISTILLED_WINDOW if model == DISTILLED else (512, 64)
        max_length = default_length if max_length is None else max_length
        overlap = default_overlap if overlap is None else overlap
        if max_length < 8 or overlap < 0 or batch_size < 1:
            raise ConfigError("need max_length ≥ 8, overlap ≥ 0 and batch_size ≥ 1")
        self.model_name = model
        self.max_length = max_length
        self.overlap = overlap
        self.batch_size = batch_size
        self.int8 = int8
        self._fingerprint: str | None = None

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            from promptzip.retrievers.dense import weights_fingerprint

            if self.model_name == DISTILLED:
                folder = distilled_dir()
                manifest = folder / "manifest.json"
                if not manifest.is_file():
                    raise ModelNotAvailable(f"the distilled classifier is missing ({manifest})", model=DISTILLED)
                weights = weights_fingerprint(folder)
            else:
                from promptzip._models import resolve_model

                weights = weights_fingerprint(resolve_model(self.model_name).path)
            q = ":int8" if self.int8 else ""
            self._fingerprint = f"token-classifier:{self.model_name}:{weights}:L={self.max_length}:o={self.overlap}{q}"
        return self._fingerprint

    def _score_texts(
        self, texts: Sequence[str], units: Sequence[tuple[IntArray, IntArray]], question: str | None = None
    ) -> list[FloatArray]:
        model, tokenizer = load_token_classifier(self.model_name)
        if self.int8:
            model = int8_model(model)
        tokens = keep_probabilities(
            model, tokenizer, texts, max_length=self.max_length, overlap=self.overlap, batch_size=self.batch_size
        )
        return [group_tokens(s, e, ts, te, p, how="mean") for (s, e), (ts, te, p) in zip(units, tokens, strict=True)]
