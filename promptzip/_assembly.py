"""Assembly in the target tokenizer: the part of a :class:`~promptzip._pipeline.Zipper` that counts tokens.

It finds the room a budget leaves the context, keeps everything without running a model when all of it fits, and
joins the chosen variants in order, stepping the cheapest-loss choice down until the text fits. ``Zipper`` inherits
it; it reads only the Zipper's ``tokenizer`` and ``separator``.
"""

from __future__ import annotations

from collections.abc import Callable

from promptzip._errors import BudgetError
from promptzip._roles import drop_variant, keep_variant
from promptzip._tokenizers import Tokenizer
from promptzip._types import Budget, Chunk, Source, Variant

__all__ = ["Assembly"]


def _lost_in_the_middle(items: list[Variant]) -> list[Variant]:
    """Most relevant first and last, least relevant in the middle ("Lost in the Middle", Liu et al.)."""
    ranked = sorted(items, key=lambda v: -v.relevance)
    front, back = ranked[0::2], ranked[1::2]
    return front + back[::-1]


class Assembly:
    """Counting and assembly for :class:`~promptzip._pipeline.Zipper` (module docstring)."""

    tokenizer: Tokenizer
    separator: str

    def assemble(self, *parts: str) -> str:
        return self.separator.join(p for p in parts if p)

    def _room(
        self,
        sources: list[tuple[Source, int]],
        question: str | None,
        instruction: str | None,
        spec: Budget,
        extra_fixed: int,
        tokens_in_extra: int,
    ) -> tuple[int, int, int]:
        """(tokens in, the resolved budget, what the instruction, question, their separators and ``extra_fixed``
        take of it); a BudgetError when the budget is not positive or the fixed parts alone exceed it."""
        # Counted as its parts (count_joined): each document with its separator is remembered, so a new question
        # over known documents does not count the whole input again.
        parts = [p for p in (instruction or "", *(s.text for s, _ in sources), question or "") if p]
        joined = [piece for i, p in enumerate(parts) for piece in ((self.separator, p) if i else (p,))]
        tokens_in = self.tokenizer.count_joined(joined) + tokens_in_extra
        limit = spec.resolve(tokens_in)
        if limit <= 0:
            raise BudgetError(f"the budget resolves to {limit} tokens for {tokens_in} input tokens", budget=limit)
        sep = self.tokenizer.count(self.separator)
        fixed = self.tokenizer.count(self.assemble(instruction or "", question or "")) + extra_fixed
        fixed += sep * (int(bool(instruction)) + int(bool(question)))
        if fixed > limit:
            what = "instruction and question" if extra_fixed == 0 else "the protected parts"
            raise BudgetError(
                f"{what} alone need {fixed} tokens but the budget is {limit}", budget=limit, required=fixed
            )
        return tokens_in, limit, fixed

    def _whole(
        self, chunks: list[Chunk], available: int, sep: int, cost: Callable[[str], int]
    ) -> tuple[list[list[Variant]], int] | None:
        """Keep-or-drop groups, and the tokens the context takes, when all of the context fits: context that fits is
        never dropped for low relevance (selective augmentation applies only to what has to be cut), and no model
        runs. None when it does not fit. ``cost`` is what a context adds to the request, counted exactly."""
        counts = self.tokenizer.count_many([c.text for c in chunks])
        tokens = sum(counts) + sep * len(chunks)
        if tokens > available:
            # The estimate counts one separator more than the context has (the one before the question is in the
            # fixed part) and every boundary apart: near the line, the request as it would be sent decides, so an
            # input that fits its budget exactly is kept whole.
            if sum(counts) > available + len(chunks):
                return None
            tokens = cost(self.separator.join(c.text for c in chunks))
            if tokens > available:
                return None
        groups = [
            [keep_variant(c, n, utility=1.0), *([] if c.protected else [drop_variant(c)])]
            for c, n in zip(chunks, counts, strict=True)
        ]
        return groups, tokens

    def _outputs(self, chosen: list[Variant], sources: list[Source]) -> dict[str, str]:
        """Each source's output text: its kept variants in source order, joined as the context joins them."""
        parts: dict[str, list[tuple[int, str]]] = {s.id: [] for s in sources}
        for v in chosen:
            if v.text:
                parts.setdefault(v.chunk.source_id, []).append((v.chunk.start, v.text))
        return {sid: self.separator.join(t for _, t in sorted(p)) for sid, p in parts.items()}

    def _fit(
        self,
        chosen: list[Variant],
        groups: list[list[Variant]],
        instruction: str | None,
        question: str | None,
        limit: int,
        reorder: str,
    ) -> tuple[str, str, list[Variant]]:
        """Assemble, re-count in the target tokenizer, and step the cheapest-loss choice down until it fits."""
        chosen = list(chosen)
        while True:
            ordered = self._order([v for v in chosen if v.text], reorder)
            context = self.separator.join(v.text for v in ordered)
            text = self.assemble(instruction or "", context, question or "")
            if self.tokenizer.count(text) <= limit:
                return context, text, chosen
            best: tuple[float, int, Variant] | None = None
            for g, v in enumerate(chosen):
                cheaper = [w for w in groups[g] if w.tokens < v.tokens or (w.text == "" and v.text)]
                if not cheaper:
                    continue
                w = max(cheaper, key=lambda w: (w.utility, -w.tokens))
                loss = (v.utility - w.utility) / max(1, v.tokens - w.tokens)
                if best is None or loss < best[0]:
                    best = (loss, g, w)
            if best is None:  # only protected parts are left and they do not fit
                raise BudgetError(f"the protected parts do not fit in {limit} tokens", budget=limit)
            chosen[best[1]] = best[2]

    @staticmethod
    def _order(items: list[Variant], reorder: str) -> list[Variant]:
        if reorder == "relevance":
            return sorted(items, key=lambda v: -v.relevance)
        if reorder == "lost_in_the_middle":
            return _lost_in_the_middle(items)
        return items
