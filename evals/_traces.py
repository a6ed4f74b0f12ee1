"""Deterministic multi-turn traces for the ``agent-trace`` suite: RAG chats, tool-use loops, a coding session.

Every trace is an OpenAI-shaped chat built from data on this machine, the same for the same inputs and seed
(``random.Random`` seeded with a string):

* ``rag``: a system prompt, then per turn a user message with 3-5 retrieved passages (the gold paragraph and
  paragraphs of the same article) and a question, and the gold answer as the assistant's reply;
* ``tool-json``: per turn the user asks, the assistant calls ``web_search`` (``tool_calls``), the tool answers with
  a search-API JSON array (id, title, url, snippet, score, published; the snippets are corpus paragraphs, one of
  them the gold one), and the assistant answers;
* ``tool-log``: the same loop with ``get_logs``: a service log of a few hundred lines (requests for the corpus's
  titles, health checks, a few warnings and errors); the answer is a field of one error line;
* ``code``: the assistant reads files of an installed Python package (``read_file``); each question names a
  function or class of the file and the answer is its ``def``/``class`` line.

The question and answer data come from a *corpus* of :class:`~promptzip.evals.records.SquadArticle` records
(:data:`CORPORA`): SQuAD v1.1 dev (``make data``), or GSM8K test problems grouped into articles of
:data:`GSM8K_GROUP` (a problem and its worked solution is a paragraph, the problem is the question, the final number
the answer). A question is used only where its answer occurs in none of the other passages of its turn and not in
the question itself, so "the answer reached the model" means "the gold passage's content did".

A :class:`Trace` lists its :class:`Turn` s; :meth:`Trace.requests` yields the requests an agent loop sends (one
per model call: a tool-use turn calls the model once to pick the tool and once to answer), the last one of each
turn measured against the turn's question.
"""

from __future__ import annotations

import ast
import datetime
import hashlib
import importlib.util
import json
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptzip.evals._trace_types import Message, Request, Trace, Turn
from promptzip.evals.metrics import answer_retained
from promptzip.evals.records import GSM8K_GROUP, gsm8k_articles

if TYPE_CHECKING:  # the data module loads only when a corpus is read
    from promptzip.evals.records import SquadArticle

__all__ = [
    "CORPORA",
    "FULL",
    "GSM8K_GROUP",
    "KINDS",
    "QUICK",
    "Corpus",
    "Request",
    "Sizes",
    "Trace",
    "Turn",
    "build_traces",
    "code_trace",
    "gsm8k_articles",
    "log_trace",
    "package_files",
    "rag_chat",
    "search_trace",
]

KINDS = ("rag", "tool-json", "tool-log", "code")
RAG_SYSTEM = (
    "You are a research assistant. Answer each question from the passages retrieved for it in this conversation. "
    "Answer with the shortest span of a passage that answers the question; if no passage answers it, say so."
)
TOOL_SYSTEM = (
    "You are an operations assistant with tools. web_search(query) searches the web and returns results as a JSON "
    "array; get_logs(service, since) returns a service's log lines; read_file(path) returns a file of the "
    "repository. Call a tool when the answer needs one, then answer briefly from what it returned."
)


# --------------------------------------------------------------------------------------------------- corpora


@dataclass(frozen=True, slots=True)
class Corpus:
    """Where questions come from: ``load`` returns the articles; ``site`` makes the search results' URLs."""

    name: str
    description: str
    load: Callable[[], list[SquadArticle]]
    site: str


def _squad() -> list[SquadArticle]:
    from promptzip.evals.data import load_squad_dev

    return load_squad_dev()


def _gsm8k() -> list[SquadArticle]:
    from promptzip.evals.data import load_gsm8k_test

    return gsm8k_articles(load_gsm8k_test())


CORPORA: dict[str, Corpus] = {
    "squad": Corpus("squad", "SQuAD v1.1 dev (bigbench copy, `make data`)", _squad, "en.wikipedia.org/wiki"),
    "gsm8k": Corpus("gsm8k", f"GSM8K test, {GSM8K_GROUP} problems per article", _gsm8k, "gsm8k.example.org/test"),
}


# ------------------------------------------------------------------------------------------------- helpers


def _rng(*parts: object) -> random.Random:
    return random.Random(":".join(map(str, parts)))


def _hex(*parts: object, n: int = 8) -> str:
    return hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:n]


def _call(name: str, arguments: Mapping[str, Any], call_id: str) -> tuple[Message, Message]:
    """The assistant's tool call and the start of the tool's answer (its content filled in by the caller)."""
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}
    return {"role": "assistant", "content": None, "tool_calls": [call]}, {"role": "tool", "tool_call_id": call_id}


