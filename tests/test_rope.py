"""RoPE tables as transformers computes them, for every implemented type; what is not implemented is refused."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from archval.emitter import Config, ConfigError, emit
from archval.emitter import rope as rope_tables
from archval.harness.core import fixtures

LLAMA = {**fixtures.load("llama").config, "max_position_embeddings": 256}

SCALINGS = [
    {"rope_type": "linear", "factor": 4.0},
    {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
     "original_max_position_embeddings": 32},
    {"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 32},
    {"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 32, "attention_factor": 1.5,
     "beta_fast": 16, "beta_slow": 2},
    {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64, "truncate": False,
     "mscale": 1.0, "mscale_all_dim": 0.5},
    {"rope_type": "dynamic", "factor": 6.0},
]


SHAPES = [(16, 10000.0), (128, 500000.0), (256, 1000000.0)]  # (head_dim, rope_theta)


def ulp_distance(a: np.ndarray, b: np.ndarray) -> int:
    """How many f32 steps apart two arrays of finite, positive f32 values are, at most."""
    ordinal = lambda x: np.asarray(x, np.float32).view(np.int32).astype(np.int64)
    return int(np.abs(ordinal(a) - ordinal(b)).max())


@pytest.mark.parametrize("head_dim,theta", SHAPES, ids=lambda v: f"{v}")
@pytest.mark.parametrize("scaling", SCALINGS, ids=lambda s: "-".join(f"{v}" for v in s.values()))
def test_inverse_frequencies_and_attention_factor_are_hfs_within_an_ulp(scaling, head_dim, theta):
    """HF's inverse frequencies come from torch's SIMD pow, which rounds differently on each CPU
    (ATEN_CPU_CAPABILITY); ours are correctly rounded, so the two agree to an ulp, not to the bit."""
    from transformers import AutoConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    raw = {**LLAMA, "rope_scaling": scaling, "rope_theta": theta, "head_dim": head_dim,
           "num_attention_heads": 4, "hidden_size": 4 * head_dim}
    inv_freq, attention_factor = ROPE_INIT_FUNCTIONS[scaling["rope_type"]](AutoConfig.for_model(**raw), None)
    cfg = Config.from_dict(raw)
    assert ulp_distance(rope_tables.inverse_frequencies(cfg.rope_full, cfg.head_dim), inv_freq.numpy()) <= 1
    assert abs(cfg.rope_full.attention_factor - attention_factor) <= math.ulp(attention_factor)


def test_yarn_scales_cos_and_sin_by_its_attention_factor():
    cfg = Config.from_dict({**LLAMA, "rope_scaling": SCALINGS[3]})
    cos, sin = rope_tables.cos_sin_tables(cfg.rope_full, cfg.head_dim, 8)
    assert cos[0, 0] == np.float32(1.5) and np.abs(np.hypot(cos, sin) - 1.5).max() < 1e-6


def test_olmo3_legacy_yarn_applies_to_full_attention_layers_only():
    cfg = Config.from_dict(fixtures.load("olmo3-yarn").config)
    assert cfg.rope_full.kind == "yarn" and cfg.rope_sliding.kind == "default"
    assert cfg.rope_full.attention_factor == pytest.approx(1.2079441541679836)


def test_dynamic_rope_past_max_position_embeddings_is_refused(tmp_path):
    raw = {**fixtures.load("internlm3").config, "max_position_embeddings": 24}
    cfg = Config.from_dict(raw, source="x/config.json")
    emit(cfg, "prefill")  # 16 positions lie inside the original context: plain RoPE, as HF
    with pytest.raises(ConfigError) as err:
        emit(cfg, "decode")
    assert str(err.value).startswith("x/config.json: field 'max_position_embeddings' = 24: dynamic RoPE"), err.value
    config = tmp_path / "config.json"
    config.write_text(json.dumps(raw))
    proc = subprocess.run([sys.executable, "-m", "archval.emitter", "--config", str(config), "--graph", "decode",
                           "--out", str(tmp_path / "g.mlir")], capture_output=True, text=True)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "32 positions" in proc.stderr


PARTIAL = [("phi", 0.4), ("gpt_neox", 0.25), ("nemotron", 0.5), ("glm4", 0.5)]


@pytest.mark.parametrize("family,factor", PARTIAL, ids=[f for f, _ in PARTIAL])
def test_partial_rotary_tables_are_hfs_over_the_rotating_dimensions(family, factor):
    """Partial rotary: transformers computes the frequencies over int(head_dim * factor) dimensions, and the
    emitter rotates those first dimensions of each head with them."""
    from transformers import AutoConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    raw = {**fixtures.load(family).config, "rope_parameters": {"rope_type": "linear", "factor": 2.0,
                                                                "rope_theta": 10000.0, "partial_rotary_factor": factor}}
    raw.pop("rotary_pct", None)
    cfg = Config.from_dict(raw)
    assert cfg.rotary_width == int(cfg.head_dim * factor)
    inv_freq, _ = ROPE_INIT_FUNCTIONS["linear"](AutoConfig.for_model(**json.loads(json.dumps(raw))), None)
    assert ulp_distance(rope_tables.inverse_frequencies(cfg.rope_full, cfg.rotary_width), inv_freq.numpy()) <= 1


def test_partial_rotary_that_rotates_an_odd_width_is_refused():
    raw = {**fixtures.load("phi").config, "partial_rotary_factor": 0.3}  # int(16 * 0.3) = 4: fine; 0.35 -> 5
    assert Config.from_dict(raw).rotary_width == 4
    with pytest.raises(ConfigError, match="partial_rotary_factor' = 0.35: rotates 5 of head_dim 16"):
        Config.from_dict({**raw, "partial_rotary_factor": 0.35})
    with pytest.raises(ConfigError, match="partial rotary is not used by this family"):
        Config.from_dict({**fixtures.load("llama").config, "rope_parameters": {"partial_rotary_factor": 0.5}})


LONGROPE = {"rope_type": "longrope", "short_factor": [1.0, 1.5, 2.0, 3.0, 4.5, 6.0, 8.0, 12.0],
            "long_factor": [1.0, 2.0, 4.0, 8.0, 16.0, 24.0, 32.0, 48.0]}


@pytest.mark.parametrize("changes", [
    {},                                                               # the phi3 fixture's: factor from 128 / 32
    {"rope_theta": 500000.0, "max_position_embeddings": 4096, "original_max_position_embeddings": 4096},  # factor 1
    {"rope_scaling": {**LONGROPE, "factor": 3.0, "attention_factor": 1.25}},
    {"rope_scaling": {**LONGROPE, "short_factor": LONGROPE["short_factor"][:4], "long_factor": [2.0] * 4},
     "partial_rotary_factor": 0.5},
], ids=["derived", "unscaled", "given", "partial"])
def test_longrope_is_hfs_within_an_ulp(changes):
    """Phi-3's LongRoPE (ROPE_INIT_FUNCTIONS["longrope"], the short factors inside the original context): the
    same inverse frequencies to an ulp (torch's pow, as for every type) and the same attention factor, which
    multiplies cos and sin."""
    from transformers import AutoConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    raw = {**fixtures.load("phi3").config, **changes}
    inv_freq, attention_factor = ROPE_INIT_FUNCTIONS["longrope"](AutoConfig.for_model(**raw), None)
    cfg = Config.from_dict(raw)
    ours = rope_tables.inverse_frequencies(cfg.rope_full, cfg.rotary_width)
    assert ours.shape == inv_freq.shape and ulp_distance(ours, inv_freq.numpy()) <= 1
    assert abs(cfg.rope_full.attention_factor - attention_factor) <= math.ulp(attention_factor)
    cos, sin = rope_tables.cos_sin_tables(cfg.rope_full, cfg.rotary_width, 4)
    assert cos[0, 0] == np.float32(attention_factor) and cos.shape == (4, len(inv_freq))


def test_longrope_past_its_original_context_is_refused():
    """HF switches to the long factors once a forward's positions pass original_max_position_embeddings; the
    emitter's tables hold the short ones only, so a graph that reaches past it is refused."""
    cfg = Config.from_dict({**fixtures.load("phi3").config, "original_max_position_embeddings": 24},
                           source="x/config.json")
    emit(cfg, "prefill")
    with pytest.raises(ConfigError) as err:
        emit(cfg, "decode")
    assert str(err.value).startswith("x/config.json: field 'original_max_position_embeddings' = 24: LongRoPE")


def test_partial_rotary_rotates_the_first_dimensions_only():
    cfg = Config.from_json(fixtures.load("stablelm").config_path)
    cos, _ = rope_tables.cos_sin_tables(cfg.rope_full, cfg.rotary_width, 8)
    assert cfg.rotary_width == 8 and cos.shape == (8, 4)
