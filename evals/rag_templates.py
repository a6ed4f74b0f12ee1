"""RAG prompt templates as frameworks ship them, rendered into OpenAI chat messages (for the ``rag-chat`` eval).

Each :class:`Template` keeps the framework's own template string (with its own placeholder names, copied from
the framework's source or docs as named beside it), how that framework joins retrieved documents into the
context, and which chat messages it becomes. :meth:`Template.render` fills it like the framework would and says
which parts of the result are the template's fixed text, the question and the context, so that a harness can
check what an upstream received against what the application sent.

Templates:

1. ``langchain-rag-tutorial``: LangChain's RAG tutorial, context in the system message, question as the user turn
   (``create_stuff_documents_chain``: ``{page_content}`` per document, joined by ``"\\n\\n"``).
2. ``langchain-hub-rag-prompt``: LangChain hub ``rlm/rag-prompt``, one human message.
3. ``llamaindex-text-qa``: LlamaIndex ``DEFAULT_TEXT_QA_PROMPT_TMPL``, one user message (nodes joined ``"\\n\\n"``).
4. ``haystack-rag``: Haystack 2.x's RAG ``PromptBuilder`` template, its Jinja loop rendered by hand.
5. ``anthropic-xml``: Anthropic's long-context tips: ``<documents>`` with one ``<document>`` each, then the query.
6. ``plain-user``: ``Context:`` / ``Question:`` in one user message (what many hand-written apps send).
7. ``system-context``: an instruction paragraph and the documents in the system message, the question as the user.

:data:`RAW_FORMATS` writes a rendered chat as one raw prompt in a chat template (ChatML, Llama 3, Llama 2, Vicuna's
role lines, Anthropic's legacy ``Human:``/``Assistant:``, Alpaca's ``### Instruction:``), as a
string-prompt client sends it to a completions endpoint (the ``raw-prompts`` eval, the integrations table).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["RAW_FORMATS", "TEMPLATES", "Rendered", "Template", "context_part", "message_texts", "raw_prompt"]

CONTEXT: Final = "{context}"
QUESTION: Final = "{question}"

# --- LangChain, "Build a Retrieval Augmented Generation (RAG) App" tutorial (docs, v0.2/v0.3), part 2's
# `system_prompt` with ChatPromptTemplate.from_messages([("system", system_prompt), ("human", "{input}")]).
LANGCHAIN_TUTORIAL_SYSTEM: Final = (
    "You are an assistant for question-answering tasks. "
    "Use the following pieces of retrieved context to answer "
    "the question. If you don't know the answer, say that you "
    "don't know. Use three sentences maximum and keep the "
    "answer concise."
    "\n\n"
    "{context}"
)
LANGCHAIN_TUTORIAL_HUMAN: Final = "{input}"

# --- LangChain hub "rlm/rag-prompt" (a HumanMessagePromptTemplate; the tutorial's part 1 pulls it).
LANGCHAIN_HUB_RAG_PROMPT: Final = (
    "You are an assistant for question-answering tasks. Use the following pieces of retrieved context to answer "
    "the question. If you don't know the answer, just say that you don't know. Use three sentences maximum and "
    "keep the answer concise.\nQuestion: {question} \nContext: {context} \nAnswer:"
)

# --- LlamaIndex, llama_index/core/prompts/default_prompts.py: DEFAULT_TEXT_QA_PROMPT_TMPL.
LLAMAINDEX_TEXT_QA: Final = (
    "Context information is below.\n"
    "---------------------\n"
    "{context_str}\n"
    "---------------------\n"
    "Given the context information and not prior knowledge, "
    "answer the query.\n"
    "Query: {query_str}\n"
    "Answer: "
)

# --- Haystack 2.x, the RAG pipeline tutorial / PromptBuilder docs (rendered by Jinja2 with default settings).
HAYSTACK_LOOP: Final = "{% for document in documents %}\n    {{ document.content }}\n{% endfor %}"
HAYSTACK_RAG: Final = (
    "Given the following information, answer the question.\n\nContext:\n"
    + HAYSTACK_LOOP
    + "\n\nQuestion: {{question}}\nAnswer:"
)

# --- Anthropic docs, "Long context prompting tips": documents at the top in XML, the query at the end.
ANTHROPIC_DOCUMENT: Final = (
    '<document index="{index}">\n<source>{source}</source>\n<document_content>\n{content}\n</document_content>\n'
    "</document>"
)
ANTHROPIC_XML: Final = "<documents>\n{context}\n</documents>\n\n{question}"

# --- Hand-written layouts (no framework): a plain user message, and the context in the system message.
PLAIN_USER: Final = "Context:\n{context}\n\nQuestion: {question}"
SYSTEM_INSTRUCTION: Final = (
    "You answer questions using only the documents below. If the documents do not contain the answer, say that "
    "you don't know. Keep the answer short."
)
SYSTEM_CONTEXT: Final = SYSTEM_INSTRUCTION + "\n\n{context}"


@dataclass(frozen=True, slots=True)
class Rendered:
    """One rendered request: ``messages`` as (role, content) pairs, the ``context`` text placed in them, and the
    template's ``fixed`` pieces (its literal text and the question, each non-empty, in message order)."""

    messages: tuple[tuple[str, str], ...]
    context: str
    fixed: tuple[str, ...]

    def chat(self) -> list[dict[str, str]]:
        """The messages as an OpenAI ``messages`` list (fresh dicts)."""
        return [{"role": role, "content": content} for role, content in self.messages]


