"""The records of the eval and training data sets, and how their raw files parse into them.

Pure functions of the raw text or JSON (no access to the data folder): :mod:`promptzip.evals.data` fetches, checks
and reads the files, then builds these frozen records with the parsers here.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from promptzip.evals._download import DataError

__all__ = [
    "GSM8K_GROUP",
    "GSM8KDemo",
    "GSM8KProblem",
    "Paragraph",
    "PassageQA",
    "Question",
    "SquadArticle",
    "SummaryPair",
    "gsm8k_articles",
    "gsm8k_asked",
    "gsm8k_problem",
    "parse_cot_demos",
    "passage_answer",
    "sample_questions",
    "squad_article",
]


# ------------------------------------------------------------------------------------------------ SQuAD


@dataclass(frozen=True, slots=True)
class Paragraph:
    """One paragraph of an article: ``article.context[start:end] == text``."""

    text: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Question:
    """A SQuAD question; ``answer_starts[i]`` is where ``answers[i]`` starts in the *article* context (-1: absent)."""

    id: str
    question: str
    answers: tuple[str, ...]
    paragraph_index: int
    answer_starts: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SquadArticle:
    """A whole article as one long context: its paragraphs joined with blank lines, with all their questions.

    Paragraph texts are stripped, and a newline directly after another inside a paragraph becomes a space (same
    length), so blank lines in ``context`` are exactly the paragraph boundaries.
    """

    title: str
    context: str
    paragraphs: tuple[Paragraph, ...]
    questions: tuple[Question, ...]

    def gold_paragraph(self, question: Question) -> Paragraph:
        """The paragraph the question was written about."""
        return self.paragraphs[question.paragraph_index]


def _single_newlines(text: str) -> str:
    return re.sub(r"(?<=\n)\n", " ", text)


def _locate(text: str, answer: str, guess: int) -> int:
    """``guess`` if ``answer`` starts there in ``text``, else its nearest occurrence, else -1."""
    if guess >= 0 and text.startswith(answer, guess):
        return guess
    best, i = -1, text.find(answer)
    while i != -1:
        if best == -1 or abs(i - guess) < abs(best - guess):
            best = i
        i = text.find(answer, i + 1)
    return best


def squad_article(title: str, raw_paragraphs: Sequence[Mapping[str, Any]]) -> SquadArticle:
    texts: list[str] = []
    paragraphs: list[Paragraph] = []
    questions: list[Question] = []
    pos = 0
    for raw in raw_paragraphs:
        context = str(raw["context"])
        text = _single_newlines(context.strip())
        if not text:
            continue
        lead = len(context) - len(context.lstrip())
        if texts:
            pos += 2
        paragraph = Paragraph(text=text, start=pos, end=pos + len(text))
        for qa in raw.get("qas", ()):
            answers: list[str] = []
            starts: list[int] = []
            for answer in qa.get("answers", ()):
                raw_answer = str(answer["text"])
                clean = _single_newlines(raw_answer.strip())
                if not clean:
                    continue
                guess = int(answer.get("answer_start", -1)) + len(raw_answer) - len(raw_answer.lstrip()) - lead
                local = _locate(text, clean, guess)
                answers.append(clean)
                starts.append(pos + local if local >= 0 else -1)
            questions.append(
                Question(
                    id=str(qa["id"]),
                    question=str(qa["question"]).strip(),
                    answers=tuple(answers),
                    paragraph_index=len(paragraphs),
                    answer_starts=tuple(starts),
                )
            )
        texts.append(text)
        paragraphs.append(paragraph)
        pos = paragraph.end
    return SquadArticle(
        title=title, context="\n\n".join(texts), paragraphs=tuple(paragraphs), questions=tuple(questions)
    )


def sample_questions(articles: Sequence[SquadArticle], n: int, seed: int = 0) -> list[tuple[SquadArticle, Question]]:
    """``n`` distinct (article, question) pairs drawn uniformly without replacement, the same for the same seed.

    The order is the draw order, so the first ``k`` of a sample are themselves a uniform sample.
    """
    index = [(a, q) for a in range(len(articles)) for q in range(len(articles[a].questions))]
    if not 0 <= n <= len(index):
        raise DataError(f"cannot sample {n} questions from {len(index)}")
    picks = random.Random(seed).sample(index, n)
    return [(articles[a], articles[a].questions[q]) for a, q in picks]


# ------------------------------------------------------------------------------------------------ GSM8K


@dataclass(frozen=True, slots=True)
class GSM8KProblem:
    """A GSM8K problem; ``answer`` is the worked solution ending in ``#### <number>``."""

    question: str
    answer: str

    @property
    def final_answer(self) -> str:
        """The number after ``####``, commas removed."""
        return self.answer.rsplit("####", 1)[-1].strip().replace(",", "")


