"""Token-level compression: the compressors prove the shipped contract; token classifiers of both published
architectures (BERT, XLM-RoBERTa) and a causal LM are built small and random here, saved to a folder and loaded
through the same code path as the real checkpoints (no hub on these machines)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import promptzip as pz
from promptzip._cache import MemoryCache
from promptzip._registry import Registries
from promptzip._roles import Compressor
from promptzip.compressors.extractive import ExtractiveCompressor
from promptzip.compressors.pruning import word_units
from promptzip.compressors.token_prune import PrunedExtractiveCompressor, TokenPruneCompressor
from promptzip.compressors.token_scores import WordLengthScorer
from promptzip.testing import CONTRACT_TEXT, CompressorContract, KeywordScorer

CORPUS = [
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France.",
    "It is named after the engineer Gustave Eiffel, whose company designed and built the tower from 1887 to 1889.",
    "Ada Lovelace wrote the first published algorithm in 1843. She worked with Charles Babbage.",
    "Grace Hopper developed the first compiler in 1952. The COBOL language was based on her work.",
    "Bananas are elongated, edible fruit produced by several kinds of large herbaceous flowering plants.",
    "Alice: hello there. Bob: fine thanks, and you? 東京タワー ΑΒΓ русский текст 😀 café naïve",
] * 4


# ------------------------------------------------------------------------------------------ tiny models


def _quiet_save(model: Any, tokenizer: Any, folder: Path) -> Path:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def build_tiny_bert(folder: Path, *, max_positions: int = 64, encoder_only: bool = False) -> Path:
    """A random BERT (WordPiece tokenizer trained on CORPUS): the architecture of LLMLingua-2's mBERT checkpoint
    and of our MiniLM student. ``encoder_only`` saves a bare ``BertModel`` (a student base)."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertForTokenClassification, BertModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(CORPUS, trainers.WordPieceTrainer(vocab_size=400, special_tokens=specials))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    config = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_positions,
        num_labels=2,
        pad_token_id=0,
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = BertModel(config) if encoder_only else BertForTokenClassification(config)
    return _quiet_save(model, fast, folder)


