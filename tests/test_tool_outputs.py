"""Tool outputs reduced by their structure: JSON arrays, logs, HTML pages and code, each against a realistic sample,
counted in the real gpt-4o tokenizer; plus the dispatch, the registry and a property test that nothing raises."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import promptzip as pz
import promptzip.compressors.tool_outputs as tool_outputs
from promptzip._errors import ConfigError, InputError
from promptzip._registry import registries
from promptzip.compressors.extractive import ExtractiveCompressor
from promptzip.compressors.tool_code import CodeReducer
from promptzip.compressors.tool_html import HtmlReducer
from promptzip.compressors.tool_json import JsonReducer
from promptzip.compressors.tool_logs import LogReducer
from promptzip.compressors.tool_outputs import Reduced, detect_kind, lexical_relevance, reduce_structured, split_lines
from promptzip.retrievers.sparse import BM25Scorer

TOK = pz.get_tokenizer("gpt-4o")
ID = "pz-3f2a9c0d1e2b4a5c"
MARKER = re.compile(r"\[promptzip: [^\]]*\]")


def reduce(text: str, target: int, query: str | None = None, **kw: Any) -> Reduced:
    out = reduce_structured(text, query=query, target_tokens=target, count=TOK.count, expand_id=ID, **kw)
    assert out is not None
    assert out.tokens == TOK.count(out.text) <= target
    return out


# -- JSON --------------------------------------------------------------------------------------------------------------
PRODUCTS = ["Aurora Lamp", "Basalt Mug", "Cedar Chair", "Delta Kettle", "Ember Rug", "Fjord Jacket", "Garnet Vase"]


def search_results(n: int = 60) -> dict[str, Any]:
    """The shape of a product-search API answer: results with ids, names, prices, dates and nested fields."""
    day0 = date(2024, 1, 2)
    results = [
        {
            "id": 1000 + i,
            "name": f"{PRODUCTS[i % 7]} {'Mk' if i % 2 else 'Pro'} {i}",
            "price": round(4.5 + (i * 37 % 100) * 0.95, 2),
            "created": (day0 + timedelta(days=i * 3)).isoformat(),
            "seller": {"id": f"s-{i % 9}", "rating": 3 + i % 3},
            "tags": ["home", "sale"][: i % 3],
            "in_stock": i % 4 != 0,
        }
        for i in range(n)
    ]
    return {"query": "home goods", "results": results, "total": n, "page": 1, "next_cursor": "c2VhcmNo"}


def summary_of(marker: str) -> dict[str, str]:
    parts = marker.removeprefix("[promptzip: ").removesuffix("]").split("; ")
    return {p.split(" ", 1)[0]: p.split(" ", 1)[1] for p in parts[1:]} | {"count": parts[0]}


def test_json_search_results_keep_the_named_items_and_summarize_the_rest_faithfully() -> None:
    doc = search_results()
    text = json.dumps(doc, indent=2)
    assert TOK.count(text) > 4000
    out = reduce(text, 700, query="compare Cedar Chair Mk 23 with Ember Rug Pro 46")
    assert out.kind == "json"
    assert out.units_in == 60
    assert 2 <= out.units_kept < 60
    parsed = json.loads(out.text)
    assert list(parsed) == list(doc)  # every key, in order
    assert {k: v for k, v in parsed.items() if k != "results"} == {k: v for k, v in doc.items() if k != "results"}
    *kept, note = parsed["results"]
    assert [r["name"] for r in kept if r["id"] in (1023, 1046)] == ["Cedar Chair Mk 23", "Ember Rug Pro 46"]
    assert all(r in doc["results"] for r in kept)  # whole items, unchanged
    assert [r["id"] for r in kept] == sorted(r["id"] for r in kept)  # in their original order
    assert all(list(r) == list(doc["results"][0]) for r in kept)
    # the summary says exactly what was dropped
    dropped = [r for r in doc["results"] if r not in kept]
    s = summary_of(note)
    assert s["count"] == f"{len(dropped)} of 60 items omitted"
    assert s["fields"] == "id, name, price, created, seller, tags, in_stock"
    assert s["id"] == f"{min(r['id'] for r in dropped)}–{max(r['id'] for r in dropped)}"
    assert s["price"] == f"{min(r['price'] for r in dropped)!r}–{max(r['price'] for r in dropped)!r}"
    assert s["created"] == f"{min(r['created'] for r in dropped)}–{max(r['created'] for r in dropped)}"
    assert s["expand"] == ID
    assert "name" not in s
    assert "seller" not in s
    assert text.startswith("{\n  ")
    assert out.text == json.dumps(parsed, indent=2, ensure_ascii=False)


def test_when_no_item_fits_whole_the_most_relevant_one_keeps_its_relevant_sentences() -> None:
    filler = " ".join(f"Sentence {k} of result {{i}} says nothing in particular about the weather." for k in range(6))
    results = [
        {
            "id": i,
            "title": f"Result {i}",
            "snippet": filler.format(i=i) + (" The harbour of Bergen froze in 1893." if i == 7 else ""),
        }
        for i in range(12)
    ]
    text = json.dumps(results, indent=2)
    whole = TOK.count(json.dumps(results[7], indent=2))
    out = reduce(text, whole - 20, query="In which year did the harbour of Bergen freeze?")
    found = json.loads(out.text)
    (item,) = [x for x in found if isinstance(x, dict)]
    assert (item["id"], item["title"]) == (7, "Result 7")  # every other field as it was
    assert "The harbour of Bergen froze in 1893." in item["snippet"]
    assert re.search(r"\[…\d+ of 7 sentences omitted\]$", item["snippet"])
    assert "11 of 12 items omitted" in found[-1]
    # no query, nothing to choose sentences by: the summary alone, as before
    assert not any(isinstance(x, dict) for x in json.loads(reduce(text, whole - 20).text))
    # the sentences are ranked by the caller's relevance (the preset's scorer) when there is one, as the items are
    asked = "Which sentence of result 7 says nothing in particular?"
    assert "1893" not in json.loads(reduce(text, whole - 20, query=asked).text)[0]["snippet"]

    def knows(texts: Sequence[str], query: str) -> list[float]:
        return [float("1893" in t) for t in texts]

    (item, _) = json.loads(reduce(text, whole - 20, query=asked, relevance=knows).text)
    assert "The harbour of Bergen froze in 1893." in item["snippet"]


def test_the_most_relevant_item_shortened_beats_short_irrelevant_ones() -> None:
    # Search results of uneven length: the one that answers is long, the others are short enough to fit whole; a
    # greedy fill by relevance would skip the long one and send short results that do not answer.
    filler = " ".join(f"Sentence {k} of the long result is about harbour traffic in general." for k in range(8))
    results = [
        {
            "id": i,
            "title": f"Result {i}",
            "snippet": filler + " The harbour of Bergen froze in 1893." if i == 7 else f"Result {i} is about harbours.",
        }
        for i in range(12)
    ]
    text = json.dumps(results, indent=2)
    query = "In which year did the harbour of Bergen freeze?"
    whole = TOK.count(json.dumps(results[7], indent=2))
    out = reduce(text, whole - 10, query=query)
    found = json.loads(out.text)
    kept = [x for x in found if isinstance(x, dict)]
    (item,) = [x for x in kept if x["id"] == 7]
    assert item["title"] == "Result 7"
    assert "The harbour of Bergen froze in 1893." in item["snippet"]
    assert re.search(r"\[…\d+ of 9 sentences omitted\]$", item["snippet"])
    # what room is left goes to whole items, unchanged, in their original order
    others = [x for x in kept if x["id"] != 7]
    assert all(x in results for x in others)
    assert [x["id"] for x in kept] == sorted(x["id"] for x in kept)
    assert out.units_kept == len(kept)
    assert f"{12 - len(kept)} of 12 items omitted" in found[-1]
    # at the tightest budget that holds the answering sentence, the summary has given up its field names for it
    first = next(b for b in range(40, whole) if "1893" in reduce(text, b, query=query).text)
    note = json.loads(reduce(text, first, query=query).text)[-1]
    assert "fields" not in note
    assert "11 of 12 items omitted" in note


def test_json_styles_top_level_arrays_and_fitting_arrays() -> None:
    items = search_results(40)["results"]
    compact = json.dumps(items, separators=(",", ":"), ensure_ascii=False) + "\n"
    out = reduce(compact, 300, query="Garnet Vase Pro 20")
    assert out.text == json.dumps(json.loads(out.text), separators=(",", ":"), ensure_ascii=False) + "\n"
    assert any(r["id"] == 1020 for r in json.loads(out.text)[:-1])
    tabs = json.dumps({"data": {"rows": items}}, indent="\t")
    out = reduce(tabs, 300)
    assert out.text == json.dumps(json.loads(out.text), indent="\t", ensure_ascii=False)
    # without a query the first items are kept
    assert [r["id"] for r in json.loads(out.text)["data"]["rows"][:-1]] == [1000 + i for i in range(out.units_kept)]
    # arrays of fewer than 4 items are not cut, and a text that fits is left alone
    small = json.dumps({"results": items[:3], "blob": "x " * 3000})
    assert (
        JsonReducer().reduce(small, query=None, target_tokens=50, count=TOK.count, relevance=None, expand_id=ID) is None
    )
    assert reduce_structured(compact, query=None, target_tokens=10**6, count=TOK.count, expand_id=ID) is None


def test_json_lines_keep_lines_byte_for_byte() -> None:
    rows = search_results(50)["results"]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    out = reduce(text, 400, query="Delta Kettle Mk 45")
    lines = out.text.splitlines()
    assert all(line in text.splitlines() for line in lines[:-1])
    assert any('"id": 1045' in line for line in lines[:-1])
    note = json.loads(lines[-1])
    assert note.startswith(f"[promptzip: {50 - out.units_kept} of 50 items omitted")
    assert ID in note


def test_a_byte_order_mark_nulls_or_mixed_items_do_not_stop_a_json_cut() -> None:
    rows = [{"id": i, "name": f"row {i}", "note": "nothing to report here"} for i in range(400)]
    query = "Which row has id 137?"
    # a BOM before the JSON (JSON parsers skip it): cut as JSON, the BOM kept where it was
    out = reduce("\ufeff" + json.dumps(rows), 150, query=query)
    assert out.kind == "json"
    assert out.text.startswith("\ufeff[")
    assert {"id": 137, "name": "row 137", "note": "nothing to report here"} in json.loads(out.text[1:])
    out = reduce("\ufeff" + "\n".join(json.dumps(r) for r in rows), 150, query=query)  # JSON Lines
    assert json.dumps(rows[137]) in out.text.split("\n")
    # a null among the records, or a list of mixed items: still a list whose items can be cut
    for items in ([*rows[:200], None, *rows[200:]], [*rows[:100], "a string", 7, None, *rows[100:200]]):
        out = reduce(json.dumps(items), 150, query=query)
        *kept, note = json.loads(out.text)
        assert {"id": 137, "name": "row 137", "note": "nothing to report here"} in kept
        assert note.startswith(f"[promptzip: {len(items) - len(kept)} of {len(items)} items omitted")
    # and through a chat, where it was sent as "…"
    chat = [
        {"role": "user", "content": query},
        {
            "role": "assistant",
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c", "content": "\ufeff" + json.dumps(rows)},
    ]
    zipper = pz.Zipper(ExtractiveCompressor(BM25Scorer(), min_relevance=None), target="gpt-4o")
    sent = zipper.compress_messages(chat, budget=200).messages[2]["content"]
    assert sent.startswith("\ufeff[")
    assert {"id": 137, "name": "row 137", "note": "nothing to report here"} in json.loads(sent[1:])


def test_malformed_json_is_not_json_and_nothing_raises() -> None:
    broken = json.dumps(search_results())[:-40]  # cut off mid-way
    reducer = JsonReducer()
    for text in (broken, '{"a": [1, 2, 3, 4', "[" * 5000, '{"a": 1, "a": 2}', "{" + "}" * 10, "NaN garbage"):
        assert reducer.reduce(text, query="x", target_tokens=5, count=TOK.count, relevance=None, expand_id=ID) is None
        reduce_structured(text, query="x", target_tokens=5, count=TOK.count, expand_id=ID)  # may be None, no raise
    assert detect_kind(broken) != "json"


def test_a_5mb_json_tool_output_is_reduced() -> None:
    items = [
        {"id": i, "sku": f"SKU-{i:06d}", "title": f"Item {i} of the warehouse catalogue", "price": i * 37 % 1000 / 10,
         "updated_at": f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}T10:00:00Z", "bins": ["a", "b", "c"][: i % 4]}
        for i in range(30_000)
    ]  # fmt: skip
    text = json.dumps({"data": items, "next": None})
    assert len(text) > 4_500_000
    out = reduce(text, 2000, query="where is SKU-012345")
    parsed = json.loads(out.text)
    assert {"id": 12345}.items() <= next(r for r in parsed["data"][:-1] if r["id"] == 12345).items()
    assert parsed["data"][-1].startswith(f"[promptzip: {30_000 - out.units_kept} of 30000 items omitted")
    assert "updated_at 2024-01-01T10:00:00Z–2024-12-28T10:00:00Z" in parsed["data"][-1]


def test_tiny_target_gives_the_minimal_skeleton() -> None:
    text = json.dumps(search_results(), indent=2)
    out = reduce_structured(text, query="Cedar", target_tokens=5, count=TOK.count, expand_id=ID)
    assert out is not None
    assert out.units_kept == 0
    parsed = json.loads(out.text)
    assert parsed["results"] == [f"[promptzip: 60 of 60 items omitted; expand {ID}]"]
    assert parsed["total"] == 60


# -- logs --------------------------------------------------------------------------------------------------------------
TEMPLATES = [
    "INFO  api.request method=GET path=/v1/orders/{n} status=200 duration_ms={d}",
    "DEBUG cache.lookup key=order:{n} hit={hit}",
    "INFO  worker.job id=job-{n} queue=emails state=done",
    "DEBUG db.query table=orders rows={d} elapsed_ms={n}",
    "INFO  auth.session user=u{n} scope=read refreshed=true",
]


def service_log() -> tuple[str, list[str]]:
    """500 lines of a web service: varied info/debug lines, a run of 40 health checks, 1 warning, 3 errors (one
    with a Python traceback)."""
    lines: list[str] = []
    for i in range(500):
        ts = f"2024-05-01T12:{i // 60:02d}:{i % 60:02d}.{i * 7 % 1000:03d}Z"
        if i == 120:
            lines.append(f"{ts} ERROR payment.charge order=4521 declined code=51 reason=insufficient_funds")
        elif i == 300:
            lines += [
                f"{ts} ERROR db.pool exhausted after 30000ms",
                "Traceback (most recent call last):",
                '  File "/app/db.py", line 88, in acquire',
                "    conn = self._pool.get(timeout=30)",
                "TimeoutError: pool exhausted",
            ]
        elif i == 410:
            lines.append(f"{ts} ERROR mailer.send smtp timeout host=mx1.example.net")
        elif i == 450:
            lines.append(f"{ts} WARN  inventory.client retrying attempt=3")
        elif 200 <= i < 240:
            lines.append(f"{ts} INFO  health.check ok latency_ms={i % 7} req=0x{i * 7919:08x}")
        else:
            lines.append(ts + " " + TEMPLATES[i % 5].format(n=i * 13, d=i % 50, hit=i % 2 == 0))
    return "\n".join(lines) + "\n", lines


def test_log_keeps_errors_with_context_folds_repeats_and_marks_the_cuts() -> None:
    text, lines = service_log()
    assert len(lines) == 504
    out = reduce(text, 900, query="why was order 4521 declined")
    assert out.kind == "log"
    assert out.units_in == 504
    kept = out.text.split("\n")
    assert kept[-1] == ""
    kept.pop()
    for i, line in enumerate(lines):
        if " ERROR " in line or "Traceback" in line or "TimeoutError" in line or " WARN " in line:
            assert line in kept
            for j in (i - 2, i - 1, i + 1, i + 2):  # context lines, byte for byte
                if "health.check" not in lines[j]:
                    assert lines[j] in kept
    assert kept[0] == lines[0]
    assert kept[-1] == lines[-1]
    # the 40 health checks (their numbers differ) are one line with their count, when they are kept
    assert not any("health.check" in k for k in kept)
    health = reduce(text, 900, query="health.check latency").text.split("\n")
    assert [k for k in health if "health.check" in k] == [lines[200] + "  [promptzip: 40 similar lines]"]
    # every line is an input line, a folded one, or a marker; the markers account for every line
    assert out.text.count(ID) == 1
    assert ID in next(k for k in kept if "[promptzip:" in k)
    shown = 0
    for k in kept:
        m = re.fullmatch(rf"\[promptzip: (\d+) lines? omitted(; expand {ID})?\]", k)
        if m:
            shown += int(m.group(1))
        elif k.endswith(("times]", "similar lines]")):
            shown += int(re.search(r"repeated (\d+) times|(\d+) similar lines", k).group(1))  # type: ignore[union-attr]
        else:
            assert k in lines
            shown += 1
    assert shown == 504
    # a log is reduced line by line, however small the target
    tiny = LogReducer().reduce(text, query=None, target_tokens=10, count=TOK.count, relevance=None, expand_id=ID)
    assert tiny is not None
    assert tiny.text == f"[promptzip: 504 lines omitted; expand {ID}]\n"


def test_a_log_line_the_query_asks_about_is_not_folded_with_lines_like_it() -> None:
    # 400 requests whose lines differ only in their numbers fold, but not the one asked about; identical lines say
    # they are repeated, lines that differ in their numbers say they are similar (the expand id gives them back)
    lines = [f"2024-05-01 12:{i // 60:02d}:{i % 60:02d} INFO request id={i} status=200" for i in range(400)]
    out = reduce("\n".join(lines), 300, query="What happened to request id=137?")
    assert out.text.split("\n") == [
        f"{lines[0]}  [promptzip: 137 similar lines; expand {ID}]",
        lines[137],
        f"{lines[138]}  [promptzip: 262 similar lines]",
    ]
    # words most of the run holds (request, id) do not split it; without a query it is one fold
    assert reduce("\n".join(lines), 300, query="list the requests by id").text.count("\n") == 0
    assert reduce("\n".join(lines), 300).text == f"{lines[0]}  [promptzip: 400 similar lines; expand {ID}]"
    same = [f"{lines[0]}"] * 50 + ["2024-05-01 12:09:00 ERROR request id=401 failed"]
    assert reduce("\n".join(same), 100).text.split("\n") == [
        f"{lines[0]}  [promptzip: repeated 50 times; expand {ID}]",
        same[-1],
    ]


# -- HTML --------------------------------------------------------------------------------------------------------------
TOPICS = ["Installation", "Configuration", "Rate limits", "Authentication", "Webhooks", "Pagination", "Errors",
          "Billing", "Regions", "Quotas", "Caching", "Retries"]  # fmt: skip


def docs_page() -> str:
    sections = "".join(
        f'\n<section id="s{i}"><h2>{t}</h2>\n<p>The {t.lower()} chapter describes how   the Acme API\n'
        f"handles {t.lower()} for every client &amp; region; see item {i} of the guide.</p>\n"
        f"<ul><li>Default for {t.lower()}: {i * 10}</li><li>Configurable per project</li></ul></section>"
        for i, t in enumerate(TOPICS)
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Acme API Guide</title>
<style>body {{ font-family: sans-serif; }}</style><link rel="stylesheet" href="/site.css">
<script>window.dataLayer = []; function gtag(){{dataLayer.push(arguments);}}</script></head>
<body><nav><ul><li><a href="/">Home</a></li><li><a href="/docs">Docs</a></li></ul></nav>
<main><h1>Acme developer documentation</h1>{sections}
<h3>Limits by plan</h3><table><tr><th>Plan</th><th>Requests</th></tr><tr><td>Free</td><td>60/min</td></tr></table>
<pre>curl -H "Authorization: Bearer $KEY" \\
     https://api.acme.test/v1/items</pre></main>
<footer><p>&copy; 2024 Acme</p></footer><script src="/app.js"></script><svg><text>icon</text></svg></body></html>"""


