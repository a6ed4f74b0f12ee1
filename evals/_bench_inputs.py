"""What :mod:`promptzip.evals.bench` and :mod:`promptzip.evals.warm_path` share: the sized inputs (SQuAD dev articles,
else the packaged State of the Union sample continued by its own word pairs), the budget ratio, and the fresh
subprocess that each (method, size) measurement runs in (``python -m promptzip.evals.bench --child SPEC``)."""

from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

__all__ = ["RATIO", "SAMPLE_QUESTIONS", "build_input", "cpus", "input_source", "spawn", "warm_input"]

RATIO = 10
# Questions about the State of the Union sample, for the warm path when SQuAD is not fetched.
SAMPLE_QUESTIONS = (
    "How much private-sector capital did the President say his proposed new markets tax credit would spur?",
    "What did the President propose to make college more affordable?",
    "How many new jobs had the economy created?",
    "What did the President ask Congress to do about the minimum wage?",
    "Which program did Congress pass in 1997 for children's health insurance?",
    "What did the President say about the hottest decade on record?",
    "How many years until there is no majority race in California?",
    "What did the President say about Social Security and Medicare?",
    "Who did the President ask to stand up in the chamber?",
    "What are researchers about to complete this year?",
    "What did the President propose for retirement savings accounts?",
    "How did the President describe the state of the Union?",
)


def build_input(size: int) -> tuple[str, str, str]:
    """About ``size`` o200k tokens and two questions about its start: ``(text, question, other_question)``: SQuAD
    dev articles when fetched, else the packaged sample continued as :func:`warm_input` does (the bench's report
    names which, :func:`input_source`)."""
    text, questions, _ = warm_input(size)
    return text, questions[0], questions[1]


def input_source() -> str:
    """Where :func:`build_input` takes its text from on this machine."""
    from promptzip.evals import data

    return "concatenated SQuAD dev articles" if data.available("squad") else "the packaged State of the Union sample"


def _fill(size: int, paragraphs: Iterator[str], what: str) -> str:
    """Whole paragraphs, joined by blank lines, up to about ``size`` o200k tokens."""
    from promptzip._tokenizers import get_tokenizer
    from promptzip.evals import data

    tok = get_tokenizer("o200k_base")
    parts: list[str] = []
    used = 0
    for paragraph in paragraphs:
        cost = tok.count(paragraph) + (1 if parts else 0)
        if used + cost > size and parts:
            return "\n\n".join(parts)
        parts.append(paragraph)
        used += cost
    raise data.DataError(f"{what} has fewer than {size} tokens")


def warm_input(size: int) -> tuple[str, list[str], str]:
    """About ``size`` o200k tokens, questions about its start, and where the text is from: SQuAD dev articles
    (as :func:`build_input`) when fetched, else the packaged State of the Union sample, continued by
    :func:`_bigram_paragraphs`."""
    from promptzip.evals import data

    try:
        articles = data.load_squad_dev()
    except data.DataError:
        from importlib import resources

        sample = (resources.files("promptzip") / "_sample" / "sotu.txt").read_text(encoding="utf-8")
        paragraphs = [p.strip() for p in sample.split("\n\n") if p.strip()]
        text = _fill(size, _chain(paragraphs, _bigram_paragraphs(sample)), "the sample")
        return text, list(SAMPLE_QUESTIONS), "promptzip/_sample/sotu.txt, continued by word-bigram text drawn from it"
    text = _fill(size, (p.text for a in articles for p in a.paragraphs), "SQuAD dev")
    return text, [q.question for q in articles[0].questions], "SQuAD v1.1 dev articles"


def _chain(first: list[str], rest: Iterator[str]) -> Iterator[str]:
    yield from first
    yield from rest


def _bigram_paragraphs(sample: str, *, seed: int = 0) -> Iterator[str]:
    """Endless paragraphs of 4-8 sentences from a word-bigram chain of ``sample`` (seeded, so the same every run):
    the sample's words, sentence lengths and punctuation, in sentences that do not repeat."""
    words = sample.split()
    follow: dict[str, list[str]] = {}
    for a, b in itertools.pairwise(words):
        follow.setdefault(a, []).append(b)
    starts = [b for a, b in itertools.pairwise(words) if a.endswith((".", "?", "!")) and b[:1].isupper()]
    rng = random.Random(seed)
    while True:
        sentences = []
        for _ in range(rng.randint(4, 8)):
            word = rng.choice(starts)
            sentence = [word]
            while not word.endswith((".", "?", "!")) and len(sentence) < 40:
                word = rng.choice(follow.get(word) or starts)
                sentence.append(word)
            sentences.append(" ".join(sentence).rstrip(".?!,;:") + ".")
        yield " ".join(sentences)


def spawn(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, "-P", "-m", "promptzip.evals.bench", "--child", json.dumps(spec)]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    if spec["kind"] == "warm" and int(spec.get("threads", 1)) > 0:  # numpy's BLAS too, not only torch
        threads = str(spec["threads"])
        env.update(dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"), threads))
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, env=env)
    except subprocess.TimeoutExpired:
        return {"method": spec["name"], "size": spec["size"], "error": f"timed out after {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return {"method": spec["name"], "size": spec["size"], "error": " | ".join(tail) or f"exit {done.returncode}"}
    row: dict[str, Any] = json.loads(lines[-1])
    row["size"] = spec["size"]
    return row


def cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
