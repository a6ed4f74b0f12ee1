"""A Python snippet run in a new interpreter, for the tests that check what a fresh process imports and computes:
its stdin, its arguments, the environment it gets and the JSON its last line prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

TORCH_ENV = "PROMPTZIP_TORCH_ENCODER"


def run_child(code: str, *args: str, stdin: str, **env: str) -> dict[str, Any]:
    """``python -P -c code args…`` offline, without the caller's ``PROMPTZIP_TORCH_ENCODER`` unless ``env`` sets it;
    the JSON object its last line of output prints."""
    inherited = {k: v for k, v in os.environ.items() if k != TORCH_ENV}
    done = subprocess.run(
        [sys.executable, "-P", "-c", code, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**inherited, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **env},
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return found