def test_html_becomes_text_with_headings() -> None:
    page = docs_page()
    out = reduce(page, 1000)
    assert out.units_kept == out.units_in
    text = out.text
    assert "<" not in text.replace("<host>", "")
    assert "dataLayer" not in text
    assert "font-family" not in text
    assert "icon" not in text
    assert "site.css" not in text
    assert text.startswith("# Acme API Guide\n\n")  # the title
    assert "\n# Acme developer documentation\n" in text
    assert "\n## Rate limits\n" in text
    assert "handles rate limits for every client & region; see item 2 of the guide." in text  # whitespace collapsed
    assert "- Default for rate limits: 20\n- Configurable per project" in text
    assert "Plan | Requests\n\nFree | 60/min" in text
    assert '```\ncurl -H "Authorization: Bearer $KEY" \\\n     https://api.acme.test/v1/items\n```' in text
    assert "- Home\n- Docs" in text
    assert "© 2024 Acme" in text


def test_html_over_target_keeps_headings_and_relevant_blocks() -> None:
    page = docs_page()
    out = reduce(page, 260, query="what is the default for rate limits?")
    for t in TOPICS:
        assert f"## {t}\n" in out.text
    assert "- Default for rate limits: 20" in out.text
    assert "The rate limits chapter describes" in out.text
    assert "Webhooks chapter" not in out.text
    m = re.search(rf"\[promptzip: (\d+) of (\d+) blocks omitted; expand {ID}\]$", out.text)
    assert m
    assert int(m.group(2)) == out.units_in
    assert int(m.group(1)) == out.units_in - out.units_kept


