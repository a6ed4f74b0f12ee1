"""Every ```python block of README.md runs here, in order, so no example can drift from the code.

Each block runs in a fresh namespace that holds only the names the block uses without defining them, built from
real objects: the test article (``ARTICLE``), the real ``fast`` stack, a FAISS-backed LangChain retriever,
langchain-core's fake chat model, an ``openai`` client that points at 127.0.0.1 (constructing one sends nothing).
A block with top-level ``await`` runs inside an event loop. A name that no provider here knows fails the block's
test with the name, so a README example cannot come to depend on something undefined. ``~`` is a temporary home
folder, so a block that names a cache under it never touches the user's cache. Bash blocks are not executed; TOML
blocks are proxy settings and must load.
"""

from __future__ import annotations

import ast
import asyncio
import builtins
import functools
import inspect
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import ARTICLE

import promptzip as pz

README = Path(__file__).resolve().parent.parent / "README.md"
QUESTION = "How tall is the Eiffel Tower?"
PARAGRAPHS = ARTICLE.split("\n\n")
# Blocks that load a decoder or the summarizing stack: marked slow (they still run in CI).
SLOW = ("SoftEncoder", 'from_preset("max"', "LocalSummarizer", "AbstractiveCompressor")


@dataclass(frozen=True)
class Block:
    lang: str
    line: int  # 1-based line of the opening fence
    source: str


def readme_blocks() -> list[Block]:
    """Every fenced block of the README, in order, with its language and where it starts."""
    blocks: list[Block] = []
    lang: str | None = None
    start = 0
    body: list[str] = []
    for number, line in enumerate(README.read_text(encoding="utf-8").splitlines(), start=1):
        if lang is None:
            opening = re.fullmatch(r"```\s*([\w+-]*)\s*", line)
            if opening:
                lang, start, body = opening.group(1).lower(), number, []
        elif line.strip() == "```":
            blocks.append(Block(lang, start, "\n".join(body) + "\n"))
            lang = None
        else:
            body.append(line)
    assert lang is None, f"README.md: the block opened at line {start} never closes"
    return blocks


BLOCKS = readme_blocks()
PYTHON = [b for b in BLOCKS if b.lang == "python"]


def free_names(tree: ast.Module) -> set[str]:
    """Names a block reads but never binds (imports, assignments, defs, arguments, comprehension targets)."""
    bound: set[str] = set()
    read: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    return read - bound - set(dir(builtins))


# ---------------------------------------------------------------------------------------------- the namespace
def openai_module() -> Any:
    import openai  # the client reads OPENAI_API_KEY / OPENAI_BASE_URL, which the test points at 127.0.0.1

    return openai


def messages() -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "You are a careful travel assistant. Answer from the context only."},
        {"role": "user", "content": f"Context:\n{ARTICLE}\n\nQuestion: {QUESTION}"},
    ]


def rendered_template() -> str:
    return f"Answer the question from the context below.\n\nContext:\n{ARTICLE}\n\nQuestion: {QUESTION}\nAnswer:"


def faiss_retriever() -> Any:
    """A real FAISS vector store over the article's paragraphs, embedded by the packaged MiniLM."""
    pytest.importorskip("faiss")
    from langchain_core.documents import Document
    from lc_helpers import MiniLMEmbeddings

    with warnings.catch_warnings():  # langchain-community warns, on import, that it is being sunset
        warnings.filterwarnings("ignore", message=".*langchain-community.*sunset", category=DeprecationWarning)
        community = pytest.importorskip("langchain_community.vectorstores")
    docs = [Document(page_content=p, metadata={"source": f"article.txt#{i}"}) for i, p in enumerate(PARAGRAPHS)]
    return community.FAISS.from_documents(docs, MiniLMEmbeddings()).as_retriever(search_kwargs={"k": 4})


def prompt() -> Any:
    from langchain_core.prompts import ChatPromptTemplate

    return ChatPromptTemplate.from_messages(
        [("system", "Answer from the context only."), ("human", "Context:\n{context}\n\nQuestion: {question}")]
    )


def chat_model() -> Any:
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    return FakeListChatModel(responses=["330 metres."])


def inner_compressor() -> Any:
    return pz.Zipper.from_preset("fast", cache="memory").compressor


@functools.cache
def smollm2() -> tuple[Any, Any]:
    from promptzip._causal_lm import load_causal_lm

    return load_causal_lm("smollm2-135m")


PROVIDERS: dict[str, Callable[[], Any]] = {
    "pz": lambda: pz,
    "openai": openai_module,
    "chunks_or_text": lambda: list(PARAGRAPHS),
    "paragraphs": lambda: list(PARAGRAPHS),
    "text": lambda: ARTICLE,
    "q": lambda: QUESTION,
    "question": lambda: QUESTION,
    "messages": messages,
    "rendered_template": rendered_template,
    "faiss_retriever": faiss_retriever,
    "prompt": prompt,
    "chat_model": chat_model,
    "inner_compressor": inner_compressor,
    "decoder": lambda: smollm2()[0],
    "tokenizer": lambda: smollm2()[1],
}


