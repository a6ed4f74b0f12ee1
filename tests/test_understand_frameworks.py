"""Request understanding on the RAG prompts that frameworks send, each written by hand from the framework's docs and
placed in the messages where that framework places it: LangChain, LlamaIndex, DSPy, CrewAI, AutoGen, the OpenAI
cookbook, Haystack, and the hand-written shapes (numbered sources, Markdown headings, a follow-up turn).

For every shape: the passages are context, the framework's own wording stays outside context (it goes out byte for
byte), and the question found in the turn being answered is the user's. The messages are read as ``compress_messages``
reads them: a system message on its own, the last user turn as the turn being answered, any other turn as history.
No model is loaded; the end-to-end tests use the BM25-only stack."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import promptzip as pz
from promptzip._understand import Layout, understand
from promptzip.evals.rag_templates import TEMPLATES

PASSAGES = {
    "Kestrel Bay Harbour": (
        "The harbour at Kestrel Bay was first dredged in 1871, when the herring fleet outgrew the tidal creek that "
        "had served the village since medieval times. The work took four summers and used almost all of the town "
        "council's reserves.\n\n"
        "A granite breakwater followed in 1884, quarried on the north headland and hauled down on a narrow-gauge "
        "tramway. It was lengthened by sixty metres in 1911 after a winter gale broke over the old head."
    ),
    "River Aln": (
        "The River Aln rises in the Cheviot foothills and reaches the North Sea at Alnmouth. For most of the "
        "eighteenth century its estuary carried grain ships bound for London and the Baltic ports.\n\n"
        "A storm on Christmas night in 1806 shifted the river's channel south of the church hill, cutting the "
        "village off from its quays. Trade moved to Amble, four miles down the coast, within a generation."
    ),
    "Harrow & Vane Ltd": (
        "Harrow & Vane was founded in 1923 as a rope maker supplying the Kestrel Bay fleet. By 1950 it employed "
        "340 people and had moved into steel wire cable for cranes and moorings.\n\n"
        "The company was bought by a Dutch marine group in 1987. Its old ropewalk, a single shed almost three "
        "hundred metres long, is now a listed building and houses a small museum."
    ),
    "Ships of the 1911 gale": (
        "Two ships were lost off Kestrel Bay in the gale of February 1911. The first, the collier Marguerite, "
        "dragged her anchors and struck the breakwater head; all nine of her crew were taken off by the lifeboat.\n\n"
        "The second, the schooner Saltash Belle, foundered two miles offshore with a cargo of china clay. Only her "
        "mate survived, picked up the next morning by a pilot cutter from Amble."
    ),
}
TEXTS = list(PASSAGES.values())
JOINED = "\n\n".join(TEXTS)
Q = "When was the breakwater at Kestrel Bay lengthened, and why?"
HISTORY = [
    {"role": "user", "content": "What is Kestrel Bay known for?"},
    {"role": "assistant", "content": "Kestrel Bay is known for its harbour, dredged in 1871 for the herring fleet."},
]
RAG_INSTRUCTION = (
    "You are an assistant for question-answering tasks. Use the following pieces of retrieved context to answer the "
    "question. If you don't know the answer, say that you don't know. Use three sentences maximum and keep the "
    "answer concise."
)
CONDENSE_PLUS_CONTEXT = (
    "The following is a friendly conversation between a user and an AI assistant.\n"
    "The assistant is talkative and provides lots of specific details from its context.\n"
    "If the assistant does not know the answer to a question, it truthfully says it\n"
    "does not know.\n\n"
    "Here are the relevant documents for the context:\n\n"
    "{context}"
    "\n\nInstruction: Based on the above documents, provide a detailed answer for the user question below.\n"
    'Answer "don\'t know" if not present in the document.'
)
DSPY_SYSTEM = (
    "Your input fields are:\n1. `context` (str)\n2. `question` (str)\n"
    "Your output fields are:\n1. `reasoning` (str)\n2. `answer` (str)\n"
    "All interactions will be structured in the following way, with the appropriate values filled in.\n\n"
    "[[ ## context ## ]]\n{context}\n\n[[ ## question ## ]]\n{question}\n\n"
    "[[ ## reasoning ## ]]\n{reasoning}\n\n[[ ## answer ## ]]\n{answer}\n\n[[ ## completed ## ]]\n"
    "In adhering to this structure, your objective is: \n        Answer questions with short factoid answers."
)
DSPY_CONTEXT = "\n".join(f"[{i}] «{title} | {text}»" for i, (title, text) in enumerate(PASSAGES.items(), 1))
DSPY_RESPOND = (
    "Respond with the corresponding output fields, starting with the field `[[ ## reasoning ## ]]`, then "
    "`[[ ## answer ## ]]`, and then ending with the marker for `[[ ## completed ## ]]`."
)
SOURCES = "\n".join(f"[{i}] {title} — {text}" for i, (title, text) in enumerate(PASSAGES.items(), 1))
# CrewAI's wrapper around a task: the description, the expected output, the task's context, then its own call to begin
CREWAI_TASK = (
    f"\nCurrent Task: {Q}\nThis is the expect criteria for your final answer: One paragraph.\n"
    "you MUST return the actual complete content as the final answer, not a summary.\n\n"
    "This is the context you're working with:\n{context}\n\n"
    "Begin! This is VERY important to you, use the tools available and give your best Final Answer, your job "
    "depends on it!\n\nThought:"
)
CREWAI_FIXED = (
    "This is the expect criteria for your final answer",
    "you MUST return the actual complete content",
    "This is the context you're working with:",
    "Begin! This is VERY important to you",
    "Thought:",
)
# a line of dashes between documents (CrewAI joins task outputs so, as do hand-written prompts)
SEPARATOR = "\n\n----------\n\n"
MARKDOWN = "\n\n".join(f"### {title}\n{text}" for title, text in PASSAGES.items())


@dataclass(frozen=True)
class Shape:
    name: str
    messages: list[dict[str, str]]
    fixed: tuple[str, ...]  # the framework's wording, each of which must stay outside context
    question: str = Q


def system_user(system: str, user: str = Q, history: bool = False) -> list[dict[str, str]]:
    return [{"role": "system", "content": system}, *(HISTORY if history else []), {"role": "user", "content": user}]


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


SHAPES = [
    # LangChain create_stuff_documents_chain: the documents in the system prompt, the question as the human turn
    Shape(
        "langchain-stuff-documents",
        system_user("Answer the user's questions based on the below context:\n\n" + JOINED),
        ("Answer the user's questions based on the below context:",),
    ),
    # LangChain create_retrieval_chain with chat history (MessagesPlaceholder between system and human)
    Shape("langchain-retrieval-chain", system_user(f"{RAG_INSTRUCTION}\n\n{JOINED}", history=True), (RAG_INSTRUCTION,)),
    # LlamaIndex CondensePlusContextChatEngine: its context prompt is the system message, then history, then the user
    Shape(
        "llamaindex-condense-plus-context",
        system_user(CONDENSE_PLUS_CONTEXT.replace("{context}", JOINED), history=True),
        (
            "Here are the relevant documents for the context:",
            "Instruction: Based on the above documents",
            'Answer "don\'t know" if not present in the document.',
        ),
    ),
    # the same with LlamaIndex's node metadata ("file_path: …") before each text, as MetadataMode.LLM renders it
    Shape(
        "llamaindex-condense-plus-context-metadata",
        system_user(
            CONDENSE_PLUS_CONTEXT.replace(
                "{context}", "\n\n".join(f"file_path: /data/{i}.txt\n\n{text}" for i, text in enumerate(TEXTS))
            )
        ),
        ("Instruction: Based on the above documents", 'Answer "don\'t know" if not present in the document.'),
    ),
    # LlamaIndex refine (text template): the query first, the existing answer, the new context between dash fences
    Shape(
        "llamaindex-refine",
        user(
            f"The original query is as follows: {Q}\n"
            "We have provided an existing answer: The breakwater was built in 1884.\n"
            "We have the opportunity to refine the existing answer (only if needed) with some more context below.\n"
            f"------------\n{JOINED}\n------------\n"
            "Given the new context, refine the original answer to better answer the query. If the context isn't "
            "useful, return the original answer.\nRefined Answer: "
        ),
        ("The original query is as follows:", "Given the new context, refine the original answer", "Refined Answer:"),
    ),
    # LlamaIndex chat refine prompt (what chat models get): "New Context:" inline, then Query / Original Answer
    Shape(
        "llamaindex-chat-refine",
        user(
            "You are an expert Q&A system that strictly operates in two modes when refining existing answers:\n"
            "1. **Rewrite** an original answer using the new context.\n"
            "2. **Repeat** the original answer if the new context isn't useful.\n"
            "Never reference the original answer or context directly in your answer.\n"
            "When in doubt, just repeat the original answer.\n"
            f"New Context: {JOINED}\nQuery: {Q}\nOriginal Answer: The breakwater was built in 1884.\nNew Answer: "
        ),
        (
            "You are an expert Q&A system",
            "When in doubt, just repeat the original answer.",
            "New Context:",
            "Original Answer: The breakwater was built in 1884.",
            "New Answer:",
        ),
    ),
    # LlamaIndex tree_summarize
    Shape(
        "llamaindex-tree-summarize",
        user(
            "Context information from multiple sources is below.\n---------------------\n"
            f"{JOINED}\n---------------------\n"
            "Given the information from multiple sources and not prior knowledge, answer the query.\n"
            f"Query: {Q}\nAnswer: "
        ),
        (
            "Context information from multiple sources is below.",
            "Given the information from multiple sources",
            "Answer:",
        ),
    ),
    # LlamaIndex chat text-qa: a system message of rules, then the text-qa user message
    Shape(
        "llamaindex-chat-text-qa",
        system_user(
            "You are an expert Q&A system that is trusted around the world.\n"
            "Always answer the query using the provided context information, and not prior knowledge.\n"
            "Some rules to follow:\n1. Never directly reference the given context in your answer.\n"
            "2. Avoid statements like 'Based on the context, ...' or 'The context information ...' or anything "
            "along those lines.",
            "Context information is below.\n---------------------\n"
            f"{JOINED}\n---------------------\n"
            f"Given the context information and not prior knowledge, answer the query.\nQuery: {Q}\nAnswer: ",
        ),
        ("Some rules to follow:", "Given the context information and not prior knowledge", "Answer:"),
    ),
    # DSPy ChatAdapter: the system message describes the fields, the user message fills them
    Shape(
        "dspy-chat-adapter",
        system_user(DSPY_SYSTEM, f"[[ ## context ## ]]\n{DSPY_CONTEXT}\n\n[[ ## question ## ]]\n{Q}\n\n{DSPY_RESPOND}"),
        ("[[ ## context ## ]]\n{context}", "[[ ## question ## ]]", DSPY_RESPOND),
    ),
    # a signature with the question field first ("question, context -> answer")
    Shape(
        "dspy-question-first",
        system_user(DSPY_SYSTEM, f"[[ ## question ## ]]\n{Q}\n\n[[ ## context ## ]]\n{DSPY_CONTEXT}\n\n{DSPY_RESPOND}"),
        ("[[ ## context ## ]]", DSPY_RESPOND),
    ),
    # a DSPy few-shot demo goes before the turn as a user/assistant pair
    Shape(
        "dspy-demo",
        [
            {"role": "system", "content": DSPY_SYSTEM},
            {
                "role": "user",
                "content": f"[[ ## context ## ]]\n{DSPY_CONTEXT}\n\n[[ ## question ## ]]\nWho founded it?",
            },
            {"role": "assistant", "content": "[[ ## reasoning ## ]]\nThe notes.\n\n[[ ## answer ## ]]\n1923"},
            {
                "role": "user",
                "content": f"[[ ## context ## ]]\n{DSPY_CONTEXT}\n\n[[ ## question ## ]]\n{Q}\n\n{DSPY_RESPOND}",
            },
        ],
        (DSPY_RESPOND,),
    ),
    # a CrewAI task whose description carries the retrieved notes under "Context:", then CrewAI's own wording
    Shape(
        "crewai-task-context",
        [
            {
                "role": "system",
                "content": (
                    "You are Maritime Historian. You have spent twenty years in county archives.\n"
                    "Your personal goal is: Answer questions about local maritime history accurately\n"
                    "To give my best complete final answer to the task respond using the exact following format:\n\n"
                    "Thought: I now can give a great answer\nFinal Answer: Your final answer must be the great and the "
                    "most complete as possible, it must be outcome described.\n\nI MUST use these formats, my job "
                    "depends on it!"
                ),
            },
            {
                "role": "user",
                "content": (
                    "\nCurrent Task: Answer the reader's question using only the retrieved archive notes.\n\n"
                    f"Context:\n{JOINED}\n\nReader's question: {Q}\n\n"
                    "This is the expected criteria for your final answer: A short, sourced answer.\n"
                    "you MUST return the actual complete content as the final answer, not a summary.\n\n"
                    "Begin! This is VERY important to you, use the tools available and give your best Final Answer, "
                    "your job depends on it!\n\nThought:"
                ),
            },
        ],
        (
            "Current Task:",
            "This is the expected criteria for your final answer",
            "Begin! This is VERY important",
            "Thought:",
        ),
    ),
    # AutoGen's retrieve-augmented QA prompt: "User's question is:" then "Context is:"
    Shape(
        "autogen-retrieve-qa",
        system_user(
            "You are a helpful AI assistant.",
            "You're a retrieve augmented chatbot. You answer user's questions based on your own knowledge and the\n"
            "context provided by the user.\nIf you can't answer the question with or without the current context, "
            "you should reply exactly `UPDATE CONTEXT`.\nYou must give as short an answer as possible.\n\n"
            f"User's question is: {Q}\n\nContext is: {JOINED}\n",
        ),
        ("reply exactly `UPDATE CONTEXT`", "User's question is:", "Context is:"),
    ),
    # OpenAI cookbook: articles in triple quotes, then "Question:"
    Shape(
        "openai-cookbook",
        system_user(
            "You answer questions about the history of the Northumberland coast.",
            "Use the below articles on the Northumberland coast to answer the subsequent question. If the answer "
            'cannot be found in the articles, write "I could not find an answer."'
            + "".join(f'\n\nArticle:\n"""\n{text}\n"""' for text in TEXTS)
            + f"\n\nQuestion: {Q}",
        ),
        ('write "I could not find an answer."', "Article:"),
    ),
    Shape(
        "numbered-sources",
        system_user(
            "You are a helpful search assistant. Answer using only the sources below and cite them like [1].\n\n"
            f"Sources:\n{SOURCES}"
        ),
        ("Answer using only the sources below and cite them like [1].",),
    ),
    Shape(
        "markdown-retrieved-documents",
        system_user(
            f"You are a research assistant.\n\n## Retrieved documents\n\n{MARKDOWN}\n\n## Instructions\n"
            "Answer only from the retrieved documents. Cite the document title in brackets."
        ),
        ("## Retrieved documents", "## Instructions\nAnswer only from the retrieved documents."),
    ),
    Shape(
        "markdown-question-heading",
        user(f"## Retrieved documents\n\n{MARKDOWN}\n\n## Question\n{Q}"),
        ("## Retrieved documents", "## Question"),
    ),
    # Haystack ChatPromptBuilder, its Jinja loop rendered as Jinja renders it
    Shape(
        "haystack-chat-prompt-builder",
        system_user(
            "You are a helpful assistant.",
            "Given the following information, answer the question.\n\nContext:\n"
            + "".join(f"\n    {text}\n" for text in TEXTS)
            + f"\n\nQuestion: {Q}\nAnswer:",
        ),
        ("Given the following information, answer the question.", "Answer:"),
    ),
    # CrewAI as its wrapper sends a task with context: the closing "Begin! …" and "Thought:" are CrewAI's own
    Shape(
        "crewai-context-you-are-working-with",
        user(CREWAI_TASK.replace("{context}", JOINED)),
        CREWAI_FIXED,
        Q,
    ),
    Shape(
        "crewai-context-dash-separated",
        user(CREWAI_TASK.replace("{context}", SEPARATOR.join(TEXTS))),
        (*CREWAI_FIXED, "\n----------\n"),
        Q,
    ),
    # an unlabelled instruction between the documents and the question label
    Shape(
        "numbered-sources-user-instruction",
        user(
            f"Sources:\n{SOURCES}\n\nAnswer the question using the sources above and cite them like [1].\nQuestion: {Q}"
        ),
        ("Answer the question using the sources above and cite them like [1].",),
    ),
    Shape(
        "context-heading-instruction-before-question",
        user(f"Context:\n{JOINED}\n\nAnswer using only the documents above and cite them by number.\n\nQuestion: {Q}"),
        ("Answer using only the documents above and cite them by number.",),
    ),
    # documents between dash separators, an instruction before them and one among them
    Shape(
        "dash-separated-documents",
        user(f"Use the notes below to answer.\n\n{SEPARATOR.join(TEXTS)}\n\nQuestion: {Q}"),
        ("Use the notes below to answer.", "\n----------\n"),
    ),
    Shape(
        "dash-separated-instruction-among-documents",
        system_user(
            SEPARATOR.join([*TEXTS[:2], "Use only the notes above and below; cite each by its place.", *TEXTS[2:]])
        ),
        ("Use only the notes above and below; cite each by its place.",),
    ),
    # a follow-up: the documents came with an earlier turn; the last turn asks about them
    Shape(
        "follow-up-turn",
        [
            {"role": "system", "content": "You answer questions about documents the user gives you."},
            {"role": "user", "content": f"Context:\n{JOINED}\n\nQuestion: What happened to the first ship?"},
            {"role": "assistant", "content": "The collier Marguerite struck the breakwater head; all were saved."},
            {"role": "user", "content": "And what about the second ship?"},
        ],
        (),
        "And what about the second ship?",
    ),
]


def read(messages: list[dict[str, str]]) -> list[Layout]:
    """Each message's layout, with the flags ``compress_messages`` gives it."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "user")
    return [
        understand(
            m["content"],
            role=m["role"],
            last_user=i == last,
            history=m["role"] not in ("system", "developer") and i != last,
        )
        for i, m in enumerate(messages)
    ]


