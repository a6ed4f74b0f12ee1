"""One compression reads each message's layout once (promptzip/_request_memo.py): its question, its plan and every
budget it tries share what the first read found, and nothing outlives the request."""

from __future__ import annotations

from typing import Any

import pytest
from understand_helpers import DOCS, Q

import promptzip._understand as understanding
from promptzip._pipeline import Zipper
from promptzip._request_memo import request_memo, request_scope
from promptzip.compressors.extractive import ExtractiveCompressor
from promptzip.retrievers.sparse import BM25Scorer

RAW = "<|im_start|>system\nAnswer from the context.<|im_end|>\n<|im_start|>user\nContext:\n" + "\n\n".join(DOCS)
RAW += f"\n\nQuestion: {Q}<|im_end|>\n<|im_start|>assistant\n"


def test_a_layout_is_read_once_within_a_request_and_afresh_outside() -> None:
    with request_scope():
        first = understanding.understand(RAW)
        assert understanding.understand(RAW) is first
        assert understanding.understand(RAW, role="system", last_user=False) is not first  # another reading
    assert request_memo("understand.layouts") is None
    assert understanding.understand(RAW) is not first
    assert understanding.understand(RAW) == first


def test_compress_messages_reads_each_message_once(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[tuple[Any, ...]] = []
    real = understanding._understood

    def counted(text: str, role: str, last_user: bool, history: bool) -> understanding.Layout:
        reads.append((text, role, last_user, history))
        return real(text, role, last_user, history)

    monkeypatch.setattr(understanding, "_understood", counted)
    zipper = Zipper(ExtractiveCompressor(BM25Scorer(), min_relevance=None), target="gpt-4o")
    result = zipper.compress_messages([{"role": "user", "content": RAW}], rate=0.7)
    assert result.messages is not None
    assert DOCS[1] in result.messages[0]["content"]
    assert reads
    assert len(reads) == len(set(reads))  # the question, the plan and each budget tried read it once
