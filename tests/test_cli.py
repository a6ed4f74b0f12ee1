"""The command line, run in-process (main) and as a real subprocess (stdin, exit codes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli as run
from fresh_process import run_child

from promptzip.cli import main

pytestmark = pytest.mark.slow


def test_compress_file_prints_text_and_summary(doc: Path) -> None:
    code, out, err = run("compress", str(doc), "-q", "How tall is the tower?", "--budget", "60", "--cache", "memory")
    assert code == 0
    assert "330 metres" in out
    assert out.rstrip().endswith("How tall is the tower?")
    assert "→" in err
    assert "tokens" in err


def test_json_output_has_numbers_and_provenance(doc: Path, article: str) -> None:
    code, out, _ = run("compress", str(doc), "-q", "How wide is the base?", "-b", "50", "--json", "--cache", "none")
    assert code == 0
    payload = json.loads(out)
    assert payload["tokens_out"] <= payload["budget"] == 50
    assert isinstance(payload["ratio"], float)
    assert payload["ratio"] > 1
    assert payload["input"] == str(doc)
    spans = [span for c in payload["chunks"] for span in c["kept"]]
    assert spans
    assert all(article[a:b] in payload["text"] for a, b in spans)


def test_each_file_separately(tmp_path: Path, doc: Path) -> None:
    other = tmp_path / "fruit.txt"
    other.write_text("Bananas are yellow. Plantains are cooked. Apples are crisp.", encoding="utf-8")
    code, out, _ = run("compress", str(doc), str(other), "--each", "--rate", "0.5", "--json", "--cache", "memory")
    assert code == 0
    payload = json.loads(out)
    assert [p["input"] for p in payload] == [str(doc), str(other)]
    assert all(p["tokens_out"] <= p["tokens_in"] * 0.5 for p in payload)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["compress", "/nonexistent/file.txt", "-b", "10"], "cannot read /nonexistent/file.txt"),
        (["compress", "{doc}", "-b", "0"], "positive"),
        (["compress", "{doc}", "-b", "50", "--target", "nope-model"], "unknown target tokenizer"),
        (["compress", "{doc}", "-b", "50", "--preset", "warp"], "unknown preset"),
    ],
)
def test_errors_exit_2_with_a_message(doc: Path, argv: list[str], message: str) -> None:
    code, out, err = run(*(a.format(doc=doc) for a in argv), "--cache", "none")
    assert code == 2
    assert out == ""
    assert err.startswith("promptzip: error:")
    assert message in err


def test_stdin_and_invalid_utf8_in_a_subprocess(article: str) -> None:
    exe = [sys.executable, "-P", "-m", "promptzip.cli"]
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    ok = subprocess.run(
        [*exe, "compress", "-", "-q", "How tall is the tower?", "-b", "60", "--cache", "memory"],
        input=article.encode(),
        capture_output=True,
        env=env,
        timeout=300,
    )
    assert ok.returncode == 0, ok.stderr.decode()
    assert "330 metres" in ok.stdout.decode()
    bad = subprocess.run(
        [*exe, "compress", "-b", "60", "--cache", "none"], input=b"caf\xe9", capture_output=True, env=env, timeout=300
    )
    assert bad.returncode == 2
    assert "not valid UTF-8" in bad.stderr.decode()


def test_models_lists_the_packaged_encoder() -> None:
    code, out, _ = run("models", "--json")
    assert code == 0
    rows = {row["name"]: row for row in json.loads(out)}
    assert rows["minilm"]["status"] == "available"
    assert rows["minilm"]["origin"] == "packaged"
    assert Path(rows["minilm"]["path"], "config.json").exists()
    assert rows["o200k_base"]["status"] == "available"
    assert rows["llmlingua-2-xlm-roberta-large"]["status"] == "missing"
    assert "hub" in rows["llmlingua-2-xlm-roberta-large"]["hint"]


def test_version_flag_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"promptzip {version('promptzip')}"


_IMPORTS = """
import contextlib, io, json, sys
from promptzip.cli import main

out = io.StringIO()
with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
    main(sys.argv[1:], stdout=out, stderr=io.StringIO())
heavy = ("promptzip.evals.agent_trace", "promptzip.evals.bench", "promptzip.evals.run")
suites = [m for m in heavy if m in sys.modules]
print(json.dumps({"out": out.getvalue(), "suites": suites}))
"""


@pytest.mark.parametrize("argv", [["--help"], ["models", "--json"], ["compress", "--help"]])
def test_other_commands_do_not_import_the_eval_suites(argv: list[str]) -> None:
    found = run_child(_IMPORTS, *argv, stdin="")
    assert found["suites"] == []
    if argv == ["--help"]:
        assert "quality of every method" in found["out"]
        assert "latency, throughput" in found["out"]


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["eval", "--help"], "agent-trace"),
        (["bench", "--help"], "--sizes"),
        (["eval", "agent-trace", "--help"], "--methods"),
    ],
)
def test_eval_and_bench_still_take_their_options(argv: list[str], option: str) -> None:
    found = run_child(_IMPORTS, *argv, stdin="")
    assert option in found["out"]
    assert found["suites"]