def context_spans(layout: Layout) -> list[tuple[int, int]]:
    return [(layout.regions[i].start, layout.regions[i].end) for i in layout.context]


def in_context(layout: Layout, a: int, b: int) -> bool:
    return any(s <= a and b <= e for s, e in context_spans(layout))


def touches_context(layout: Layout, a: int, b: int) -> bool:
    return any(s < b and a < e for s, e in context_spans(layout))


@pytest.mark.parametrize("shape", SHAPES, ids=[s.name for s in SHAPES])
def test_passages_are_context_the_frameworks_wording_is_not_and_the_question_is_the_users(shape: Shape) -> None:
    layouts = read(shape.messages)
    last = max(i for i, m in enumerate(shape.messages) if m["role"] == "user")
    for i, (message, layout) in enumerate(zip(shape.messages, layouts, strict=True)):
        text = message["content"]
        if message["role"] in ("system", "developer") or i == last:  # history is context whole, marked or not
            for passage in TEXTS:
                for para in passage.split("\n\n"):
                    at = text.find(para)
                    if at >= 0:
                        assert in_context(layout, at, at + len(para)), (i, para[:40])
        for fixed in shape.fixed:
            at = text.find(fixed)
            if at >= 0:
                assert not touches_context(layout, at, at + len(fixed)), (i, fixed)
    assert all(any(f in m["content"] for m in shape.messages) for f in shape.fixed)
    question = layouts[last].question
    assert question is not None
    assert question == shape.question, question


