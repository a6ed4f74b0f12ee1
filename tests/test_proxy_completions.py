"""The proxy speaks OpenAI's legacy Completions API: ``POST /v1/completions`` through the real ``openai`` SDK.

A real uvicorn proxy (the model-free BM25 stack) in front of the recording fake upstream, as a raw prompt is sent
to a vLLM, TGI or llama.cpp server: the context of a ``prompt`` string (or a list of one) shrinks to the budget
while its instruction and question arrive byte for byte, every other field arrives as sent, streams are relayed,
a prompt the proxy must not change (token ids, several prompts, ``echo``, a short one) is forwarded byte for byte
with the reason, and a prompt of the wrong type is a 400 OpenAI-style JSON error. Also: ``pz.wrap`` sends what the
proxy sends, and an OpenAI batch file's ``/v1/completions`` lines are compressed as the route compresses a body.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
from proxy_helpers import bm25, last_body, settings, uploaded_lines

import promptzip as pz
from promptzip._cache import MemoryCache
from promptzip.integrations.proxy import COMPLETIONS, DIALECT_PATHS, ProxySettings, RouteSettings, create_app
from promptzip.integrations.proxy.testing import FakeUpstream, live_server

BUDGET = 200
MODEL = "Qwen/Qwen2.5-7B-Instruct"
INSTRUCTION = "Answer the question using only the documents below."
QUESTION = "How many ships did the harbour of Bergen handle in 1912?"
ANSWER = "In 1912 the harbour of Bergen handled 412 ships, a record for the port."
TOPICS = ["bananas", "volcanoes", "chess openings", "glaciers", "violins", "tea", "comets", "bridges", "owls"]
TEXTS = [
    " ".join(f"Fact {j} about {topic} is that {topic} differ in shape and age." for j in range(6)) for topic in TOPICS
]
TEXTS.insert(4, f"{ANSWER} Most of them carried fish and timber to the continent.")  # the one that answers
DOCUMENTS = [f"Document {i + 1}: {text}" for i, text in enumerate(TEXTS)]
TAIL = f"Question: {QUESTION}\nAnswer:"
PROMPT = f"{INSTRUCTION}\n\nContext:\n" + "\n\n".join(DOCUMENTS) + f"\n\n{TAIL}"


@pytest.fixture
def sdk(live: str) -> Iterator[Callable[..., openai.OpenAI]]:
    """Builds the real SDK against the proxy with ``x-promptzip-budget``; each client records the bytes it sent
    (``sent[-1]``), through httpx's own request hook. Every client is closed after the test."""
    opened: list[openai.OpenAI] = []

    def build(budget: int = BUDGET, sent: list[bytes] | None = None) -> openai.OpenAI:
        hooks = {"request": [lambda r: sent.append(r.read())]} if sent is not None else {}
        opened.append(
            openai.OpenAI(
                base_url=live + "/v1",
                api_key="sk-test",
                default_headers={"x-promptzip-budget": str(budget)},
                max_retries=0,
                http_client=openai.DefaultHttpxClient(event_hooks=hooks),
            )
        )
        return opened[-1]

    yield build
    for c in opened:
        c.close()


def sent_prompt(upstream: FakeUpstream) -> Any:
    return last_body(upstream, COMPLETIONS)["prompt"]


def assert_compressed_well(prompt: str, gpt4o: pz.Tokenizer) -> None:
    """``prompt`` kept the instruction, the answering document and the question, and lost other documents."""
    assert gpt4o.count(prompt) <= BUDGET < gpt4o.count(PROMPT)
    assert prompt.startswith(INSTRUCTION)
    assert prompt.endswith(TAIL)
    assert ANSWER in prompt
    assert sum(doc in prompt for doc in DOCUMENTS) < len(DOCUMENTS) - 3


