"""``minilm-qa``: the question → sentence bi-encoder adapter (``promptzip train qa-encoder``), its groups and loss,
peft's LoRA merged by the runtime's numpy merge into a sentence-transformers folder, and the shipped artifact
resolving by name."""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import require_data
from test_token_level import build_tiny_bert

from promptzip._errors import ConfigError, ModelNotAvailable
from promptzip.evals.records import squad_article
from promptzip.retrievers.qa_encoder import QA_ENCODER, QA_ENCODER_ENV, merge_adapter, qa_encoder_dir, qa_encoder_path
from promptzip.training._qa import batch_loss
from promptzip.training.encoder import EncoderTrainConfig, collect_groups, train_encoder

FACTS = [
    ("The Eiffel Tower is in Paris. It was built from 1887 to 1889.", "When was the tower built?", "1887 to 1889"),
    (
        "Ada Lovelace wrote the first published algorithm. She worked with Charles Babbage.",
        "Who worked with Ada?",
        "Charles Babbage",
    ),
    (
        "Grace Hopper developed the first compiler in 1952. COBOL was based on her work.",
        "What was based on her work?",
        "COBOL",
    ),
    (
        "Bananas are edible fruit. They grow on large herbaceous flowering plants.",
        "What do bananas grow on?",
        "large herbaceous flowering plants",
    ),
]


def _article(title: str = "facts", missing: bool = False) -> object:
    paragraphs = []
    for context, question, answer in FACTS:
        start = context.index(answer)
        qas = [
            {
                "id": f"{title}-{len(paragraphs)}",
                "question": question,
                "answers": [{"text": answer, "answer_start": start}],
            }
        ]
        paragraphs.append({"context": context, "qas": qas})
    if missing:
        paragraphs[0]["qas"].append(
            {"id": "gone", "question": "Where is it?", "answers": [{"text": "Berlin", "answer_start": 0}]}
        )
    return squad_article(title, paragraphs)


def _tiny(base: Path, *, lora_rank: int = 2, **settings: Any) -> EncoderTrainConfig:
    """A config for the tiny random BERT: short sequences, alpha = 2 x rank, no held-out evaluation unless asked."""
    settings = {"question_tokens": 32, "sentence_tokens": 32, "eval_questions": 0, **settings}
    return EncoderTrainConfig(base=str(base), lora_rank=lora_rank, lora_alpha=2.0 * lora_rank, **settings)


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("qa-tiny") / "base", encoder_only=True)


def test_groups_point_at_the_answer_sentence() -> None:
    config = EncoderTrainConfig(block_paragraphs=2)
    groups = collect_groups([("new_wiki", _article(missing=True))], config)
    assert [len(g.questions) for g in groups] == [2, 2]  # blocks of two paragraphs; "Berlin" is not in the text
    for group in groups:
        for pos, answers in zip(group.positives, group.answers, strict=True):
            assert pos in group.pool
            assert answers[0] in group.sentences[pos].lower()
    assert groups[0].sentences[groups[0].positives[0]] == "It was built from 1887 to 1889."
    assert set(groups[0].pool).isdisjoint(groups[1].pool)


def test_loss_masks_other_sentences_holding_the_answer() -> None:
    import torch

    config = EncoderTrainConfig(extra_sentences=8)
    group = collect_groups([("nyt", _article())], config)[0]
    rows = [0]
    gold = group.sentences[group.positives[0]]
    # a copy of the answer sentence elsewhere: a perfect encoder would rank it as high as the gold one
    sentences = (*group.sentences, gold + " Again.")
    group = type(group)(
        group.domain, group.questions, group.positives, group.answers, sentences, (*group.pool, len(sentences) - 1)
    )

    def encode(texts: list[str], _max: int) -> torch.Tensor:
        # "perfect" encoder: a question and the sentences holding its answer get the same vector, the rest another
        rows_ = [[1.0, 0.0] if ("1887" in t or t.startswith("When")) else [0.0, 1.0] for t in texts]
        return torch.tensor(rows_)

    loss = batch_loss(encode, (group, rows), config, random.Random(0))
    # without the mask the answer's twin would take half the probability: loss ≥ log 2
    assert float(loss) < 0.01