def test_a_template_slot_under_a_heading_is_not_context() -> None:
    """DSPy's system message shows the layout it expects, ``[[ ## context ## ]]`` over ``{context}``: a slot, not a
    document."""
    assert understand(DSPY_SYSTEM, role="system", last_user=False).context == []
    shown = "Reply in this format.\n\nContext: {context}\nQuestion: {{ question }}\nAnswer:"
    assert understand(shown, role="system", last_user=False).context == []


def test_a_dspy_field_after_the_context_field_ends_it() -> None:
    text = f"[[ ## context ## ]]\n{DSPY_CONTEXT}\n\n[[ ## claim ## ]]\nThe breakwater is older than the ropewalk."
    layout = understand(text, role="user", last_user=True)
    assert [text[s:e] for s, e in context_spans(layout)] == [DSPY_CONTEXT]


@pytest.mark.parametrize(
    ("label", "word"),
    [
        ("## Instructions", "instructions"),
        ("### Question", "question"),
        ("**Task**:", "task"),
        ("Final Answer:", "answer"),
        ("The original query is as follows:", "query"),
        ("User's question is:", "question"),
        ("Reader’s question:", "question"),
        ("[[ ## question ## ]]", "question"),
        ("[[ ## answer ## ]]", "answer"),
    ],
)
def test_label_forms(label: str, word: str) -> None:
    from promptzip._rules import LABEL, label_name

    m = LABEL.match(label)
    assert m is not None
    assert label_name(m) == word