# ------------------------------------------------------------------------------------------------- compressed
def test_a_long_prompt_arrives_within_the_budget(
    sdk: Callable[..., openai.OpenAI], upstream: FakeUpstream, gpt4o: pz.Tokenizer
) -> None:
    raw = sdk().completions.with_raw_response.create(model=MODEL, prompt=PROMPT, max_tokens=32)
    assert raw.headers["x-promptzip-status"] == "compressed"
    assert int(raw.headers["x-promptzip-tokens-out"]) <= BUDGET < int(raw.headers["x-promptzip-tokens-in"])
    assert int(raw.headers["x-promptzip-regions-compressed"]) >= 1
    assert raw.headers["x-promptzip-method"] == "extractive"
    sent = sent_prompt(upstream)
    assert_compressed_well(sent, gpt4o)
    completion = raw.parse()  # the fake's Completions answer, parsed by the SDK: it counted what arrived
    assert (completion.object, completion.choices[0].finish_reason) == ("text_completion", "stop")
    assert completion.choices[0].text == f"1 prompts, {len(sent)} characters"


def test_a_list_of_one_prompt_stays_a_list_of_one(
    sdk: Callable[..., openai.OpenAI], upstream: FakeUpstream, gpt4o: pz.Tokenizer
) -> None:
    raw = sdk().completions.with_raw_response.create(model=MODEL, prompt=[PROMPT], max_tokens=32)
    assert raw.headers["x-promptzip-status"] == "compressed"
    sent = sent_prompt(upstream)
    assert isinstance(sent, list)
    assert len(sent) == 1
    assert_compressed_well(sent[0], gpt4o)


@pytest.mark.parametrize(
    "template",
    [
        "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n",
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|><|start_header_id|>user"
        "<|end_header_id|>\n\n{user}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
        "<s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST]",
        "{system}\n\nUSER: {user}\nASSISTANT:",
        "\n\nHuman: {system}\n\n{user}\n\nAssistant:",
    ],
    ids=["chatml", "llama3", "llama2", "vicuna", "human-assistant"],
)
def test_a_prompt_in_a_chat_template_keeps_its_markers_and_turns(
    template: str, sdk: Callable[..., openai.OpenAI], upstream: FakeUpstream
) -> None:
    user = "Context:\n" + "\n\n".join(DOCUMENTS) + f"\n\n{TAIL}"
    prompt = template.format(system=INSTRUCTION, user=user)
    raw = sdk().completions.with_raw_response.create(model=MODEL, prompt=prompt, max_tokens=32)
    assert raw.headers["x-promptzip-status"] == "compressed"
    sent = sent_prompt(upstream)
    head, tail = template.split("{user}")
    assert sent.startswith(head.format(system=INSTRUCTION) + "Context:\n")  # the markers and the system turn
    assert sent.endswith(TAIL + tail)  # the question, and the markers after it
    assert ANSWER in sent
    assert len(sent) < len(prompt) * 0.6


def test_a_prompt_with_a_megabyte_of_blanks_is_compressed_with_its_markers(
    sdk: Callable[..., openai.OpenAI], upstream: FakeUpstream
) -> None:
    """A run of blanks used to cost the template scan its length squared, in the interpreter every client shares,
    and a million blanks made tiktoken's pre-tokenizer panic (a 500)."""
    run = " " * 1_000_000
    context = "\n\n".join(DOCUMENTS[:3]) + run + "\n\n" + "\n\n".join(DOCUMENTS[3:])
    prompt = f"<s>[INST] <<SYS>>\n{INSTRUCTION}\n<</SYS>>\n\nContext:\n{context}\n\n{TAIL} [/INST]"
    raw = sdk().with_options(timeout=60).completions.with_raw_response.create(model=MODEL, prompt=prompt, max_tokens=8)
    assert raw.headers["x-promptzip-status"] == "compressed"
    assert int(raw.headers["x-promptzip-tokens-out"]) <= BUDGET < int(raw.headers["x-promptzip-tokens-in"])
    sent = sent_prompt(upstream)
    assert sent.startswith(f"<s>[INST] <<SYS>>\n{INSTRUCTION}\n<</SYS>>\n\nContext:\n")
    assert sent.endswith(f"{TAIL} [/INST]")
    assert ANSWER in sent
    assert len(sent) < 5_000


