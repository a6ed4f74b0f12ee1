"""Compressors: one module per method. Each proposes variants of chunks for the budget policy."""