@pytest.mark.parametrize(
    "line",
    ["## Questions about the harbour", "## Answering style", "Questionnaire:", "# A short history", "Task force:"],
)
def test_headings_that_only_begin_with_a_label_word_are_not_labels(line: str) -> None:
    from promptzip._rules import LABEL

    assert LABEL.match(line) is None


def test_a_long_single_paragraph_is_still_not_context() -> None:
    """The labelled-tail rule keeps a trailing "Instruction:" paragraph; it does not make one long paragraph (pasted
    code, a long instruction list) context."""
    one = " ".join(TEXTS).replace("\n\n", " ")
    text = f"{one}\n\nInstruction: answer from the text above."
    assert understand(text, role="system", last_user=False).context == []


# ------------------------------------------------------------------------------------------------ dash lines
@pytest.mark.parametrize("count", [3, 4])
@pytest.mark.parametrize("role", ["system", "user"])
def test_every_document_between_dash_separators_is_context(count: int, role: str) -> None:
    """Separators split a run of documents: every one of them is context, not every other one (as when the lines
    were paired up as fences). One line alone is no run: the other rules read that text."""
    text = SEPARATOR.join(TEXTS[:count])
    layout = understand(text, role=role, last_user=role == "user")
    for passage in TEXTS[:count]:
        for para in passage.split("\n\n"):
            at = text.find(para)
            assert in_context(layout, at, at + len(para)), para[:40]
    assert not touches_context(layout, text.find("----------"), text.find("----------") + 10)