def test_every_other_field_arrives_as_sent(sdk: Callable[..., openai.OpenAI], upstream: FakeUpstream) -> None:
    fields: dict[str, Any] = {
        "model": MODEL,
        "suffix": "\n\nThat is the answer.",
        "max_tokens": 64,
        "n": 2,
        "best_of": 3,
        "temperature": 0.25,
        "top_p": 0.9,
        "stop": ["\n\n", "Question:"],
        "logit_bias": {"50256": -100},
        "logprobs": 2,
        "seed": 7,
        "user": "user-42",
        "presence_penalty": 0.5,
    }
    raw = sdk().completions.with_raw_response.create(prompt=PROMPT, extra_body={"top_k": 20}, **fields)
    assert raw.headers["x-promptzip-status"] == "compressed"
    body = last_body(upstream, COMPLETIONS)
    assert len(body.pop("prompt")) < len(PROMPT)
    assert body == {**fields, "top_k": 20}  # vLLM's own sampling fields too


def test_a_stream_is_relayed_through_the_sdk(
    sdk: Callable[..., openai.OpenAI], upstream: FakeUpstream, gpt4o: pz.Tokenizer
) -> None:
    raw = sdk().completions.with_raw_response.create(model=MODEL, prompt=PROMPT, max_tokens=32, stream=True)
    assert raw.headers["x-promptzip-status"] == "compressed"
    chunks = list(raw.parse())
    assert "".join(c.choices[0].text for c in chunks) == "".join(f"part{i} " for i in range(upstream.chunks))
    assert [c.choices[0].finish_reason for c in chunks][-2:] == [None, "stop"]
    assert last_body(upstream, COMPLETIONS)["stream"] is True
    assert_compressed_well(sent_prompt(upstream), gpt4o)


# ----------------------------------------------------------------------------------------- forwarded as it came
TOKEN_IDS = list(range(1000, 3000))  # long enough to compress, were they text
AS_IT_CAME: dict[str, tuple[dict[str, Any], str]] = {
    "token-ids": ({"prompt": TOKEN_IDS}, "token-ids"),
    "token-id-lists": ({"prompt": [TOKEN_IDS, TOKEN_IDS[:50]]}, "token-ids"),
    "several-prompts": ({"prompt": [PROMPT, PROMPT.replace("Bergen", "Oslo")]}, "several-prompts"),
    "echo": ({"prompt": PROMPT, "echo": True, "logprobs": 1}, "echo"),
    "empty": ({"prompt": ""}, "nothing-to-compress"),
    "short": ({"prompt": f"{INSTRUCTION}\n\n{TAIL}"}, "below-min-tokens"),
}


@pytest.mark.parametrize("name", list(AS_IT_CAME))
def test_a_prompt_the_proxy_must_not_change_arrives_byte_for_byte(
    name: str, sdk: Callable[..., openai.OpenAI], upstream: FakeUpstream
) -> None:
    request, reason = AS_IT_CAME[name]
    sent: list[bytes] = []
    raw = sdk(sent=sent).completions.with_raw_response.create(model=MODEL, max_tokens=16, **request)
    assert (raw.headers["x-promptzip-status"], raw.headers["x-promptzip-reason"]) == ("passthrough", reason)
    assert upstream.requests[-1].target == COMPLETIONS
    assert upstream.requests[-1].body == sent[-1]
    if name == "echo":  # the answer hands back the prompt the client sent, as the server echoed it
        assert raw.parse().choices[0].text.startswith(PROMPT)


@pytest.mark.parametrize(
    ("request_", "message", "param"),
    [
        ({"prompt": 12}, "prompt must be a string or an array, not a number", "prompt"),
        ({"prompt": {"text": PROMPT}}, "prompt must be a string or an array, not an object", "prompt"),
        ({"prompt": [PROMPT, 101]}, "prompt must not mix strings, token ids and arrays of token ids", "prompt"),
        ({"prompt": [[1, 2], ["x"]]}, "prompt[1] must be a string, a token id or an array of token ids", "prompt[1]"),
        ({"prompt": [True]}, "prompt[0] must be a string, a token id or an array of token ids", "prompt[0]"),
        ({"prompt": PROMPT, "echo": "true"}, "echo must be a boolean, not a string", "echo"),
    ],
    ids=["number", "object", "mixed", "mixed-lists", "boolean", "echo-string"],
)
def test_a_prompt_of_the_wrong_type_is_an_openai_style_400(
    request_: dict[str, Any], message: str, param: str, sdk: Callable[..., openai.OpenAI], upstream: FakeUpstream
) -> None:
    before = len(upstream.requests)
    with pytest.raises(openai.BadRequestError) as caught:
        sdk().completions.create(model=MODEL, **request_)
    assert caught.value.status_code == 400
    assert caught.value.body == {
        "message": message,
        "type": "invalid_request_error",
        "param": param,
        "code": "invalid_type",
    }
    assert len(upstream.requests) == before  # refused here, never sent


