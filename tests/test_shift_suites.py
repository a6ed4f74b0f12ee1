"""The cross-domain suites (``shifts-reddit-qa``, ``shifts-new_wiki-qa``), built by the real loader from a small
SQuAD-shifts folder written here in bigbench's layout (the bigbench release itself was withdrawn from PyPI)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from promptzip.evals import _fetch
from promptzip.evals.shift_suites import BLOCK, TUNING_MIN_CHARS, adapter_notes
from promptzip.evals.suites import SUITE_DATA, SUITES, build_suite
from promptzip.training._qa import EncoderTrainConfig


def _paragraph(i: int, filler: int = 0) -> dict[str, Any]:
    answer = f"{1000 + i}"
    context = f"Comment {i} says the meetup moved to room {answer}." + " It was a long thread." * filler
    qa = {"id": f"q{i}", "question": f"Where did comment {i} move the meetup?", "answers": [{"text": answer}]}
    return {"context": context, "qas": [qa]}


@pytest.fixture
def shifts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data folder whose bigbench group holds the four SQuAD-shifts files: reddit one "article" of 130
    comments, new_wiki a short article and a long one."""
    monkeypatch.setenv("PROMPTZIP_DATA_DIR", str(tmp_path))
    group = _fetch._GROUPS["bigbench"]
    folder = tmp_path / group.folder
    (folder / "squad_shifts").mkdir(parents=True)
    files = {
        "reddit": [{"title": "reddit", "paragraphs": [_paragraph(i) for i in range(130)]}],
        "new_wiki": [
            {"title": "short", "paragraphs": [_paragraph(i) for i in range(500, 503)]},
            {"title": "long", "paragraphs": [_paragraph(i, filler=200) for i in range(600, 604)]},
        ],
        "nyt": [{"title": "nyt", "paragraphs": [_paragraph(900)]}],
        "amazon_reviews": [{"title": "amazon", "paragraphs": [_paragraph(950)]}],
    }
    for domain, articles in files.items():
        (folder / "squad_shifts" / f"{domain}_v1.0.json").write_text(json.dumps({"data": articles}))
    marker = {"sha256": {s.requirement: s.sha256 for s in group.sources}}
    (folder / ".fetched").write_text(json.dumps(marker))
    assert _fetch.available("squad_shifts")
    return folder


def test_reddit_contexts_are_blocks_of_comments_and_each_gold_paragraph_holds_the_answer(shifts: Path) -> None:
    suite = build_suite("shifts-reddit-qa", 12, seed=3)
    assert (suite.regime, suite.kind, suite.ratios) == ("query-aware", "qa", (10.0, 20.0, 50.0))
    assert len(suite.items) == 12
    assert len({i.id for i in suite.items}) == 12
    assert {i.group for i in suite.items} <= {"reddit (part 1/3)", "reddit (part 2/3)", "reddit (part 3/3)"}
    for item in suite.items:
        assert len(item.documents) <= BLOCK
        gold = item.targets[0].gold
        assert gold is not None
        assert item.targets[0].answers[0] in item.context[gold.start : gold.end]
        assert item.question is not None
        assert item.question.startswith("Where did comment")
    assert build_suite("shifts-reddit-qa", 12, seed=3) == suite  # seeded


def test_new_wiki_reads_only_the_articles_the_encoder_never_trains_on(shifts: Path) -> None:
    assert EncoderTrainConfig().tuning_min_chars == TUNING_MIN_CHARS
    suite = build_suite("shifts-new_wiki-qa", 50)
    assert {i.group for i in suite.items} == {"long"}  # the short article is training text
    assert len(suite.items) == 4


def test_the_suites_are_listed_and_need_the_squad_shifts_data() -> None:
    for name in ("shifts-reddit-qa", "shifts-new_wiki-qa"):
        assert name in SUITES
        assert SUITE_DATA[name] == "squad_shifts"


def test_notes_say_whether_each_adapter_held_the_domain_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMPTZIP_MINILM_QA_DIR", raising=False)
    monkeypatch.delenv("PROMPTZIP_MINILM_TC_DIR", raising=False)
    shipped = adapter_notes("reddit")
    assert len(shipped) == 2
    assert all("the shipped adapter" in n and "in-domain" in n for n in shipped)
    held = tmp_path / "held"
    held.mkdir()
    (held / "manifest.json").write_text(json.dumps({"hyperparameters": {"held_out": ["reddit"]}}))
    monkeypatch.setenv("PROMPTZIP_MINILM_QA_DIR", str(held))
    qa, tc = adapter_notes("reddit")
    assert qa.startswith("minilm-qa: $PROMPTZIP_MINILM_QA_DIR=")
    assert "held out (cross-domain)" in qa
    assert "in-domain" in tc  # the classifier is still the shipped one
    assert "held out" not in adapter_notes("nyt")[0]  # held out reddit only
    monkeypatch.setenv("PROMPTZIP_MINILM_TC_DIR", str(tmp_path / "nowhere"))
    assert "no readable manifest" in adapter_notes("reddit")[1]


def _heldout_commands() -> list[tuple[dict[str, str], str, list[str]]]:
    """The ``make heldout`` recipe's commands as (environment, module, arguments), continuation lines joined."""
    import shlex

    text = (Path(__file__).resolve().parents[1] / "Makefile").read_text(encoding="utf-8").replace("\\\n", " ")
    recipe = text.split("\nheldout:", 1)[1].split("\n\n", 1)[0]
    commands = []
    for line in (line.strip() for line in recipe.splitlines()[1:]):
        if not line:
            continue
        words = shlex.split(line.replace("$(HELDOUT)", "/h"))
        at = words.index("$(PY)")
        env = dict(w.split("=", 1) for w in words[:at])
        m = words.index("-m")
        commands.append((env, words[m + 1], words[m + 2 :]))
    return commands


def test_the_heldout_recipe_parses_against_the_real_command_lines() -> None:
    """``make heldout`` cannot drift from the CLIs it drives: every flag parses, both models hold out the domain
    the suites report, the eval runs with both, and the suites and methods it names exist."""
    import argparse

    from promptzip.evals.methods import method_names
    from promptzip.evals.run import add_arguments, config_from_args
    from promptzip.training.cli import add_train_command

    (_, fetch, _), (_, t1, encoder), (_, t2, classifier), (env, module, run) = _heldout_commands()
    assert (fetch, t1, t2, module) == (
        "promptzip.evals.data",
        "promptzip.training",
        "promptzip.training",
        "promptzip.evals.run",
    )
    train = argparse.ArgumentParser()
    add_train_command(train.add_subparsers(dest="command"))
    outs = {}
    for argv, kind in ((encoder, "qa-encoder"), (classifier, "token-classifier")):
        args = train.parse_args(["train", *argv])
        assert args.train_command == kind
        assert args.hold_out == ("reddit",)
        outs[kind] = str(args.out)
    assert not {"quoref", "drop", "cnn_dm", "xsum"} & set(train.parse_args(["train", *classifier]).sources)
    assert env == {"PROMPTZIP_MINILM_QA_DIR": outs["qa-encoder"], "PROMPTZIP_MINILM_TC_DIR": outs["token-classifier"]}
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = config_from_args(parser.parse_args(run))
    assert set(config.suites) == {"squad-qa", "shifts-reddit-qa", "shifts-new_wiki-qa"}
    assert set(config.methods) <= set(method_names())