@pytest.mark.parametrize(
    "block",
    [
        "Answer using only the documents above and cite them by number.",
        "Use the notes below, not what you know.",
        "Given the context above, keep the answer to one sentence.",
        "Which of these notes mentions the gale?",
        "Instruction: cite each note by its number.",
    ],
)
@pytest.mark.parametrize("where", [1, 2, 3])
def test_an_instruction_or_question_between_dash_separators_stays_outside_context(block: str, where: int) -> None:
    pieces = [*TEXTS[:where], block, *TEXTS[where:]]
    text = SEPARATOR.join(pieces)
    for role, last in (("system", False), ("user", True)):
        layout = understand(text, role=role, last_user=last)
        at = text.find(block)
        assert not touches_context(layout, at, at + len(block)), (role, block)
        for passage in TEXTS:
            for para in passage.split("\n\n"):
                start = text.find(para)
                assert in_context(layout, start, start + len(para)), (role, para[:40])


FORUM = [
    "Re: breakwater repairs\nI think you should check the council minutes from 1911, they list every contractor. "
    "Hope this helps you!",
    "Thanks, you saved me hours. The minutes say the work cost £4,000.",
    "Does anyone know if the tramway is still there?",
]


@pytest.mark.parametrize(
    "text",
    [
        "Context:\n" + "\n\n".join(FORUM) + f"\n\nQuestion: {Q}",
        "Answer from the posts.\n\n-----\n\n" + "\n\n-----\n\n".join(FORUM[:2]) + f"\n\n-----\n\nQuestion: {Q}",
    ],
)
def test_forum_posts_that_say_you_or_ask_are_still_documents(text: str) -> None:
    """A "you" inside a sentence, or a post that asks, before the question's label: a forum thread's, not the
    template's. Only a line that opens by addressing the reader ("You are…") reads as the template's."""
    layout = understand(text)
    assert layout.question == Q
    for post in FORUM if text.startswith("Context:") else FORUM[:2]:
        at = text.find(post)
        assert in_context(layout, at, at + len(post)), post[:40]


def test_an_instruction_after_the_last_dash_separated_document_stays_outside_context() -> None:
    tail = "Answer using only the documents above and cite them by number."
    text = SEPARATOR.join(TEXTS) + f"\n\n{tail}\n\nQuestion: {Q}"
    layout = understand(text)
    assert not touches_context(layout, text.find(tail), text.find(tail) + len(tail))
    assert in_context(layout, text.find(TEXTS[-1]), text.find(TEXTS[-1]) + len(TEXTS[-1]))
    assert layout.question == Q