# -- code --------------------------------------------------------------------------------------------------------------
URLS = Path(__import__("httpx").__file__).parent / "_urls.py"


def is_subsequence(kept: Sequence[str], lines: Sequence[str]) -> bool:
    it = iter(lines)
    return all(any(k == line for line in it) for k in kept)


def check_python(out: Reduced, source: str) -> list[str]:
    ast.parse(out.text)
    lines = split_lines(source)
    kept = []
    for line in split_lines(out.text):
        if "[promptzip:" in line:
            assert re.fullmatch(rf"[ \t]*\.\.\.  # \[promptzip: \d+ lines? omitted(; expand {ID})?\]\r?\n?", line)
        else:
            kept.append(line)
    assert is_subsequence(kept, lines)  # input lines, in order, never re-indented
    return kept


def test_python_module_keeps_signatures_and_the_relevant_bodies() -> None:
    source = URLS.read_text()
    out = reduce(source, 2600, query="how does copy_with change the URL?")
    assert out.kind == "code"
    assert out.units_in > 40
    kept = check_python(out, source)
    text = out.text
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            assert split_lines(source)[node.lineno - 1] in kept  # every signature
    for line in ("import idna\n", "from urllib.parse import parse_qs, unquote, urlencode\n"):
        assert line in kept
    start = source.index("    def copy_with(")
    body = source[start : source.index("\n    def ", start + 10)]
    assert body in text  # the relevant function, whole
    assert "Copy this URL, returning a new URL with some components altered." in text
    assert text.count(f"expand {ID}") == 1
    assert text.count("lines omitted]") > 10


