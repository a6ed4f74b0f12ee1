"""The light encoder (NumPy + ``tokenizers``) against sentence-transformers, and what it buys: a new process whose
sentence embeddings are cached compresses without importing torch, sentence-transformers or transformers, and a
repeated question loads no encoder at all."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from promptzip._cache import MemoryCache, make_key
from promptzip._models import load_sentence_encoder, resolve_model
from promptzip._types import Chunk
from promptzip.retrievers._light import LightEncoder, bert_shape, light_encoder, read_safetensors
from promptzip.retrievers.dense import LIGHT_ENV, DenseScorer

SAMPLE = Path(__file__).resolve().parents[1] / "promptzip" / "_sample"

TEXTS = [
    "How tall is the Eiffel Tower?",
    "The tower is 330 metres (1,083 ft) tall, about the same height as an 81-storey building.",
    "x",
    "",
    "   leading and trailing whitespace, a\ttab and a\nnewline   ",
    "Ünïcödé façade: naïve café in Zürich — São Paulo, Kraków, Đà Nẵng.",
    "東京タワーは高さ333メートルの電波塔です。",
    "Emoji 🚀🔥 and math ∑ x² ≤ ∞, plus ℃ and ﬁ ligatures.",
    "def score(chunks, query): return [cosine(c, query) for c in chunks]  # code, too",
    "URLs like https://example.org/a?b=c&d=e and IDs such as INV-2024-00042 survive word pieces.",
    " ".join(f"word{i} supercalifragilistic" for i in range(200)),  # far past 256 word pieces: truncated
    "Paris is the capital of France. " * 3,
    "...",
    "\u200b\u00a0",  # a zero-width space and a no-break space: nothing but [CLS] [SEP] once tokenized
    "Ελληνικά, русский текст, עברית ועוד, العربية، हिन्दी और 한국어 문장.",
    "A" * 3000,  # one 3,000-character word: truncated word pieces
]


def _light(name: str) -> LightEncoder:
    encoder = light_encoder(resolve_model(name).path)
    assert encoder is not None
    return encoder


@pytest.mark.slow
@pytest.mark.parametrize("name", ["minilm", "minilm-qa"])
def test_light_embeddings_equal_sentence_transformers(name: str) -> None:
    heavy = load_sentence_encoder(name)
    light = _light(name)
    assert light.shape.max_length == heavy.max_seq_length == 256
    pieces = heavy.tokenizer(TEXTS, truncation=True, max_length=heavy.max_seq_length, return_offsets_mapping=True)
    assert max(len(ids) for ids in pieces["input_ids"]) == 256  # the long text really is truncated
    expected = heavy.encode(TEXTS, convert_to_numpy=True, normalize_embeddings=True)
    got = light.encode(TEXTS)
    assert got.dtype == np.float32
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 1e-5
    assert np.sum(got * expected, axis=1).min() > 0.99999
    for i in (0, 3, 5, 10):  # alone as in a batch (texts are packed, never padded)
        assert np.abs(light.encode([TEXTS[i]])[0] - expected[i]).max() < 1e-5
    assert "torch" not in type(got).__module__
    # the token vectors and offsets that span pooling reads are the packed heavy pass's
    from promptzip.retrievers._packed import packer_for

    packer = packer_for(heavy)
    assert packer is not None
    packed = packer.encode(TEXTS, states=True)
    _, states, offsets = light.encode_states(TEXTS)
    for mine, theirs, my_offsets, their_offsets in zip(states, packed.states, offsets, packed.offsets, strict=True):
        np.testing.assert_array_equal(my_offsets, their_offsets)
        assert np.abs(mine.astype(np.float32) - theirs.astype(np.float32)).max() < 1e-2  # float16 rounding


@pytest.mark.slow
def test_minilm_qa_is_not_minilm() -> None:
    # the LoRA deltas are in the weights the light encoder reads: otherwise the test above proves nothing for it
    plain, tuned = _light("minilm").encode(TEXTS[:2]), _light("minilm-qa").encode(TEXTS[:2])
    assert np.abs(plain - tuned).max() > 1e-3


def test_safetensors_are_read_as_float32(tmp_path: Path) -> None:
    # a hand-written file: float32 (a view of the mapped file), float16 and bfloat16 (converted), an integer buffer
    # (skipped: the forward pass reads floats only), and the metadata entry
    f32 = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    f16 = np.asarray([0.5, -2.25, 1e-3], dtype=np.float16)
    bf16 = (np.asarray([1.5, -0.375, 2.0**120], dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16)
    ints = np.arange(4, dtype=np.int64)
    blobs = [("a", "F32", f32), ("b", "F16", f16), ("c", "BF16", bf16), ("position_ids", "I64", ints)]
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    data, at = b"", 0
    for name, dtype, array in blobs:
        raw = array.tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [at, at + len(raw)]}
        data, at = data + raw, at + len(raw)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    (tmp_path / "w.safetensors").write_bytes(len(text).to_bytes(8, "little") + text + data)
    read = read_safetensors(tmp_path / "w.safetensors")
    assert sorted(read) == ["a", "b", "c"]
    assert all(v.dtype == np.float32 for v in read.values())
    np.testing.assert_array_equal(read["a"], f32)
    np.testing.assert_array_equal(read["b"], f16.astype(np.float32))
    np.testing.assert_array_equal(read["c"], np.asarray([1.5, -0.375, 2.0**120], dtype=np.float32))
    assert not read["a"].flags.writeable  # a view of the read-only mapping, not a copy
    private = read_safetensors(tmp_path / "w.safetensors", writable=True)  # what torch.from_numpy wants
    assert private["a"].flags.writeable
    private["a"][0, 0] = 99.0  # copy-on-write: the file (and the other mapping) keep their values
    np.testing.assert_array_equal(read["a"], f32)
    np.testing.assert_array_equal(read_safetensors(tmp_path / "w.safetensors")["a"], f32)


def test_only_mean_pooling_berts_get_a_light_encoder(tmp_path: Path) -> None:
    source = resolve_model("minilm").path
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("config.json", "modules.json", "sentence_bert_config.json", "tokenizer.json"):
        shutil.copy2(source / name, folder / name)
    shutil.copytree(source / "1_Pooling", folder / "1_Pooling")
    shape = bert_shape(folder)
    assert shape is not None
    assert (shape.layers, shape.heads, shape.hidden, shape.eps) == (6, 12, 384, 1e-12)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "is_decoder": True}))  # causal attention
    assert bert_shape(folder) is None
    (folder / "config.json").write_text(json.dumps({**config, "hidden_act": "gelu_new"}))  # the tanh GELU
    assert bert_shape(folder) is None
    (folder / "config.json").write_text(json.dumps(config))
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    pooling.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    assert bert_shape(folder) is None
    assert bert_shape(tmp_path / "nowhere") is None


@pytest.mark.slow
def test_queries_are_float32_cached_and_the_heavy_model_takes_over(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = MemoryCache()
    scorer = DenseScorer(precision="bfloat16", cache=cache, memo=0)
    query = "How tall is the tower?"
    light_vector = scorer.embed_query(query)
    assert scorer.encoders.light is not None
    assert not scorer.encoders.heavy
    # a bfloat16 scorer's queries are float32's: one namespace with the float32 scorer's, apart from sentences
    assert scorer.query_fingerprint == DenseScorer(precision="float32").fingerprint != scorer.fingerprint
    key = make_key("query:" + scorer.query_fingerprint, query)
    assert cache.get(key) is not None
    assert cache.get(make_key("emb:" + scorer.fingerprint, query)) is None  # its own namespace
    again = DenseScorer(precision="float32", cache=cache)
    np.testing.assert_array_equal(again.embed_query(query), light_vector)
    assert again.encoders.light is None
    assert not again.encoders.light_tried
    assert not again.encoders.heavy
    scorer.score([Chunk("A sentence no cache has seen before, about towers.")], query)
    assert scorer.encoders.heavy
    assert scorer.encoders.light is None
    for precision in ("float32", "bfloat16"):  # no cache: computed again, by the heavy model's float32 original
        fresh = DenseScorer(precision=precision, memo=0)
        fresh.encoders.model()
        heavy_vector = fresh.embed_query(query)
        assert fresh.encoders.light is None
        assert np.abs(heavy_vector - light_vector).max() < 1e-5
    int8 = DenseScorer(precision="int8")
    assert int8.encoders.light_encoder() is None  # an int8 scorer's queries are its int8 model's
    assert int8.query_fingerprint == int8.fingerprint
    monkeypatch.setenv(LIGHT_ENV, "off")
    assert DenseScorer(precision="float32").encoders.light_encoder() is None


_CHILD = """
import json, sys
import promptzip as pz
url, question, text = sys.argv[1], sys.argv[2], sys.stdin.read()
result = pz.Zipper.from_preset("fast", cache=url).compress(text, question=question, budget=int(sys.argv[3]))
loaded = ["sentence_transformers", "transformers", "torch", "promptzip.retrievers._light"]
print(json.dumps({"context": result.context, "loaded": [m for m in loaded if m in sys.modules]}))
"""


def _child(url: str, question: str, text: str, budget: int) -> dict[str, object]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-P", "-c", _CHILD, url, question, str(budget)],
        input=text,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found: dict[str, object] = json.loads(done.stdout)
    return found


@pytest.mark.slow
def test_a_new_process_with_cached_sentences_skips_the_heavy_imports(tmp_path: Path) -> None:
    import promptzip as pz

    paragraphs = (SAMPLE / "sotu.txt").read_text(encoding="utf-8").split("\n\n")
    text = "\n\n".join(paragraphs[:12])  # ~1.5k tokens: the parent's heavy passes stay short
    asked = json.loads((SAMPLE / "sample.json").read_text(encoding="utf-8"))["question"]
    new = "What did the President propose for education and schools?"
    budget = 150
    url = f"sqlite:///{tmp_path}/cache.db"
    first = pz.Zipper.from_preset("fast", cache=url).compress(text, question=asked, budget=budget)
    reference = pz.Zipper.from_preset("fast", cache="memory").compress(text, question=new, budget=budget)
    assert reference.context != first.context  # the two questions really select differently

    fresh = _child(url, new, text, budget)  # cached sentences, a question no process has embedded
    assert fresh["context"] == reference.context
    assert fresh["loaded"] == ["promptzip.retrievers._light"]

    repeated = _child(url, asked, text, budget)  # the parent's question: its embedding is in the cache
    assert repeated["context"] == first.context
    assert repeated["loaded"] == []  # no encoder, not even torch
    assert _child(url, new, text, budget) == {"context": reference.context, "loaded": []}
