"""The JSON cut keeps the numbers of the items it keeps exactly as they were written (``1E2``, ``-0``, a float of
more digits than a double holds, ``1e400``) and writes strict JSON; ordinary data is cut as it always was."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

import promptzip as pz
from promptzip.compressors.tool_json import JsonReducer
from promptzip.compressors.tool_outputs import Reduced, reduce_structured

TOK = pz.get_tokenizer("gpt-4o")
ID = "pz-3f2a9c0d1e2b4a5c"
LITERALS = {  # field: a number as written that Python's json would write back otherwise
    "amount": "12345678901234567890.25",
    "ratio": "1.00000000000000000001",
    "hundred": "1E2",
    "zero": "-0",
    "tiny": "0.1e-7",
    "big": "123456789012345678901234567890123456789012345678901234567890",
}
STYLES: dict[str, dict[str, Any]] = {
    "compact": {},
    "tight": {"separators": (",", ":")},
    "indent2": {"indent": 2},
    "tabs": {"indent": "\t"},
}


def reduce(text: str, target: int, query: str | None = None, **kw: Any) -> Reduced:
    out = reduce_structured(text, query=query, target_tokens=target, count=TOK.count, expand_id=ID, **kw)
    assert out is not None
    assert out.tokens == TOK.count(out.text) <= target
    return out


def strict(text: str) -> Any:
    """``json.loads`` that refuses ``NaN``, ``Infinity`` and ``-Infinity``, which strict JSON does not have."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def written(value: Any, fields: dict[str, str], **style: Any) -> str:
    """``json.dumps(value, **style)`` with each string ``"@field@"`` replaced by the literal ``fields[field]``."""
    text = json.dumps(value, **style)
    for name, literal in fields.items():
        text = text.replace(json.dumps(f"@{name}@"), literal)
    return text


def orders(fields: dict[str, str], n: int = 200) -> list[dict[str, Any]]:
    return [
        {"id": i, **{f: f"@{f}@" for f in fields}, "note": f"Order {i} was shipped to town {i} in {1900 + i}."}
        for i in range(n)
    ]


@pytest.mark.parametrize("style", STYLES.values(), ids=list(STYLES))
def test_kept_items_keep_their_numbers_byte_for_byte(style: dict[str, Any]) -> None:
    items = orders(LITERALS)
    text = written(items, LITERALS, **style)
    out = reduce(text, 400, query="Which order was shipped to town 57?")
    kept = strict(out.text)[:-1]
    assert 57 in [x["id"] for x in kept]
    for item in kept:  # each kept item is its slice of the input, at the same depth
        slice_ = written(items[item["id"]], LITERALS, **style)
        if "indent" in style:
            unit = style["indent"] if isinstance(style["indent"], str) else " " * style["indent"]
            slice_ = slice_.replace("\n", "\n" + unit)
        assert slice_ in out.text
        assert item == json.loads(slice_)
    assert out.text.count("1E2") == len(kept)


def test_relevance_sees_the_numbers_as_written() -> None:
    text = written(orders(LITERALS, 40), LITERALS)
    seen: list[str] = []

    def relevance(texts: Sequence[str], query: str) -> list[float]:
        seen.extend(texts)
        return [float('"id": 31,' in t) for t in texts]

    out = reduce(text, 300, query="1E2", relevance=relevance)
    assert '"hundred": 1E2, "zero": -0, "tiny": 0.1e-7' in seen[0]
    assert strict(out.text)[0]["id"] == 31


def test_an_infinite_literal_is_kept_and_the_output_stays_strict_json() -> None:
    amounts = {i: f"{i}.5" for i in range(60)} | {57: "1e400", 50: "-1e400"}
    items = [{"id": i, "amount": f"@{i}@", "note": f"Order {i} was shipped to town {i}."} for i in range(60)]
    text = written(items, {str(i): a for i, a in amounts.items()})
    out = reduce(text, 150, query="Which order was shipped to town 57?")
    parsed = strict(out.text)  # no Infinity
    assert '{"id": 57, "amount": 1e400, "note": "Order 57 was shipped to town 57."}' in out.text
    *kept, note = parsed
    assert 57 in [x["id"] for x in kept]
    finite = [float(amounts[i]) for i in range(60) if i not in {x["id"] for x in kept} | {50}]
    assert f"amount {min(finite)!r}–{max(finite)!r};" in note  # the range of the finite values only
    # an array of numbers alone, its kept infinite values as written, the range of the finite ones
    numbers = "[" + ", ".join(["1e400", "-1E+400", *(f"{i}.25" for i in range(400)), "1E400"]) + "]"
    out = reduce(numbers, 60)
    *kept, note = strict(out.text)
    assert out.text.startswith("[1e400, -1E+400, 0.25, ")
    assert f"values {kept[-1] + 1}–399.25" in note


@pytest.mark.parametrize("lines", [False, True], ids=["array", "json-lines"])
def test_integers_beyond_a_double_are_kept_and_summarized(lines: bool) -> None:
    huge = 10**400
    items = [{"id": i, "big": huge + i, "note": f"Order {i} was shipped to town {i}."} for i in range(60)]
    text = "".join(json.dumps(x) + "\n" for x in items) if lines else json.dumps(items)
    out = reduce(text, 800, query="Which order was shipped to town 57?")
    parsed = [strict(line) for line in out.text.splitlines()] if lines else strict(out.text)
    *kept, note = parsed
    assert {"id": 57, "big": huge + 57, "note": "Order 57 was shipped to town 57."} in kept
    assert f'"big": {huge + 57}, ' in out.text
    dropped = [x["big"] for x in items if x not in kept]
    assert f"big {min(dropped)}–{max(dropped)};" in note