def build_tiny_xlmr(folder: Path, *, max_positions: int = 64) -> Path:
    """A random XLM-RoBERTa with a sentencepiece-style Unigram tokenizer (Metaspace pre-tokenizer, ``<s>``/``</s>``),
    trained here with the ``tokenizers`` library — the architecture of LLMLingua-2's large checkpoint."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, XLMRobertaConfig, XLMRobertaForTokenClassification

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    tok.train_from_iterator(CORPUS, trainers.UnigramTrainer(vocab_size=300, special_tokens=specials, unk_token="<unk>"))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        cls_token="<s>",
        sep_token="</s>",
    )
    config = XLMRobertaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_positions + 2,
        num_labels=2,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = XLMRobertaForTokenClassification(config)
    return _quiet_save(model, fast, folder)


def build_tiny_causal_lm(folder: Path) -> Path:
    """A random Llama-architecture causal LM (SmolLM2's) with a byte-level BPE tokenizer."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")
    config = LlamaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=0,
        eos_token_id=1,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
    return _quiet_save(model, fast, folder)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-models")
    return {
        "bert": build_tiny_bert(root / "bert"),
        "xlmr": build_tiny_xlmr(root / "xlm-roberta"),
        "lm": build_tiny_causal_lm(root / "lm"),
    }


# ------------------------------------------------------------------------------------------- contract


class TestTokenPrune(CompressorContract):
    def make_compressor(self) -> Compressor:
        return TokenPruneCompressor(WordLengthScorer(), cache=MemoryCache())


class TestPrunedExtractive(CompressorContract):
    def make_compressor(self) -> Compressor:
        return PrunedExtractiveCompressor(
            ExtractiveCompressor(KeywordScorer()), WordLengthScorer(), cache=MemoryCache()
        )


class TestTokenPruneWithTinyXLMR(CompressorContract):
    budgets = (52, 90)

    @pytest.fixture(autouse=True)
    def _models(self, tiny_models: dict[str, Path]) -> None:
        self.folder = tiny_models["xlmr"]

    def make_compressor(self) -> Compressor:
        from promptzip.compressors.token_classifier import TokenClassifierScorer

        return TokenPruneCompressor(TokenClassifierScorer(str(self.folder)), cache=MemoryCache())


def test_pruned_variants_give_the_policy_per_chunk_rates() -> None:
    zipper = pz.Zipper(TokenPruneCompressor(WordLengthScorer(), cache=MemoryCache()))
    chunks = [pz.Chunk(CONTRACT_TEXT[:400])]
    (group,) = zipper.compressor.propose(chunks, None, zipper.tokenizer)
    kinds = [v.kind for v in group]
    assert kinds[:2] == ["drop", "keep"]
    assert {"prune@0.2", "prune@0.5", "prune@0.7"} <= set(kinds)
    tokens = [v.tokens for v in group[2:]]
    assert tokens == sorted(tokens)
    assert tokens[-1] < group[1].tokens
    for v in group:
        assert v.tokens == zipper.tokenizer.count(v.text)
        assert all(CONTRACT_TEXT[s.start : s.end] in v.text for s in v.kept)
    r = zipper.compress(CONTRACT_TEXT, budget=pz.Budget(rate=0.5))
    assert {c.kind for c in r.chunks} & {"prune@0.2", "prune@0.33", "prune@0.5", "prune@0.7"}
    assert "1843" in r.text  # numbers are forced


def test_balanced_variants_prune_inside_the_extracted_sentences() -> None:
    compressor = PrunedExtractiveCompressor(ExtractiveCompressor(KeywordScorer()), WordLengthScorer())
    zipper = pz.Zipper(compressor)
    (group,) = compressor.propose([pz.Chunk(CONTRACT_TEXT[:300])], "Ada Lovelace", zipper.tokenizer)
    by_kind = {v.kind: v for v in group}
    keep, pruned_keep = by_kind["keep"], by_kind["keep+prune@0.5"]
    assert 0 < pruned_keep.utility < keep.utility
    assert pruned_keep.tokens < keep.tokens
    assert any(k.startswith("extract+prune@") for k in by_kind)
    # a budget smaller than the one relevant sentence: only a pruned form of it fits
    text = "\n\n".join([CORPUS[4], CORPUS[2], CORPUS[0]])
    r = zipper.compress(text, question="When did Ada Lovelace publish?", budget=22)
    pruned = [c for c in r.chunks if "prune" in c.kind]
    assert pruned, [c.kind for c in r.chunks]
    for c in pruned:
        assert all(len(text[s.start : s.end].split()) >= 3 for s in c.kept)  # pruned in readable runs
        assert c.tokens_out < c.tokens_in
        assert c.text
        assert "1843" in c.text
        assert all(text[s.start : s.end] in c.text for s in c.kept)


def test_rate_region_is_pruned_not_kept_whole() -> None:
    text = "Intro sentence stays here.\n\n<pz rate=0.3>" + CORPUS[1] + " " + CORPUS[4] + "</pz>"
    zipper = pz.Zipper(TokenPruneCompressor(WordLengthScorer(), cache=MemoryCache()))
    chunks = __import__("promptzip._split", fromlist=["chunk_source"]).chunk_source(text, "0")
    groups = zipper.compressor.propose(chunks, None, zipper.tokenizer)
    region = groups[-1]
    assert all(v.kind != "keep" for v in region)
    assert any(v.kind.startswith("prune@") for v in region)
    assert max(v.tokens for v in region) <= 0.3 * zipper.tokenizer.count(chunks[-1].text) + 3


@pytest.mark.parametrize(("text", "position"), [("a <pz keep>b", 2), ("a </pz> b", 2), ("<pz rate=2>x</pz>", 0)])
def test_unbalanced_tags_are_input_errors_with_their_position(text: str, position: int) -> None:
    zipper = pz.Zipper(TokenPruneCompressor(WordLengthScorer()))
    with pytest.raises(pz.InputError, match=f"position {position}") as info:
        zipper.compress(text, budget=20)
    assert info.value.position == position


def test_conditioned_mode_needs_a_batch_scorer() -> None:
    from promptzip._roles import TokenScorer

    class Plain(TokenScorer):
        def _token_scores(self, chunk: pz.Chunk) -> pz.TokenScores:
            return pz.TokenScores(chunk.text, (), (), ())

    with pytest.raises(pz.ConfigError, match="conditioned"):
        TokenPruneCompressor(Plain(), conditioned=True)
    with pytest.raises(pz.ConfigError, match="rates"):
        TokenPruneCompressor(WordLengthScorer(), rates=(0.5, 1.5))


# ------------------------------------------------------------------------------------ token classifiers


@pytest.mark.parametrize("arch", ["bert", "xlmr"])
def test_tiny_token_classifiers_load_and_score_every_word(tiny_models: dict[str, Path], arch: str) -> None:
    from promptzip.compressors.token_classifier import TokenClassifierScorer

    scorer = TokenClassifierScorer(str(tiny_models[arch]), batch_size=3)
    long_text = " ".join(CORPUS)  # ~10 windows of 64 tokens
    odd = ["", "😀😀 🎉", "x" * 5000, "Mixed: English, 中文句子, русский текст 123."]
    scored = scorer.token_scores_many([long_text, "short text.", *odd])
    for text, ts in zip([long_text, "short text.", *odd], scored, strict=True):
        starts, _ = word_units(text)
        assert len(ts.scores) == len(starts)
        assert all(0.0 <= s <= 1.0 for s in ts.scores)
    assert len(set(scored[0].scores)) > 10  # real per-word values, not a constant


@pytest.mark.parametrize("arch", ["bert", "xlmr"])
def test_windows_batching_and_the_last_sentence(tiny_models: dict[str, Path], arch: str) -> None:
    import torch

    from promptzip.compressors.token_classifier import keep_probabilities, load_token_classifier, special_tokens

    model, tokenizer = load_token_classifier(str(tiny_models[arch]))
    long_text = " ".join(CORPUS)
    alone = keep_probabilities(model, tokenizer, [long_text], max_length=64, overlap=16, batch_size=1)[0]
    together = keep_probabilities(
        model, tokenizer, ["tiny", long_text, "x y z"], max_length=64, overlap=16, batch_size=4
    )[1]
    np.testing.assert_allclose(alone[2], together[2], atol=1e-5)  # padding in a batch changes nothing
    # the last window is aligned to the end: the final tokens get the same values as a direct pass over them
    ids = tokenizer(long_text, add_special_tokens=False)["input_ids"]
    head, tail = special_tokens(tokenizer)
    room = 64 - len(head) - len(tail)
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([head + ids[-room:] + tail])).logits
    direct = torch.softmax(logits, -1)[0, len(head) : len(head) + room, 1].numpy()
    np.testing.assert_allclose(alone[2][-10:], direct[-10:], atol=1e-5)
    assert len(alone[2]) == len(ids)


