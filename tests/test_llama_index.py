"""LlamaIndex: the node postprocessor inside a real ``VectorStoreIndex`` query engine built by llama-index-core, with
its own ``MockEmbedding`` and ``MockLLM`` (the mock LLM answers with the prompt it was sent, so the answer shows
exactly what reached the model; nothing leaves the machine)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import VectorStoreIndex
from llama_index.core.base.response.schema import Response
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import BaseQueryEngine
from llama_index.core.schema import ImageNode, NodeWithScore, QueryBundle, TextNode

import promptzip as pz
from promptzip.integrations.llama_index import PromptZipNodePostprocessor

QUESTION = "How tall is the Eiffel Tower?"
SEP = "\n\n"


def article_nodes(article: str) -> list[TextNode]:
    return [
        TextNode(text=p, id_=f"node-{i}", metadata={"source": f"article.txt#{i}", "page": i})
        for i, p in enumerate(article.split(SEP))
    ]


def engine(article: str, postprocessor: PromptZipNodePostprocessor) -> tuple[VectorStoreIndex, BaseQueryEngine]:
    index = VectorStoreIndex(article_nodes(article), embed_model=MockEmbedding(embed_dim=8))
    return index, index.as_query_engine(llm=MockLLM(), similarity_top_k=6, node_postprocessors=[postprocessor])


def joined(nodes: list[NodeWithScore], tokenizer: pz.Tokenizer) -> int:
    return tokenizer.count(SEP.join(n.node.get_content() for n in nodes))


def test_query_engine_sends_the_compressed_nodes(bm25: pz.Zipper, article: str, gpt4o: pz.Tokenizer) -> None:
    index, query_engine = engine(article, PromptZipNodePostprocessor(budget=60, zipper=bm25))
    retrieved = {n.node.id_: n for n in index.as_retriever(similarity_top_k=6).retrieve(QUESTION)}
    assert len(retrieved) == 6
    response = query_engine.query(QUESTION)
    assert isinstance(response, Response)
    prompt, nodes = str(response.response), response.source_nodes

    assert 0 < joined(nodes, gpt4o) <= 60 < gpt4o.count(article)
    assert 1 <= len(nodes) < 6  # nodes of which nothing was kept are dropped
    assert "330 metres" in prompt
    assert "Bananas" not in prompt
    assert QUESTION in prompt
    assert "promptzip" not in prompt
    assert "tokens_in" not in prompt
    for n in nodes:
        original = retrieved[n.node.id_]
        assert n.node.get_content() in prompt  # the model saw exactly the compressed text
        assert n.score == original.score
        assert {k: v for k, v in n.node.metadata.items() if k != "promptzip"} == original.node.metadata
        assert f"page: {original.node.metadata['page']}" in prompt  # the node's own metadata still reaches the LLM
        provenance = n.node.metadata["promptzip"]
        text = original.node.get_content()
        assert provenance["kept"]
        assert all(0 <= a < b <= len(text) for a, b in provenance["kept"])
        assert n.node.get_content() == " ".join(text[a:b] for a, b in provenance["kept"])  # one paragraph each
        assert provenance["tokens_in"] == gpt4o.count(text)
        assert provenance["tokens_out"] == gpt4o.count(n.node.get_content()) <= provenance["tokens_in"]
        assert provenance["relevance"] > 0
        assert "promptzip" in n.node.excluded_llm_metadata_keys
        assert "promptzip" in n.node.excluded_embed_metadata_keys
    # The index's own nodes are untouched.
    assert [index.docstore.get_node(f"node-{i}").get_content() for i in range(6)] == article.split(SEP)
    assert "promptzip" not in index.docstore.get_node("node-2").metadata


def test_aquery_gives_the_same_answer_and_compresses_off_the_event_loop(
    bm25: pz.Zipper, article: str, gpt4o: pz.Tokenizer
) -> None:
    class RecordingZipper(pz.Zipper):
        threads: list[int]

        def compress(self, context: Any, **kwargs: Any) -> pz.Result:
            self.threads.append(threading.get_ident())
            return super().compress(context, **kwargs)

    zipper = RecordingZipper(bm25.compressor, target="gpt-4o")
    zipper.threads = []
    _, query_engine = engine(article, PromptZipNodePostprocessor(budget=60, zipper=zipper))
    sync = query_engine.query(QUESTION)

    async def main() -> tuple[Any, int]:
        return await query_engine.aquery(QUESTION), threading.get_ident()

    async_, loop_thread = asyncio.run(main())
    assert isinstance(sync, Response)
    assert isinstance(async_, Response)
    assert async_.response == sync.response
    assert [(n.node.id_, n.node.get_content()) for n in async_.source_nodes] == [
        (n.node.id_, n.node.get_content()) for n in sync.source_nodes
    ]
    assert joined(async_.source_nodes, gpt4o) <= 60
    assert len(zipper.threads) == 2
    assert zipper.threads[1] != loop_thread


def test_rate_and_budget_objects_and_serialization(bm25: pz.Zipper, article: str, gpt4o: pz.Tokenizer) -> None:
    nodes = [NodeWithScore(node=n, score=1.0 - i / 10) for i, n in enumerate(article_nodes(article))]
    limit = int(0.4 * gpt4o.count(article))
    for postprocessor in (
        PromptZipNodePostprocessor(rate=0.4, zipper=bm25),
        PromptZipNodePostprocessor(budget=pz.Budget(rate=0.4), zipper=bm25),
    ):
        out = postprocessor.postprocess_nodes(nodes, query_str=QUESTION)
        assert 0 < joined(out, gpt4o) <= limit
        assert [n.score for n in out] == [nodes[int(n.node.id_[-1])].score for n in out]
    assert [n.node.id_ for n in out] == sorted(n.node.id_ for n in out)  # the retriever's order

    by_budget = PromptZipNodePostprocessor(budget=pz.Budget(tokens=70), preset="fast", cache="memory")
    data = by_budget.to_dict()
    assert data == {**data, "budget": 70, "rate": None, "preset": "fast", "cache": "memory"}
    again = PromptZipNodePostprocessor.from_dict(data)
    assert again.spec == pz.Budget(tokens=70)
    assert again.cache == "memory"
    assert PromptZipNodePostprocessor.from_json(PromptZipNodePostprocessor(rate=0.3).to_json()).spec.rate == 0.3


def test_nodes_that_fit_come_back_whole(bm25: pz.Zipper, article: str, gpt4o: pz.Tokenizer) -> None:
    nodes = [NodeWithScore(node=n, score=0.5) for n in article_nodes(article)]
    out = PromptZipNodePostprocessor(budget=10_000, zipper=bm25).postprocess_nodes(nodes, query_str="Bananas?")
    assert [n.node.get_content() for n in out] == article.split(SEP)  # a budget is a cap, not a filter
    for n, original in zip(out, nodes, strict=True):
        assert n.node.metadata["promptzip"]["kept"] == [[0, len(original.node.get_content())]]
        assert n.node.metadata["promptzip"]["tokens_out"] == n.node.metadata["promptzip"]["tokens_in"]
        assert n.node is not original.node
        assert "promptzip" not in original.node.metadata


def test_empty_text_and_image_nodes(bm25: pz.Zipper, article: str) -> None:
    image = NodeWithScore(node=ImageNode(image_url="http://127.0.0.1:9/tower.png", id_="img"), score=0.9)
    captioned = NodeWithScore(
        node=ImageNode(text="Bananas in a bowl, photographed in 2003.", image_url="http://127.0.0.1:9/b.png"),
        score=0.8,
    )
    blank = NodeWithScore(node=TextNode(text="  \n", id_="blank"), score=0.7)
    tower = NodeWithScore(node=article_nodes(article)[2], score=0.6)
    postprocessor = PromptZipNodePostprocessor(budget=40, zipper=bm25)
    out = postprocessor.postprocess_nodes([image, captioned, blank, tower], query_str=QUESTION)
    assert [n.node.node_id for n in out] == ["img", captioned.node.node_id, "node-2"]  # the blank node is dropped
    assert out[0] is image  # nothing to compress: passed as it is
    assert out[1].node.get_content() == ""
    assert out[1].node.metadata["promptzip"]["kept"] == []
    assert isinstance(out[1].node, ImageNode)
    assert out[1].node.image_url == "http://127.0.0.1:9/b.png"
    assert "330 metres" in out[2].node.get_content()
    assert postprocessor.postprocess_nodes([], query_str=QUESTION) == []
    assert postprocessor.postprocess_nodes([blank]) == []


def test_no_query_still_fits_the_budget(bm25: pz.Zipper, article: str, gpt4o: pz.Tokenizer) -> None:
    nodes = [NodeWithScore(node=n, score=None) for n in article_nodes(article)]
    out = PromptZipNodePostprocessor(budget=50, zipper=bm25).postprocess_nodes(nodes)
    assert 0 < joined(out, gpt4o) <= 50
    assert all(n.score is None for n in out)


def test_bad_settings_and_inputs_raise_promptzip_errors(bm25: pz.Zipper) -> None:
    with pytest.raises(pz.BudgetError, match="budget is required"):
        PromptZipNodePostprocessor(zipper=bm25)
    with pytest.raises(pz.BudgetError, match="not both"):
        PromptZipNodePostprocessor(budget=100, rate=0.5, zipper=bm25)
    with pytest.raises(pz.BudgetError, match="float"):
        PromptZipNodePostprocessor(budget=0.5)  # type: ignore[arg-type]
    with pytest.raises(pz.BudgetError, match="str"):
        PromptZipNodePostprocessor(budget="800")  # type: ignore[arg-type]
    with pytest.raises(pz.BudgetError, match=r"\(0, 1\]"):
        PromptZipNodePostprocessor(rate=1.5)
    with pytest.raises(pz.ConfigError, match="unknown preset"):
        PromptZipNodePostprocessor(budget=100, preset="nope")
    with pytest.raises(pz.ConfigError, match="zipper"):
        PromptZipNodePostprocessor(budget=100, zipper="fast")  # type: ignore[arg-type]
    with pytest.raises(pz.ConfigError, match="target"):
        PromptZipNodePostprocessor(budget=100, target=None)  # type: ignore[arg-type]

    postprocessor = PromptZipNodePostprocessor(budget=100, zipper=bm25)
    good = NodeWithScore(node=TextNode(text="The tower is 330 metres tall."), score=1.0)
    with pytest.raises(pz.InputError, match="nodes must be"):
        postprocessor.postprocess_nodes("not nodes", query_str=QUESTION)  # type: ignore[arg-type]
    with pytest.raises(pz.InputError, match=r"nodes\[1\]"):
        postprocessor.postprocess_nodes([good, TextNode(text="bare")], query_str=QUESTION)  # type: ignore[list-item]
    with pytest.raises(pz.InputError, match=r"nodes\[0\].*NUL"):
        postprocessor.postprocess_nodes([NodeWithScore(node=TextNode(text="a\x00b"))], query_str=QUESTION)
    with pytest.raises(pz.InputError, match="query"):
        postprocessor.postprocess_nodes([good], query_bundle=QueryBundle(query_str=42))  # type: ignore[arg-type]
    with pytest.raises(pz.InputError, match="query"):
        asyncio.run(postprocessor.apostprocess_nodes([good], query_bundle=QueryBundle(query_str=b"\xff")))  # type: ignore[arg-type]


def test_importing_promptzip_does_not_import_llama_index() -> None:
    script = textwrap.dedent(
        """
        import sys
        import promptzip, promptzip.integrations
        assert "llama_index" not in sys.modules, "import promptzip imported llama_index"
        import promptzip.integrations.llama_index
        assert "llama_index.core" in sys.modules
        del sys.modules["promptzip.integrations.llama_index"]
        for name in [m for m in sys.modules if m == "llama_index" or m.startswith("llama_index.")]:
            del sys.modules[name]
        sys.modules["llama_index"] = None  # as if it were not installed
        try:
            import promptzip.integrations.llama_index
        except ImportError as exc:
            assert "pip install 'promptzip[llama_index]'" in str(exc), exc
        else:
            raise AssertionError("no ImportError without llama-index-core")
        """
    )
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    out = subprocess.run([sys.executable, "-P", "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr


@pytest.mark.slow
def test_fast_preset_in_a_query_engine(fast: pz.Zipper, article: str, gpt4o: pz.Tokenizer) -> None:
    _, query_engine = engine(article, PromptZipNodePostprocessor(budget=80, zipper=fast))
    response = query_engine.query(QUESTION)
    assert isinstance(response, Response)
    assert "330 metres" in str(response.response)
    assert "Bananas" not in str(response.response)
    assert 0 < joined(response.source_nodes, gpt4o) <= 80
