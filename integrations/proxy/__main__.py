"""``python -m promptzip.integrations.proxy --upstream URL``: the same as ``promptzip proxy``."""

from __future__ import annotations

from promptzip.integrations.proxy._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