TRICKY = '''"""Module docstring.

More about the module.
"""
import os
from typing import (
    Any,
)

X = 1; Y = 2


def one_liner(a): return a


@decorator(
    arg=1,
)
async def fetch(url: str,
                retries: int = 3) -> bytes:
    """
    Fetch a URL with retries.

    Details nobody needs.
    """
    for attempt in range(retries):
        try:
            return await get(url)
        except OSError:
            continue
    raise RuntimeError(url)


class Outer:
    """Outer docstring that ends on a text line
    like this."""
    attr: int = 3

    class Inner:
        def method(self):
            return 1 + \\
                2

    def method(self):
        """Just a docstring.

        And more.
        """

    def docstring_and_code(self):
        """doc"""; return 1


class Tabbed:
\tdef tabbed(self):
\t\t"""Tabbed docstring.
\t\t"""
\t\treturn [
\t\t\t1,
\t\t]


if __name__ == "__main__":
    print(fetch("x"))
'''


def test_python_tricky_shapes_still_parse_at_any_target() -> None:
    reducer = CodeReducer()
    for target in (1, 40, 80, 120, 160):
        out = reducer.reduce(TRICKY, query="retries", target_tokens=target, count=TOK.count, relevance=None,
                             expand_id=ID)  # fmt: skip
        assert out is not None
        kept = check_python(out, TRICKY)
        assert "async def fetch(url: str,\n" in kept
        assert "                retries: int = 3) -> bytes:\n" in kept
        assert '    """\n' in kept
        assert "    Fetch a URL with retries.\n" in kept
        assert "\tdef tabbed(self):\n" in kept
        assert "def one_liner(a): return a\n" in kept
        assert '"""Module docstring.\n' in kept
        assert "    Any,\n" in kept


