"""``integrations``: one realistic RAG request through every door promptzip offers, under the same allowance.

    python -P -m promptzip.evals.integrations [--out DIR]      # evals/results/integrations.{json,md}

The request: the bundled State of the Union address (``promptzip/_sample/sotu.txt``, ~10.7k o200k tokens) split
into :data:`DOCUMENTS` documents of consecutive paragraphs, the bundled question (``sample.json``), and LangChain's
RAG-tutorial instruction; as a chat, the instruction and the documents (joined by a blank line) are the system
message and the question the user turn. Every door gets :data:`CONTEXT_BUDGET` tokens for the context, written in
the budget that door takes (:data:`SCOPES`): the documents alone, the whole prompt string, or the whole chat.

Tokens are counted with ``promptzip.get_tokenizer("gpt-4o")`` on what the budget covers as it reached the model
(the fake upstream's recorded body, the prompt a mock LLM echoed, the documents a retriever step passed on);
``reported`` is what the door itself says (``Result.tokens_*``, the proxy's ``x-promptzip-tokens-*`` headers,
LLMLingua's ``origin_tokens``/``compressed_tokens``). Which of sync / async / streaming a door supports is data
(:data:`DOORS`), read from what each integration implements; the modes listed as run are exercised, each checked
against the budget. Wall time is one call after one untimed warm-up call of the same request through the same door
(models loaded, query-agnostic scores cached), so it is the door's own cost, not the first call's.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import promptzip as pz

__all__ = ["DOORS", "Request", "Row", "main", "markdown", "markdown_table", "run_doors", "sample_request"]

from promptzip.evals._framework_doors import (
    via_haystack,
    via_haystack_agent,
    via_haystack_chat,
    via_lc_compressor,
    via_lc_runnable,
    via_litellm,
    via_llama_index,
    via_llama_index_llm,
)
from promptzip.evals._integration_doors import (
    BATCHES,
    COMMAND,
    COMPLETIONS,
    FILES,
    PRESET,
    SCOPES,
    TARGET,
    Bench,
    Measured,
    Request,
    Row,
    sample_request,
    versions,
    via_decorator,
    via_direct,
    via_llmlingua,
    via_messages,
    via_proxy,
    via_wrap,
)


@dataclass(frozen=True, slots=True)
class Door:
    """A door: its packages, which modes it supports (``yes`` / ``no`` / ``n/a``: it makes no model call), what its
    budget covers, the function that sends the request through it, and the modes run (the first is the table's)."""

    name: str
    packages: tuple[str, ...]
    sync: str
    async_: str
    stream: str
    scope: str
    run: Callable[[Bench, str], Measured]
    modes: tuple[str, ...]
    note: str


_PROXY = ("starlette", "uvicorn")
_NO_CALL = "n/a"  # the door returns text, messages or documents; the caller's model call does any streaming
DOORS: tuple[Door, ...] = (
    Door("`pz.compress`", ("promptzip",), "yes", "yes", _NO_CALL, "prompt", via_direct, ("sync", "async"),
         "async: `pz.acompress`"),
    Door("`pz.compress_messages`", ("promptzip",), "yes", "yes", _NO_CALL, "request", via_messages, ("sync",),
         "async: `Zipper.acompress_messages` (not run: promptzip has no module-level one)"),
    Door("`pz.wrap(openai.OpenAI)` chat.completions.create", ("openai",), "yes", "yes", "yes", "request",
         via_wrap("/v1/chat/completions"), ("sync", "async", "stream"),
         "OpenAI / AsyncOpenAI; create, parse, stream helpers, raw/streaming views"),
    Door("`pz.wrap(openai.OpenAI)` responses.create", ("openai",), "yes", "yes", "yes", "request",
         via_wrap("/v1/responses"), ("sync", "async", "stream"),
         "input as message items, read as the proxy's `/v1/responses` reads it"),
    Door("`pz.wrap(openai.OpenAI)` completions.create", ("openai",), "yes", "yes", "yes", "request",
         via_wrap(COMPLETIONS), ("sync", "async", "stream"),
         "the chat as one raw prompt in ChatML, read as the proxy's `/v1/completions` reads it: markers kept"),
    Door("`pz.wrap(anthropic.Anthropic)` messages.create", ("anthropic",), "yes", "yes", "yes", "request",
         via_wrap("/v1/messages"), ("sync", "async", "stream"),
         "Anthropic / AsyncAnthropic; read as the proxy's `/v1/messages` reads it"),
    Door("`pz.wrap(anthropic.Anthropic)` messages.batches.create", ("anthropic",), "yes", "yes", _NO_CALL, "request",
         via_wrap(BATCHES), ("sync", "async"), "a batch of one request, its params as messages.create sends them"),
    Door("`pz.wrap(openai.OpenAI)` files.create (batch)", ("openai",), "yes", "yes", _NO_CALL, "request",
         via_wrap(FILES), ("sync", "async"), "an OpenAI batch file of one chat line, its body as "
         "chat.completions.create sends it"),
    Door("`@pz.compress_call`", ("promptzip", "openai"), "yes", "yes", "yes", "request", via_decorator,
         ("sync", "async", "stream"), "sync and async functions; the function's own return, a stream, untouched"),
    Door("LangChain `PromptZipCompressor`", ("langchain-core",), "yes", "yes", _NO_CALL, "context", via_lc_compressor,
         ("sync", "async"), "compress_documents / acompress_documents"),
    Door("LangChain `PromptZipRunnable`", ("langchain-core",), "yes", "yes", "yes", "request", via_lc_runnable,
         ("sync", "async", "stream"), "invoke / ainvoke; `chain.stream` streams the model after it"),
    Door("LlamaIndex `PromptZipNodePostprocessor`", ("llama-index-core",), "yes", "yes", "yes", "context",
         via_llama_index, ("sync", "async", "stream"), "query engine: query / aquery / streaming=True (MockLLM)"),
    Door("LlamaIndex `PromptZipLLM`", ("llama-index-core",), "yes", "yes", "yes", "request", via_llama_index_llm,
         ("sync", "async", "stream"), "chat / achat / stream_chat around the LLM (LlamaIndex's mock that keeps "
         "the messages it got)"),
    Door("Haystack `PromptZipDocumentCompressor`", ("haystack-ai",), "yes", "yes", _NO_CALL, "context", via_haystack,
         ("sync", "async"), "Pipeline.run / Pipeline.run_async"),
    Door("Haystack `PromptZipChatCompressor`", ("haystack-ai",), "yes", "yes", "yes", "request", via_haystack_chat,
         ("sync", "async", "stream"),
         "ChatPromptBuilder -> compressor -> OpenAIChatGenerator (real, to the fake upstream); Pipeline.run / "
         "run_async; streaming_callback"),
    Door("Haystack `PromptZipChatGenerator` in an `Agent`", ("haystack-ai",), "yes", "yes", "yes", "request",
         via_haystack_agent, ("sync", "async", "stream"),
         "Agent(chat_generator=PromptZipChatGenerator(OpenAIChatGenerator)), real, to the fake upstream; Agent.run / "
         "run_async; streaming_callback"),
    Door("LiteLLM `PromptZipHook`", ("litellm",), "no", "yes", "yes", "request", via_litellm("/v1/chat/completions"),
         ("async", "stream"),
         "Router.acompletion; LiteLLM runs no rewriting hook for sync completion, which goes out uncompressed"),
    Door("LiteLLM `PromptZipHook` responses", ("litellm",), "yes", "yes", "yes", "request",
         via_litellm("/v1/responses"), ("sync", "async", "stream"),
         "Router.responses / aresponses, input as message items; read as the proxy's `/v1/responses` reads it"),
    Door("LiteLLM `PromptZipHook` anthropic messages", ("litellm",), "no", "yes", "yes", "request",
         via_litellm("/v1/messages"), ("async",),
         "Router.aanthropic_messages; read as the proxy's `/v1/messages` reads it; streaming not run: LiteLLM's "
         "streaming iterator for it imports LiteLLM's proxy extras (fastapi), not installed here"),
    Door("LLMLingua compat `PromptCompressor`", ("promptzip",), "yes", "no", _NO_CALL, "prompt", via_llmlingua,
         ("sync",), "compress_prompt(..., target_token=budget); llmlingua itself not needed"),
    Door("proxy `/v1/chat/completions`", ("openai", *_PROXY), "yes", "yes", "yes", "request",
         via_proxy("/v1/chat/completions"), ("sync", "async", "stream"), "x-promptzip-budget header"),
    Door("proxy `/v1/messages`", ("anthropic", *_PROXY), "yes", "yes", "yes", "request", via_proxy("/v1/messages"),
         ("sync", "async", "stream"), "x-promptzip-budget header"),
    Door("proxy `/v1/messages` document blocks", ("anthropic", *_PROXY), "yes", "yes", "yes", "request",
         via_proxy("/v1/messages", documents=True), ("sync", "async", "stream"),
         "x-promptzip-budget header; each document a plain-text `document` block, the question a text block"),
    Door("proxy `/v1/messages/batches`", ("anthropic", *_PROXY), "yes", "yes", _NO_CALL, "request",
         via_proxy(BATCHES), ("sync", "async"), "x-promptzip-budget header; a batch of one request, its params"),
    Door("proxy `/v1/files` (batch)", ("openai", *_PROXY), "yes", "yes", _NO_CALL, "request", via_proxy(FILES),
         ("sync", "async"), "x-promptzip-budget header; an OpenAI batch file of one chat line, its body"),
    Door("proxy `/v1/responses`", ("openai", *_PROXY), "yes", "yes", "yes", "request", via_proxy("/v1/responses"),
         ("sync", "async", "stream"), "x-promptzip-budget header; input as message items"),
    Door("proxy `/v1/completions`", ("openai", *_PROXY), "yes", "yes", "yes", "request", via_proxy(COMPLETIONS),
         ("sync", "async", "stream"), "the chat as one raw prompt in ChatML (a vLLM server's completions); markers "
         "kept, each turn read by its role"),
)  # fmt: skip


def _run_door(b: Bench, door: Door, warmup: bool) -> Row:
    warm = door.run(b, door.modes[0]).seconds if warmup else 0.0
    budget = b.budgets[door.scope]
    runs: dict[str, Measured] = {}
    for mode in door.modes:
        runs[mode] = door.run(b, mode)
        if runs[mode].tokens_out > budget:
            raise RuntimeError(f"{door.name} ({mode}): {runs[mode].tokens_out} tokens over the budget of {budget}")
    main = runs[door.modes[0]]
    return Row(
        door=door.name,
        packages=versions(door.packages),
        support={"sync": door.sync, "async": door.async_, "stream": door.stream},
        scope=door.scope,
        budget=budget,
        mode=door.modes[0],
        tokens_in=main.tokens_in,
        tokens_out=main.tokens_out,
        reported=main.reported,
        seconds=round(main.seconds, 3),
        warmup_seconds=round(warm, 3),
        runs={m: {"tokens_out": x.tokens_out, "seconds": round(x.seconds, 3)} for m, x in runs.items()},
        note=door.note,
    )


def run_doors(
    request: Request,
    *,
    zipper: pz.Zipper | None = None,
    doors: Sequence[Door] = DOORS,
    warmup: bool = True,
    command: str = COMMAND,
    progress: bool = False,
) -> dict[str, Any]:
    """Send ``request`` through each door and return the report; ``zipper`` replaces the ``fast`` preset in every
    door (a test passes a model-free stack)."""
    started = time.time()
    rows: list[Row] = []
    with ExitStack() as stack:
        bench = Bench(request, zipper, stack)
        for door in doors:
            rows.append(_run_door(bench, door, warmup))
            if progress:
                print(f"{door.name}: {rows[-1].tokens_in} -> {rows[-1].tokens_out}", file=sys.stderr, flush=True)
        budgets = dict(bench.budgets)
    return {
        "meta": {
            "command": command,
            "preset": PRESET if zipper is None else repr(zipper),
            "target": TARGET,
            "tokenizer": "o200k_base",
            "promptzip": metadata.version("promptzip"),
            "documents": len(request.documents),
            "question": request.question,
            "context_budget": request.budget,
            "budgets": budgets,
            "scopes": {k: v.replace("N", str(request.budget)) for k, v in SCOPES.items()},
            "warmup": warmup,
            "loadavg": [round(x, 2) for x in os.getloadavg()],
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "seconds": round(time.time() - started, 1),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        },
        "rows": [asdict(r) for r in rows],
    }


# ---------------------------------------------------------------------------------------------------- report
def _support(row: Mapping[str, Any], mode: str) -> str:
    value = row["support"][mode]
    return f"{value} ✓" if mode in row["runs"] else value


def markdown_table(report: Mapping[str, Any]) -> str:
    """The README table: one line per door (✓: the mode was run and held to the budget)."""
    lines = [
        "| integration | package (version tested) | sync | async | streaming | budget covers | tokens in → out | ms |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in report["rows"]:
        packages = ", ".join(f"{p} {v}" for p, v in row["packages"].items())
        cells = [row["door"], packages, *(_support(row, m) for m in ("sync", "async", "stream"))]
        cells += [f"{row['scope']} ≤ {row['budget']}", f"{row['tokens_in']:,} → {row['tokens_out']:,}"]
        cells.append(f"{1000 * row['seconds']:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def markdown(report: Mapping[str, Any]) -> str:
    """The report as a Markdown page: how it was run, the table, and each door's figures as it reports them."""
    meta = report["meta"]
    load = ", ".join(f"{x:.2f}" for x in meta["loadavg"])
    lines = [
        "# integrations: one RAG request through every door",
        "",
        f"Command: `{meta['command']}` · preset `{meta['preset']}`, target `{meta['target']}` (o200k) · "
        f"promptzip {meta['promptzip']} · {meta['date']} · {meta['seconds']} s · load average {load} on "
        f"{meta['cpus']} CPUs · Python {meta['python']}.",
        "",
        f"The request: the bundled State of the Union address split into {meta['documents']} documents of "
        f'consecutive paragraphs, LangChain\'s RAG-tutorial instruction and the question "{meta["question"]}". '
        f"Every door gets {meta['context_budget']} tokens for the context, in the budget it takes:",
        "",
        *[f"- `{k}`: {v} = {meta['budgets'][k]}" for k, v in meta["scopes"].items()],
        "",
        "Tokens in → out are counted on what the budget covers as it reached the model (the fake upstream's "
        "body, the mock LLM's prompt, the documents passed on). ✓: the mode was run and held to the budget. ms: "
        "one call in the first mode after an untimed warm-up call of the same request through the same door.",
        "",
        markdown_table(report),
        "| integration | reported in → out | per mode: tokens out, ms | note |",
        "| --- | --- | --- | --- |",
    ]
    for row in report["rows"]:
        reported = "{:,} → {:,}".format(*row["reported"]) if row["reported"] else "—"
        modes = "; ".join(f"{m}: {x['tokens_out']}, {1000 * x['seconds']:.0f}" for m, x in row["runs"].items())
        lines.append(f"| {row['door']} | {reported} | {modes} | {row['note']} |")
    return "\n".join(lines) + "\n"


def write_report(report: Mapping[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "integrations.json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "integrations.md").write_text(markdown(report), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("evals/results"), help="folder (default evals/results)")
    parser.add_argument("--table", type=Path, default=None, help="also write the README table to this file")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    given = list(sys.argv[1:] if argv is None else argv)
    report = run_doors(sample_request(), command=" ".join([COMMAND, *given]), progress=True)
    write_report(report, args.out)
    if args.table is not None:
        args.table.write_text(markdown_table(report), encoding="utf-8")
    print(markdown_table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
