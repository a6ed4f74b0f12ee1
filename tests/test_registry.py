"""Registries: lookups, duplicates, and plug-ins discovered through the ``promptzip.plugins`` entry-point group.

Plug-in discovery runs in a subprocess with a throw-away distribution on ``sys.path``, so the registries of the
test process are never touched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from promptzip import _registry
from promptzip._errors import ConfigError
from promptzip._policy import BudgetPolicy
from promptzip._registry import ENTRY_POINT_GROUP, Registries, Registry, registries


@pytest.fixture
def no_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lookups on fresh registries without running the process-wide plug-in loading."""
    monkeypatch.setattr(_registry, "_loaded", True)


# -- one registry --------------------------------------------------------------------------------------------------
class Widget:
    """Makes widgets.

    More text that is not the summary.
    """

    def __init__(self, size: int = 1) -> None:
        self.size = size


@pytest.mark.usefixtures("no_plugins")
def test_register_get_create_and_describe() -> None:
    reg: Registry[Any] = Registry("widget")
    reg.register("Big", Widget)
    reg.register("small", lambda: Widget(0), help="a tiny one")
    assert reg.get("big") is Widget
    assert reg.get("BIG") is Widget  # names are case-insensitive
    assert reg.create("big", size=3).size == 3
    assert reg.create("small").size == 0
    assert reg.names() == ["big", "small"]
    assert list(reg) == ["big", "small"]
    assert "Big" in reg
    assert "medium" not in reg
    assert 3 not in reg
    assert reg.describe("big") == "Makes widgets."  # first docstring line when no help is given
    assert reg.describe("small") == "a tiny one"
    assert reg.describe("medium") == ""


@pytest.mark.usefixtures("no_plugins")
def test_unknown_names_list_the_known_ones() -> None:
    reg: Registry[Any] = Registry("widget")
    with pytest.raises(ConfigError, match=r"unknown widget 'x'; known: none"):
        reg.get("x")
    reg.register("beta", Widget)
    reg.register("alpha", Widget)
    with pytest.raises(ConfigError, match=r"unknown widget 'gamma'; known: alpha, beta$"):
        reg.create("gamma")
    with pytest.raises(ValueError, match="unknown widget"):  # ConfigError is also a ValueError
        reg.get("gamma")


@pytest.mark.usefixtures("no_plugins")
def test_duplicates_are_rejected_unless_replaced() -> None:
    reg: Registry[Any] = Registry("widget")
    reg.register("w", Widget)
    reg.register("w", Widget)  # the very same factory again is harmless (a hook that runs twice)
    with pytest.raises(ConfigError, match="already registered"):
        reg.register("w", lambda: Widget(2))
    with pytest.raises(ConfigError, match="already registered"):
        reg.register("W", lambda: Widget(2))
    assert reg.create("w").size == 1
    reg.register("w", lambda: Widget(2), replace=True)
    assert reg.create("w").size == 2


@pytest.mark.usefixtures("no_plugins")
def test_every_role_has_its_own_registry() -> None:
    regs = Registries()
    regs.scorers.register("same", Widget)
    regs.compressors.register("same", lambda: Widget(5))
    assert regs.scorers.create("same").size == 1
    assert regs.compressors.create("same").size == 5
    assert "same" not in regs.retrievers


def test_the_global_registry_holds_the_builtins() -> None:
    assert {"fast"} <= set(registries.presets.names())
    assert {"none", "off", "memory", "sqlite"} <= set(registries.caches.names())
    assert {"o200k_base", "cl100k_base"} <= set(registries.tokenizers.names())
    assert {"dense", "bm25", "hybrid"} <= set(registries.scorers.names())
    assert "extractive" in registries.compressors
    assert "minilm" in registries.models
    assert isinstance(registries.policies.create("knapsack"), BudgetPolicy)
    assert registries.tokenizers.create("o200k_base").count("hello world") == 2
    with pytest.raises(ConfigError, match=r"unknown preset 'turbo'; known: .*\bfast\b"):
        registries.presets.get("turbo")
    with pytest.raises(ConfigError, match=r"known: .*\bsqlite\b"):
        registries.caches.get("postgres")