@dataclass(frozen=True, slots=True)
class GSM8KDemo:
    """A chain-of-thought demonstration; ``target`` ends with "The answer is N."."""

    question: str
    target: str


def gsm8k_problem(line: str) -> GSM8KProblem:
    try:
        record = json.loads(line)
        return GSM8KProblem(question=str(record["question"]), answer=str(record["answer"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"bad GSM8K record {line[:80]!r}: {exc}") from exc


GSM8K_GROUP = 64
"""Problems per article in :func:`gsm8k_articles` by default (the agent traces' GSM8K corpus)."""


def gsm8k_asked(problem: str) -> str:
    """The sentence of a GSM8K problem that asks (its last, when it is a question of 5 words or more), else all."""
    last = re.split(r"(?<=[.!?])\s+", problem.strip())[-1]
    return last if last.endswith("?") and len(last.split()) >= 5 else problem.strip()


def gsm8k_articles(problems: Sequence[GSM8KProblem], group: int = GSM8K_GROUP) -> list[SquadArticle]:
    """GSM8K problems as articles of ``group`` consecutive problems (a last, shorter group is left out): each
    paragraph is "problem + worked solution", its question the problem's asking sentence (a user asks that;
    retrieval brings worked solutions), its answer the text after ``####``."""
    if group < 1:
        raise DataError(f"group must be at least 1, not {group}")
    articles = []
    for start in range(0, len(problems) - group + 1, group):
        raw = []
        for k, p in enumerate(problems[start : start + group]):
            answer = p.answer.rsplit("####", 1)[-1].strip()
            context = f"Problem: {p.question}\nSolution: {p.answer}"
            qa = {"id": f"gsm8k-{start + k}", "question": gsm8k_asked(p.question), "answers": [{"text": answer}]}
            raw.append({"context": context, "qas": [qa]})
        articles.append(squad_article(f"GSM8K test problems {start + 1}-{start + group}", raw))
    return articles


def parse_cot_demos(text: str) -> list[GSM8KDemo]:
    """The 8 demonstrations in ``fewshot_config.samples`` of lm-eval's gsm8k-cot.yaml (stdlib only: the plain-scalar
    subset of YAML it uses)."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == "samples:"), None)
    if start is None:
        raise DataError("gsm8k-cot.yaml: no 'samples:' block")
    indent = len(lines[start]) - len(lines[start].lstrip())
    items: list[dict[str, list[str]]] = []
    key = ""
    for line in lines[start + 1 :]:
        stripped = line.strip()
        if not stripped:
            continue
        col = len(line) - len(line.lstrip())
        if col < indent or (col == indent and not stripped.startswith("- ")):
            break
        if col == indent:  # "- key: value" opens the next item
            items.append({})
            stripped, col = stripped[2:], col + 2
        if not items:
            raise DataError(f"gsm8k-cot.yaml: unexpected line {line!r} in 'samples:'")
        if col == indent + 2:
            key, _, value = stripped.partition(":")
            items[-1][key.strip()] = [value.strip()] if value.strip() else []
        elif items and key:
            items[-1][key].append(stripped)  # a folded continuation line
    demos = [GSM8KDemo(question=_plain(i.get("question", [])), target=_plain(i.get("target", []))) for i in items]
    if len(demos) != 8 or not all(d.question and "The answer is" in d.target for d in demos):
        raise DataError(f"gsm8k-cot.yaml: expected 8 question/target demos, parsed {len(demos)}")
    return demos


def _plain(parts: list[str]) -> str:
    value = " ".join(parts)
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1].replace("''", "'")
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return str(json.loads(value))
    return value


# ------------------------------------------------------------------------------------------- summaries


@dataclass(frozen=True, slots=True)
class SummaryPair:
    """A document and its reference summary; ``unfaithful`` are model summaries judged not factual (may be empty)."""

    id: str
    document: str
    summary: str
    unfaithful: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------- passage QA


@dataclass(frozen=True, slots=True)
class PassageQA:
    """A passage, a question about it and its gold answers; ``answer_type`` is DROP's (Number, Span, Date)."""

    id: str
    passage: str
    question: str
    answers: tuple[str, ...]
    answer_type: str | None = None


def passage_answer(text: str) -> str:
    text = text.strip()
    return text[:-1].rstrip() if len(text) > 1 and text.endswith(".") else text