def test_the_route_is_compressed_by_default_and_can_be_turned_off(upstream: FakeUpstream) -> None:
    assert DIALECT_PATHS[COMPLETIONS] == "completions"
    assert ProxySettings(upstream=upstream.url).route(COMPLETIONS) == RouteSettings()
    off = settings(upstream.url, routes={COMPLETIONS: RouteSettings(compress=False)})
    with (
        live_server(create_app(off, zipper_factory=bm25)) as proxy,
        openai.OpenAI(base_url=proxy + "/v1", api_key="sk-test", max_retries=0) as client,
    ):
        raw = client.completions.with_raw_response.create(model=MODEL, prompt=PROMPT)
    assert "x-promptzip-status" not in raw.headers
    assert sent_prompt(upstream) == PROMPT


# ---------------------------------------------------------------------------------------------- other doors
def fresh() -> pz.Zipper:
    """The proxy tests' stack with a cache of its own, so no conversation state carries over between requests."""
    return bm25("fast", "gpt-4o", MemoryCache())


def test_a_wrapped_client_sends_what_the_proxy_sends(
    sdk: Callable[..., openai.OpenAI], upstream: FakeUpstream, gpt4o: pz.Tokenizer
) -> None:
    request = {"model": MODEL, "prompt": PROMPT.replace("Answer:", "Answer (wrapped):"), "max_tokens": 32}
    sdk().completions.create(**request)
    proxied = last_body(upstream, COMPLETIONS)
    with openai.OpenAI(base_url=upstream.url, api_key="sk-test", max_retries=0) as client:
        wrapped = pz.wrap(client, budget=BUDGET, zipper=fresh())
        completion = wrapped.completions.create(**request)
        assert last_body(upstream, COMPLETIONS) == proxied
        assert len(proxied["prompt"]) < len(request["prompt"])
        assert completion.choices[0].text == f"1 prompts, {len(proxied['prompt'])} characters"
        for given in (TOKEN_IDS, bytes(range(200)), [PROMPT, PROMPT]):  # the SDK sends bytes as token ids
            wrapped.completions.create(model=MODEL, prompt=given)
            unwrapped = upstream.requests[-1].body
            client.completions.create(model=MODEL, prompt=given)
            assert unwrapped == upstream.requests[-1].body
        wrapped.completions.create(model=MODEL, prompt=PROMPT, echo=True)
        assert sent_prompt(upstream) == PROMPT
        with pytest.raises(pz.InputError, match="must not mix"):
            wrapped.completions.create(model=MODEL, prompt=[PROMPT, 3])


def test_a_batch_files_completions_lines_are_compressed_as_the_route_compresses_them(
    sdk: Callable[..., openai.OpenAI], upstream: FakeUpstream, gpt4o: pz.Tokenizer
) -> None:
    prompt = PROMPT.replace("Answer:", "Answer (batch):")
    lines = [
        {"custom_id": "rag", "method": "POST", "url": COMPLETIONS, "body": {"model": MODEL, "prompt": prompt}},
        {"custom_id": "ids", "method": "POST", "url": COMPLETIONS, "body": {"model": MODEL, "prompt": TOKEN_IDS}},
    ]
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    raw = sdk().files.with_raw_response.create(file=("b.jsonl", data), purpose="batch")
    assert raw.headers["x-promptzip-batch-requests"] == "2"
    assert raw.headers["x-promptzip-batch-requests-compressed"] == "1"
    got = uploaded_lines(upstream.requests[-1])
    assert got[1] == lines[1]
    assert {**got[0], "body": {**got[0]["body"], "prompt": prompt}} == lines[0]
    sdk().completions.create(model=MODEL, prompt=prompt)  # the same body alone, on the route
    assert got[0]["body"]["prompt"] == sent_prompt(upstream) != prompt
    with openai.OpenAI(base_url=upstream.url, api_key="sk-test", max_retries=0) as client:
        pz.wrap(client, budget=BUDGET, zipper=fresh()).files.create(file=("b.jsonl", data), purpose="batch")
    assert uploaded_lines(upstream.requests[-1]) == got
