"""Structured input: JSON string values pruned with keys and syntax intact; Markdown structure kept."""

from __future__ import annotations

import json

import pytest

import promptzip as pz
from promptzip._cache import MemoryCache
from promptzip.compressors.structured import markdown_structure, prune_json, prune_markdown
from promptzip.compressors.token_prune import TokenPruneCompressor
from promptzip.compressors.token_scores import RandomTokenScorer, WordLengthScorer

TOK = pz.get_tokenizer("gpt-4o")
PROSE = "the quick brown fox jumps over the lazy dog while an extraordinarily patient observer takes notes"


@pytest.fixture
def pruner() -> TokenPruneCompressor:
    return TokenPruneCompressor(RandomTokenScorer(), cache=MemoryCache())


def test_json_values_are_pruned_keys_and_syntax_kept(pruner: TokenPruneCompressor) -> None:
    doc = {
        "title": "Short name",
        "body": PROSE,
        "nested": {"items": [PROSE + " again", 42, True, None, {"note": PROSE}], "id": "AB-1234"},
        "the quick brown fox": "keys are never pruned even when they are long enough",
    }
    for text in (json.dumps(doc), json.dumps(doc, indent=2), json.dumps(doc, indent=4, ensure_ascii=False)):
        out = prune_json(pruner, text, rate=0.4, tokenizer=TOK)
        parsed = json.loads(out)
        assert list(parsed) == list(doc)
        assert parsed["title"] == "Short name"
        assert parsed["nested"]["id"] == "AB-1234"
        assert parsed["nested"]["items"][1:4] == [42, True, None]
        assert len(parsed["body"]) < len(PROSE)
        assert all(w in PROSE for w in parsed["body"].split())
        assert TOK.count(out) < TOK.count(text)
        assert ("\n" in out) == ("\n" in text)


def test_json_scalars_and_unicode(pruner: TokenPruneCompressor) -> None:
    assert prune_json(pruner, "42", rate=0.5) == "42"
    out = json.loads(prune_json(pruner, json.dumps("東京タワー は 高い です ね 😀 とても"), rate=0.5))
    assert isinstance(out, str)
    assert json.loads(prune_json(pruner, '{"a": []}', rate=0.5)) == {"a": []}


@pytest.mark.parametrize(
    ("text", "position"),
    [('{"a": 1,}', 8), ('{"a": "b"', 9), ("", 0), ("[1, 2", 5), ("{'a': 1}", 1)],
)
def test_invalid_json_is_an_input_error_with_its_position(
    pruner: TokenPruneCompressor, text: str, position: int
) -> None:
    with pytest.raises(pz.InputError, match="invalid JSON") as info:
        prune_json(pruner, text, rate=0.5)
    assert info.value.position == position
    with pytest.raises(pz.InputError, match="must be str"):
        prune_json(pruner, b"{}", rate=0.5)  # type: ignore[arg-type]


MARKDOWN = """# Results of the extraordinarily long experiment

Some introductory prose that explains everything in considerable and perhaps unnecessary detail.

## Method

- first item with plenty of words that could be removed
- second item, equally wordy and somewhat repetitive
1. numbered step describing what happened next in detail

| column one | column two |
|------------|------------|
| value a    | value b    |

> quoted remark that someone made about the whole thing

```python
def keep_me(x):
    return x + 1
```

---
Closing paragraph with enough words to prune a good share of them away."""


def test_markdown_structure_survives(pruner: TokenPruneCompressor) -> None:
    p = prune_markdown(pruner, MARKDOWN, rate=0.5, tokenizer=TOK)
    out = p.text
    assert p.tokens < TOK.count(MARKDOWN)
    for line in (
        "# Results of the extraordinarily long experiment",
        "## Method",
        "| column one | column two |",
        "|------------|------------|",
        "| value a    | value b    |",
        "```python\ndef keep_me(x):\n    return x + 1\n```",
        "---",
    ):
        assert line in out, line
    lines = out.splitlines()
    assert sum(line.startswith("- ") for line in lines) == 2
    assert any(line.startswith("1. ") for line in lines)
    assert any(line.startswith("> ") or line == ">" for line in lines)
    assert all(MARKDOWN[s.start : s.end] in out for s in p.kept)


def test_markdown_structure_spans() -> None:
    spans = markdown_structure("# H\ntext\n- item\n```\ncode\n```\nunclosed\n~~~\nrest")
    text = "# H\ntext\n- item\n```\ncode\n```\nunclosed\n~~~\nrest"
    pieces = [text[a:b] for a, b in spans]
    assert "# H" in pieces
    assert "- item" in pieces
    assert "```\ncode\n```" in pieces
    assert "~~~\nrest" in pieces


def test_markdown_threshold_and_bad_input() -> None:
    pruner = TokenPruneCompressor(WordLengthScorer())
    p = prune_markdown(pruner, MARKDOWN, threshold=0.9)
    assert "## Method" in p.text
    assert "extraordinarily" in p.text
    assert prune_markdown(pruner, "", rate=0.5).text == ""
    with pytest.raises(pz.InputError):
        prune_markdown(pruner, None, rate=0.5)  # type: ignore[arg-type]
