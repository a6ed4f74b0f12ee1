"""Per-token NLL of a text under a causal LM: the measure behind :mod:`promptzip.evals.fluency`.

How a text is scored (:class:`NLLScorer`): the model's tokens, in consecutive non-overlapping windows of ``window``
tokens (1024), each window opened by ``<|endoftext|>`` (the document separator of SmolLM2's pre-training) so that
its first token is predicted too; the per-token NLL (nats) is averaged over every token of the text. Each token's
position in its window is kept (:class:`TokenNLL`), so a reference can be restricted to tokens that saw no more
context than a shorter text did.

Matmuls run in bfloat16 under CPU autocast (logits and NLL in float32) unless ``bf16=False``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["NLLScorer", "TokenNLL"]

_START = "<|endoftext|>"


@dataclass(frozen=True, slots=True)
class TokenNLL:
    """Per-token NLLs (nats) of a text and each token's position in its scoring window (0: right after the
    window's start token)."""

    nll: tuple[float, ...]
    position: tuple[int, ...]

    @property
    def mean(self) -> float:
        return sum(self.nll) / len(self.nll) if self.nll else float("nan")

    def mean_below(self, length: int) -> float:
        """The mean over tokens at window positions below ``length``: the text with at most that much context."""
        kept = [x for x, p in zip(self.nll, self.position, strict=True) if p < length]
        return sum(kept) / len(kept) if kept else float("nan")


class NLLScorer:
    """Per-token NLL of texts under a causal LM (:func:`promptzip._causal_lm.load_causal_lm`), loaded on first use;
    each distinct text is scored once per scorer."""

    def __init__(self, model: str = "smollm2-135m", *, window: int = 1024, bf16: bool = True) -> None:
        if window < 2:
            raise ValueError(f"window must be at least 2 tokens, not {window}")
        self.model_name = model
        self.window = window
        self.bf16 = bf16
        self._loaded: tuple[Any, Any, int] | None = None
        self._memo: dict[str, TokenNLL] = {}

    def _model(self) -> tuple[Any, Any, int]:
        """``(model, tokenizer, id of the token that opens each window)``."""
        if self._loaded is None:
            from promptzip._causal_lm import load_causal_lm

            model, tokenizer = load_causal_lm(self.model_name)
            start = tokenizer.get_vocab().get(_START)
            if start is None:  # another model: its own start-of-text token
                start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
            self._loaded = (model, tokenizer, int(start))
        return self._loaded

    def tokens(self, text: str) -> list[int]:
        _, tokenizer, _ = self._model()
        ids: list[int] = tokenizer(text, add_special_tokens=False).input_ids
        return ids

    def score(self, text: str) -> TokenNLL:
        """The per-token NLLs of ``text`` (empty for an empty text)."""
        found = self._memo.get(text)
        if found is not None:
            return found
        import torch

        model, _, start = self._model()
        ids = self.tokens(text)
        step = self.window - 1
        nll: list[float] = []
        position: list[int] = []
        for at in range(0, len(ids), step):
            chunk = ids[at : at + step]
            inputs = torch.tensor([[start, *chunk]])
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
                logits = model(inputs).logits
            logp = torch.log_softmax(logits[0, :-1].float(), dim=-1)
            picked = -logp.gather(1, inputs[0, 1:].unsqueeze(1)).squeeze(1)
            nll += [float(x) for x in picked]
            position += list(range(len(chunk)))
        scored = TokenNLL(tuple(nll), tuple(position))
        self._memo[text] = scored
        return scored

    def mean_nll(self, text: str) -> float:
        """Mean per-token NLL of ``text`` (nats/token; NaN for an empty text)."""
        return self.score(text).mean