JS = """import { readFile } from "node:fs/promises";
import path from "node:path";

const DEFAULT_TIMEOUT = 30_000;

/** Loads the config file. */
export async function loadConfig(dir) {
  const raw = await readFile(path.join(dir, "config.json"), "utf8");
  const parsed = JSON.parse(raw);
  if (!parsed.timeout) {
    parsed.timeout = DEFAULT_TIMEOUT;
  }
  return parsed;
}

export class RateLimiter {
  constructor(limit, windowMs) {
    this.limit = limit;
    this.windowMs = windowMs;
    this.hits = new Map();
  }

  allow(key, now = Date.now()) {
    const hits = (this.hits.get(key) || []).filter((t) => now - t < this.windowMs);
    if (hits.length >= this.limit) {
      return false;
    }
    hits.push(now);
    this.hits.set(key, hits);
    return true;
  }

  reset(key) {
    this.hits.delete(key);
  }
}

const format = (n) => {
  const s = String(n);
  return s.padStart(8, "0") + "{" + '}';
};
"""


def test_brace_code_keeps_declarations_and_the_relevant_body() -> None:
    out = reduce(JS * 3, 560, query="how does the rate limiter allow a key")
    assert out.kind == "code"
    text = out.text
    lines = JS.splitlines()
    decls = [
        "export async function loadConfig(dir) {",
        "export class RateLimiter {",
        "  reset(key) {",
        "  allow(key, now = Date.now()) {",
        "const format = (n) => {",
        'import path from "node:path";',
    ]
    for decl in decls:
        assert text.count(decl + "\n") == 3
    assert "    hits.push(now);\n" in text
    for line in text.splitlines():
        assert line in lines or re.fullmatch(rf"\s*// \[promptzip: \d+ lines? omitted(; expand {ID})?\]", line)
    assert text.count("{") - text.count("'}'") == text.count("}") - text.count('"{"')  # braces still balance


