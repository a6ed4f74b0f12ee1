"""What the LangChain tests share: the test article as Documents, their joined token count, and LangChain
embeddings from promptzip's packaged MiniLM (for a real FAISS store)."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

import promptzip as pz
from promptzip._models import load_sentence_encoder

SEP = "\n\n"


def documents(article: str) -> list[Document]:
    return [
        Document(page_content=p, metadata={"source": f"article.txt#{i}", "page": i}, id=f"doc-{i}")
        for i, p in enumerate(article.split(SEP))
    ]


def joined_tokens(docs: Sequence[Document], tokenizer: pz.Tokenizer) -> int:
    return tokenizer.count(SEP.join(d.page_content for d in docs))


class MiniLMEmbeddings(Embeddings):
    """LangChain embeddings from promptzip's packaged all-MiniLM-L6-v2."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        vectors = load_sentence_encoder("minilm").encode(list(texts), normalize_embeddings=True)
        return [[float(x) for x in row] for row in vectors]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]
