"""Downstream answers from a small local generator: does the compressed context still let a model answer?

The generator is the packaged SmolLM2-135M-Instruct (:func:`promptzip._causal_lm.load_causal_lm`), greedy, a few
new tokens, on SQuAD questions whose whole article was compressed at one ratio. Exact match and F1 are SQuAD's. A
135M model is a weak reader, so these are honest small-model numbers: the comparison between rows is the point.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from promptzip.evals.metrics import RETENTION_METRIC, answer_retained, exact_match, squad_f1, wilson_interval
from promptzip.evals.runner import budget_for
from promptzip.evals.suites import Item

__all__ = ["PROMPT", "answer", "run_downstream"]

PROMPT = (
    "Answer the question using the context. Reply with the answer only, a few words copied from the context.\n\n"
    "Context:\n{context}\n\nQuestion: {question}"
)
GENERATOR = "smollm2-135m"


def _prompts(tokenizer: Any, contexts: Sequence[str], questions: Sequence[str]) -> list[str]:
    return [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": PROMPT.format(context=c, question=q)}],
            tokenize=False,
            add_generation_prompt=True,
        )
        for c, q in zip(contexts, questions, strict=True)
    ]


def _clean(text: str) -> str:
    line = text.strip().split("\n", 1)[0].strip()
    for prefix in ("Answer:", "answer:", "A:"):
        line = line.removeprefix(prefix).strip()
    return line.rstrip(".").strip()


def answer(
    contexts: Sequence[str], questions: Sequence[str], *, max_new_tokens: int = 16, batch_size: int = 8
) -> list[str]:
    """Greedy short answers from the local generator, batched with left padding."""
    import torch

    from promptzip._causal_lm import load_causal_lm

    model, tokenizer = load_causal_lm(GENERATOR)
    prompts = _prompts(tokenizer, contexts, questions)
    answers: list[str] = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        enc = tokenizer(batch, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        new = out[:, enc["input_ids"].shape[1] :]
        answers.extend(_clean(t) for t in tokenizer.batch_decode(new, skip_special_tokens=True))
    return answers


def run_downstream(
    items: Sequence[Item],
    methods: Sequence[Any],
    out: Path,
    *,
    ratio: float = 20.0,
    max_new_tokens: int = 16,
    progress: bool = True,
) -> dict[str, Any]:
    """Compress each item with each method at ``ratio``, answer with the generator, and write ``downstream.json``."""
    from tqdm import tqdm

    from promptzip._tokenizers import get_tokenizer

    tok = get_tokenizer("o200k_base")
    report: dict[str, Any] = {
        "generator": "SmolLM2-135M-Instruct",
        "description": (
            f"Questions from {len({i.group for i in items})} articles of the SQuAD sample; each method compresses "
            "the whole article for the question and the generator sees only that."
        ),
        "n": len(items),
        "ratio": ratio,
        "max_new_tokens": max_new_tokens,
        "retention_metric": RETENTION_METRIC,
        "methods": {},
    }
    for method in methods:
        method.prepare()
        contexts: list[str] = []
        failures = 0
        for item in tqdm(items, desc=f"downstream · {method.name} compress", disable=not progress, file=sys.stderr):
            try:
                contexts.append(method.compress(item, budget_for(tok.count(item.context), ratio)).text)
            except Exception:  # counted: the generator then sees no context for this item
                failures += 1
                contexts.append("")
        started = time.perf_counter()
        predictions = answer(contexts, [i.question or "" for i in items], max_new_tokens=max_new_tokens)
        answers = [i.targets[0].answers for i in items]
        em = [exact_match(p, a) for p, a in zip(predictions, answers, strict=True)]
        # A small chat model answers in sentences ("The currency is the tögrög"): EM is near zero for every
        # context, so "contains" (a gold answer inside the prediction, LongLLMLingua's accuracy) is reported too.
        contains = [answer_retained(p, a) for p, a in zip(predictions, answers, strict=True)]
        f1 = [squad_f1(p, a) for p, a in zip(predictions, answers, strict=True)]
        hits = int(sum(em))
        report["methods"][method.name] = {
            "em": sum(em) / len(items),
            "em_ci": list(wilson_interval(hits, len(items))),
            "f1": sum(f1) / len(items),
            "contains": sum(contains) / len(items),
            "contains_ci": list(wilson_interval(sum(contains), len(items))),
            "retention": sum(answer_retained(c, a) for c, a in zip(contexts, answers, strict=True)) / len(items),
            "failures": failures,
            "generation_s": time.perf_counter() - started,
            "predictions": [
                {"id": i.id, "question": i.question, "gold": list(i.targets[0].answers[:3]), "prediction": p}
                for i, p in zip(items, predictions, strict=True)
            ],
        }
        print(
            f"downstream {method.name}: EM {report['methods'][method.name]['em']:.3f} "
            f"F1 {report['methods'][method.name]['f1']:.3f} contains {report['methods'][method.name]['contains']:.3f}",
            file=sys.stderr,
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / "downstream.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return report