# -- dispatch, detection, registry, relevance --------------------------------------------------------------------------
def test_detect_kind_and_unknown_text() -> None:
    assert detect_kind(json.dumps(search_results(5))) == "json"
    assert detect_kind(service_log()[0]) == "log"
    assert detect_kind(docs_page()) == "html"
    assert detect_kind(URLS.read_text()) == "code"
    assert detect_kind(JS) == "code"
    prose = "The quick brown fox jumps over the lazy dog. " * 400
    assert detect_kind(prose) is None
    assert reduce_structured(prose, query="fox", target_tokens=50, count=TOK.count, expand_id=ID) is None
    assert reduce_structured("   ", query=None, target_tokens=0, count=TOK.count, expand_id=ID) is None


def test_kinds_errors_and_a_plugin_reducer(monkeypatch: pytest.MonkeyPatch) -> None:
    assert {"json", "log", "html", "code"} <= set(registries.reducers.names())
    log = service_log()[0]
    assert reduce_structured(log, query=None, target_tokens=100, count=TOK.count, expand_id=ID, kinds=["json"]) is None
    with pytest.raises(ConfigError, match="unknown reducer"):
        reduce_structured(log, query=None, target_tokens=100, count=TOK.count, expand_id=ID, kinds=["yaml"])
    with pytest.raises(InputError):
        reduce_structured(log, query=None, target_tokens=-1, count=TOK.count, expand_id=ID)

    class FirstLine:
        kind = "first-line"

        def detect(self, text: str) -> bool:
            return text.startswith("FIRST")

        def reduce(self, text: str, **kw: Any) -> Reduced:
            head = text.split("\n", 1)[0] + f"\n[promptzip: rest omitted; expand {kw['expand_id']}]"
            return Reduced(head, self.kind, kw["count"](head), 2, 1)

    monkeypatch.setitem(registries.reducers._factories, "first-line", FirstLine)
    text = "FIRST line\n" + "more words here\n" * 100
    out = reduce(text, 40, kinds=["first-line"])
    assert out.kind == "first-line"
    assert ID in out.text
    assert detect_kind(text) == "first-line"


