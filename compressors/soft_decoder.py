"""Feeding soft prompts to a decoder: local transformers models, and servers that accept prompt embeddings.

:func:`inputs_embeds` gives ``(inputs_embeds, attention_mask)`` for a transformers decoder: the embedded text
before, the :class:`~promptzip.compressors.soft.SoftPrompt` vectors, the embedded text after (the projector was
trained with ``Context:`` before and :func:`qa_suffix` after). A decoder whose hidden size differs from the soft
prompt's is a :class:`ConfigError` naming both sizes.

Servers that accept prompt embeddings. vLLM (``vllm serve MODEL --enable-prompt-embeds``) takes a
``prompt_embeds`` field in the OpenAI-style Completions API (``POST /v1/completions``): the base64 string of a
``torch.save``\\d tensor of shape ``[sequence_length, hidden_size]`` holding the embeddings of the *whole* prompt
(the server applies no chat template to it, so any template text must be embedded too, as :func:`inputs_embeds`
does). :func:`vllm_prompt_embeds` makes that string from :func:`inputs_embeds`' output, and
:func:`vllm_completions_body` the request body::

    embeds, _ = inputs_embeds(soft, model, tok, before="Context:", after=qa_suffix(question))
    body = vllm_completions_body("HuggingFaceTB/SmolLM2-135M-Instruct", embeds, max_tokens=32)
    httpx.post("http://localhost:8000/v1/completions", json=body)  # or client.completions.create(prompt="",
    # extra_body={"prompt_embeds": body["prompt_embeds"]}, ...) with the openai package
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from promptzip._errors import ConfigError, InputError

if TYPE_CHECKING:
    from promptzip.compressors.soft import SoftPrompt

__all__ = ["CONTEXT_PREFIX", "inputs_embeds", "qa_suffix", "vllm_completions_body", "vllm_prompt_embeds"]

CONTEXT_PREFIX = "Context:"


def qa_suffix(question: str) -> str:
    """The text after the soft context in the QA format the projector was trained with."""
    return f"\nQuestion: {question.strip()}\nAnswer:"


def inputs_embeds(
    soft: SoftPrompt | None, decoder: Any, tokenizer: Any, *, before: str = CONTEXT_PREFIX, after: str = ""
) -> tuple[Any, Any]:
    """``(inputs_embeds [1, L, hidden], attention_mask [1, L])`` for a transformers decoder: the embedded
    ``before`` text, the soft vectors, the embedded ``after`` text (``soft=None``: no context, same format)."""
    import torch

    table = decoder.get_input_embeddings()
    hidden = int(table.embedding_dim)
    if soft is not None and soft.hidden_size != hidden:
        raise ConfigError(
            f"the soft prompt has hidden size {soft.hidden_size} (projector for {soft.decoder!r}) but the decoder's "
            f"embeddings have hidden size {hidden}: use a projector trained for this decoder"
        )
    weight = table.weight
    parts = []
    with torch.no_grad():
        if before:
            ids = tokenizer(before, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
            parts.append(table(ids.to(weight.device)))
        if soft is not None and soft.n_vectors:
            parts.append(torch.from_numpy(soft.vectors).to(device=weight.device, dtype=weight.dtype))
        if after:
            ids = tokenizer(after, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
            parts.append(table(ids.to(weight.device)))
    if not parts:
        raise InputError("an empty prompt: give a soft prompt or text")
    embeds = torch.cat(parts).unsqueeze(0)
    mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=weight.device)
    return embeds, mask


def vllm_prompt_embeds(embeds: Any) -> str:
    """vLLM's ``prompt_embeds`` value: base64 of ``torch.save`` of a ``[sequence_length, hidden]`` tensor (a
    leading batch dimension of 1 is dropped)."""
    import base64
    import io

    import torch

    tensor = embeds.detach().cpu()
    if tensor.dim() == 3 and tensor.shape[0] == 1:
        tensor = tensor[0]
    if tensor.dim() != 2:
        raise InputError(f"prompt embeddings must be [sequence_length, hidden], not {tuple(tensor.shape)}")
    buffer = io.BytesIO()
    torch.save(tensor.contiguous(), buffer)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def vllm_completions_body(model: str, embeds: Any, **params: Any) -> dict[str, Any]:
    """A ``POST /v1/completions`` body for a vLLM server started with ``--enable-prompt-embeds``."""
    return {"model": model, "prompt_embeds": vllm_prompt_embeds(embeds), **params}