def test_a_classifier_without_two_labels_is_refused(tmp_path: Path) -> None:
    from transformers import BertConfig, BertForTokenClassification

    from promptzip.compressors.token_classifier import load_token_classifier

    folder = build_tiny_bert(tmp_path / "three")
    config = BertConfig.from_pretrained(str(folder))
    config.num_labels = 1
    _quiet_save(
        BertForTokenClassification(config),
        __import__("transformers").AutoTokenizer.from_pretrained(str(folder)),
        tmp_path / "one",
    )
    with pytest.raises(pz.ModelNotAvailable, match="2 labels"):
        load_token_classifier(str(tmp_path / "one"))
    with pytest.raises(pz.ModelNotAvailable):
        load_token_classifier(str(tmp_path / "missing-folder-that-is-not-a-model"))


# ----------------------------------------------------------------------------------- self-information


def test_self_information_matches_a_direct_computation(tiny_models: dict[str, Path]) -> None:
    import torch

    from promptzip._causal_lm import load_causal_lm
    from promptzip.compressors.self_information import SelfInformationScorer, token_surprisal

    model, tokenizer = load_causal_lm(str(tiny_models["lm"]))
    text = CORPUS[0]
    ids = [0, *tokenizer(text, add_special_tokens=False)["input_ids"]]
    with torch.inference_mode():
        logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0, :-1], -1)
    expected = -logp.gather(-1, torch.tensor(ids[1:]).unsqueeze(-1)).squeeze(-1).numpy()
    (_, _, nats) = token_surprisal(model, tokenizer, [text], window=512)[0]
    np.testing.assert_allclose(nats, expected, atol=1e-4)
    # small windows: the tokens of the first window are unchanged, every token gets a finite value
    (_, _, small) = token_surprisal(model, tokenizer, [text], window=12, context=4, batch_size=2)[0]
    np.testing.assert_allclose(small[:11], expected[:11], atol=1e-4)
    assert np.isfinite(small).all()
    assert len(small) == len(expected)
    scorer = SelfInformationScorer(str(tiny_models["lm"]), window=16, context=4)
    (scores,) = scorer.token_scores_many([" ".join(CORPUS[:6])])
    assert len(scores.scores) == len(word_units(" ".join(CORPUS[:6]))[0])
    assert all(0.0 <= s <= 1.0 for s in scores.scores)


