"""LoRA for the trainers, through peft, and the one conversion from what peft trained to the adapter file the
runtime merges.

The runtime never imports peft: :func:`promptzip.compressors.token_classifier.build_student` and
:func:`promptzip.retrievers.qa_encoder.merge_adapter` read a safetensors file with, for every adapted linear layer
``<module>`` (named as in the model the runtime builds, e.g. ``bert.encoder.layer.0.attention.self.query``),

* ``lora.<module>.A`` — float32 ``[rank, in_features]``,
* ``lora.<module>.B`` — float32 ``[out_features, rank]``,

plus any fully trained head (``classifier.weight``, ``classifier.bias``), and merge ``W + (B @ A) * alpha / rank``
with ``rank`` and ``alpha`` from the artifact's manifest (``hyperparameters.lora_rank`` / ``lora_alpha``).
peft computes the same delta as ``(lora_B @ lora_A) * scaling``, so :func:`runtime_adapter` writes peft's
``lora_A`` as ``A`` and ``lora_B`` rescaled by ``scaling / (alpha / rank)`` as ``B`` (a factor of exactly 1 when
the manifest records the rank and alpha the model was trained with, as the trainers' manifests do).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from promptzip._errors import ConfigError

__all__ = ["LORA_TARGETS", "runtime_adapter", "with_lora"]

ADAPTER = "default"  # peft's name for a model's only adapter
LORA_TARGETS = ("query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense")
"""The BERT projections the packaged adapters tune: every attention and feed-forward linear layer (not the pooler)."""


def with_lora(
    model: Any, *, rank: int, alpha: float, targets: Sequence[str] = LORA_TARGETS, heads: Sequence[str] = (), seed: int
) -> Any:
    """``model`` as a peft ``PeftModel``: frozen, with trainable rank-``rank`` LoRA on the linear layers whose names
    end with one of ``targets``, and the modules named by ``heads`` trained in full (peft's ``modules_to_save``).
    The adapters' random start is drawn from ``seed`` without touching torch's global generator."""
    import torch
    from peft import LoraConfig, get_peft_model

    if rank < 1 or alpha <= 0 or not float(alpha).is_integer():
        raise ConfigError(f"LoRA needs rank ≥ 1 and a whole alpha > 0 (peft's type), got rank={rank}, alpha={alpha}")
    config = LoraConfig(
        r=rank,
        lora_alpha=int(alpha),
        target_modules=list(targets),
        lora_dropout=0.0,
        bias="none",
        modules_to_save=list(heads) or None,
    )
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        torch.manual_seed(seed)
        # peft asks transformers for `is_gradient_checkpointing`, which transformers 5 deprecates with a FutureWarning
        # (the test suite turns warnings into errors); nothing for us to change
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        return get_peft_model(model, config)


def runtime_adapter(
    peft_model: Any, *, rank: int, alpha: float, prefix: str = "", heads: Sequence[str] = ()
) -> dict[str, Any]:
    """peft's trained LoRA layers (and ``heads``) as the tensors of the runtime's adapter file (module docstring).

    ``prefix`` is put before peft's module names when the runtime's model nests the trained one (the QA encoder
    trains a bare ``BertModel``; its file names the layers ``bert.encoder...``). ``rank`` and ``alpha`` are what
    the manifest will record."""
    from peft.tuners.lora import LoraLayer

    target_scale = alpha / rank
    model = peft_model.get_base_model()
    state: dict[str, Any] = {}
    for name, module in model.named_modules():
        if not isinstance(module, LoraLayer) or ADAPTER not in module.lora_A:
            continue
        if module.use_dora.get(ADAPTER) or getattr(module, "fan_in_fan_out", False):
            raise ConfigError(f"{name}: only plain LoRA (no DoRA, no fan-in-fan-out) fits the runtime's merge")
        lora_a: Any = module.lora_A[ADAPTER].weight  # a Parameter (nn.Module's attribute type says Tensor | Module)
        lora_b: Any = module.lora_B[ADAPTER].weight
        a = lora_a.detach().float()
        b = lora_b.detach().float() * (float(module.scaling[ADAPTER]) / target_scale)
        if a.shape[0] != rank or b.shape[1] != rank:
            raise ConfigError(f"{name}: LoRA rank {a.shape[0]} where the manifest says {rank}")
        state[f"lora.{prefix}{name}.A"] = a.contiguous().clone()
        state[f"lora.{prefix}{name}.B"] = b.contiguous().clone()
    if not state:
        raise ConfigError("the model has no LoRA layers to save")
    for head in heads:
        wrapper = model.get_submodule(head)
        trained = wrapper.modules_to_save[ADAPTER] if hasattr(wrapper, "modules_to_save") else wrapper
        for key, value in trained.state_dict().items():
            state[f"{head}.{key}"] = value.detach().float().contiguous().clone()
    return state