def test_caller_relevance_is_used_and_checked() -> None:
    text = json.dumps(search_results())
    seen: list[str] = []

    def by_price(texts: Sequence[str], query: str) -> list[float]:
        seen.append(query)
        return [json.loads(t)["price"] for t in texts]

    out = reduce(text, 300, query="cheap?", relevance=by_price)
    kept = json.loads(out.text)["results"][:-1]
    top = sorted((r["price"] for r in search_results()["results"]), reverse=True)[: len(kept)]
    assert seen == ["cheap?"]
    assert sorted(r["price"] for r in kept) == sorted(top)
    with pytest.raises(ConfigError, match="scores for"):
        reduce_structured(text, query="x", target_tokens=300, count=TOK.count, relevance=lambda t, q: [1.0],
                          expand_id=ID)  # fmt: skip


def test_lexical_relevance_counts_numbers_and_identifier_parts() -> None:
    texts = ['{"order_id": 4521, "state": "declined"}', '{"order_id": 4522, "state": "paid"}', "getUserName()"]
    s = lexical_relevance(texts, "order 4521")
    assert s[0] > s[1] > 0 == s[2]
    assert lexical_relevance(texts, "user name")[2] > 0
    assert lexical_relevance(texts, "the of") == [0.0, 0.0, 0.0]


