"""Haystack: the document compressor as a component of a real Haystack pipeline (``InMemoryDocumentStore`` →
``InMemoryBM25Retriever`` → compressor → ``PromptBuilder``), run sync and async, and serialized with
``Pipeline.dumps`` / ``Pipeline.loads``. Nothing leaves the machine: telemetry is off before Haystack loads."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
from typing import Any

import pytest

os.environ["HAYSTACK_TELEMETRY_ENABLED"] = "False"  # before the first import of haystack: it would phone home
pytest.importorskip("haystack")

from haystack import Document, Pipeline
from haystack.components.builders import PromptBuilder
from haystack.components.retrievers.in_memory import InMemoryBM25Retriever
from haystack.dataclasses import ByteStream
from haystack.document_stores.in_memory import InMemoryDocumentStore

import promptzip as pz
from promptzip.integrations.haystack import PromptZipDocumentCompressor

QUESTION = "How tall is the Eiffel Tower?"
SEP = "\n\n"
MODULE = "promptzip.integrations.haystack"
TEMPLATE = """Answer from the context only.
Context:
{% for document in documents %}{{ document.content }}{% if not loop.last %}

{% endif %}{% endfor %}
Question: {{ query }}
Answer:"""


def article_documents(article: str) -> list[Document]:
    return [
        Document(content=p, id=f"doc-{i}", meta={"source": f"article.txt#{i}", "page": i})
        for i, p in enumerate(article.split(SEP))
    ]


def rag_pipeline(article: str, compressor: PromptZipDocumentCompressor) -> Pipeline:
    store = InMemoryDocumentStore()
    store.write_documents(article_documents(article))
    pipeline = Pipeline()
    pipeline.add_component("retriever", InMemoryBM25Retriever(store, top_k=6))
    pipeline.add_component("compressor", compressor)
    pipeline.add_component("prompt_builder", PromptBuilder(TEMPLATE, required_variables=["documents", "query"]))
    pipeline.connect("retriever.documents", "compressor.documents")
    pipeline.connect("compressor.documents", "prompt_builder.documents")
    return pipeline


def inputs(question: str = QUESTION) -> dict[str, Any]:
    return {"retriever": {"query": question}, "compressor": {"query": question}, "prompt_builder": {"query": question}}


def joined(docs: list[Document], tokenizer: pz.Tokenizer) -> int:
    return tokenizer.count(SEP.join(d.content or "" for d in docs))


def test_pipeline_prompt_holds_the_compressed_documents(bm25: pz.Zipper, article: str, gpt4o: pz.Tokenizer) -> None:
    pipeline = rag_pipeline(article, PromptZipDocumentCompressor(budget=60, zipper=bm25))
    out = pipeline.run(inputs(), include_outputs_from={"retriever", "compressor"})
    retrieved = {d.id: d for d in out["retriever"]["documents"]}
    docs, prompt = out["compressor"]["documents"], out["prompt_builder"]["prompt"]

    assert len(retrieved) == 6
    assert 0 < joined(docs, gpt4o) <= 60 < gpt4o.count(article)
    assert 1 <= len(docs) < 6  # documents of which nothing was kept are dropped
    assert "330 metres" in prompt
    assert "Bananas" not in prompt
    assert prompt.startswith("Answer from the context only.")
    assert prompt.endswith(f"Question: {QUESTION}\nAnswer:")
    context = prompt[prompt.index("Context:\n") + len("Context:\n") : prompt.index("\nQuestion:")]
    assert context == SEP.join(d.content or "" for d in docs)  # exactly the compressed documents, nothing else
    for d in docs:
        original = retrieved[d.id]
        assert d.score == original.score is not None
        assert {k: v for k, v in d.meta.items() if k != "promptzip"} == original.meta
        provenance = d.meta["promptzip"]
        text = original.content or ""
        assert provenance["kept"]
        assert all(0 <= a < b <= len(text) for a, b in provenance["kept"])
        assert d.content == " ".join(text[a:b] for a, b in provenance["kept"])  # one paragraph each
        assert provenance["tokens_in"] == gpt4o.count(text)
        assert provenance["tokens_out"] == gpt4o.count(d.content or "") <= provenance["tokens_in"]
        assert provenance["relevance"] > 0
    assert all("promptzip" not in d.meta for d in retrieved.values())  # the retriever's documents are untouched


def test_run_async_in_the_pipeline_gives_the_same_prompt_off_the_event_loop(
    bm25: pz.Zipper, article: str, gpt4o: pz.Tokenizer
) -> None:
    class RecordingZipper(pz.Zipper):
        threads: list[int]

        def compress(self, context: Any, **kwargs: Any) -> pz.Result:
            self.threads.append(threading.get_ident())
            return super().compress(context, **kwargs)

    zipper = RecordingZipper(bm25.compressor, target="gpt-4o")
    zipper.threads = []
    pipeline = rag_pipeline(article, PromptZipDocumentCompressor(budget=60, zipper=zipper))
    sync = pipeline.run(inputs(), include_outputs_from={"compressor"})

    async def main() -> tuple[dict[str, Any], int]:
        return await pipeline.run_async(inputs(), include_outputs_from={"compressor"}), threading.get_ident()

    async_, loop_thread = asyncio.run(main())
    assert async_["prompt_builder"]["prompt"] == sync["prompt_builder"]["prompt"]
    assert async_["compressor"]["documents"] == sync["compressor"]["documents"]
    assert joined(async_["compressor"]["documents"], gpt4o) <= 60
    assert len(zipper.threads) == 2
    assert zipper.threads[1] != loop_thread


def test_pipeline_dumps_and_loads(article: str) -> None:
    pipeline = rag_pipeline(article, PromptZipDocumentCompressor(budget=pz.Budget(tokens=70), cache="memory"))
    yaml = pipeline.dumps()
    assert f"type: {MODULE}.PromptZipDocumentCompressor" in yaml
    loaded = Pipeline.loads(yaml, allowed_modules=[MODULE])
    before, after = pipeline.to_dict(), loaded.to_dict()
    assert after["components"] == before["components"]  # every init parameter survived
    assert sorted(map(str, after["connections"])) == sorted(map(str, before["connections"]))
    compressor = loaded.get_component("compressor")
    assert isinstance(compressor, PromptZipDocumentCompressor)
    assert compressor.spec == pz.Budget(tokens=70)
    assert (compressor.preset, compressor.target, compressor.cache) == ("fast", "gpt-4o", "memory")

    by_rate = PromptZipDocumentCompressor(rate=0.25, preset="balanced", target="cl100k_base")
    data = by_rate.to_dict()
    assert data["init_parameters"] == {
        "budget": None,
        "rate": 0.25,
        "preset": "balanced",
        "target": "cl100k_base",
        "cache": None,
    }
    assert PromptZipDocumentCompressor.from_dict(data).to_dict() == data


def test_a_ready_zipper_is_not_silently_lost_in_serialization(bm25: pz.Zipper, article: str) -> None:
    pipeline = rag_pipeline(article, PromptZipDocumentCompressor(budget=60, zipper=bm25))
    with pytest.raises(pz.ConfigError, match="cannot be serialized"):
        pipeline.dumps()


def test_documents_that_fit_come_back_whole(bm25: pz.Zipper, article: str) -> None:
    docs = article_documents(article)
    out = PromptZipDocumentCompressor(budget=10_000, zipper=bm25).run(documents=docs, query="Bananas?")["documents"]
    assert [d.content for d in out] == article.split(SEP)  # a budget is a cap, not a filter
    for d, original in zip(out, docs, strict=True):
        assert d.id == original.id
        assert d is not original
        assert d.meta["promptzip"]["kept"] == [[0, len(original.content or "")]]
        assert d.meta["promptzip"]["tokens_out"] == d.meta["promptzip"]["tokens_in"]
        assert "promptzip" not in original.meta


def test_blob_and_empty_documents(bm25: pz.Zipper, article: str) -> None:
    blob_only = Document(blob=ByteStream(b"\x89PNG", mime_type="image/png"), id="png", score=0.9)
    captioned = Document(content="Bananas in a bowl, photographed in 2003.", blob=ByteStream(b"\x89PNG"), id="cap")
    blank = Document(content="  \n", id="blank")
    tower = article_documents(article)[2]
    compressor = PromptZipDocumentCompressor(budget=40, zipper=bm25)
    out = compressor.run(documents=[blob_only, captioned, blank, tower], query=QUESTION)["documents"]
    assert [d.id for d in out] == ["png", "cap", "doc-2"]  # the blank document is dropped
    assert out[0] is blob_only  # nothing to compress: passed as it is
    assert out[1].content == ""
    assert out[1].blob == captioned.blob
    assert out[1].meta["promptzip"]["kept"] == []
    assert "330 metres" in (out[2].content or "")
    assert compressor.run(documents=[], query=QUESTION) == {"documents": []}
    assert compressor.run(documents=[blank], query="") == {"documents": []}


def test_bad_settings_and_inputs_raise_promptzip_errors(bm25: pz.Zipper) -> None:
    with pytest.raises(pz.BudgetError, match="budget is required"):
        PromptZipDocumentCompressor(zipper=bm25)
    with pytest.raises(pz.BudgetError, match="not both"):
        PromptZipDocumentCompressor(budget=100, rate=0.5, zipper=bm25)
    with pytest.raises(pz.BudgetError, match="float"):
        PromptZipDocumentCompressor(budget=0.5)  # type: ignore[arg-type]
    with pytest.raises(pz.BudgetError, match=r"\(0, 1\]"):
        PromptZipDocumentCompressor(rate=0.0)
    with pytest.raises(pz.ConfigError, match="unknown preset"):
        PromptZipDocumentCompressor(budget=100, preset="nope")
    with pytest.raises(pz.ConfigError, match="zipper"):
        PromptZipDocumentCompressor(budget=100, zipper=object())  # type: ignore[arg-type]
    with pytest.raises(pz.ConfigError, match="cache"):
        PromptZipDocumentCompressor(budget=100, cache=3)  # type: ignore[arg-type]

    compressor = PromptZipDocumentCompressor(budget=100, zipper=bm25)
    good = Document(content="The tower is 330 metres tall.")
    with pytest.raises(pz.InputError, match="documents must be"):
        compressor.run(documents="not documents", query=QUESTION)  # type: ignore[arg-type]
    with pytest.raises(pz.InputError, match=r"documents\[1\]"):
        compressor.run(documents=[good, {"content": "a dict"}], query=QUESTION)  # type: ignore[list-item]
    with pytest.raises(pz.InputError, match=r"documents\[0\].content.*NUL"):
        compressor.run(documents=[Document(content="a\x00b")], query=QUESTION)
    with pytest.raises(pz.InputError, match="query"):
        compressor.run(documents=[good], query=None)  # type: ignore[arg-type]
    with pytest.raises(pz.InputError, match="query"):
        asyncio.run(compressor.run_async(documents=[good], query=42))  # type: ignore[arg-type]


def test_importing_promptzip_does_not_import_haystack() -> None:
    script = textwrap.dedent(
        """
        import sys
        import promptzip, promptzip.integrations
        assert "haystack" not in sys.modules, "import promptzip imported haystack"
        sys.modules["haystack"] = None  # as if it were not installed
        try:
            import promptzip.integrations.haystack
        except ImportError as exc:
            assert "pip install 'promptzip[haystack]'" in str(exc), exc
        else:
            raise AssertionError("no ImportError without haystack-ai")
        """
    )
    env = {**os.environ, "PYTHONWARNINGS": "error", "HAYSTACK_TELEMETRY_ENABLED": "False"}
    out = subprocess.run([sys.executable, "-P", "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr


@pytest.mark.slow
def test_fast_preset_pipeline_after_a_round_trip(article: str, gpt4o: pz.Tokenizer) -> None:
    pipeline = rag_pipeline(article, PromptZipDocumentCompressor(budget=80, cache="memory"))
    loaded = Pipeline.loads(pipeline.dumps(), allowed_modules=[MODULE])
    out = loaded.run(inputs(), include_outputs_from={"compressor"})
    prompt = out["prompt_builder"]["prompt"]
    assert "330 metres" in prompt
    assert "Bananas" not in prompt
    assert 0 < joined(out["compressor"]["documents"], gpt4o) <= 80
