"""List items, for the rules of :mod:`promptzip._rules` and :mod:`promptzip._rules_separators`: whether a paragraph's
items speak to the model as a template's rules do, and whether a list goes on from one paragraph or line to the next.

A marker opens rules (``1. Cite each note…``, ``[2] Never…``, ``- Answer in English.``, ``a) You must…``) as it opens
numbered passages (``[1] According to the census…``) and a how-to's steps (``3. Make sure the light is green.``). So
after a marker only what orders a model counts: the imperatives of prompts (:data:`IMPERATIVE`), "you" with a word of
obligation, "if you" with a refusal's condition, and the words that are far more often an order to a model than a
how-to's step or a changelog's entry, some only with what such an order names (``_ORDER``: ``Mention the date.``;
``Stay neutral.``, not ``Stay hydrated.``; ``Include citations…``, not ``Include a pinch of salt.``), each maybe after
its condition on the prompt's parts (``If the notes do not say, say so.``); a word used as a noun or a subject
(``Follow-up: …``, ``Use of force…``) is none; a paragraph's items are rules when most of them read so (a how-to's
steps mostly name the reader's own actions); and a list that goes on across paragraphs or lines (step 3 after step 2,
a bullet after a bullet) is read as one list: when that list is not rules, each of its parts is the document's,
whatever its own words. Rules go without a marker too (``Mention the date.\\nStay neutral.``): there the same openings
count only when most of a paragraph's lines and sentences read so (:func:`rule_lines`), for a document opens some of
its sentences with these words as well (``Ignore the romance of the old prints: …``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["IMPERATIVE", "READ", "SEND", "closes_documents", "item_rules", "numbered_steps", "part_rule", "rule_lines"]

# The words a prompt opens an order to the model with; `promptzip._rules` reads them at a line's start too.
IMPERATIVE = (
    r"answer|use|cite|begin|respond|reply|return|write|give|provide|remember|ensure|avoid|be|keep|think|follow|format|"
    r"output|refuse|do[ \t]+not|don['’]t|never|always|make[ \t]+sure|please"
)
# The verbs that send the model to its documents ("Read the documents below.", "Use the documents below:", "Base your
# answer on these sources:"), by which `promptzip._rules` knows a line that introduces them.
READ = r"read|refer[ \t]+to|consider|review|consult|study"
SEND = rf"{READ}|use|answer|respond|reply|rely[ \t]+on|base[ \t]+[^\n:.]{{0,30}}"
# After a marker, words an item names the model's work with, and the prompt's own parts.
_W = r"[ \t]+"
_ANSWER = r"(?:answers?|responses?|repl(?:y|ies)|outputs?)"
_PARTS = r"(?:context|documents|sources|passages|snippets|excerpts|search[ \t]+results|notes)\b"
_THE_PARTS = (
    rf"(?:(?:the|all|each|every|only){_W})*(?:(?:provided|given|retrieved|supplied|attached|relevant){_W})?{_PARTS}"
)
# What follows the prompt's parts when they are what an order names ("the context.", "the documents below", "the
# notes, not …"), not a thing of a program named after them ("the context manager", "the notes field").
_PARTS_END = (
    r"(?=[ \t]*(?:$|[.,;:!)]|(?:only|alone|below|above|provided|given|supplied|here|to|when|for|and|or|as|if|you|"
    r"that|which|not|but|instead|rather)\b))"
)
_DET = r"(?:(?:a|an|the|all|any|only|relevant|inline|short|brief|exact|direct|full|one|two)[ \t]+)*"
_CITES = (
    r"(?:citations?|footnotes?|sources|source[ \t]+(?:names?|ids?|numbers?|titles?|links?|urls?)|references|"
    r"quotes?|quotations?|page[ \t]+numbers?|document[ \t]+(?:names?|ids?|titles?|numbers?))\b"
)
# The orders of a rule list beyond :data:`IMPERATIVE`, each kept only where it is far more often an order to a model
# than a how-to's step, a leaflet's advice, a changelog's entry or a document's opening (checked against the
# documents of installed packages' docs and changelogs, the bundled address, GSM8K and GPQA):
_ORDER = "|".join(
    (
        # words of speaking to a model, on their own ("Mention the date."; not "Quote: …", "Mention of …", a setting's
        # "ignore = []")
        r"(?:mention|explain|summari[sz]e|quote|translate|rephrase|paraphrase|acknowledge|refrain|rely|ignore|"
        r"pretend)\b(?![ \t]*(?::|-|=|(?:of|is|was|are|were|has|had|['’]s)\b))",
        # words a how-to, a leaflet or a changelog opens with as well, with what an order to a model names: its answer
        # ("Start each reply with…", "Check that your answer…"), the prompt's parts, citations, the user, a tone
        rf"(?:include|add|list|check|double[ -]check|verify|review|start|end|finish|conclude|close|open|structure|"
        rf"organi[sz]e|present|put|place|separate|wrap|number|mark|highlight|show){_W}[^\n]{{0,60}}?"
        rf"\b(?:your|each|every|the{_W}final){_W}(?:final{_W})?{_ANSWER}\b",
        rf"(?:check|double[ -]check|read|re-?read|review|consult|search|scan|examine|consider|treat|verify|"
        rf"cross[ -]check|compare){_W}(?:carefully{_W})?{_THE_PARTS}(?![ \t]*(?:manager|menu|code|files?|objects?))",
        rf"(?:include|list){_W}{_DET}{_CITES}",
        rf"add{_W}{_DET}(?:citations?|footnotes?|disclaimers?|source{_W}(?:numbers?|ids?|tags?|markers?|links?))\b",
        rf"state{_W}(?:clearly|explicitly|plainly|briefly|so|that|whether|which|when|if|why|what|how|your|the|any|"
        r"each|only)\b",
        rf"stay{_W}(?:neutral|objective|impartial|unbiased|factual|on[ \t-]topic|in{_W}character|concise|brief|"
        rf"grounded|(?:true|faithful|close){_W}to{_W}{_THE_PARTS}|within{_W}(?:{_THE_PARTS}|the{_W}scope))",
        rf"(?:limit|restrict){_W}(?:(?:your|the|each|every|all){_W})?(?:final{_W})?"
        rf"(?:{_ANSWER}|summar(?:y|ies)|explanations?|yourself)\b",
        rf"focus{_W}(?:(?:only|solely|exclusively){_W})?on{_W}(?:(?:what{_W})?the{_W})?"
        rf"(?:(?:user['’]s|provided|given|retrieved|relevant){_W})?(?:question|query|request|user|{_PARTS})",
        rf"prefer{_W}(?:[\w-]+{_W}){{0,3}}?(?:sources?|documents?|passages?|notes|citations|quotations|facts|answers)\b",
        rf"consider{_W}(?:only|the{_W}user['’]s)\b",
        rf"(?:tell|ask|remind|greet|address){_W}(?:the{_W}user|me)\b",
        rf"ask{_W}(?:for{_W}clarification|(?:a|one){_W}(?:clarifying|follow[ -]up){_W}question|"
        rf"(?:clarifying|follow[ -]up){_W}questions)\b",
        rf"say(?:{_W}(?:so|I)\b|{_W}(?:that{_W})?you{_W}(?:do{_W}not|don['’]t|cannot|can['’]t|are{_W}(?:not|unsure))\b"
        r"|[ \t]*:?[ \t]*[\"“'‘])",
        rf"admit{_W}(?:it|that|when|if|you|so|uncertainty)\b",
        rf"(?:maintain|adopt|match){_W}(?:(?:a|an|the|your|the{_W}user['’]s){_W})?(?:[\w-]+{_W}){{0,3}}?"
        r"(?:tone|voice|register|language|persona)\b",
        rf"(?:omit|skip|exclude|drop|leave{_W}out){_W}(?:(?:any|the|all){_W})?(?:preambles?|pleasantries|greetings?|"
        rf"disclaimers?|apologies|introductions?|filler|irrelevant{_W}(?:details|information|{_PARTS}))\b",
        rf"(?:note|flag|highlight|point{_W}out|call{_W}out|indicate|mention|acknowledge|express){_W}(?:any{_W})?"
        r"(?:uncertaint(?:y|ies)|gaps?|contradictions?|conflicts?|disagreements?|inconsistenc(?:y|ies)|doubts?|"
        rf"caveats?|limitations|assumptions|ambiguit(?:y|ies)|missing{_W}information)\b",
        # a risk is a project plan's as often ("Flag risks early."): only any of them, as an answer names them
        rf"(?:note|flag|highlight|point{_W}out|call{_W}out|mention){_W}(?:any|all){_W}"
        rf"(?:(?:potential|possible|key|major|important|notable){_W})?(?:risks|red{_W}flags|open{_W}questions)\b",
        # grounding rules, often after an adverb ("Only use the provided context."; not "Only use this flag if…", "Use
        # the context manager…"): what is used or answered from is the prompt's parts
        rf"(?:use|answer|respond|reply|draw{_W}(?:only{_W})?(?:on|from)|stick{_W}to){_W}(?:[\w'’-]+{_W}){{0,3}}?"
        rf"{_THE_PARTS}{_PARTS_END}",
        # how an answer opens and what it offers after ("Lead with the answer.", "Suggest next steps."; not "Lead with
        # your left foot.", "Suggest a name for…"), and which sources weigh more ("Prioritize the newest document.";
        # not "Prioritize local files…", "Prioritize evidence-based treatments.")
        rf"lead{_W}with{_W}(?:(?:the|your|a|an|one){_W})?(?:(?:direct|short|brief|final|main|key|one-line|plain){_W})?"
        rf"(?:answer|conclusion|bottom{_W}line|verdict|recommendation|summary|tl;?dr|key{_W}(?:points?|findings?))\b",
        rf"suggest{_W}(?:(?:any|some|a{_W}few|two|three|possible|practical|concrete|relevant|useful|the){_W})*"
        rf"(?:next{_W}steps|follow[ -]up{_W}(?:questions|actions|steps)|further{_W}reading|related{_W}questions)\b",
        rf"priori[tz]i[sz]e{_W}(?:(?:the|more|most|newer|newest|recent|latest|official|primary|relevant|reliable|"
        rf"authoritative|up-to-date|top-ranked){_W})*(?:{_PARTS}|documents?|sources?|passages?|snippets?|excerpts?|"
        r"citations|accuracy|brevity|recency|(?:the[ \t]+)?user['’]s)(?![\w-])",
        rf"(?:indicate|specify|identify|note|flag|name){_W}which{_W}"
        r"(?:document|source|passage|note|snippet|excerpt|citation)s?\b",
        rf"reason{_W}step[ \t-]+by[ \t-]+step|show{_W}your{_W}(?:reasoning|sources)\b",
        rf"base{_W}(?:your|each|every|all|the){_W}(?:final{_W})?{_ANSWER}",
        rf"your{_W}(?:final{_W})?{_ANSWER}{_W}(?:must|should|shall|will|needs?{_W}to|may{_W}not|cannot)\b",
    )
)
# A rule may open with its condition, on the prompt's own parts: "If the context does not say, say so.", "When the
# sources disagree, cite both." (a how-to's "If the light is red, …" names none of them).
_CONDITION = (
    r"(?:if|when|where|unless)[ \t]+[^\n,:;]{0,80}?\b(?:answers?|context|documents?|sources?|passages?|snippets?|"
    r"notes|information|question|query|user)\b[^\n,:;]{0,80}?,[ \t]*"
)
_MARKER = r"(?:\d{1,3}[.)]|[(\[]\d{1,3}[)\]]|[A-Za-z][.)]|\([A-Za-z]\)|[ivxIVX]{1,4}[.)]|[-*•+–])"
_ITEM = re.compile(rf"^[ \t]*{_MARKER}[ \t]+\S[^\n]*", re.MULTILINE)
_BEFORE = (
    rf"(?:\*\*|__)?(?:{_CONDITION})?(?:(?:only|also|just|briefly|clearly|concisely|strictly|explicitly|politely|"
    rf"directly|carefully){_W})?"
)
_IMPERATIVES = (
    rf"(?:{IMPERATIVE}"
    r"|you[ \t]+(?:must|should|shall|need[ \t]+to|have[ \t]+to|are[ \t]+(?:to|required|expected|allowed|only)|cannot|"
    r"can['’]t|can[ \t]+not|may[ \t]+not|will[ \t]+not|won['’]t|do[ \t]+not|don['’]t|never|always|only)"
    r"|if[ \t]+you[ \t]+(?:do[ \t]+not|don['’]t|cannot|can['’]t|are[ \t]+(?:not|unsure)))\b"
    r"(?![ \t]*(?:-|(?:of|is|was|are|were|has|had|['’]s)\b))"
)
_RULE = re.compile(rf"[ \t]*{_MARKER}[ \t]+{_BEFORE}(?:{_IMPERATIVES}|{_ORDER})", re.IGNORECASE)
# Without a marker, a line or sentence that opens in a capital (a wrapped line of prose goes on in lower case, "rely on
# certifi…") with the words of _ORDER as after a marker, or with an imperative after a condition on the prompt's parts
# (``order``); one that opens with a plain imperative, as `promptzip._rules` reads one at a line's start, only adds to
# those: a README or a licence opens its sentences so too ("Use pip…", "You must retain…"), and with one after bold
# or an adverb ("**Please add…**", "Only use this if…").
_ORDER_LINE = re.compile(
    rf"[ \t]*(?=(?:\*\*|__)?(?-i:[A-Z]))(?:(?P<order>{_BEFORE}(?:{_ORDER})|{_CONDITION}{_IMPERATIVES})|{_IMPERATIVES})",
    re.IGNORECASE,
)
# Rules written all in lower case ("mention the date\nstay neutral") read as written capitalised; there a wrapped line
# of prose is told apart by a line that stops where a sentence cannot, or that runs to a wrapping width unpunctuated.
_ORDER_LINE_LOWER = re.compile(
    rf"[ \t]*(?:(?P<order>{_BEFORE}(?:{_ORDER})|{_CONDITION}{_IMPERATIVES})|{_IMPERATIVES})", re.IGNORECASE
)
_CAPITAL = re.compile(r"(?!\bI\b)[A-Z]")  # "say I don't know" is still written in lower case
_GOES_ON = re.compile(
    r"(?:[,;(\[/&-]|\b(?:a|an|the|and|or|but|nor|of|to|in|on|at|by|for|with|from|into|as|than|that|which|who|is|are|"
    r"was|were|be|been|has|have|had|may|might|can|could|should|would|will|shall|must|its|their|his|her|our|your|my|"
    r"if|when|while|because|each|every|least|very))"
    r"[ \t]*$|^[^\n]{70,}(?<![.!?:;)\"'’”])$",
    re.IGNORECASE,
)
# Where a sentence ends and the next one opens on the same line (not after a list's "1." or in "e.g. Mention"); in
# lower case, the next one opens with any letter.
_SENTENCE_END = re.compile(r"[.!?](?<=\w\w[.!?])[\"”’')\]*_]*[ \t]+(?=[\"“‘'(*_]*[A-Z])")
_SENTENCE_END_LOWER = re.compile(r"[.!?](?<=\w\w[.!?])[\"”’')\]*_]*[ \t]+(?=[\"“‘'(*_]*[a-z])")
# The prompt's own parts named as no document's line names them: placed in the prompt ("the provided context", "the
# documents above", "the sources provided."), as what an answer comes from ("only from the context."), knowledge from
# outside them refused ("Do not use outside knowledge."; a worksheet's "Use your own outside knowledge…" is no rule), or
# their ids ("Cite the passage ids you used."); or what to say when they lack the answer ("…, say you don't know.").
_PART = r"(?:context|documents?|sources?|passages?|snippets?|excerpts?|search[ \t]+results|notes|chunks?)"
_PLACED = r"(?:provided|given|retrieved|supplied|attached)"
_OWN_PARTS = re.compile(
    rf"\b{_PLACED}{_W}(?:(?:context|reference|background){_W})?{_PART}{_PARTS_END}"
    rf"|\b{_PART}{_W}(?:(?:above|below){_PARTS_END}|{_PLACED}(?=[ \t]*(?:$|[.,;:!)]|(?:to{_W}you|here)\b)))"
    rf"|\b(?:above|below){_W}{_PART}{_PARTS_END}"
    rf"|\b(?:in|from|within|beyond|outside(?:{_W}of)?){_W}the{_W}(?:context|documents|passages|snippets|excerpts|"
    rf"search{_W}results)(?=[ \t]*(?:$|[.,;:!)]))"
    r"|\b(?:not|never|no|without|don['’]t|avoid)\b[^\n]{0,40}?\b(?:outside|external|prior|background|general|"
    r"world|your[ \t]+own)[ \t]+knowledge\b"
    rf"|\b(?:passage|document|doc|source|snippet|excerpt|chunk)s?{_W}(?:ids?|numbers?|indices|indexes|labels)\b",
    re.IGNORECASE,
)
_DONT_KNOW = re.compile(
    r"\b(?:say|reply|respond|answer|state|write)\b[^\n]{0,15}?\b(?:you|I)[ \t]+(?:do[ \t]+not|don['’]t|cannot|"
    r"can['’]t)[ \t]+(?:know|answer|find|tell)\b",
    re.IGNORECASE,
)
_MISSING = re.compile(r"\b(?:answers?|context|documents?|passages?|sources?|excerpts?|snippets?|information)\b", re.I)
_PART_RULE_MAX_CHARS = 300
# A word every such rule holds, looked for before the costlier patterns run on a paragraph's last and first lines.
_PART_WORDS = ("context", "doc", "source", "passage", "snippet", "excerpt", "result", "notes", "chunk", "know")
# A numbered item's number or letter and how it is written around it ("3." and "3)" and "[3]" are three lists), or a
# bullet (a list goes on while its bullet is the same).
_NUMBER = re.compile(r"[ \t]*(?:([(\[]?)(\d{1,3}|[A-Za-z])([.)\]])|([-*•+–]))[ \t]")


def item_rules(para: str) -> bool:
    """Whether the list items of ``para`` are rules: it has some, and more than half of them speak to the model."""
    items = _ITEM.findall(para)
    return bool(items) and 2 * sum(1 for item in items if _RULE.match(item)) > len(items)


def rule_lines(para: str) -> bool:
    """Whether ``para`` reads as rules line by line, with a marker or without: more than half of the sentences of its
    lines open as an order to the model does after a marker, one of them at least in the words of ``_ORDER`` or after
    a condition on the prompt's parts (``Mention the date.\\nStay neutral.\\nIf the notes disagree, say so.``), not
    one among a document's (``Ignore the romance of the old prints: …``). A paragraph all in lower case reads the same,
    unless a line of it stops where a sentence cannot (``the library may\\nrely on certifi…``)."""
    lines = para.split("\n")
    lower = _CAPITAL.search(para) is None
    if lower and any(_GOES_ON.search(line.rstrip()) for line in lines):
        return False  # wrapped prose: a line that stops where a sentence cannot goes on into the next one
    order_line, sentence_end = (_ORDER_LINE_LOWER, _SENTENCE_END_LOWER) if lower else (_ORDER_LINE, _SENTENCE_END)
    parts = [part for line in lines for part in sentence_end.split(line) if part.strip()]
    rules = orders = 0
    for k, part in enumerate(parts):
        if 2 * (rules + len(parts) - k) <= len(parts):
            return False  # most of them can no longer read so
        m = order_line.match(part)
        orders += m is not None and m.group("order") is not None
        rules += m is not None or _RULE.match(part) is not None
    return orders > 0 and 2 * rules > len(parts)


# A line that closes the documents by pointing back at them (RAGFlow's "The above is the knowledge base.", "End of
# context."): the template's words, though it gives no order.
_CLOSING = re.compile(
    r"[ \t]*(?:(?:the[ \t]+)?(?:above|preceding)[ \t]+(?:is|are|was|were)[ \t]+(?:the[ \t]+|all[ \t]+)?"
    r"|end[ \t]+of[ \t]+(?:the[ \t]+)?)"
    r"(?:knowledge[ \t]+base|context|documents?|sources?|passages?|search[ \t]+results|information)"
    r"[ \t]*[.!]?[ \t]*",
    re.IGNORECASE,
)


def closes_documents(line: str) -> bool:
    """Whether one line closes the documents by pointing back at them (``_CLOSING``)."""
    return _CLOSING.fullmatch(line) is not None


def part_rule(line: str) -> bool:
    """Whether one line is a rule on the prompt's own parts, words no document opens or ends with: each of its
    sentences opens as an order to the model (as in :func:`rule_lines`, capitalised or all in lower case) and it names
    those parts as only a prompt does (``_OWN_PARTS``: "Only use the provided context.", "Do not use outside
    knowledge.", "Cite the passage ids you used.") or says what to answer when they lack the answer ("If the answer is
    not there, say you don't know."). A how-to's last step ("Keep refrigerated.", "Only use the provided charger.",
    "Use the context menu to save.") is none."""
    if len(line) > _PART_RULE_MAX_CHARS:
        return False
    if closes_documents(line):
        return True
    low = line.lower()
    if not any(word in low for word in _PART_WORDS):
        return False
    lower = _CAPITAL.search(line) is None
    order_line, sentence_end = (_ORDER_LINE_LOWER, _SENTENCE_END_LOWER) if lower else (_ORDER_LINE, _SENTENCE_END)
    if not (order_line.match(line) or _RULE.match(line)):
        return False  # most lines: the first sentence opens as no order
    parts = [part for part in sentence_end.split(line) if part.strip()]
    if not all(order_line.match(part) or _RULE.match(part) for part in parts[1:]):
        return False
    return _OWN_PARTS.search(line) is not None or (
        _DONT_KNOW.search(line) is not None and _MISSING.search(line) is not None
    )


def numbered_steps(parts: Sequence[str]) -> list[bool]:
    """For each of ``parts`` (paragraphs or lines), whether it is one of a document's steps: the list it is part of
    goes on from the part before it or into the next one (numbered on, ``2.`` then ``3.``, or bulleted alike), and
    the list they make together is not rules."""
    out = [False] * len(parts)
    a = 0
    while a < len(parts):
        b = a
        while b + 1 < len(parts) and _continues(parts[b], parts[b + 1]):
            b += 1
        if b > a and not item_rules("\n".join(parts[a : b + 1])):
            out[a : b + 1] = [True] * (b + 1 - a)
        a = b + 1
    return out


def _continues(before: str, after: str) -> bool:
    """Whether the list at the start of ``after`` goes on from the last line of ``before``: written the same way, and
    numbered on (``2.`` then ``3.``, ``b)`` then ``c)``) or with the same bullet."""
    last = _number(before.rstrip().rsplit("\n", 1)[-1])
    first = _number(after.lstrip().split("\n", 1)[0])
    if last is None or first is None or first[0] != last[0]:
        return False
    return first[1] is None or (last[1] is not None and first[1] == last[1] + 1)


def _number(line: str) -> tuple[str, int | None] | None:
    """How a list item is written and its number (none for a bullet)."""
    m = _NUMBER.match(line)
    if m is None:
        return None
    if m.group(4):
        return m.group(4), None
    value = m.group(2)
    style = m.group(1) + ("9" if value.isdigit() else "a" if value.islower() else "A") + m.group(3)
    return style, int(value) if value.isdigit() else ord(value.lower())