def _pick(
    articles: Sequence[SquadArticle], rng: random.Random, used: set[str], others: int, article: int | None = None
) -> tuple[int, Any, list[int]] | None:
    """A question not in ``used`` (an article index, the question, distractor paragraph indices): its answer is in
    its gold paragraph and in none of ``others`` distractor paragraphs of the same article, nor in the question."""
    for _ in range(200):
        ai = article if article is not None else rng.randrange(len(articles))
        a = articles[ai]
        if not a.questions or len(a.paragraphs) < others + 1:
            continue
        q = a.questions[rng.randrange(len(a.questions))]
        gold = a.paragraphs[q.paragraph_index].text
        if q.id in used or not answer_retained(gold, q.answers) or answer_retained(q.question, q.answers):
            continue
        rest = [i for i in range(len(a.paragraphs)) if i != q.paragraph_index]
        picked = rng.sample(rest, others)
        if any(answer_retained(a.paragraphs[i].text, q.answers) for i in picked):
            continue
        used.add(q.id)
        return ai, q, picked
    return None


def _slug(title: str) -> str:
    return re.sub(r"\W+", "_", title).strip("_")


def _title(article: SquadArticle) -> str:
    return article.title.replace("_", " ")


# ----------------------------------------------------------------------------------------------------- RAG


def rag_chat(articles: Sequence[SquadArticle], *, article: int, turns: int, seed: object, name: str = "rag") -> Trace:
    """A RAG chat about ``articles[article]``: each user turn 3-5 of its paragraphs (the gold one among them) and a
    question; the assistant replies with the gold answer."""
    rng = _rng("rag", seed, article)
    a = articles[article]
    used: set[str] = set()
    out: list[Turn] = []
    for _ in range(turns):
        found = _pick(articles, rng, used, rng.randint(2, 4), article=article)
        if found is None:
            break
        _, q, distractors = found
        passages = [q.paragraph_index, *distractors]
        rng.shuffle(passages)
        body = "\n\n".join(f"Passage {k} ({_title(a)}):\n{a.paragraphs[p].text}" for k, p in enumerate(passages, 1))
        user = {"role": "user", "content": f"Retrieved passages:\n\n{body}\n\nQuestion: {q.question}"}
        out.append(Turn(q.question, q.answers, (user,), {"role": "assistant", "content": q.answers[0]}, (1,)))
    return Trace(name, "rag", f"RAG chat about '{_title(a)}', {len(out)} turns", RAG_SYSTEM, tuple(out))


# --------------------------------------------------------------------------------------------------- search


def _result(art: SquadArticle, p: int, score: float, site: str, rng: random.Random) -> dict[str, Any]:
    return {
        "id": f"doc_{_hex(art.title, p, n=12)}",
        "title": f"{_title(art)} (part {p + 1})",
        "url": f"https://{site}/{_slug(art.title)}#p{p + 1}",
        "snippet": art.paragraphs[p].text,
        "score": score,
        "published": f"20{rng.randint(10, 24)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
    }


