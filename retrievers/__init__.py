"""Relevance scorers and retrievers: BM25 (sparse), sentence-transformers (dense), and hybrid fusion."""