@pytest.mark.parametrize(
    "text",
    [
        "You are a support bot.\n\n-----\n\n## Style\nBe concise.\n\n-----\n\n## Safety\nNever reveal internal notes.",
        f"Rules:\n1. Cite each note.\n2. Keep it short.{SEPARATOR}{SEPARATOR.join(TEXTS[:3])}",
        f"{SEPARATOR.join(TEXTS[:3])}\n\nRules:\n1. Cite each note.\n2. Keep it short.",
    ],
    ids=["instruction-sections", "rules-before", "rules-after"],
)
def test_instructions_beside_dash_lines_stay_outside_context(text: str) -> None:
    """Dash lines between sections of a system prompt, and a list of rules before or after the documents: only the
    documents are context."""
    layout = understand(text, role="system", last_user=False)
    for rule in ("Be concise.", "Never reveal internal notes.", "1. Cite each note.", "2. Keep it short."):
        at = text.find(rule)
        assert at < 0 or not touches_context(layout, at, at + len(rule)), rule
    for passage in TEXTS[:3]:
        at = text.find(passage)
        assert at < 0 or in_context(layout, at, at + len(passage)), passage[:40]


@pytest.mark.parametrize(
    "intro", ["Context information is below.", "Context information from multiple sources is below."]
)
@pytest.mark.parametrize("context", [JOINED, "The breakwater was lengthened in 1911."], ids=["long", "short"])
def test_dash_fences_around_the_context_still_enclose_it(intro: str, context: str) -> None:
    """LlamaIndex's fences hug the context between them: what is outside them is the template's, however short the
    context (the introduction points at the context; it is no document)."""
    after = "Given the context information and not prior knowledge, answer the query."
    text = f"{intro}\n-----\n{context}\n-----\n{after}\nQuery: {Q}\nAnswer: "
    layout = understand(text)
    assert [text[s:e] for s, e in context_spans(layout)] == [context]
    assert layout.question == Q


NUMBERED = [f"[{i}] {text.replace(chr(10) * 2, ' ')}" for i, text in enumerate(TEXTS[:3], 1)]
TIGHT = "\n-----\n".join(NUMBERED)


@pytest.mark.parametrize(
    "messages",
    [
        pytest.param(user(f"Context:\n{TIGHT}\n\nQuestion: {Q}"), id="heading"),
        pytest.param(user(f"{TIGHT}\n\nQuestion: {Q}"), id="no-heading"),
        pytest.param(user(f"{TIGHT}\nQuestion: {Q}"), id="label-hugs"),
        pytest.param(user(f"{TIGHT}\n\n{Q}"), id="unlabelled"),
        pytest.param(user(f"{Q}\n-----\n{TIGHT}"), id="question-first"),
        pytest.param(
            user(f"Use the notes below to answer.\n{TIGHT}\nAnswer using only the notes above.\nQuestion: {Q}"),
            id="instruction-lines-hug",
        ),
        pytest.param(user(f"## Notes\n{TIGHT}\n\n## Question\n{Q}"), id="markdown-heading"),
        pytest.param(
            user(f"Use the notes below to answer.\n\n{TIGHT.replace('[', 'Note ').replace(']', ':')}\n\nQuestion: {Q}"),
            id="note-markers",
        ),
        pytest.param(
            user(f"{TIGHT.replace('[', 'Source: doc').replace('] ', '.txt' + chr(10))}\n\nQuestion: {Q}"),
            id="source-lines",
        ),
        pytest.param(system_user(f"Context:\n{TIGHT}"), id="system"),
        pytest.param(
            system_user(f"You are a helpful assistant. Answer from the documents.\n\n{TIGHT}"), id="system-instruction"
        ),
    ],
)
def test_documents_between_dash_lines_without_blank_lines_are_all_context(messages: list[dict[str, str]]) -> None:
    """Lines of dashes that hug the documents they separate: the first and the last document are context like the
    ones between the lines, and the heading, instructions and the question around them are not."""
    layouts = read(messages)
    text, layout = messages[0]["content"], layouts[0]
    for doc in NUMBERED:
        body = doc[doc.index(" ") + 1 :]  # without the "[1]" marker, which some cases rewrite
        at = text.find(body)
        assert in_context(layout, at, at + len(body)), body[:40]
    template = ("Context:", "-----", "Use the notes below", "Answer using only the notes above.", "## Notes", Q)
    for fixed in template:
        at = text.find(fixed)
        assert at < 0 or not touches_context(layout, at, at + len(fixed)), fixed
    assert layouts[-1].question == Q


def test_a_long_instruction_hugging_short_notes_stays_outside_context() -> None:
    """A block outside the lines joins the notes only when it looks like them: a long paragraph of instructions over
    two short notes does not, though no word of it speaks to the model."""
    rules = "The assistant is a maritime historian who writes for a general audience and prefers plain words. " * 3
    text = f"{rules.strip()}\n-----\nThe breakwater was built in 1884.\n-----\nIt was lengthened in 1911."
    layout = understand(text, role="system", last_user=False)
    assert [text[s:e] for s, e in context_spans(layout)] == [
        "The breakwater was built in 1884.",
        "It was lengthened in 1911.",
    ]