def test_merge_matches_the_trained_lora_model(tiny_base: Path, tmp_path: Path) -> None:
    """The runtime's numpy merge of the saved adapter reproduces the peft model that training left behind."""
    import torch
    from transformers import AutoTokenizer, BertModel

    from promptzip.training.encoder import fit_encoder, write_artifact

    config = _tiny(tiny_base, steps=6, questions_per_batch=2, extra_sentences=2, lora_rank=4)
    groups = collect_groups([("nyt", _article())] * 3, config)
    fit = fit_encoder(config, groups)
    assert len(fit.losses) == 6
    manifest = write_artifact(fit, config, groups, {}, tmp_path / "art", total_seconds=1.0)
    adapter = tmp_path / "art" / "adapter.safetensors"
    assert manifest["files"]["adapter.safetensors"] == hashlib.sha256(adapter.read_bytes()).hexdigest()
    assert manifest["training"]["steps"] == 6
    assert manifest["hyperparameters"]["lora_rank"] == 4
    merged = merge_adapter(tiny_base, adapter, tmp_path / "merged", rank=4, alpha=8.0)
    assert (merged / "config.json").is_file()

    from safetensors.torch import load_file

    deltas = load_file(str(adapter))
    assert all(k.startswith("lora.bert.encoder.layer.") for k in deltas)
    assert any(float(v.abs().sum()) > 0 for k, v in deltas.items() if k.endswith(".B"))  # training moved B
    plain = BertModel.from_pretrained(str(merged), add_pooling_layer=False).eval()
    base = BertModel.from_pretrained(str(tiny_base), add_pooling_layer=False).eval()
    batch = AutoTokenizer.from_pretrained(str(merged))(["The Eiffel Tower is in Paris."], return_tensors="pt")
    with torch.no_grad():
        want = fit.model(**batch).last_hidden_state
        got = plain(**batch).last_hidden_state
        before = base(**batch).last_hidden_state
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(got, before, atol=1e-5)


def test_training_reports_held_out_ranks(tiny_base: Path, tmp_path: Path) -> None:
    config = _tiny(tiny_base, steps=4, questions_per_batch=4, extra_sentences=4, lora_rank=2, eval_questions=4)
    manifest = train_encoder(
        config, tmp_path, progress=False, articles=[("reddit", _article())], eval_articles=[_article("held")]
    )
    for side in ("packaged", "tuned"):
        got = manifest["metrics"][side]
        assert got["questions"] == 4
        assert 0 < got["mrr"] <= 1
        assert got["recall@1"] <= got["recall@5"] <= got["recall@10"] == 100.0  # 8 sentences in all
    assert manifest["data"]["questions"] == {"reddit": 4}


def test_a_held_out_domain_is_never_trained_on(tiny_base: Path, tmp_path: Path) -> None:
    """The cross-domain protocol: a held-out domain's articles are dropped before any batch is built, and the
    manifest says which domain was held out."""
    config = _tiny(tiny_base, steps=2, questions_per_batch=4, extra_sentences=4, lora_rank=2, held_out=("reddit",))
    articles = [("reddit", _article("kept out")), ("nyt", _article())]
    manifest = train_encoder(config, tmp_path, progress=False, articles=articles)
    assert manifest["data"]["questions"] == {"nyt": 4}
    assert manifest["data"]["held_out_domains"] == ["reddit"]
    assert manifest["hyperparameters"]["held_out"] == ["reddit"]
    with pytest.raises(ConfigError, match="nothing is left"):
        train_encoder(_tiny(tiny_base, domains=("reddit",), held_out=("reddit",)), tmp_path, articles=articles)
    with pytest.raises(ConfigError, match="cannot hold out"):
        train_encoder(_tiny(tiny_base, held_out=("forums",)), tmp_path, articles=articles)


