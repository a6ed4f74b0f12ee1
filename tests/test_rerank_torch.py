"""The built-in cross-encoder (retrievers/_torch_cross.py) against the transformers path it replaces: the same rows
from the pair tokenizer (ids, token types, padding, longest-first truncation, special tokens), the same scores in
float32 and int8 over odd, long, empty-ish and padded inputs, folders it does not compute going to transformers, a
new process that reranks without importing transformers or sentence-transformers, and the switch that brings the
transformers path back.

No cross-encoder is packaged, so the folders are built here: ``ms_marco_like`` is
``cross-encoder/ms-marco-MiniLM-L-6-v2``'s architecture and tokenizer (``BertForSequenceClassification``, one
label) over the packaged MiniLM with a seeded head; ``two_labels`` a small random BERT with two labels."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from fresh_process import run_child
from odd_texts import ODD

from promptzip._models import resolve_model
from promptzip._types import Chunk
from promptzip.retrievers.dense import TORCH_ENV
from promptzip.retrievers.rerank import CrossEncoderReranker

pytestmark = pytest.mark.slow

SAMPLE = Path(__file__).resolve().parents[1] / "promptzip" / "_sample"
QUERIES = ["How tall is the tower?", " ", ODD[11], "what " * 300, "[SEP] [CLS] [PAD] the ##ing [MASK] [UNK]"]


def _passages() -> list[str]:
    """The odd texts, the sample's first paragraphs, a passage far past any limit, and special-token look-alikes.
    Three paragraphs of prose: the odd texts hold the other shapes, and every row here is scored four times."""
    sample = (SAMPLE / "sotu.txt").read_text(encoding="utf-8")
    paragraphs = [p for p in sample.split("\n\n") if p.strip()]
    return [*ODD, *paragraphs[:3], sample[:6000], "[SEP] x [PAD] y [CLS]", "a"]


PASSAGES = _passages()


def _build(folder: Path, *, labels: int, small: bool) -> Path:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    minilm = resolve_model("minilm").path
    tokenizer = AutoTokenizer.from_pretrained(str(minilm))
    with torch.random.fork_rng():
        torch.manual_seed(0)
        if small:
            config = BertConfig(
                vocab_size=tokenizer.vocab_size,
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                intermediate_size=64,
                max_position_embeddings=128,
                num_labels=labels,
            )
            model = BertForSequenceClassification(config)
        else:
            model = BertForSequenceClassification.from_pretrained(str(minilm), num_labels=labels)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def ms_marco_like(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("cross-minilm"), labels=1, small=False)


@pytest.fixture(scope="module")
def two_labels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("cross-tiny"), labels=2, small=True)


def _scores(folder: Path, monkeypatch: pytest.MonkeyPatch, *, builtin: bool, **kwargs: Any) -> list[list[float]]:
    """Each query's scores over the passages by a reranker on the built-in path or (``builtin=False``) on
    transformers; the model that ran is checked to be the one asked for."""
    if builtin:
        monkeypatch.delenv(TORCH_ENV, raising=False)
    else:
        monkeypatch.setenv(TORCH_ENV, "0")
    reranker = CrossEncoderReranker(str(folder), **kwargs)
    _, model = reranker._model()
    assert ("promptzip." if builtin else "transformers.") in type(model).__module__
    chunks = [Chunk(text) for text in PASSAGES]
    return [reranker.score(chunks, query) for query in QUERIES]


def test_the_pair_tokenizer_gives_the_fast_tokenizers_rows(ms_marco_like: Path) -> None:
    import torch
    from transformers import AutoTokenizer

    from promptzip.retrievers._torch_cross import PairTokens

    theirs = AutoTokenizer.from_pretrained(str(ms_marco_like))
    ours = PairTokens.from_folder(ms_marco_like)
    assert ours is not None
    assert ours.model_max_length == theirs.model_max_length == 512
    assert ours.pad_token_id == theirs.pad_token_id == 0
    for limit in (512, 64, 8):
        for query in QUERIES:
            for size in (1, 7, 64):
                for start in range(0, len(PASSAGES), size):
                    batch = PASSAGES[start : start + size]
                    args = ([query] * len(batch), batch)
                    kwargs: dict[str, Any] = {"truncation": "longest_first", "max_length": limit, "padding": True}
                    want = theirs(*args, return_tensors="pt", **kwargs)
                    got = ours(*args, return_tensors="pt", **kwargs)
                    assert list(got) == ["input_ids", "token_type_ids", "attention_mask"]
                    assert set(want) == set(got)
                    for key, value in got.items():
                        assert torch.equal(value, want[key]), (limit, query[:20], start, key)
    empty = ours(["q"], [""], max_length=16)
    ids = empty["input_ids"][0].tolist()
    assert ids[0] == 101  # [CLS] q [SEP] [SEP]: an empty passage keeps its [SEP]
    assert ids[2:] == [102, 102]
    assert empty["token_type_ids"][0].tolist() == [0, 0, 0, 1]
    with pytest.raises(ValueError, match="longest-first"):
        ours(["q"], ["p"], max_length=16, truncation="only_second")


@pytest.mark.parametrize("int8", [False, True])
def test_scores_are_the_transformers_models(ms_marco_like: Path, monkeypatch: pytest.MonkeyPatch, int8: bool) -> None:
    """Bit for bit: the same padded batches through the same operations (int8: the same quantized layers, whose
    per-batch activation ranges see the same padded rows), with and without truncation."""
    for kwargs in ({"batch_size": 32}, {"batch_size": 5, "max_length": 64}):
        want = _scores(ms_marco_like, monkeypatch, builtin=False, int8=int8, **kwargs)
        got = _scores(ms_marco_like, monkeypatch, builtin=True, int8=int8, **kwargs)
        assert got == want


def test_two_label_models_score_the_same_log_probabilities(two_labels: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    want = _scores(two_labels, monkeypatch, builtin=False, batch_size=8, max_length=96)  # it has 128 positions
    got = _scores(two_labels, monkeypatch, builtin=True, batch_size=8, max_length=96)
    assert got == want
    assert all(s <= 0.0 for row in got for s in row)


def test_the_logits_and_the_fingerprint_are_the_same(ms_marco_like: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from promptzip._precision import int8_model

    monkeypatch.delenv(TORCH_ENV, raising=False)
    builtin = CrossEncoderReranker(str(ms_marco_like))
    tokenizer, model = builtin._model()
    fingerprint = builtin.fingerprint
    monkeypatch.setenv(TORCH_ENV, "0")
    switched = CrossEncoderReranker(str(ms_marco_like))
    _, hf_model = switched._model()
    assert switched.fingerprint == fingerprint  # cached scores stay valid across the two
    rows = tokenizer(["who built it?", "a"], ["The tower was built by Eiffel's company.", ""], max_length=512)
    assert rows["token_type_ids"].any()  # the passage's segment is type 1
    with torch.inference_mode():
        for a, b in ((model, hf_model), (int8_model(model), int8_model(hf_model))):
            assert torch.equal(a(**rows).logits, b(**rows).logits)
            assert torch.equal(a(rows["input_ids"][:1]).logits, b(input_ids=rows["input_ids"][:1]).logits)


def _edited(source: Path, dest: Path, name: str, **changes: Any) -> Path:
    shutil.copytree(source, dest)
    settings = json.loads((dest / name).read_text(encoding="utf-8"))
    settings.update(changes)
    (dest / name).write_text(json.dumps(settings), encoding="utf-8")
    return dest


def test_folders_it_does_not_compute_load_through_transformers(
    ms_marco_like: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from promptzip.retrievers._torch_cross import load_cross_encoder

    monkeypatch.delenv(TORCH_ENV, raising=False)
    assert load_cross_encoder(ms_marco_like) is not None
    others = [
        _edited(ms_marco_like, tmp_path / "relu", "config.json", hidden_act="relu"),
        _edited(ms_marco_like, tmp_path / "tokens", "config.json", architectures=["BertForTokenClassification"]),
        _edited(ms_marco_like, tmp_path / "fast", "tokenizer_config.json", tokenizer_class="PreTrainedTokenizerFast"),
        _edited(ms_marco_like, tmp_path / "cased", "tokenizer_config.json", do_lower_case=False),
    ]
    for folder in others:
        assert load_cross_encoder(folder) is None, folder.name
        _, model = CrossEncoderReranker(str(folder))._model()
        assert type(model).__module__.startswith("transformers."), folder.name
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    assert load_cross_encoder(tmp_path / "broken") is None


_CHILD = """
import json, sys
import promptzip as pz
from promptzip.retrievers.rerank import CrossEncoderReranker
folder, question, text = sys.argv[1], sys.argv[2], sys.stdin.read()
zipper = pz.Zipper.from_preset("fast", rerank=folder, rerank_top_k=12, cache="none")
context = zipper.compress(text, question=question, budget=250).context
chunks = [pz.Chunk(p) for p in text.split("\\n\\n")]
scores = [repr(s) for int8 in (False, True) for s in CrossEncoderReranker(folder, int8=int8).score(chunks, question)]
loaded = ["transformers", "sentence_transformers", "promptzip.retrievers._torch_cross"]
print(json.dumps({"context": context, "scores": scores, "loaded": [m for m in loaded if m in sys.modules]}))
"""


def _child(folder: Path, text: str, question: str, **env: str) -> dict[str, Any]:
    return run_child(_CHILD, str(folder), question, stdin=text, **env)


def test_a_new_process_reranks_without_transformers_and_as_before(ms_marco_like: Path) -> None:
    paragraphs = (SAMPLE / "sotu.txt").read_text(encoding="utf-8").split("\n\n")
    text = "\n\n".join(paragraphs[:24])
    question = "What did the President propose to make college more affordable?"
    fresh = _child(ms_marco_like, text, question)
    assert fresh["loaded"] == ["promptzip.retrievers._torch_cross"]
    old = _child(ms_marco_like, text, question, **{TORCH_ENV: "0"})
    assert "transformers" in old["loaded"]
    assert "promptzip.retrievers._torch_cross" not in old["loaded"]
    assert fresh["scores"] == old["scores"]  # float32 and int8, to the last digit
    assert fresh["context"] == old["context"]  # byte for byte
