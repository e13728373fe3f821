"""The census (harness/modes/census.py) and the synthesised fixtures it runs (oracles/synth.py): a sample of
model types through the oracle path, the features that must bite, every failure a sentence, and the
committed table checked against the installed transformers so that it cannot go stale silently."""
import re

import numpy as np
import pytest

from archval.harness import ROOT
from archval.harness.modes import census
from archval.oracles import synth

CENSUS_DOC = ROOT / "docs" / "census.md"

# (model type, what its synthesised oracle must show): dense, MoE with a shared expert, sliding windows with
# soft-caps, sliding layers added where the default has none, learned positions and LayerNorms
USABLE_SAMPLE = {
    "llama": ("quiet rows",),
    "qwen2_moe": ("MoE 8 top-2", "experts reached", "quiet rows"),
    "gemma2": ("sliding 2/4 layers", "window 5", "attn_logit_softcapping", "final_logit_softcapping"),
    "qwen2": ("sliding 2/4 layers", "window 5"),
    "gpt2": ("quiet rows",),  # its LayerNorm's epsilon made visible too (oracles/hf.py norm_epsilon)
}


@pytest.mark.parametrize("model_type", sorted(USABLE_SAMPLE))
def test_a_sample_of_model_types_is_synthesised_and_runs_through_the_oracle(model_type):
    result = census.examine(model_type)
    assert result.usable, result.reason
    assert all(any(found.startswith(feature) for found in result.features) for feature in USABLE_SAMPLE[model_type]), \
        result.features
    assert result.cache_gap <= max(census.CACHE_NOISE_FACTOR * result.fp32_noise, census.ABSOLUTE_FLOOR)


def test_a_model_whose_positions_are_its_slots_is_refused_in_one_sentence():
    """BLOOM's ALiBi takes no position_ids: archval's positions apart from slots could never reach it."""
    result = census.examine("bloom")
    assert not result.usable
    assert result.reason.startswith("BloomForCausalLM.forward takes no position_ids")
    assert "\n" not in result.reason


@pytest.mark.parametrize("model_type", ["gemma2", "qwen2", "cohere2"])
def test_a_sliding_window_bites_in_the_synthesised_config(model_type):
    """Shorter than the prompt plus the decode steps, beside full-attention layers: both layer kinds present."""
    config = synth.synthesise(model_type).config
    assert config["sliding_window"] < census.PROMPT_LEN + census.DECODE_STEPS
    assert {"sliding_attention", "full_attention"} <= set(config["layer_types"])
    assert len(config["layer_types"]) == config["num_hidden_layers"]


def test_every_change_is_said_in_the_class_s_own_field_names():
    changes = synth.synthesise("gemma2").changes
    assert "sliding_window 4096 -> 5" in changes and "num_hidden_layers 26 -> 4" in changes
    assert not any(c.startswith(("attn_logit_softcapping", "final_logit_softcapping")) for c in changes)  # kept on


def test_moe_keeps_top_k_below_the_experts_and_mla_its_head_split():
    config = synth.synthesise("deepseek_v3").config
    assert config["num_experts_per_tok"] < config["n_routed_experts"]
    assert config["qk_head_dim"] == config["qk_nope_head_dim"] + config["qk_rope_head_dim"]
    assert config["first_k_dense_replace"] < config["num_hidden_layers"]  # dense and routed layers both present


def test_the_experts_a_router_chooses_are_counted():
    """Mixtral's router returns its top-k indices; a router seen choosing fewer experts says so."""
    assert synth.experts_reached({"a": set(range(8)), "b": {0, 3, 5}}, 8) == "experts reached 3-8/8 per router"
    assert synth.experts_reached({}, 8) is None
    result = census.examine("mixtral")
    assert "experts reached 8/8 per router" in result.features, result.features


def test_a_class_that_refuses_the_tiny_config_is_a_sentence():
    with pytest.raises(synth.SynthError, match=r"^its config class refuses the tiny config: \w+"):
        synth.synthesise(published={"model_type": "llama", "initializer_range": 2.0})  # the class takes <= 1


def test_a_decode_that_leaves_the_full_forward_is_refused():
    """The check that makes a type usable can fail: a cache off by far more than the fp32 noise."""
    logits = np.zeros((17, 8), np.float32)
    off = logits.copy()
    off[5, 3] = 0.5
    positions = np.ones((13, 8), np.float32)
    result = census._judge("x", [], logits, positions, positions * 2, logits + 1e-7, off)
    assert not result.usable and result.reason.startswith("its decode through the cache differs")
    unmoved = census._judge("x", [], logits, positions, positions, logits, logits)
    assert not unmoved.usable and "do not depend on position_ids" in unmoved.reason


def test_a_hang_is_the_time_limit_s_sentence_not_the_census_s_end():
    result = census.isolated("llama", time_limit=0.01)
    assert not result.usable
    assert result.reason == "it did not finish within the census's time limit of 0.01 s"


def _table_types() -> list[str]:
    return re.findall(r"^\| ([\w.-]+) \| (?:yes|no) \|", CENSUS_DOC.read_text(), re.MULTILINE)


def test_the_committed_census_covers_exactly_the_installed_decoder_only_types():
    """A transformers upgrade that adds, renames or drops a causal-LM type fails here until the census is rerun."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    listed = _table_types()
    assert listed, "docs/census.md has no table rows"
    assert set(listed) <= set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
    assert sorted(listed) == census.decoder_only_types()