def test_another_adapter_folder_takes_the_name_and_its_own_cache_keys(
    tiny_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``$PROMPTZIP_MINILM_QA_DIR`` points ``minilm-qa`` at another trained adapter (the cross-domain protocol's
    held-out one): it is merged into a folder of its own and scores under another fingerprint; a folder without an
    adapter is a ModelNotAvailable that names the variable."""
    from promptzip._models import resolve_model
    from promptzip.retrievers.dense import DenseScorer

    monkeypatch.setenv("PROMPTZIP_CACHE_DIR", str(tmp_path / "cache"))
    shipped = resolve_model(QA_ENCODER).path
    shipped_fingerprint = DenseScorer(QA_ENCODER).fingerprint
    config = _tiny(tiny_base, steps=2, questions_per_batch=4, extra_sentences=4, held_out=("reddit",))
    train_encoder(config, tmp_path / "held-out", progress=False, articles=[("nyt", _article())])
    monkeypatch.setenv(QA_ENCODER_ENV, str(tmp_path / "held-out"))
    other = resolve_model(QA_ENCODER).path
    assert other != shipped
    assert other.parent == shipped.parent
    assert DenseScorer(QA_ENCODER).fingerprint != shipped_fingerprint
    monkeypatch.setenv(QA_ENCODER_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(ModelNotAvailable, match=QA_ENCODER_ENV):
        resolve_model(QA_ENCODER)
    monkeypatch.delenv(QA_ENCODER_ENV)
    assert resolve_model(QA_ENCODER).path == shipped


def test_bad_settings_and_no_questions_are_refused(tiny_base: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least 1"):
        train_encoder(EncoderTrainConfig(steps=0), tmp_path, articles=[("nyt", _article())])
    empty = squad_article("empty", [{"context": "Nothing to ask.", "qas": []}])
    with pytest.raises(ConfigError, match="no training questions"):
        train_encoder(EncoderTrainConfig(base=str(tiny_base)), tmp_path, progress=False, articles=[("nyt", empty)])


def test_shipped_adapter_resolves_once_and_checks_its_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from promptzip._models import resolve_model

    monkeypatch.setenv("PROMPTZIP_CACHE_DIR", str(tmp_path / "cache"))
    first = resolve_model(QA_ENCODER)
    assert first.origin == "derived"
    assert first.path.parent == tmp_path / "cache" / "models"
    stamp = (first.path / "model.safetensors").stat().st_mtime_ns
    assert resolve_model(QA_ENCODER).path == first.path
    assert (first.path / "model.safetensors").stat().st_mtime_ns == stamp  # written once
    assert (first.path / "modules.json").is_file()  # a whole sentence-transformers folder

    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("PROMPTZIP_CACHE_DIR", str(tmp_path / "a-file" / "cache"))
    with pytest.raises(ModelNotAvailable, match="PROMPTZIP_CACHE_DIR"):
        resolve_model(QA_ENCODER)

    copy = tmp_path / "copy"
    shutil.copytree(qa_encoder_dir(), copy)
    data = bytearray((copy / "adapter.safetensors").read_bytes())
    data[-1] ^= 1
    (copy / "adapter.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelNotAvailable, match="does not match its manifest"):
        qa_encoder_path(copy)
    (copy / "adapter.safetensors").unlink()
    with pytest.raises(ModelNotAvailable, match="promptzip train qa-encoder"):
        qa_encoder_path(copy)


def test_shipped_manifest_records_data_and_gain() -> None:
    manifest = json.loads((qa_encoder_dir() / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["data"]["never_used"].startswith("SQuAD v1.1 dev")
    assert "new_wiki" in manifest["data"]["questions"]
    metrics = manifest["metrics"]
    assert metrics["tuned"]["mrr"] > metrics["packaged"]["mrr"]


def test_train_cli_has_qa_encoder() -> None:
    from promptzip.training.cli import add_train_command

    parser = argparse.ArgumentParser()
    add_train_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", "qa-encoder", "--steps", "5", "--rank", "8", "--quiet"])
    assert (args.steps, args.rank, args.quiet, args.hold_out) == (5, 8, True, ())
    assert parser.parse_args(["train", "qa-encoder", "--hold-out", "reddit, nyt"]).hold_out == ("reddit", "nyt")
    assert np.isclose(args.lr, EncoderTrainConfig().lr)


@pytest.mark.slow
@pytest.mark.data
def test_tuned_encoder_ranks_answer_sentences_higher_on_held_out_articles() -> None:
    """On new_wiki articles it never trained on (the tuning text), minilm-qa puts the answer sentence nearer the top
    of its whole article than the packaged encoder does."""
    from promptzip._models import load_sentence_encoder
    from promptzip.evals import data
    from promptzip.training.encoder import rank_answer_sentences

    require_data("squad_shifts")
    articles = [a for a in data.load_squad_shift("new_wiki", max_paragraphs=None) if len(a.context) > 12_000][:4]
    got = {}
    for name in ("minilm", QA_ENCODER):
        model = load_sentence_encoder(name)
        got[name] = rank_answer_sentences(
            lambda texts, m=model: m.encode(texts, normalize_embeddings=True, batch_size=64), articles, 120, seed=7
        )
    assert got["minilm"]["questions"] == got[QA_ENCODER]["questions"] >= 100
    assert got[QA_ENCODER]["mrr"] > got["minilm"]["mrr"] + 0.02
    assert got[QA_ENCODER]["recall@5"] > got["minilm"]["recall@5"]
