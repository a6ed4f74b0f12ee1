"""Presets are validated frozen configs: one dataclass each, defaults written once, misspellings named."""

from __future__ import annotations

import dataclasses

import pytest

import promptzip as pz
from promptzip._presets import BalancedPreset, FastPreset, MaxPreset, PresetParts, configure
from promptzip._registry import registries
from promptzip.testing import KeywordScorer


def test_a_misspelled_option_is_a_config_error_that_names_the_valid_ones() -> None:
    with pytest.raises(pz.ConfigError) as info:
        pz.Zipper.from_preset("fast", hybrid_wieght=0.5)
    message = str(info.value)
    assert "hybrid_wieght" in message
    assert "did you mean 'hybrid_weight'" in message
    assert "anaphora" in message
    assert "min_relevance" in message
    with pytest.raises(pz.ConfigError, match="classifier"):
        pz.Zipper.from_preset("fast", classifier="minilm-tc")  # a balanced option is not a fast one


@pytest.mark.parametrize(
    ("option", "value"),
    [("hybrid_weight", 1.5), ("anaphora", -0.1), ("precision", "fp8"), ("rerank_top_k", 0), ("model", "")],
)
def test_out_of_range_values_fail_before_anything_loads(option: str, value: object) -> None:
    with pytest.raises(pz.ConfigError, match=option):
        FastPreset(**{option: value})  # type: ignore[arg-type]


def test_balanced_validates_its_rates() -> None:
    with pytest.raises(pz.ConfigError, match="rates"):
        configure(BalancedPreset, "balanced", {"rates": (0.0, 0.5)})


def test_presets_are_frozen_and_each_extends_the_one_before() -> None:
    preset = FastPreset()
    with pytest.raises(dataclasses.FrozenInstanceError):
        preset.anaphora = 0.1  # type: ignore[misc]
    fast = {f.name for f in dataclasses.fields(FastPreset)}
    balanced = {f.name for f in dataclasses.fields(BalancedPreset)}
    assert fast < balanced < {f.name for f in dataclasses.fields(MaxPreset)}
    assert MaxPreset.slow
    assert not FastPreset.slow


def test_every_selection_default_is_the_presets_and_reaches_the_compressor() -> None:
    """The preset passes every ExtractiveCompressor option explicitly, so the class's plain defaults never leak into
    a preset, and a field change reaches the built compressor."""
    import inspect

    from promptzip.compressors.extractive import ExtractiveCompressor

    accepted = set(inspect.signature(ExtractiveCompressor.__init__).parameters) - {"self", "scorer"}
    assert set(FastPreset().selection()) == accepted
    built = ExtractiveCompressor(KeywordScorer(), **FastPreset(anaphora=0.25, clauses=False).selection())
    assert built.anaphora == 0.25
    assert built.clauses is False


def test_the_registry_holds_the_config_classes() -> None:
    assert registries.presets.get("fast") is FastPreset
    assert registries.presets.get("balanced") is BalancedPreset
    assert registries.presets.get("max") is MaxPreset
    assert registries.presets.describe("fast").startswith("hybrid relevance")


def test_a_plugin_preset_may_be_a_plain_factory() -> None:
    from promptzip.compressors.extractive import ExtractiveCompressor

    seen: dict[str, object] = {}

    def keywords(*, cache: object, progress: bool = False, **options: object) -> PresetParts:
        seen.update(options)
        return PresetParts(ExtractiveCompressor(KeywordScorer(), min_relevance=None), "keywords")

    registries.presets.register("keywords-test", keywords, replace=True)
    try:
        zipper = pz.Zipper.from_preset("keywords-test", cache="memory", flavour="x")
    finally:  # the registry is the process's: leave it as it was for the tests that list it
        registries.presets._factories.pop("keywords-test")
        registries.presets._help.pop("keywords-test")
    assert seen == {"flavour": "x"}  # a plain factory validates its own options
    assert zipper.compress("Paris is in France. Bananas are yellow.", question="Where is Paris?", budget=20).context


def test_building_a_preset_is_cheap_no_torch_until_a_model_runs() -> None:
    """Cheap constructors: building ``fast`` and compressing a text that fits (no model needed) imports no torch."""
    import subprocess
    import sys

    code = (
        "import sys, promptzip as pz\n"
        "r = pz.compress('The tower is 330 m tall.', question='How tall?', budget=100, cache='none')\n"
        "assert r.decision == 'kept_all', r.decision\n"
        "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_the_cpu_flags_agree_with_torch_on_native_bfloat16() -> None:
    import torch

    from promptzip._precision import native_bf16

    assert native_bf16() == bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