def search_trace(
    articles: Sequence[SquadArticle], *, turns: int, items: int, seed: object, site: str, name: str = "tool-json"
) -> Trace:
    """An agent loop over ``web_search``: each result list holds ``items`` corpus paragraphs, the gold one among
    them (up to half from its article, the rest from others), sorted by score as a search API returns them."""
    rng = _rng("search", seed)
    used: set[str] = set()
    out: list[Turn] = []
    for t in range(turns):
        found = _pick(articles, rng, used, 0)
        if found is None:
            break
        ai, q, _ = found
        gold = (ai, q.paragraph_index)
        own = [(ai, i) for i in range(len(articles[ai].paragraphs)) if i != q.paragraph_index]
        pool = rng.sample(own, min(len(own), items // 2))
        while len(pool) < items - 1:
            other = rng.randrange(len(articles))
            pick = (other, rng.randrange(len(articles[other].paragraphs)))
            if pick not in pool and pick != gold:
                pool.append(pick)
        pool = [x for x in pool if not answer_retained(articles[x[0]].paragraphs[x[1]].text, q.answers)]
        pool.insert(rng.randrange(len(pool) + 1), gold)
        scores = sorted((round(rng.uniform(0.35, 0.98), 4) for _ in pool), reverse=True)
        results = [_result(articles[x], p, sc, site, rng) for (x, p), sc in zip(pool, scores, strict=True)]
        call, tool = _call("web_search", {"query": q.question}, f"call_{_hex('search', seed, t, n=16)}")
        tool["content"] = json.dumps(results, ensure_ascii=False, indent=2)
        user = {"role": "user", "content": q.question}
        reply = {"role": "assistant", "content": q.answers[0]}
        out.append(Turn(q.question, q.answers, (user, call, tool), reply, (1, 3)))
    description = f"web_search loop, {items} results per call, {len(out)} turns"
    return Trace(name, "tool-json", description, TOOL_SYSTEM, tuple(out))


# ------------------------------------------------------------------------------------------------------ logs

SERVICES = ("checkout", "search", "auth", "payments", "inventory", "notifications", "recommendations", "gateway")
# (the error after "req=<id> ", the question about it, how its value is drawn: a pattern with {w} one of the words
# and {n} a number 10-99). A log holds at most one error of each kind, so the value answers the question alone.
ERRORS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("connection to {v} timed out after 30000 ms", "Which host did a connection time out to?",
     "db-{w}-{n}.internal", ("orders", "users", "carts", "ledger")),
    ("unhandled KeyError: '{v}' while rendering the response", "Which key raised the unhandled KeyError?",
     "{w}_ref{n}", ("shipping", "billing", "locale", "tenant")),
    ("disk quota exceeded on volume {v}", "Which volume ran out of disk quota?",
     "vol-{w}{n}", ("0a3f", "7bc2", "d41e", "9f08")),
    ("TLS certificate for {v} expired; upstream handshake refused", "For which domain had the TLS certificate expired?",
     "{w}{n}.partner-cloud.net", ("api", "cdn", "sso", "img")),
    ("deadlock detected on table {v}; transaction rolled back", "On which database table was a deadlock detected?",
     "{w}_lines_v{n}", ("order", "invoice", "session", "stock")),
    ("worker killed by the OOM killer (rss {v} MiB)", "What was the RSS in MiB of the worker the OOM killer killed?",
     "{n}{w}", ("13", "37", "59", "71")),
)  # fmt: skip
_EPOCH = datetime.datetime(2026, 3, 12, tzinfo=datetime.UTC)


def _value(kind: int, rng: random.Random) -> str:
    _, _, pattern, words = ERRORS[kind]
    return pattern.format(w=rng.choice(words), n=rng.randint(10, 99))


def _log(articles: Sequence[SquadArticle], service: str, lines: int, rng: random.Random) -> tuple[str, str, str]:
    """A service log of ``lines`` lines (requests for corpus titles, cache lines, a health check every 25 lines,
    3 warnings, 3 errors of different kinds); a question about the first error's kind and its answer."""
    kinds = rng.sample(range(len(ERRORS)), 3)
    answer = _value(kinds[0], rng)
    at = sorted(rng.sample(range(10, lines - 5), 6))
    special = {n: kinds[k] if k < 3 else -1 for k, n in enumerate(at)}
    clock = rng.randint(0, 20_000)
    out: list[str] = []
    for n in range(lines):
        clock += rng.randint(80, 2500)
        stamp = (_EPOCH + datetime.timedelta(milliseconds=clock)).isoformat(timespec="milliseconds")[:-6] + "Z"
        head = f"{stamp} {{}} {service} req={_hex(service, n, rng.random())}"
        a = articles[rng.randrange(len(articles))]
        slug = _slug(a.title)
        path = f"/api/v1/articles/{slug}?part={rng.randint(1, len(a.paragraphs))}"
        kind = special.get(n)
        if kind is not None and kind >= 0:
            value = answer if kind == kinds[0] else _value(kind, rng)
            out.append(head.format("ERROR") + " " + ERRORS[kind][0].format(v=value))
        elif kind is not None:
            out.append(head.format("WARN ") + f" slow response GET {path} 200 in {rng.randint(2000, 9000)}ms")
        elif n % 25 == 7:
            out.append(f"{stamp} INFO  {service} health check ok (db, cache, queue)")
        elif rng.random() < 0.25:
            out.append(head.format("DEBUG") + f" cache {rng.choice(('hit', 'miss'))} key=article:{slug}")
        else:
            status = rng.choice((200, 200, 200, 200, 304, 404))
            out.append(head.format("INFO ") + f" GET {path} {status} in {rng.randint(3, 180)}ms")
    return "\n".join(out), f"In the {service} logs: {ERRORS[kinds[0]][1]}", answer


def log_trace(
    articles: Sequence[SquadArticle], *, turns: int, lines: int, seed: object, name: str = "tool-log"
) -> Trace:
    """An agent loop over ``get_logs``: each turn a different service's log, a question about one error line."""
    rng = _rng("logs", seed)
    out: list[Turn] = []
    for t in range(turns):
        service = SERVICES[t % len(SERVICES)]
        text, question, answer = _log(articles, service, lines, rng)
        while answer_retained(text.replace(answer, ""), [answer]):  # drawn twice by chance: not a clean question
            text, question, answer = _log(articles, service, lines, rng)
        call, tool = _call("get_logs", {"service": service, "since": "1h"}, f"call_{_hex('logs', seed, t, n=16)}")
        tool["content"] = text
        reply = {"role": "assistant", "content": answer}
        out.append(Turn(question, (answer,), ({"role": "user", "content": question}, call, tool), reply, (1, 3)))
    return Trace(name, "tool-log", f"get_logs loop, {lines} lines per log, {len(out)} turns", TOOL_SYSTEM, tuple(out))


# ------------------------------------------------------------------------------------------------------ code


def _definitions(source: str) -> list[tuple[str, str]]:
    """(qualified name, stripped def/class line) of each definition whose line occurs once in ``source``."""
    lines = source.splitlines()
    found: list[tuple[str, str]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                line = lines[child.lineno - 1].strip()
                if source.count(line) == 1 and len(line) > 12:
                    found.append((prefix + child.name, line))
                visit(child, f"{prefix}{child.name}.")

    visit(ast.parse(source), "")
    return found


def package_files(package: str, min_chars: int = 2000, max_chars: int | None = None) -> list[tuple[str, str]]:
    """(path relative to the site folder, text) of the package's ``.py`` files of ``min_chars`` to ``max_chars``
    characters that define something, sorted by path."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ValueError(f"package {package!r} is not installed")
    root = Path(spec.origin).parent
    files = sorted(root.rglob("*.py"))
    texts = [(str(f.relative_to(root.parent)), f.read_text(encoding="utf-8")) for f in files]
    return [(p, t) for p, t in texts if min_chars <= len(t) <= (max_chars or len(t)) and _definitions(t)]


def code_trace(
    package: str = "httpx", *, turns: int, seed: object, max_chars: int | None = None, name: str = "code"
) -> Trace:
    """A coding session: each turn the user names a definition of one of the package's files, the assistant reads
    the file, the answer is the definition's line. Files in a seeded order, one per turn."""
    rng = _rng("code", seed)
    files = package_files(package, max_chars=max_chars)
    rng.shuffle(files)
    out: list[Turn] = []
    for t, (path, text) in enumerate(files[:turns]):
        qualname, line = rng.choice(_definitions(text))
        kind = "class" if line.startswith("class ") else "function"
        question = f"Open {path} and show me how the {kind} `{qualname}` is declared (its signature line)."
        call, tool = _call("read_file", {"path": path}, f"call_{_hex('code', seed, t, n=16)}")
        tool["content"] = text
        reply = {"role": "assistant", "content": f"It is declared as:\n{line}"}
        out.append(Turn(question, (line,), ({"role": "user", "content": question}, call, tool), reply, (1, 3)))
    return Trace(
        name, "code", f"read_file over the installed {package} package, {len(out)} turns", TOOL_SYSTEM, tuple(out)
    )


# ----------------------------------------------------------------------------------------------------- suite


@dataclass(frozen=True, slots=True)
class Sizes:
    """How big the suite's traces are: turns of each RAG chat, turns of the tool loops, search results per call,
    log lines, and the largest source file the coding session reads (None: any)."""

    rag_turns: tuple[int, ...]
    turns: int
    items: int
    lines: int
    max_chars: int | None


FULL = Sizes(rag_turns=(10, 16, 22, 30), turns=12, items=20, lines=200, max_chars=None)
QUICK = Sizes(rag_turns=(3,), turns=3, items=6, lines=60, max_chars=9000)


def build_traces(articles: Sequence[SquadArticle], *, site: str, sizes: Sizes = FULL, seed: int = 0) -> list[Trace]:
    """The suite's traces: RAG chats about distinct articles, a web_search loop, a get_logs loop and a coding
    session over httpx."""
    rng = _rng("suite", seed)
    longest = max(sizes.rag_turns)
    fits = [i for i, a in enumerate(articles) if len(a.paragraphs) >= 5 and len(a.questions) >= 2 * longest]
    chosen = rng.sample(fits, len(sizes.rag_turns))
    traces = [
        rag_chat(articles, article=a, turns=n, seed=seed, name=f"rag-{k}")
        for k, (a, n) in enumerate(zip(chosen, sizes.rag_turns, strict=True), 1)
    ]
    traces.append(search_trace(articles, turns=sizes.turns, items=sizes.items, seed=seed, site=site))
    traces.append(log_trace(articles, turns=sizes.turns, lines=sizes.lines, seed=seed))
    traces.append(code_trace("httpx", turns=sizes.turns, seed=seed, max_chars=sizes.max_chars))
    return traces