@pytest.mark.parametrize(
    "style",
    [*STYLES.values(), {"indent": 1, "ensure_ascii": True}, {"ensure_ascii": False}],
    ids=[*STYLES, "indent1-ascii", "unicode"],
)
@pytest.mark.parametrize("nested", [False, True], ids=["top", "nested"])
def test_a_kept_literal_changes_nothing_else_in_the_output(style: dict[str, Any], nested: bool) -> None:
    items = [
        {"id": i, "city": f"Zürich {i}", "weight": "@w@" if i == 21 else i + 0.5, "tags": ["a", "b"][: i % 3],
         "meta": {"ok": i % 2 == 0, "empty": {}, "none": None}}
        for i in range(30)
    ]  # fmt: skip
    doc: Any = {"data": {"rows": items, "count": 30}, "next": None} if nested else items
    text = written(doc, {"w": "7.250"}, **style)
    out = reduce(text, 200, query="Zürich 21")
    parsed = strict(out.text)
    rows = parsed["data"]["rows"] if nested else parsed
    assert 21 in [r["id"] for r in rows[:-1]]
    dumped = json.dumps(parsed, **style)
    assert dumped.count("7.25") == 1
    assert out.text == dumped.replace("7.25", "7.250")


def test_a_shortened_item_keeps_its_numbers() -> None:
    filler = " ".join(f"Sentence {k} of result {{i}} says nothing in particular about the weather." for k in range(6))
    results = [
        {"id": i, "score": "@score@", "rank": "@rank@", "snippet": filler.format(i=i)
         + (" The harbour of Bergen froze in 1893." if i == 7 else "")}
        for i in range(12)
    ]  # fmt: skip
    fields = {"score": "1.00000000000000000001", "rank": "-0"}
    text = written(results, fields, indent=2)
    whole = TOK.count(written(results[7], fields, indent=2))
    out = reduce(text, whole - 20, query="In which year did the harbour of Bergen freeze?")
    (item, _) = strict(out.text)
    assert item["id"] == 7
    assert "The harbour of Bergen froze in 1893." in item["snippet"]
    assert '    "score": 1.00000000000000000001,\n    "rank": -0,\n' in out.text


# the outputs of the code before numbers were kept as written: data whose numbers Python writes back as they were
ORDINARY_INDENTED = (
    '{\n  "query": "widgets",\n  "results": [\n    {\n      "id": 102,\n      "name": "Widget 2",\n      "price": 2.6,'
    '\n      "stock": 4,\n      "tags": [\n        "red",\n        "blue"\n      ],\n      "seller": {\n        "ok": '
    'true,\n        "note": null,\n        "since": "2024-01-03"\n      }\n    },\n    {\n      "id": 105,\n      '
    '"name": "Widget 5",\n      "price": 6.35,\n      "stock": 0,\n      "tags": [\n        "red",\n        "blue"\n   '
    '   ],\n      "seller": {\n        "ok": false,\n        "note": null,\n        "since": "2024-01-06"\n      }\n   '
    ' },\n    {\n      "id": 109,\n      "name": "Widget 9",\n      "price": 11.35,\n      "stock": 3,\n      "tags": '
    '[],\n      "seller": {\n        "ok": false,\n        "note": null,\n        "since": "2024-01-10"\n      }\n    '
    '},\n    "[promptzip: 9 of 12 items omitted; fields id, name, price, stock, tags, seller; id 100–111; price '
    '0.1–13.85; stock 0–4; expand pz-3f2a9c0d1e2b4a5c]"\n  ],\n  "total": 12\n}'
)
ORDINARY_COMPACT = (
    '[{"id": 0, "city": "Z\\u00fcrich 0", "temp": -3.5}, {"id": 21, "city": "Z\\u00fcrich 21", "temp": 1.75}, '
    '"[promptzip: 28 of 30 items omitted; fields id, city, temp; id 1\\u201329; temp -3.25\\u20133.75; expand '
    'pz-3f2a9c0d1e2b4a5c]"]'
)


def test_ordinary_data_is_cut_as_before() -> None:
    items = [
        {"id": 100 + i, "name": f"Widget {i}", "price": 1.25 * i + 0.1, "stock": i * 7 % 5,
         "tags": ["red", "blue"][: i % 3], "seller": {"ok": i % 2 == 0, "note": None, "since": f"2024-01-{1 + i:02d}"}}
        for i in range(12)
    ]  # fmt: skip
    indented = json.dumps({"query": "widgets", "results": items, "total": 12}, indent=2)
    assert reduce(indented, 330, query="Widget 9 with the blue tag").text == ORDINARY_INDENTED
    compact = json.dumps([{"id": i, "city": f"Zürich {i}", "temp": -3.5 + i / 4} for i in range(30)])
    assert reduce(compact, 120, query="Zürich 21").text == ORDINARY_COMPACT
    # a constant that is not strict JSON (Python's json writes NaN) is the input's own: it stays as it was written
    loose = json.dumps([{"id": i, "v": float("nan") if i == 21 else i} for i in range(30)])
    out = reduce(loose, 120, query="21")
    assert '{"id": 21, "v": NaN}' in out.text
    reducer = JsonReducer()
    assert reducer.reduce(loose, query="21", target_tokens=120, count=TOK.count, relevance=None, expand_id=ID) == out
