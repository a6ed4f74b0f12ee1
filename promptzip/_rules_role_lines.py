"""Raw prompts whose turns open with a role word on its own line start: Vicuna's ``USER: … ASSISTANT:``, the
``Human: … Assistant:`` of Anthropic's legacy text completions and of older LangChain prompts, and ``User: …
Assistant:``, each maybe after ``### ``. Such a text is a whole conversation in one string, as a completions endpoint
receives it; read as prose, its question sits before the closing ``ASSISTANT:`` and none is found, so it was
compressed as one block, role words and question included.

A text is read this way only when its last non-blank line is an assistant's role word alone (the generation prompt
every such template ends with) and an earlier line opens with the user's word of the same family. The role words
are then the markers of :mod:`promptzip._rules_templates` (protected), the text before the first one is the system
prompt, and between them are the turns' contents. A document in a turn may quote a transcript (``User: my login
fails``): a role word counts only where the other role's turn is open, so a quoted line inside the user's own turn
stays text. A line ``System:`` before the first user turn opens the system prompt.

Alpaca's ``### Instruction:`` / ``### Input:`` / ``### Response:`` is no conversation: its instruction may be the
question and its input the documents, or its instruction a system prompt with the documents and its input the
question. So the usual rules read the text before its closing ``### Response:`` line as one message (which they can
split either way), and the section header lines (:func:`section_headers`) and that closing line stay as they are
(``### Input:`` opens the documents, where it used to be dropped with them, and ``### Response:`` was taken for the
question).
"""

from __future__ import annotations

import re

from promptzip._rules_templates import Turn

__all__ = ["alpaca_response", "role_line_turns", "section_headers"]

_LAST = re.compile(r"(?:^|\n)[ \t]*(?:### ?)?(?P<word>ASSISTANT|Assistant)[ \t]*:[ \t]*\s*\Z")


def _headers(user: str, assistant: str) -> re.Pattern[str]:
    return re.compile(
        rf"^[ \t]*(?:### ?)?(?:(?P<user>{user})|(?P<assistant>{assistant})|(?P<system>System|SYSTEM))[ \t]*:[ \t]*\n?",
        re.MULTILINE,
    )


# The assistant's word of each family, and the role lines of the user's words it pairs with, tried in order
# (Vicuna writes them in capitals).
_FAMILIES = {
    "ASSISTANT": (_headers("USER", "ASSISTANT"),),
    "Assistant": (_headers("Human", "Assistant"), _headers("User", "Assistant")),
}


def role_line_turns(text: str) -> list[Turn] | None:
    """The role words and turn contents of ``text`` in order, covering it whole, when it is a raw prompt of role
    lines (module docstring); ``None`` otherwise."""
    last = _LAST.search(text[-200:])
    if last is None:
        return None
    for headers in _FAMILIES[last.group("word")]:
        turns = _turns(text, headers)
        if turns is not None:
            return turns
    return None


def _turns(text: str, headers: re.Pattern[str]) -> list[Turn] | None:
    out: list[Turn] = []
    role: str | None = None  # whose turn is open: None before the first role word
    pos = 0
    users = 0
    for m in headers.finditer(text):
        said = m.lastgroup
        if said == role or (said == "system" and role is not None):  # a quoted line inside the open turn
            continue
        if said == "assistant" and role is None:  # an assistant line before any user turn: prose
            return None
        # the blank lines before a role word go with it, so a turn's content cut to nothing leaves the layout
        end = pos + len(text[pos : m.start()].rstrip())
        if end > pos:
            out.append(Turn("system" if role is None else role, pos, end))
        out.append(Turn("marker", end, m.end()))
        role, pos = said, m.end()
        users += said == "user"
    if role != "assistant" or not users or text[pos:].strip():  # the assistant line must be the last
        return None
    if pos < len(text):
        out.append(Turn("assistant", pos, len(text)))
    return out


_RESPONSE = re.compile(r"^###[ \t]*Response[ \t]*:[ \t]*\s*\Z", re.MULTILINE)
_SECTION = re.compile(r"^###[ \t]*(?:Instruction|Input|Context|Response)[ \t]*:[ \t]*$", re.MULTILINE)


def alpaca_response(text: str) -> int | None:
    """Where the closing ``### Response:`` line of an Alpaca prompt starts (the text ends with it alone), else
    ``None``."""
    tail = len(text) - min(len(text), 100)
    m = _RESPONSE.search(text, tail)
    return None if m is None else m.start()


def section_headers(text: str) -> list[tuple[int, int]]:
    """The spans of Alpaca's section header lines in ``text``, in order."""
    return [m.span() for m in _SECTION.finditer(text)]