def after_block(ns: dict[str, Any]) -> None:
    """Beyond running: what a block builds for later use works (offline), wherever the README builds it."""
    if "chain" in ns and "retriever" in ns:  # the LangChain block
        docs = ns["retriever"].invoke(QUESTION)
        assert any("330 metres" in d.page_content for d in docs)
        assert all("promptzip_kept" in d.metadata for d in docs)
        answer = ns["chain"].invoke({"context": "\n\n".join(d.page_content for d in docs), "question": QUESTION})
        assert answer.content == "330 metres."
    if "ask" in ns and "client" in ns:  # the decorator block: the decorated function still runs
        assert ns["ask"](messages()) is None
        assert hasattr(ns["client"].chat.completions, "create")


def run_block(block: Block) -> dict[str, Any]:
    tree = ast.parse(block.source, filename=str(README))
    missing = free_names(tree) - PROVIDERS.keys()
    assert not missing, (
        f"README.md line {block.line}: the block uses {sorted(missing)}, which it does not define and no provider "
        "in tests/test_readme.py gives: define them in the block or add a real object here"
    )
    ns: dict[str, Any] = {"__name__": "readme_example"}
    ns.update({name: PROVIDERS[name]() for name in sorted(free_names(tree))})
    ast.increment_lineno(tree, block.line)  # tracebacks show the README's own lines
    code = compile(tree, str(README), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    if code.co_flags & inspect.CO_COROUTINE:
        asyncio.run(eval(code, ns))
    else:
        exec(code, ns)
    return ns


# ---------------------------------------------------------------------------------------------- the tests
@pytest.mark.parametrize(
    "block",
    [
        pytest.param(b, id=f"line{b.line}", marks=[pytest.mark.slow] if any(s in b.source for s in SLOW) else [])
        for b in PYTHON
    ],
)
def test_readme_python_block_runs(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from promptzip._causal_lm import models_dir

    # "~" in an example is a throwaway folder; converted models and the hub cache stay where they are (shared).
    monkeypatch.setenv("PROMPTZIP_MODELS_DIR", str(models_dir()))
    monkeypatch.setenv("HF_HOME", os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-readme-test")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # nothing listens; nothing is sent anyway
    after_block(run_block(block))


def test_every_python_block_is_collected_and_no_other() -> None:
    assert len(PYTHON) >= 6
    assert [b.line for b in PYTHON] == sorted(b.line for b in PYTHON)
    text = README.read_text(encoding="utf-8")
    assert len(PYTHON) == len(re.findall(r"^```python\s*$", text, flags=re.MULTILINE))
    bash = [b for b in BLOCKS if b.lang == "bash"]
    assert bash, "the README's shell examples are fenced as bash"
    assert not {b.line for b in bash} & {b.line for b in PYTHON}  # bash blocks are never executed
    assert all(b.lang in ("python", "bash", "toml", "yaml") for b in BLOCKS), [b.lang for b in BLOCKS]


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang == "toml"], ids=lambda b: f"line{b.line}")
def test_readme_toml_block_is_valid_proxy_settings(block: Block, tmp_path: Path) -> None:
    from promptzip.integrations.proxy import load_settings

    path = tmp_path / "proxy.toml"
    path.write_text(block.source, encoding="utf-8")
    settings = load_settings(path)  # a ConfigError names any key or value the proxy would refuse
    assert settings.upstream.startswith("https://")


def test_readme_opens_with_make_demo_and_make_test() -> None:
    first = BLOCKS[0]
    assert first.lang == "bash"
    assert first.line <= 5
    commands = [line.split("#")[0].strip() for line in first.source.splitlines() if line.strip()]
    assert commands[:2] == ["make demo", "make test"]


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang == "yaml"], ids=lambda b: f"line{b.line}")
def test_readme_yaml_block_is_a_litellm_config_whose_opt_in_the_hook_reads(block: Block) -> None:
    import yaml

    from promptzip.integrations.litellm import PromptZipHook

    config = yaml.safe_load(block.source)
    hook = PromptZipHook(rate=0.5)
    plans = {
        m["model_name"]: hook.plan({"model": m["litellm_params"]["model"], "model_info": m.get("model_info", {})})
        for m in config["model_list"]
    }
    assert plans["rag-gpt-4o"] is not None
    assert plans["rag-gpt-4o"].spec == pz.Budget(rate=0.3)
    assert plans["gpt-4o"] is None


def test_every_decimal_figure_in_the_readme_prose_comes_from_a_results_file() -> None:
    """Figures in prose are quoted from evals/results (or a packaged model's manifest, or the providers' price list
    in promptzip/_pricing.py), never typed in: a figure that no results file holds is one that was rounded by hand
    or has gone stale."""
    import re

    root = README.parent
    text = re.sub(r"```.*?```", "", README.read_text(encoding="utf-8"), flags=re.S)
    figures = set(re.findall(r"(?<![\w.])\d+\.\d+(?![\w.])", text))
    sources = [*(root / "evals" / "results").rglob("*.md"), *(root / "evals" / "results").rglob("*.json")]
    sources += [*root.glob("*/models/*/manifest.json"), root / "promptzip" / "_pricing.py"]
    corpus = "".join(p.read_text(encoding="utf-8", errors="ignore") for p in sources)
    assert figures, "the README quotes no figures: the test would pass vacuously"
    assert sorted(f for f in figures if f not in corpus) == []
