"""The version, read once from the installed package's metadata: pyproject.toml is the one place it is written."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__ = version("promptzip")
except PackageNotFoundError:  # pragma: no cover - running from a bare source tree that was never installed
    __version__ = "0+unknown"
