"""Integrations: LangChain, decorator, proxy (thin adapters over the pipeline)."""