def test_the_builtins_are_declared_as_an_entry_point() -> None:
    eps = {ep.name: ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    assert eps.get("builtins") == "promptzip._builtins:register"


# -- loading (in process, on a fresh namespace) -------------------------------------------------------------------
class FakeEntryPoint:
    def __init__(self, name: str, value: str, hook: Any) -> None:
        self.name, self.value, self._hook = name, value, hook

    def load(self) -> Any:
        if isinstance(self._hook, Exception):
            raise self._hook
        return self._hook


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> Registries:
    regs = Registries()
    monkeypatch.setattr(_registry, "registries", regs)
    monkeypatch.setattr(_registry, "_loaded", False)
    return regs


def _entry_points(monkeypatch: pytest.MonkeyPatch, *eps: FakeEntryPoint) -> None:
    def fake(*, group: str) -> list[FakeEntryPoint]:
        assert group == ENTRY_POINT_GROUP
        return list(eps)

    monkeypatch.setattr(_registry.metadata, "entry_points", fake)


def test_plugins_load_once(monkeypatch: pytest.MonkeyPatch, fresh: Registries) -> None:
    calls: list[Registries] = []

    def hook(regs: Registries) -> None:
        calls.append(regs)
        regs.scorers.register("mine", Widget)

    from promptzip._builtins import register

    _entry_points(
        monkeypatch,
        FakeEntryPoint("builtins", "promptzip._builtins:register", register),
        FakeEntryPoint("mine", "mine.plugin:register", hook),
    )
    assert fresh.scorers.get("mine") is Widget
    assert "fast" in fresh.presets
    fresh.scorers.names()
    _registry.load_plugins()
    assert calls == [fresh]


def test_a_source_tree_without_metadata_still_gets_the_builtins(
    monkeypatch: pytest.MonkeyPatch, fresh: Registries
) -> None:
    _entry_points(monkeypatch)
    assert "sqlite" in fresh.caches
    assert "knapsack" in fresh.policies


def test_a_failing_builtin_hook_is_not_hidden(monkeypatch: pytest.MonkeyPatch, fresh: Registries) -> None:
    _entry_points(monkeypatch, FakeEntryPoint("builtins", "promptzip._builtins:register", RuntimeError("bug")))
    with pytest.raises(RuntimeError, match="bug"):
        fresh.presets.names()


def test_a_failing_third_party_hook_is_logged(
    monkeypatch: pytest.MonkeyPatch, fresh: Registries, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(regs: Registries) -> None:
        raise RuntimeError("plug-in exploded")

    from promptzip._builtins import register

    def clash(regs: Registries) -> None:
        regs.policies.register("knapsack", Widget)

    _entry_points(  # found before the built-ins, as a plug-in early on sys.path is
        monkeypatch,
        FakeEntryPoint("broken", "other.plugin:register", broken),
        FakeEntryPoint("missing", "other.missing:register", ImportError("No module named 'other.missing'")),
        FakeEntryPoint("clash", "other.clash:register", clash),
        FakeEntryPoint("builtins", "promptzip._builtins:register", register),
    )
    with caplog.at_level("WARNING", logger="promptzip"):
        assert "fast" in fresh.presets
    assert isinstance(fresh.policies.create("knapsack"), BudgetPolicy)  # the built-in keeps its name
    messages = [r.getMessage() for r in caplog.records if r.name == "promptzip"]
    assert len(messages) == 3, messages
    assert any("'broken'" in m and "plug-in exploded" in m for m in messages)
    assert any("'missing'" in m and "other.missing" in m for m in messages)
    assert any("'clash'" in m and "already registered" in m for m in messages)


# -- a real third-party distribution, discovered through its metadata ----------------------------------------------
SHORTEST = '''
"""A third-party scorer that prefers short chunks."""
from promptzip import Scorer

CALLS = []


class Shortest(Scorer):
    """prefers short chunks"""

    name = "shortest"

    def _score(self, chunks, query):
        return [1.0 / (1 + len(c.text)) for c in chunks]


def register(registries):
    CALLS.append(registries)
    registries.scorers.register("shortest", Shortest)
'''

PROBE = """
import json, logging
from importlib import metadata

records = []


class Collect(logging.Handler):
    def emit(self, record):
        records.append([record.levelname, record.getMessage()])


logging.getLogger("promptzip").addHandler(Collect())

from promptzip import Chunk, registries

out = {"eps": sorted(ep.name for ep in metadata.entry_points(group="promptzip.plugins"))}
try:
    scorer = registries.scorers.create("shortest")
    out["scores"] = scorer.score([Chunk("a much longer chunk of text"), Chunk("short")], "q")
    out["scorer_module"] = type(scorer).__module__
    out["describe"] = registries.scorers.describe("shortest")
    import pz_test_plugin

    out["hook_calls"] = len(pz_test_plugin.CALLS)
except Exception as exc:
    out["shortest_error"] = f"{type(exc).__name__}: {exc}"
try:
    out["presets"] = registries.presets.names()
    out["caches"] = registries.caches.names()
    out["tokenizers"] = registries.tokenizers.names()
    out["scorers"] = registries.scorers.names()
    out["bm25"] = type(registries.scorers.create("bm25")).__name__
except Exception as exc:
    out["builtins_error"] = f"{type(exc).__name__}: {exc}"
out["records"] = records
print(json.dumps(out))
"""


def _distribution(site: Path, name: str, module_source: str, entry_points: dict[str, str]) -> None:
    (site / f"{name}.py").write_text(textwrap.dedent(module_source))
    info = site / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}")


def _probe(site: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=site, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _check_builtins(out: dict[str, Any]) -> None:
    assert "builtins_error" not in out, out["builtins_error"]
    assert "fast" in out["presets"]
    assert "sqlite" in out["caches"]
    assert "o200k_base" in out["tokenizers"]
    assert {"bm25", "dense", "hybrid"} <= set(out["scorers"])
    assert out["bm25"] == "BM25Scorer"


def test_a_third_party_plugin_is_discovered(tmp_path: Path) -> None:
    _distribution(tmp_path, "pz_test_plugin", SHORTEST, {"shortest": "pz_test_plugin:register"})
    out = _probe(tmp_path)
    assert {"builtins", "shortest"} <= set(out["eps"])
    assert "shortest_error" not in out, out["shortest_error"]
    assert out["scorer_module"] == "pz_test_plugin"
    assert out["scores"] == [pytest.approx(1 / 28), pytest.approx(1 / 6)]
    assert out["describe"] == "prefers short chunks"
    assert out["hook_calls"] == 1
    _check_builtins(out)
    assert out["records"] == []


def test_broken_plugins_are_logged_and_do_not_break_lookups(tmp_path: Path) -> None:
    _distribution(tmp_path, "pz_test_plugin", SHORTEST, {"shortest": "pz_test_plugin:register"})
    _distribution(
        tmp_path, "pz_broken_import", "raise RuntimeError('cannot import me')\n", {"bad": "pz_broken_import:x"}
    )
    _distribution(
        tmp_path,
        "pz_broken_hook",
        "def register(registries):\n    raise ValueError('hook failed')\n",
        {"worse": "pz_broken_hook:register"},
    )
    _distribution(
        tmp_path,
        "pz_clashing",
        "def register(registries):\n    registries.scorers.register('bm25', object)\n",
        {"clash": "pz_clashing:register"},
    )
    out = _probe(tmp_path)
    assert {"bad", "worse", "clash", "shortest", "builtins"} <= set(out["eps"])
    _check_builtins(out)  # a plug-in that claims a built-in's name does not take it over
    assert "shortest_error" not in out, out["shortest_error"]
    assert out["scores"] == [pytest.approx(1 / 28), pytest.approx(1 / 6)]
    warnings = [message for level, message in out["records"] if level == "WARNING"]
    assert len(warnings) == 3, warnings
    assert any("'bad'" in w and "cannot import me" in w for w in warnings)
    assert any("'worse'" in w and "hook failed" in w for w in warnings)
    assert any("'clash'" in w and "already registered" in w for w in warnings)