@dataclass(frozen=True, slots=True)
class Template:
    """A template in normalized form: each message's text with ``{context}`` / ``{question}`` slots (each at most
    once overall), and ``join`` turning the retrieved documents into the context text the way the framework does."""

    name: str
    origin: str
    messages: tuple[tuple[str, str], ...]
    join: Callable[[Sequence[str]], str]
    # The markup the template wraps around document ``i`` (1-based) with empty content, for layouts that give each
    # document tags of its own (the XML layout): the structure a kept document costs on top of its text.
    wrapper: Callable[[int], str] | None = None

    def render(self, documents: Sequence[str] | None, question: str, *, context: str | None = None) -> Rendered:
        """Fill the template with ``documents`` (joined by :attr:`join`) or a ready ``context`` text (``""`` for
        the request without context), and ``question``."""
        text = self.join(documents or ()) if context is None else context
        rendered: list[tuple[str, str]] = []
        fixed: list[str] = []
        for role, body in self.messages:
            pieces: list[str] = []
            for literal, slot in _parts(body):
                if literal:
                    pieces.append(literal)
                    fixed.append(literal)
                if slot == CONTEXT:
                    pieces.append(text)
                elif slot == QUESTION:
                    pieces.append(question)
                    if question:
                        fixed.append(question)
            rendered.append((role, "".join(pieces)))
        return Rendered(tuple(rendered), text, tuple(fixed))


def _parts(body: str) -> list[tuple[str, str | None]]:
    """``body`` as (literal, slot) pairs: the text before each slot and the slot (``None`` after the last)."""
    out: list[tuple[str, str | None]] = []
    rest = body
    while True:
        hits = [(rest.find(s), s) for s in (CONTEXT, QUESTION) if s in rest]
        if not hits:
            out.append((rest, None))
            return out
        at, slot = min(hits)
        out.append((rest[:at], slot))
        rest = rest[at + len(slot) :]


def _blank_lines(documents: Sequence[str]) -> str:
    return "\n\n".join(documents)


def _haystack(documents: Sequence[str]) -> str:
    # Jinja2 (no trim_blocks): each loop pass emits the newline after the for tag, the indented content, a newline.
    return "".join(f"\n    {d}\n" for d in documents)


def _anthropic(documents: Sequence[str]) -> str:
    return "\n".join(
        ANTHROPIC_DOCUMENT.format(index=i, source=f"doc-{i}", content=d) for i, d in enumerate(documents, 1)
    )


def _anthropic_wrapper(index: int) -> str:
    return ANTHROPIC_DOCUMENT.format(index=index, source=f"doc-{index}", content="")


def _normalize(text: str, **slots: str) -> str:
    for theirs, ours in slots.items():
        text = text.replace(theirs, ours)
    return text


TEMPLATES: Final[dict[str, Template]] = {
    t.name: t
    for t in (
        Template(
            "langchain-rag-tutorial",
            "LangChain RAG tutorial: system prompt with {context}, question as the human turn",
            (
                ("system", LANGCHAIN_TUTORIAL_SYSTEM),
                ("user", _normalize(LANGCHAIN_TUTORIAL_HUMAN, **{"{input}": QUESTION})),
            ),
            _blank_lines,
        ),
        Template(
            "langchain-hub-rag-prompt",
            "LangChain hub rlm/rag-prompt, one human message",
            (("user", LANGCHAIN_HUB_RAG_PROMPT),),
            _blank_lines,
        ),
        Template(
            "llamaindex-text-qa",
            "LlamaIndex DEFAULT_TEXT_QA_PROMPT_TMPL, one user message",
            (("user", _normalize(LLAMAINDEX_TEXT_QA, **{"{context_str}": CONTEXT, "{query_str}": QUESTION})),),
            _blank_lines,
        ),
        Template(
            "haystack-rag",
            "Haystack 2.x RAG PromptBuilder template (Jinja loop rendered by hand), one user message",
            (("user", _normalize(HAYSTACK_RAG, **{HAYSTACK_LOOP: CONTEXT, "{{question}}": QUESTION})),),
            _haystack,
        ),
        Template(
            "anthropic-xml",
            "Anthropic long-context layout: <documents><document index=..>..</documents>, then the question",
            (("user", ANTHROPIC_XML),),
            _anthropic,
            _anthropic_wrapper,
        ),
        Template(
            "plain-user",
            "Context:/Question: in one user message",
            (("user", PLAIN_USER),),
            _blank_lines,
        ),
        Template(
            "system-context",
            "instruction and documents in the system message, the question as the user message",
            (("system", SYSTEM_CONTEXT), ("user", QUESTION)),
            _blank_lines,
        ),
    )
}


