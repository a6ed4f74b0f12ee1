"""Triple-backtick fences as delimiters around a prompt's input, for :func:`promptzip._rules.delimited`.

"Summarize the text delimited by triple backticks. ```{text}```" (DeepLearning.AI's prompt engineering course) uses
a pair of Markdown code fences the way other templates use ``\"\"\"``. A fence is far more often a code block, which
is asked about whole and must never be compressed, so a pair reads as a delimiter only when nothing in the text is
code: every fence bare (no language tag), every fenced block prose (sentences, not code, JSON, HTML, a log, a shell
session, a diagram or an output format), no code just before the first fence or after the last (a chunk cut inside
code blocks), and the fences plain triple backticks in pairs (longer runs or a lone fence are Markdown's).
"""

from __future__ import annotations

import re

__all__ = ["prose_fences"]

_RUN = re.compile(r"`{3,}")
# A word of prose: letters (with inner hyphens and apostrophes) or a figure ("1871,", "60%"), with the quotes,
# brackets and punctuation around it; ``x = 1``, ``torch.nn.Linear(2,``, ``--help``, ``@misc{`` and ``$`` are not.
_WORD = re.compile(r"[(\[\"'“‘]*(?:[^\W\d_]+(?:['’-][^\W\d_]+)*|\d[\d,.:/%-]*)[)\]\"'”’.,;:!?]*")
# a sentence ends: a word of small letters and a full stop, question or exclamation mark before a blank or the end
_SENTENCE_END = re.compile(r"[a-z]{2,}[)\"'”’]*[.!?][)\"'”’]*(?:\s|$)")
# preformatted lines: indented as code, columns aligned with runs of blanks, or a diagram's box-drawing characters
_PREFORMATTED = re.compile(r"^(?:[ \t]{4}|\t)|\S[ \t]{3,}\S|[\u2500-\u257f]")
# a line that opens with a label ("Thought: …", "Action Input: …"): an output format to follow, not a text to read
_LABEL_LINE = re.compile(r"^[ \t]*[A-Z][\w ]{0,30}:(?:[ \t]|$)")
# a line of code: one that ends in a bracket, a semicolon or a comma, is indented, a comment, an assignment, or opens
# with a keyword; the instruction before a delimited text and the question after it end as sentences or labels do
_CODE_LINE = re.compile(
    r"[)\]};,][ \t]*$|^(?:[ \t]{4}|\t|[ \t]*(?:#(?!#)|//|[\w.\[\]\"'-]+[ \t]*=[ \t]*\S|"
    r"(?:import|from|def|class|return|print|const|let|var|function)\b))"
)
_TAG_AFTER = re.compile(r"[^\s`]")
_MIN_WORDS = 8
_MAX_SHARE = 0.25  # of a block's lines, preformatted or labelled
_MIN_WORD_SHARE = 0.85
_NOT_PROSE = ("code", "json", "html", "log")


def prose_fences(text: str, max_lead: int) -> list[tuple[int, int]]:
    """The (start, end) of what each pair of triple-backtick fences encloses, when they are delimiters around prose
    and the first opens within ``max_lead`` characters of the start; otherwise none at all."""
    runs = list(_RUN.finditer(text))
    if not runs or len(runs) % 2 or runs[0].start() > max_lead or any(len(m.group()) != 3 for m in runs):
        return []  # none, a lone fence, ```` fences (Markdown's own), or one deep inside a long document (its own)
    lead = text[: runs[0].start()].rstrip().rpartition("\n")[2]
    tail = text[runs[-1].end() :].lstrip().partition("\n")[0]
    if _CODE_LINE.search(lead) or _CODE_LINE.search(tail):
        return []  # code before the first fence or after the last: they close and open code blocks, not a text
    pairs = []
    for opening, closing in zip(runs[0::2], runs[1::2], strict=True):
        a, b = opening.end(), closing.start()
        # what follows the opening fence on its line: nothing, a language tag, or (```{text}```) the text itself
        first, newline, _ = text[a:b].partition("\n")
        if newline and first.strip() and not any(c.isspace() for c in first.strip()):
            return []  # ```python, ```json: a code block, however its lines read
        if _TAG_AFTER.match(text, closing.end()):
            return []  # "```python" opens a block: the pairs are off (a chunk that starts inside a code block)
        if not _is_prose(text[a:b]):
            return []  # one code block makes the text a chat about code or a Markdown document: its fences are its own
        pairs.append((a, b))
    return pairs


def _is_prose(block: str) -> bool:
    """Sentences: enough words, nearly all of them words of prose, a sentence that ends, and no structure the tool
    output readers recognise."""
    tokens = block.split()
    if len(tokens) < _MIN_WORDS or not _SENTENCE_END.search(block):
        return False
    if sum(1 for t in tokens if _WORD.fullmatch(t)) < _MIN_WORD_SHARE * len(tokens):
        return False
    lines = [line for line in block.split("\n") if line.strip()]
    for pattern in (_PREFORMATTED, _LABEL_LINE):
        if sum(1 for line in lines if pattern.search(line)) > _MAX_SHARE * len(lines):
            return False
    from promptzip.compressors.tool_outputs import detect_kind  # the structure readers: only for a likely block

    return detect_kind(block) not in _NOT_PROSE
