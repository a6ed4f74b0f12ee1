"""Chat templates in a raw prompt: a text that opens with a chat model's template markers (ChatML's
``<|im_start|>user``, Llama 3's ``<|start_header_id|>user<|end_header_id|>``, Llama 2's and Mistral's ``[INST]`` and
``<<SYS>>``, Gemma's ``<start_of_turn>user``, Phi-3's and Zephyr's ``<|user|>``, Granite's, Command R's and
DeepSeek's role tokens) is a whole conversation in one string, as a completions endpoint (vLLM, TGI, llama.cpp)
or a string-prompt LLM class receives it. Its markers are the model's special tokens: dropping or cutting one would
break the prompt, so they are protected wherever they stand. The text between them is each turn's content, read by
request understanding as a message of that turn's role would be.

Only a text whose first non-blank characters are a marker is read this way: raw prompts always begin with one (a
begin-of-text token or a role header), while a document that merely mentions ``[INST]`` further in is prose.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Turn", "template_turns"]

# What a role word in a template means for understanding; a word not listed keeps its turn verbatim.
_ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "model": "assistant",
    "chatbot": "assistant",
    "bot": "assistant",
    "gpt": "assistant",
    "tool": "tool",
    "ipython": "tool",
    "function": "tool",
}

_Role = Callable[[re.Match[str]], str | None]


def _named(m: re.Match[str]) -> str | None:
    """The role a header names (``<|im_start|>user``), or ``other`` for a role word the table does not know."""
    return _ROLES.get(m.group("role").lower(), "other")


def _fixed(role: str | None) -> _Role:
    return lambda m: role


_SAME = "same"  # a marker inside a turn that does not change whose turn it is (Llama 3.1's <|python_tag|>, say)

# (pattern, the role of the text after the marker: None between turns, _SAME for the turn it stands in)
_MARKERS: tuple[tuple[str, _Role], ...] = (
    (r"<\|im_start\|>(?P<role>[A-Za-z_]+)[^\n<]*\n?", _named),  # ChatML (Qwen, Hermes, ...); a name may follow
    (r"<\|start_header_id\|>(?P<role>[A-Za-z_]+)<\|end_header_id\|>[ \t]*\n{0,2}", _named),  # Llama 3
    (r"<\|start_of_role\|>(?P<role>[A-Za-z_]+)<\|end_of_role\|>", _named),  # Granite
    (r"<start_of_turn>(?P<role>[A-Za-z_]+)\n?", _named),  # Gemma
    (r"<\|(?P<role>system|user|assistant|tool)\|>\n?", _named),  # Phi-3, Zephyr, TinyLlama
    (r"<\|(?P<role>SYSTEM|USER|CHATBOT)_TOKEN\|>", _named),  # Command R
    (r"<｜(?P<role>User|Assistant)｜>", _named),  # DeepSeek (full-width bars)
    (r"\[INST\][ \t]*\n?", _fixed("user")),  # Llama 2, Mistral
    (r"(?<![ \t])[ \t]*\[/INST\][ \t]*", _fixed("assistant")),
    (r"<<SYS>>\n?", _fixed("system")),
    (r"(?<!\n)\n*<</SYS>>\n*", _fixed("user")),  # Llama 2: the first user message follows the system prompt
    (r"\[SYSTEM_PROMPT\]", _fixed("system")),  # Mistral
    (r"\[TOOL_RESULTS\]", _fixed("tool")),
    (r"\[AVAILABLE_TOOLS\]", _fixed("other")),  # tool definitions: JSON, kept
    (r"\[TOOL_CALLS\]", _fixed("other")),
    (r"\[/(?:SYSTEM_PROMPT|TOOL_RESULTS|AVAILABLE_TOOLS)\]", _fixed(None)),
    # the ends of turns and of sequences
    (r"<\|(?:im_end|eot_id|eom_id|end|end_of_text|endoftext|END_OF_TURN_TOKEN)\|>", _fixed(None)),
    (r"<end_of_turn>|</s>|<eos>|<｜end▁of▁sentence｜>", _fixed(None)),
    # the beginnings of sequences and turns that name no role
    (
        r"<s>|<bos>|<BOS_TOKEN>|<\|(?:begin_of_text|startoftext|START_OF_TURN_TOKEN)\|>|<｜begin▁of▁sentence｜>",
        _fixed(None),
    ),
    (r"<\|[A-Za-z][A-Za-z0-9_]{0,40}\|>", _fixed(_SAME)),  # any other special token: kept, the turn goes on
)
# One pattern finds the next marker; which alternative matched says its role (the role word is read again by that
# alternative alone, since one pattern cannot name a group twice).
# Every marker starts at a "<", a "[" or the first of the blanks before one: the lookahead passes over other characters
# at once, and no pattern starts inside a run of blanks, so a long run costs its length, not its length squared.
_MARKER = re.compile(
    r"(?=[<\[]|(?<![ \t])[ \t]|(?<!\n)\n)(?:"
    + "|".join(f"(?P<m{i}>{p.replace('(?P<role>', '(?:')})" for i, (p, _) in enumerate(_MARKERS))
    + ")"
)
_ALONE = tuple(re.compile(p) for p, _ in _MARKERS)
# The markers a raw prompt may open with: a begin-of-text token or a role header (not a closing one).
_OPENING = re.compile(
    r"\s*(?:<s>|<bos>|<BOS_TOKEN>|<\|begin_of_text\|>|<\|startoftext\|>|<｜begin▁of▁sentence｜>|\[INST\]|"
    r"\[SYSTEM_PROMPT\]|\[AVAILABLE_TOOLS\]|<\|im_start\|>|<\|start_header_id\|>|<\|start_of_role\|>|"
    r"<start_of_turn>|<\|(?:system|user|assistant)\|>|<\|START_OF_TURN_TOKEN\|>|<｜User｜>)"
)


@dataclass(frozen=True, slots=True)
class Turn:
    """``text[start:end]``: a marker (``role`` is ``"marker"``) or the content of a turn of ``role`` (``system``,
    ``user``, ``assistant``, ``tool``; ``other`` for a role to keep verbatim; ``None`` for text between turns)."""

    role: str | None
    start: int
    end: int


def template_turns(text: str) -> list[Turn] | None:
    """The markers and turn contents of ``text`` in order, covering it whole, when it is a raw prompt in a chat
    template (see the module docstring); ``None`` otherwise."""
    if not _OPENING.match(text):
        return None
    out: list[Turn] = []
    role: str | None = None
    pos = 0
    for m in _MARKER.finditer(text):
        if m.start() > pos:
            out.append(Turn(role, pos, m.start()))
        out.append(Turn("marker", m.start(), m.end()))
        i = int((m.lastgroup or "m0")[1:])
        alone = _ALONE[i].match(text, m.start())
        after = _MARKERS[i][1](alone) if alone is not None else None
        role = role if after == _SAME else after
        pos = m.end()
    if pos < len(text):
        out.append(Turn(role, pos, len(text)))
    return out