def test_output_is_deterministic() -> None:
    for text, q in ((json.dumps(search_results()), "Basalt"), (service_log()[0], "mailer"), (docs_page(), "quotas")):
        a = reduce_structured(text, query=q, target_tokens=300, count=TOK.count, expand_id=ID)
        b = reduce_structured(text, query=q, target_tokens=300, count=TOK.count, expand_id=ID)
        assert a == b
        assert a is not None


# -- never raises ------------------------------------------------------------------------------------------------------
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=8) | st.dictionaries(st.text(max_size=8), inner, max_size=6),
    max_leaves=60,
)
PIECES = st.sampled_from(
    ["<div>", "</p>", "<h2>", "<script>", "{", "}", "[", "]", '"', "'", "`", "/*", "//", "\n", "\r\n", "    ",
     "\t", "def f(x):", "class A:", '"""', "ERROR", "2024-01-01T00:00:00Z", "function g() {", "<!--", "<![if x]>",
     "Traceback (most recent call last):", ",", ":", "123", "é", "\x00", "@dec"]
)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=st.one_of(
        st.text(max_size=400),
        JSON_VALUES.map(lambda v: json.dumps(v, indent=2)),
        JSON_VALUES.map(json.dumps),
        st.lists(st.one_of(PIECES, st.text(max_size=12)), max_size=120).map("".join),
    ),
    target=st.integers(0, 60),
    query=st.none() | st.text(max_size=20),
)
def test_reduce_structured_never_raises(text: str, target: int, query: str | None) -> None:
    out = reduce_structured(text, query=query, target_tokens=target, count=TOK.count, expand_id=ID)
    if out is not None:
        assert out.tokens == TOK.count(out.text) < TOK.count(text)
        assert ID in out.text or "[promptzip:" not in out.text
    for reducer in (JsonReducer(), HtmlReducer(), CodeReducer(), LogReducer()):
        reducer.reduce(text, query=query, target_tokens=target, count=TOK.count, relevance=None, expand_id=ID)
    assert tool_outputs.detect_kind(text) in (None, "json", "html", "code", "log")