def test_self_information_phrases_and_question_conditioning(tiny_models: dict[str, Path]) -> None:
    from promptzip.compressors.self_information import SelfInformationScorer

    text = "the big red house, in the old town"
    phrase = SelfInformationScorer(str(tiny_models["lm"]), granularity="phrase")
    (ts,) = phrase.token_scores_many([text])
    assert len(set(ts.scores[1:4])) == 1
    assert ts.scores[4] != ts.scores[3]
    word = SelfInformationScorer(str(tiny_models["lm"]))
    (plain,) = word.token_scores_many([text])
    (conditioned,) = word.token_scores_many([text], question="Which house is red?")
    assert all(c >= p - 1e-9 for c, p in zip(conditioned.scores, plain.scores, strict=True))  # gains only add
    cache = MemoryCache()
    pruner = TokenPruneCompressor(word, cache=cache, conditioned=True)
    a = pruner.token_scores([text], "Which house?")
    b = pruner.token_scores([text], "Which town?")
    assert cache.stats()["entries"] == 2
    assert len(a[0].scores) == len(b[0].scores)
    with pytest.raises(pz.ConfigError, match="granularity"):
        SelfInformationScorer(granularity="sentence")


# ------------------------------------------------------------------------------------------- registry


def test_register_token_level_adds_scorers_and_compressors_and_balanced_uses_them() -> None:
    from promptzip._presets import BalancedPreset
    from promptzip.compressors._register import register_token_level

    regs = Registries()
    register_token_level(regs)
    assert {"token-classifier", "self-information"} <= set(regs.token_scorers._factories)
    assert {"token-prune", "pruned-extractive"} <= set(regs.compressors._factories)
    assert not regs.presets._factories  # presets live in promptzip._presets, registered once
    parts = BalancedPreset(classifier=WordLengthScorer()).build(cache=MemoryCache())
    assert isinstance(parts.compressor, PrunedExtractiveCompressor)
    pruner = regs.compressors._factories["token-prune"](scorer=WordLengthScorer(), rates=(0.5,))
    assert pruner.prune("alpha beta gamma delta", rate=0.5).text


# ------------------------------------------------------------------------------- real models (slow)


def test_window_defaults_follow_the_model() -> None:
    from promptzip.compressors.token_classifier import DISTILLED_WINDOW, TokenClassifierScorer

    distilled = TokenClassifierScorer()
    assert (distilled.max_length, distilled.overlap) == DISTILLED_WINDOW == (128, 16)
    assert ":L=128:o=16:int8" in distilled.fingerprint
    other = TokenClassifierScorer("some/folder")  # a published checkpoint reads windows of its full length
    assert (other.max_length, other.overlap) == (512, 64)
    chosen = TokenClassifierScorer(max_length=256, overlap=0)
    assert (chosen.max_length, chosen.overlap) == (256, 0)
    assert chosen.fingerprint != distilled.fingerprint
    with pytest.raises(pz.ConfigError):
        TokenClassifierScorer(max_length=4)


@pytest.mark.slow
def test_the_distilled_classifier_prunes_an_article(article: str) -> None:
    from promptzip.compressors.token_classifier import TokenClassifierScorer, distilled_dir

    assert (distilled_dir() / "manifest.json").is_file()
    pruner = TokenPruneCompressor(TokenClassifierScorer(), cache=MemoryCache())
    p = pruner.prune(article, rate=0.5, tokenizer="gpt-4o")
    tok = pz.get_tokenizer("gpt-4o")
    assert p.tokens <= 0.5 * tok.count(article) + 1
    for needle in ("330", "1889", "2024"):
        assert needle in p.text
    (scores,) = pruner.token_scores(["The tower is 330 metres tall and the of the a."])
    by_word = dict(zip(list("The tower is 330 metres tall and the of the a .".split()), scores.scores, strict=False))
    assert by_word["tower"] > by_word["the"]


@pytest.mark.slow
def test_smollm2_self_information_prefers_content_words() -> None:
    from promptzip.compressors.self_information import SelfInformationScorer

    text = "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris."
    (ts,) = SelfInformationScorer().token_scores_many([text])
    words = [text[a:b] for a, b in zip(ts.starts, ts.ends, strict=True)]
    score = dict(zip(words, ts.scores, strict=False))
    assert score["Eiffel"] > score["the"]
    assert score["lattice"] > score["a"]


@pytest.mark.slow
class TestBalancedPreset(CompressorContract):
    budgets = (60, 150)

    def make_compressor(self) -> Compressor:
        from promptzip._presets import BalancedPreset

        return BalancedPreset().build(cache=MemoryCache()).compressor
