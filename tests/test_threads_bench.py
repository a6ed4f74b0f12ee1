"""The thread-settings bench (evals/threads_bench.py): its report, its arguments, and one real run in which every
thread setting compresses the sample to the same tokens."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from promptzip.evals import threads_bench


def _row(seconds: float, tokens: int = 383) -> dict[str, Any]:
    runs = [{"wall_s": seconds + 1, "compress_s": seconds, "tokens_out": tokens}]
    return {"median_compress_s": seconds, "median_wall_s": seconds + 1, "runs": runs}


def _report() -> dict[str, Any]:
    def block(label: str, hogs: int, default: float, passive: float) -> dict[str, Any]:
        rows = {"default": _row(default), "passive": _row(passive), "one thread": _row(default * 0.8)}
        return {
            "label": label,
            "hogs": hogs,
            "loadavg_before": [0.5, 0.4, 0.3],
            "loadavg_after": [4.5, 2.0, 1.0],
            "presets": {"fast": rows},
        }

    meta = {
        "command": "python -P -m promptzip.evals.threads_bench",
        "cli": "promptzip compress …",
        "settings": threads_bench.SETTINGS,
        "repeats": 1,
        "cpus": 2,
        "python": "3.11",
        "machine": "x86_64",
        "seconds": 1.0,
        "date": "2026-12-06",
    }
    return {"blocks": [block("as it is", 0, 5.0, 5.0), block("beside 4 busy processes", 4, 20.0, 12.5)], "meta": meta}


def test_markdown_gives_each_setting_against_the_default_per_block() -> None:
    page = threads_bench.markdown(_report())
    assert "## beside 4 busy processes (load average 0.50, 0.40, 0.30 before, 4.50, 2.00, 1.00 at the end)" in page
    assert "| fast | passive | 12.50 | 1.60x | 12.50 | 383 |" in page
    assert "| fast | default | 20.00 | 1.00x |" in page
    assert "| fast | one thread | 4.00 | 1.25x |" in page
    assert "`passive`: OMP_WAIT_POLICY=PASSIVE" in page
    assert "`default`: none" in page


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--repeats", "0"], "--repeats must be at least 1"),
        (["--hogs", "-1"], "--hogs at least 0"),
        (["--presets", "fast,turbo"], "--presets: unknown ['turbo']"),
        (["--presets", ","], "--presets: unknown []"),
    ],
)
def test_bad_arguments_are_refused(argv: list[str], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        threads_bench.main(argv)
    assert exc.value.code == 2
    assert says in capsys.readouterr().err


@pytest.mark.slow
def test_every_setting_compresses_to_the_same_tokens(tmp_path: Path) -> None:
    argv = ["--repeats", "1", "--hogs", "0", "--presets", "balanced", "--out", str(tmp_path), "--stem", "t"]
    assert threads_bench.main(argv) == 0
    report = json.loads((tmp_path / "t.json").read_text(encoding="utf-8"))
    assert [b["hogs"] for b in report["blocks"]] == [0]  # no busy processes asked for: no second block
    presets = report["blocks"][0]["presets"]
    assert list(presets) == ["balanced"]  # the dense encoder and the token classifier
    for preset, by_setting in presets.items():
        assert set(by_setting) == set(threads_bench.SETTINGS), preset
        tokens = {r["tokens_out"] for row in by_setting.values() for r in row["runs"]}
        assert len(tokens) == 1, preset
        assert 0 < tokens.pop() <= 400, preset
    assert (tmp_path / "t.md").read_text(encoding="utf-8").startswith("# threads:")
