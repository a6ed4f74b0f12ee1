"""Shared test data for the request-understanding tests: three short documents of one article (the harbour at
Kestrel Bay), a question they answer, and the roles a text is read in (whether it is the turn being answered)."""

from __future__ import annotations

DOCS = [
    "The harbour at Kestrel Bay was first dredged in 1871, when the herring fleet outgrew the tidal creek that had "
    "served the village since medieval times. The work took four summers and used almost all of the council's money.",
    "A granite breakwater followed in 1884, quarried on the north headland and hauled down on a narrow-gauge tramway. "
    "It was lengthened by sixty metres in 1911 after a winter gale broke over the old head.",
    "Two ships were lost off Kestrel Bay in the gale of February 1911. The collier Marguerite dragged her anchors and "
    "struck the breakwater head; all nine of her crew were taken off by the lifeboat.",
]
Q = "When was the breakwater lengthened?"
ROLES = [("system", False), ("user", True)]


def through_the_proxy(sdk: str, system: str | None, user: str, rate: str = "0.4") -> tuple[str | None, str]:
    """What the provider gets of ``system`` and ``user`` sent with the real ``sdk`` through a running proxy (BM25
    stack) at the ``x-promptzip-rate`` given (0.4 unless ``rate`` says)."""
    from proxy_helpers import bm25, last_body, settings

    from promptzip.integrations.proxy import create_app
    from promptzip.integrations.proxy.testing import FakeUpstream, live_server

    headers = {"x-promptzip-rate": rate}
    with FakeUpstream() as upstream, live_server(create_app(settings(upstream.url), zipper_factory=bm25)) as proxy:
        if sdk == "openai":
            import openai

            chat = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
            with openai.OpenAI(base_url=proxy + "/v1", api_key="sk-test", max_retries=0) as client:
                client.chat.completions.create(model="gpt-4o", messages=chat, extra_headers=headers)
            sent = [m["content"] for m in last_body(upstream, "/v1/chat/completions")["messages"]]
            return (sent[0] if system else None), sent[-1]
        import anthropic

        with anthropic.Anthropic(base_url=proxy, api_key="sk-ant-test", max_retries=0) as claude:
            claude.messages.create(
                model="claude-sonnet-4-5",
                max_tokens=100,
                messages=[{"role": "user", "content": user}],
                extra_headers=headers,
                **({"system": system} if system else {}),
            )
        body = last_body(upstream, "/v1/messages")
    texts = [
        c if isinstance(c, str) else "".join(b["text"] for b in c)
        for c in (body.get("system"), body["messages"][0]["content"])
        if c is not None
    ]
    return (texts[0] if system else None), texts[-1]


def system_cut_through_the_proxy(sdk: str, system: str, lead: str, question: str, rate: str, share: float) -> str:
    """The system message the provider gets (see :func:`through_the_proxy`), checked to keep ``lead`` whole, to be
    under ``share`` of its length (its documents were cut) and to leave the user's ``question`` as it was."""
    sent_system, sent_user = through_the_proxy(sdk, system, question, rate)
    assert sent_user == question
    assert sent_system is not None
    assert sent_system.startswith(lead)
    assert len(sent_system) < len(system) * share
    return sent_system
