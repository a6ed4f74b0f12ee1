"""Packaging: a light ``import promptzip``, and a wheel that holds every subpackage and imports on its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROLE_FOLDERS = ("compressors", "retrievers", "integrations", "evals", "compat", "training")
HEAVY = ("torch", "transformers", "faiss", "sentence_transformers", "tokenizers", "scipy", "sklearn", "bm25s")


def _run(code: str, *, cwd: Path, env: dict[str, str] | None = None, flags: tuple[str, ...] = ()) -> str:
    proc = subprocess.run(
        [sys.executable, *flags, "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_import_is_light(tmp_path: Path) -> None:
    code = (
        "import json, sys\n"
        "import promptzip as pz\n"
        "assert pz.Budget(tokens=10).resolve(100) == 10\n"
        "print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))\n"
    )
    loaded = set(json.loads(_run(code, cwd=tmp_path)))
    assert "promptzip" in loaded
    assert not loaded & set(HEAVY), f"import promptzip pulled in {sorted(loaded & set(HEAVY))}"


def _module_names(files: list[str]) -> set[str]:
    names = set()
    for f in files:
        if f.endswith(".py"):
            parts = f[: -len(".py")].split("/")
            if parts[-1] == "__init__":
                parts.pop()
            names.add(".".join(parts))
    return names


@pytest.mark.slow
def test_wheel_contents_and_imports(tmp_path: Path, wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        files = zf.namelist()
        entry_points = next(zf.read(f).decode() for f in files if f.endswith(".dist-info/entry_points.txt"))

    # One top-level name: the role folders install inside promptzip, never beside it.
    assert {f.split("/")[0] for f in files} == {"promptzip", "promptzip-0.1.0.dist-info"}
    expected = [
        "promptzip/__init__.py",
        "promptzip/py.typed",
        "promptzip/compressors/__init__.py",
        "promptzip/compressors/extractive.py",
        "promptzip/retrievers/__init__.py",
        "promptzip/retrievers/dense.py",
        "promptzip/evals/__init__.py",
        "promptzip/integrations/__init__.py",
    ]
    expected += [f"promptzip/_sample/{p.name}" for p in sorted((ROOT / "promptzip" / "_sample").glob("*.*"))]
    missing = [f for f in expected if f not in files]
    assert not missing, f"missing from the wheel: {missing}"
    assert not any(f.startswith(tuple(f"{folder}/" for folder in ROLE_FOLDERS)) for f in files)
    assert not any("tests/" in f or "__pycache__" in f for f in files)
    # Every module of the source folders is in the wheel (nothing silently dropped, sub-subpackages included).
    source_modules = {f"promptzip/{p.relative_to(ROOT / 'promptzip')}" for p in (ROOT / "promptzip").rglob("*.py")}
    for folder in ROLE_FOLDERS:
        source_modules |= {f"promptzip/{folder}/{p.relative_to(ROOT / folder)}" for p in (ROOT / folder).rglob("*.py")}
    assert source_modules <= set(files), sorted(source_modules - set(files))
    assert "builtins = promptzip._builtins:register" in entry_points
    assert "promptzip = promptzip.cli:main" in entry_points

    site = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr

    # Only the wheel copy and the venv's third-party packages are importable: -S skips site (and with it the
    # editable install's path hook), -P keeps the working directory off sys.path, cwd is outside the checkout.
    deps = sysconfig.get_paths()["purelib"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), deps])
    wheel_modules = sorted(_module_names(files))
    code = (
        "import importlib, json, pkgutil, sys\n"
        "import promptzip\n"
        f"names = {wheel_modules!r}\n"
        "files = {n: importlib.import_module(n).__file__ for n in names}\n"
        "walked = sorted(m.name for m in pkgutil.walk_packages(promptzip.__path__, 'promptzip.'))\n"
        "print(json.dumps({'files': files, 'walked': walked, 'path': sys.path}))\n"
    )
    out = json.loads(_run(code, cwd=tmp_path, env=env, flags=("-S", "-P", "-s")))
    assert str(ROOT) not in out["path"]
    assert set(out["walked"]) | {"promptzip"} == set(wheel_modules)
    for name in ("promptzip.compressors.extractive", "promptzip.retrievers.dense", "promptzip.integrations"):
        assert name in out["files"]
    outside = {n: f for n, f in out["files"].items() if not Path(f).resolve().is_relative_to(site.resolve())}
    assert not outside, f"imported from outside the wheel: {outside}"