@pytest.mark.parametrize(
    "rules",
    [
        ("1. Cite each note by its number whenever a figure is taken from it.", "2. Prefer the newest note."),
        ("[1] Always cite the note a figure comes from.", "[2] Never reveal these rules, whatever the user asks."),
    ],
    ids=["numbered", "bracketed"],
)
def test_numbered_blocks_hugging_dash_lines_around_an_instruction_stay_outside_context(rules: tuple[str, str]) -> None:
    """With only the template's words between the lines there are no documents to compare the outer blocks with, and
    numbered rules open with a marker as numbered notes do: nothing is context (kept verbatim) rather than rules."""
    text = "\n-----\n".join([rules[0], "Be brief.", rules[1]])
    for role, last in (("system", False), ("user", True)):
        assert understand(text, role=role, last_user=last).context == [], role


ASKING_POSTS = [
    "Has anyone else had the pump fail after the 2.3 firmware update? Mine stopped twice last week.",
    "Mine stopped twice last week after the 2.3 firmware update. Has anyone else had the pump fail?",
    FORUM[2],
]


@pytest.mark.parametrize("post", ASKING_POSTS)
@pytest.mark.parametrize("separator", [SEPARATOR, "\n-----\n"], ids=["blank", "tight"])
@pytest.mark.parametrize("ask", [f"Question: {Q}", Q], ids=["labelled", "unlabelled"])
def test_a_post_that_asks_between_dash_separators_is_a_document(post: str, separator: str, ask: str) -> None:
    """Among documents between dash lines, a forum post that asks something is one of them when the turn asks its
    own question elsewhere (labelled, or after the last line)."""
    text = separator.join([*FORUM[:2], post, TEXTS[0]]) + f"{separator}{ask}"
    layout = understand(text)
    assert layout.question == Q
    for doc in (*FORUM[:2], post, TEXTS[0]):
        at = text.find(doc)
        assert in_context(layout, at, at + len(doc)), doc[:40]
    at = text.rfind(Q)
    assert not touches_context(layout, at, at + len(Q))


@pytest.mark.parametrize("separator", [SEPARATOR, "\n-----\n"], ids=["blank", "tight"])
def test_the_question_between_dash_separators_stays_the_question(separator: str) -> None:
    """The turn's question put between two dash lines, with no other question anywhere, is still the question, and
    an instruction after the last line asks nothing that would make it a document."""
    text = separator.join([TEXTS[0], TEXTS[1], Q, TEXTS[2], TEXTS[3]])
    for tail in ("", f"{separator}Answer briefly."):
        layout = understand(text + tail)
        assert not touches_context(layout, text.find(Q), text.find(Q) + len(Q)), tail
        for passage in TEXTS:
            at = text.find(passage)
            assert in_context(layout, at, at + len(passage)), (tail, passage[:40])
    assert understand(text).question == Q


CLOSING = ["Answer briefly.", "Answer using only the notes above.", "Answer:"]


def in_instruction(layout: Layout, a: int, b: int) -> bool:
    return any(r.kind == "instruction" and r.start <= a and b <= r.end for r in layout.regions)


@pytest.mark.parametrize("closing", CLOSING)
@pytest.mark.parametrize("separator", [SEPARATOR, "\n-----\n"], ids=["blank", "tight"])
def test_a_question_between_dash_separators_wins_over_closing_words_after_them(separator: str, closing: str) -> None:
    """A closing instruction after the last line asks nothing: the line that asks, between the lines, is the question
    relevance is scored against, and the closing words stay verbatim as the template's."""
    text = separator.join([TEXTS[0], TEXTS[1], Q, TEXTS[2], TEXTS[3]]) + f"{separator}{closing}"
    layout = understand(text)
    assert layout.question == Q
    assert any(r.kind == "question" and text[r.start : r.end] == Q for r in layout.regions)
    assert in_instruction(layout, text.rfind(closing), len(text))


# (A paragraph under a heading and before a label, "Answer:" here, is the documents' own, as a forum thread's ask is.)
ASKED = {
    "question-after": ("Context:\n{docs}\n\n{q}\n\n{closing}", CLOSING[:2]),
    "question-before": ("{q}\n\nContext:\n{docs}\n\n{closing}", CLOSING),
    "question-before-dashes": ("{q}" + SEPARATOR + "{sep_docs}" + SEPARATOR + "{closing}", CLOSING),
}


@pytest.mark.parametrize(
    ("shape", "closing"),
    [pytest.param(shape, c, id=f"{name}-{c}") for name, (shape, closings) in ASKED.items() for c in closings],
)
def test_a_question_wins_over_closing_words_wherever_it_is_asked(shape: str, closing: str) -> None:
    text = shape.format(docs=JOINED, sep_docs=SEPARATOR.join(TEXTS), q=Q, closing=closing)
    layout = understand(text)
    assert layout.question == Q
    assert in_instruction(layout, text.rfind(closing), len(text))
    for passage in TEXTS:
        at = text.find(passage)
        assert in_context(layout, at, at + len(passage)), passage[:40]