# ------------------------------------------------------------------------------------------- raw prompts

Messages = Sequence[tuple[str, str]]


def _chatml(messages: Messages) -> str:
    turns = "".join(f"<|im_start|>{role}\n{content}<|im_end|>\n" for role, content in messages)
    return turns + "<|im_start|>assistant\n"


def _llama3(messages: Messages) -> str:
    turns = "".join(f"<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>" for role, content in messages)
    return "<|begin_of_text|>" + turns + "<|start_header_id|>assistant<|end_header_id|>\n\n"


def _llama2(messages: Messages) -> str:
    system = "".join(content for role, content in messages if role == "system")
    user = "\n\n".join(content for role, content in messages if role != "system")
    head = f"<<SYS>>\n{system}\n<</SYS>>\n\n" if system else ""
    return f"<s>[INST] {head}{user} [/INST]"


def _vicuna(messages: Messages) -> str:
    words = {"user": "USER: ", "assistant": "ASSISTANT: "}
    system = "".join(content + "\n\n" for role, content in messages if role == "system")
    turns = "".join(
        f"{words[role]}{content}" + ("</s>" if role == "assistant" else "\n")
        for role, content in messages
        if role != "system"
    )
    return system + turns + "ASSISTANT:"


def _human(messages: Messages) -> str:
    # Anthropic's legacy text completions: the system prompt before the first turn, each turn after a blank line
    words = {"user": "Human", "assistant": "Assistant"}
    system = "".join(content for role, content in messages if role == "system")
    turns = "".join(f"\n\n{words[role]}: {content}" for role, content in messages if role != "system")
    return system + turns + "\n\nAssistant:"


_ALPACA = (
    "Below is an instruction that describes a task{}. Write a response that appropriately completes the request.\n\n"
)
_INPUT = ", paired with an input that provides further context"


def _alpaca(messages: Messages) -> str:
    # the system prompt is the instruction and the user's turns the input (a chat without one: the user's is both)
    system = "\n\n".join(content for role, content in messages if role == "system")
    user = "\n\n".join(content for role, content in messages if role != "system")
    if not system:
        return _ALPACA.format("") + f"### Instruction:\n{user}\n\n### Response:\n"
    return _ALPACA.format(_INPUT) + f"### Instruction:\n{system}\n\n### Input:\n{user}\n\n### Response:\n"


RAW_FORMATS: dict[str, Callable[[Messages], str]] = {
    "chatml": _chatml,
    "llama3": _llama3,
    "llama2": _llama2,
    "vicuna": _vicuna,
    "human": _human,
    "alpaca": _alpaca,
}
"""How a chat becomes one raw prompt, as each family's chat template writes it (with the generation prompt)."""


def raw_prompt(fmt: str, messages: Messages) -> str:
    """``messages`` ((role, content) pairs) as one raw prompt in the chat template ``fmt`` of :data:`RAW_FORMATS`."""
    return RAW_FORMATS[fmt](messages)


# ------------------------------------------------------------------------------- what the upstream received


def message_texts(messages: Sequence[Mapping[str, Any]]) -> list[str]:
    """The text of each message (a string content, or its text parts joined by a newline)."""
    texts = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            content = "\n".join(
                str(p.get("text", "")) for p in content if isinstance(p, Mapping) and p.get("type") == "text"
            )
        texts.append(content if isinstance(content, str) else "")
    return texts


def context_part(texts: Sequence[str], fixed: Sequence[str]) -> tuple[bool, str]:
    """``(intact, rest)``: whether every ``fixed`` piece occurs verbatim in ``texts`` in order (a piece never spans
    two messages), and the texts with each piece's first match after the previous one cut out."""
    joined = "\n\x00\n".join(texts)
    pos, intact, cuts = 0, True, []
    for piece in fixed:
        at = joined.find(piece, pos)
        if at < 0:
            intact = False
            continue
        cuts.append((at, at + len(piece)))
        pos = at + len(piece)
    rest, prev = [], 0
    for start, end in cuts:
        rest.append(joined[prev:start])
        prev = end
    rest.append(joined[prev:])
    return intact, " \n ".join(rest).replace("\x00", " ")
