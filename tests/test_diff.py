"""``promptzip diff``: each source with its dropped text marked, in colour or as ``[-…-]``, and ``--json``."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from conftest import run_cli as run

import promptzip as pz
from promptzip._diff import render_diff

pytestmark = pytest.mark.slow

QUESTION = "How tall is the tower?"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
FOOTER = re.compile(r"^(\d+) → (\d+) tokens \((\d+\.\d)x\), (\d+) spans? dropped \(([\d,]+) characters\)$")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def body_and_footer(out: str) -> tuple[str, re.Match[str]]:
    body, _, last = out.rstrip("\n").rpartition("\n")
    found = FOOTER.match(last)
    assert found, last
    return body.rstrip("\n"), found


def test_plain_marks_dropped_text_and_loses_nothing(doc: Path, article: str) -> None:
    code, out, _ = run("diff", str(doc), "-q", QUESTION, "-b", "60", "--cache", "memory", "--color", "never")
    assert code == 0
    assert "\x1b" not in out
    body, footer = body_and_footer(out)
    assert body.replace("[-", "").replace("-]", "") == article  # the original, every character
    deleted = re.findall(r"\[-(.*?)-\]", body, flags=re.DOTALL)
    assert any("Bananas are elongated" in d for d in deleted)
    assert not any("330 metres" in d for d in deleted)
    assert "330 metres" in re.sub(r"\[-.*?-\]", "", body, flags=re.DOTALL)  # kept text stays plain
    tokens_in, tokens_out, ratio, spans = (int(footer[1]), int(footer[2]), float(footer[3]), int(footer[4]))
    assert tokens_out <= 60 < tokens_in
    assert ratio == pytest.approx(tokens_in / tokens_out, abs=0.05)
    assert spans == len(deleted)
    assert int(footer[5].replace(",", "")) == sum(len(d) for d in deleted)


def test_colour_strikes_dropped_text_through_in_red(doc: Path, article: str) -> None:
    code, out, _ = run("diff", str(doc), "-q", QUESTION, "-b", "60", "--cache", "memory", "--color", "always")
    assert code == 0
    assert "[-" not in out
    assert "\x1b[9;31m" in out
    body, _ = body_and_footer(out)
    assert ANSI.sub("", body) == article
    struck = re.findall(r"\x1b\[9;31m(.*?)\x1b\[0m", body)
    assert struck
    assert all("\n" not in s for s in struck)  # one run per line, so pagers keep the colour
    assert any(s.startswith("Bananas are elongated") for s in struck)
    assert not any("330 metres" in s for s in struck)


def test_auto_colours_a_terminal_only(doc: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    argv = ("diff", str(doc), "-q", QUESTION, "-b", "60", "--cache", "memory")
    _, piped, _ = run(*argv)
    assert "[-" in piped
    assert "\x1b[" not in piped
    _, terminal, _ = run(*argv, out=Terminal())
    assert "\x1b[9;31m" in terminal
    monkeypatch.setenv("NO_COLOR", "1")
    _, no_color, _ = run(*argv, out=Terminal())
    assert "\x1b[" not in no_color
    assert no_color == piped


def test_json_has_the_dropped_spans(doc: Path, article: str) -> None:
    code, out, _ = run("diff", str(doc), "-q", QUESTION, "-r", "0.3", "--cache", "memory", "--json")
    assert code == 0
    payload = json.loads(out)
    assert payload["input"] == str(doc)
    assert payload["tokens_out"] <= payload["budget"]
    assert payload["dropped"]
    for d in payload["dropped"]:
        assert d["source_id"] == str(doc)
        assert article[d["start"] : d["end"]] == d["text"]
    assert {"text", "chunks", "tokens_in", "ratio"} <= set(payload)


def test_several_files_are_headed(tmp_path: Path, doc: Path) -> None:
    other = tmp_path / "fruit.txt"
    other.write_text("Bananas are yellow. Plantains are cooked. Apples are crisp.", encoding="utf-8")
    code, out, _ = run(
        "diff", str(doc), str(other), "-q", QUESTION, "-b", "50", "--cache", "memory", "--color", "never"
    )
    assert code == 0
    body, _ = body_and_footer(out)
    first, _, second = body.partition(f"\n==> {other} <==\n")
    assert first.startswith(f"==> {doc} <==\n")
    for section, path in ((first.partition("\n")[2], doc), (second, other)):
        assert section.rstrip("\n").replace("[-", "").replace("-]", "") == path.read_text(encoding="utf-8")
    assert "[-" in second  # something of the fruit was dropped for a question about the tower


def test_the_question_and_a_budget_are_required(doc: Path) -> None:
    with pytest.raises(SystemExit) as no_question:
        run("diff", str(doc), "-b", "60")
    assert no_question.value.code == 2
    with pytest.raises(SystemExit) as no_budget:
        run("diff", str(doc), "-q", QUESTION)
    assert no_budget.value.code == 2


def test_an_unreadable_file_is_an_error(tmp_path: Path) -> None:
    code, out, err = run("diff", str(tmp_path / "missing.txt"), "-q", QUESTION, "-b", "60", "--cache", "memory")
    assert code == 2
    assert "cannot read" in err
    assert out == ""


def test_a_summary_follows_its_chunk() -> None:
    text = "First paragraph, kept.\n\nSecond paragraph, rewritten by a summarizer.\n\nThird one, dropped."
    second, third = text.index("Second"), text.index("Third")
    end_second = text.index("\n\nThird")
    result = pz.Result(
        text="First paragraph, kept.\n\nA rewritten second.",
        tokens_in=24,
        tokens_out=11,
        budget=12,
        chunks=(
            pz.ChunkResult("0", 0, 22, "keep", 5, 5, (pz.Span(0, 22),), 1.0, text="First paragraph, kept."),
            pz.ChunkResult("0", second, end_second, "summary@0.5", 9, 5, (), 0.5, text="A rewritten second."),
            pz.ChunkResult("0", third, len(text), "drop", 5, 0, (), 0.1),
        ),
        sources=(pz.Source("0", text),),
    )
    plain = render_diff(result, color=False)
    assert plain.startswith(
        "First paragraph, kept.\n\n[-Second paragraph, rewritten by a summarizer.-] {+A rewritten second.+}"
        "\n\n[-Third one, dropped.-]\n"
    )
    coloured = render_diff(result, color=True)
    assert "\x1b[32mA rewritten second.\x1b[0m" in coloured
    assert "\x1b[9;31mThird one, dropped.\x1b[0m" in coloured