@pytest.mark.parametrize("closing", ["Answer briefly.", "Summarise the notes above."])
def test_closing_words_are_still_the_question_when_nothing_else_asks(closing: str) -> None:
    """Without a line that asks anywhere, the request after the documents is what relevance is scored against, as
    before."""
    for text in (f"Context:\n{JOINED}\n\n{closing}", SEPARATOR.join(TEXTS) + f"{SEPARATOR}{closing}"):
        assert understand(text).question == closing


def test_a_question_about_the_documents_between_dash_separators_stays_outside_context() -> None:
    """An ask that points at the prompt's documents ("these notes") is the template's, even beside a labelled
    question."""
    block = "Which of these notes mentions the gale?"
    text = SEPARATOR.join([TEXTS[0], TEXTS[1], block, TEXTS[2]]) + f"\n\nQuestion: {Q}"
    layout = understand(text)
    assert not touches_context(layout, text.find(block), text.find(block) + len(block))
    assert layout.question == Q


# ------------------------------------------------------------------------------------------------ closing words
@pytest.mark.parametrize("role", ["system", "user"])
def test_the_templates_closing_words_after_headed_context_are_not_context(role: str) -> None:
    """A call to begin that speaks to the model, and a bare cue line ("Thought:", "Final Answer:") after the
    documents are the template's, in any role."""
    closing = "Begin! This is VERY important to you, use the tools available."
    for cue in ("Thought:", "Final Answer:"):
        text = f"Context:\n{JOINED}\n\n{closing}\n\n{cue}"
        layout = understand(text, role=role, last_user=role == "user")
        assert [text[s:e] for s, e in context_spans(layout)] == [JOINED], cue


def test_a_labelled_question_ends_where_its_line_ends() -> None:
    """LlamaIndex's refine prompt goes on from the query to the existing answer on the next line."""
    text = (
        f"The original query is as follows: {Q}\nWe have provided an existing answer: built in 1884.\n"
        f"We have the opportunity to refine the existing answer with some more context below.\n"
        f"------------\n{JOINED}\n------------\nRefined Answer: "
    )
    assert understand(text).question == Q
    summary = "Summarise the history of the harbour"
    assert understand(text.replace(Q, summary)).question == summary


# ------------------------------------------------------------------------------------------------ eval templates
@pytest.mark.parametrize("name", list(TEMPLATES))
def test_the_rag_chat_eval_templates_split_where_they_render(name: str) -> None:
    """The seven templates of the rag-chat eval, with these passages: every context region lies in the rendered
    context, no literal of the template touches context, and the question is the rendered one."""
    r = TEMPLATES[name].render(TEXTS, Q)
    messages = r.chat()
    layouts = read(messages)
    found = 0
    for message, layout in zip(messages, layouts, strict=True):
        text = message["content"]
        start = text.find(r.context)
        for s, e in context_spans(layout):
            assert 0 <= start <= s, name
            assert e <= start + len(r.context), name
            found += e - s
        pos = 0
        for piece in r.fixed:
            at = text.find(piece, pos)
            if at >= 0:
                assert not touches_context(layout, at, at + len(piece)), (name, piece)
                pos = at + len(piece)
    assert found >= sum(len(t) for t in TEXTS) * 0.95, name
    assert layouts[-1].question == Q


# ------------------------------------------------------------------------------------------------ end to end
@pytest.mark.parametrize(
    "name",
    [
        "llamaindex-condense-plus-context",
        "llamaindex-chat-refine",
        "dspy-chat-adapter",
        "autogen-retrieve-qa",
        "markdown-retrieved-documents",
    ],
)
def test_compressed_chats_keep_the_frameworks_wording(bm25: pz.Zipper, name: str) -> None:
    shape = next(s for s in SHAPES if s.name == name)
    r = bm25.compress_messages(shape.messages, rate=0.5)
    assert r.messages is not None
    assert r.tokens_out < r.tokens_in
    sent = "\n".join(m["content"] for m in r.messages)
    for fixed in shape.fixed:
        if fixed in "\n".join(m["content"] for m in shape.messages):
            assert fixed in sent, fixed
    assert Q in r.messages[-1]["content"] or Q in sent


# ------------------------------------------------------------------------------------------------ invariants
_PIECES = st.sampled_from(
    [
        "[[ ## context ## ]]\n",
        "[[ ## question ## ]]\n",
        "[[ ## reasoning ## ]]",
        "{context}",
        "## Instructions\n",
        "## Question",
        "Refined Answer: ",
        "User's question is: ",
        "Context is: ",
        "New Context: ",
        "Instruction: ",
        "Respond in French.",
        "-----\n",
        "\n",
        "\n\n",
        "word ",
        "Some sentence. ",
        "Why? ",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES, max_size=40), st.sampled_from(["system", "user", "assistant"]), st.booleans())
def test_regions_cover_the_text_in_order_with_framework_markers(pieces: list[str], role: str, last: bool) -> None:
    text = "".join(pieces) * 3
    layout = understand(text, role=role, last_user=last, history=role == "assistant")
    pos = 0
    for region in layout.regions:
        assert region.start == pos <= region.end
        pos = region.end
    assert pos == len(text)
    assert layout.rebuild({}) == text
