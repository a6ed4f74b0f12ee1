"""``python -m promptzip.training token-classifier|soft-encoder|qa-encoder [...]``: the same as ``promptzip train``."""

from __future__ import annotations

from promptzip.training.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
