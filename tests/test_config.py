"""Config parsing: both dialects, agreement with transformers' own reading, and clear refusals."""
import json
import subprocess
import sys

import pytest

from archval.emitter import Config, ConfigError
from archval.emitter.families import FAMILIES
from archval.harness.core import fixtures

NAMES = fixtures.names()


def hf_config(raw):
    """transformers' reading of the config: the stand-in's config where another class serves the family (MiMo)."""
    from transformers import AutoConfig
    from archval.oracles.hf import binding
    return AutoConfig.for_model(**binding(raw["model_type"]).config(raw))


def hf_rope_layers(hf) -> list[bool]:
    """Which layers rotate, as the family's modeling code decides: SmolLM3's no_rope_layers; EXAONE 4 rotates its
    sliding layers only, or every layer where there is no window."""
    if hf.model_type == "exaone4":
        return [hf.sliding_window is None or t == "sliding_attention" for t in hf.layer_types]
    if hf.model_type == "cohere2":  # Cohere2Attention rotates on its sliding layers only
        return [t == "sliding_attention" and hf.sliding_window is not None for t in hf.layer_types]
    return [bool(x) for x in getattr(hf, "no_rope_layers", [1] * hf.num_hidden_layers)]


@pytest.mark.parametrize("name", NAMES)
def test_both_dialects_parse_to_the_same_flags(name):
    """The fixture as written, and as transformers 5 saves it (rope_parameters, layer_types)."""
    raw = fixtures.load(name).config
    saved = {**hf_config(raw).to_dict(), "model_type": raw["model_type"]}
    assert "rope_parameters" in saved and "rope_theta" not in saved
    assert Config.from_dict(raw) == Config.from_dict(saved)


@pytest.mark.parametrize("name", NAMES)
def test_flags_agree_with_transformers(name):
    raw = fixtures.load(name).config
    ours, hf = Config.from_dict(raw), hf_config(raw)
    assert ours.head_dim == (getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads)
    assert ours.num_kv_heads == (getattr(hf, "num_key_value_heads", None) or hf.num_attention_heads)  # GPT-NeoX: MHA
    assert ours.rms_norm_eps == getattr(hf, FAMILIES[raw["model_type"]].norm_eps_field)  # Phi's layer_norm_eps, ...
    assert ours.tie_word_embeddings == hf.tie_word_embeddings
    # no layer_types but a window (Mistral): MistralModel builds the sliding mask for every layer
    slide_all = ["sliding_attention" if getattr(hf, "sliding_window", None) else "full_attention"]
    hf_types = getattr(hf, "layer_types", None) or slide_all * hf.num_hidden_layers
    if getattr(hf, "sliding_window", None) is None:
        hf_types = ["full_attention"] * hf.num_hidden_layers
    assert list(ours.layer_types) == hf_types
    if "sliding_attention" in hf_types:
        assert ours.sliding_window == hf.sliding_window
    rope = hf.rope_parameters
    for layer_type, mine in (("full_attention", ours.rope_full), ("sliding_attention", ours.rope_sliding)):
        theirs = rope.get(layer_type, rope)
        assert mine.theta == theirs["rope_theta"]
        assert mine.kind == theirs["rope_type"]
        if mine.kind == "longrope":  # its factor, where absent, is derived (max_position_embeddings / original)
            assert list(mine.short_factor) == theirs["short_factor"]
            assert mine.original_max_position == theirs["original_max_position_embeddings"]
        else:
            assert mine.factor == theirs.get("factor", 1.0)
    assert ours.rotary_width == int(ours.head_dim * rope.get("partial_rotary_factor", 1.0))
    assert list(ours.rope_layers) == hf_rope_layers(hf)
    if ours.moe is not None:
        # every MoE config class maps its alias to num_experts, but GraniteMoE's, which has num_local_experts only
        assert ours.moe.experts == getattr(hf, "num_experts", None) or getattr(hf, "num_local_experts")
        assert ours.moe.top_k == hf.num_experts_per_tok
        assert ours.clip_qkv == getattr(hf, "clip_qkv", None)


def test_gemma3_legacy_fields_mean_the_same_as_nested_rope_parameters():
    legacy = {**fixtures.load("gemma3").config, "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0,
              "rope_scaling": {"rope_type": "linear", "factor": 8.0}, "sliding_window_pattern": 3}
    del legacy["rope_parameters"]
    legacy["layer_types"] = None
    cfg = Config.from_dict(legacy)
    assert cfg.rope_full.kind == "linear" and cfg.rope_full.theta == 1e6 and cfg.rope_sliding.theta == 1e4
    assert cfg.layer_types == ("sliding_attention", "sliding_attention", "full_attention", "sliding_attention")


LLAMA = fixtures.load("llama").config


@pytest.mark.parametrize("change,field", [
    ({"model_type": "gpt2"}, "model_type"),
    ({"rope_scaling": {"rope_type": "longrope", "factor": 4.0}}, "rope_scaling.rope_type"),
    ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0, "beta_fast": -1}}, "rope_scaling.beta_fast"),
    ({"num_key_value_heads": 3}, "num_key_value_heads"),
    ({"num_attention_heads": 0}, "num_attention_heads"),
    ({"head_dim": 15}, "head_dim"),
    ({"hidden_act": "relu"}, "hidden_act"),
    ({"rope_parameters": {"rope_type": "default", "rope_theta": 1e4, "partial_rotary_factor": 0.5}},
     "rope_parameters.partial_rotary_factor"),
    ({"layer_types": ["full_attention"]}, "layer_types"),
    ({"head_dim": 0}, "head_dim"),  # found by tests/test_fuzz.py: 0 was read as absent
    ({"num_key_value_heads": 0}, "num_key_value_heads"),
    ({"hidden_size": 66, "head_dim": 16}, "num_attention_heads"),  # LlamaConfig wants heads to divide it regardless
    ({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}, "rope_scaling.low_freq_factor"),
])
def test_refusals_name_the_field(change, field):
    with pytest.raises(ConfigError) as err:
        Config.from_dict({**LLAMA, **change}, source="x/config.json")
    message = str(err.value)
    assert message.startswith("x/config.json: field '" + field + "'"), message
    assert "\n" not in message


def test_exact_gelu_is_refused_for_gemma2():
    with pytest.raises(ConfigError, match="hidden_activation"):
        Config.from_dict({**fixtures.load("gemma2").config, "hidden_activation": "gelu"})


def test_missing_required_field_is_named():
    raw = dict(LLAMA)
    del raw["hidden_size"]
    with pytest.raises(ConfigError, match="required field 'hidden_size' is missing"):
        Config.from_dict(raw)


@pytest.mark.parametrize("content,expected", [
    ("{not json", "not valid JSON"),
    ('{"model_type": "mamba", "vocab_size": 8}', "field 'model_type' = \"mamba\""),
    ("[1, 2]", "top level must be a JSON object"),
])
def test_cli_refuses_with_one_sentence_and_exit_2(tmp_path, content, expected):
    config = tmp_path / "config.json"
    config.write_text(content)
    out = tmp_path / "graph.mlir"
    proc = subprocess.run([sys.executable, "-m", "archval.emitter", "--config", str(config), "--graph", "prefill",
                           "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert expected in proc.stderr and str(config) in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists(), "a refused config must not leave a graph behind"


def test_cli_writes_a_graph(tmp_path):
    out = tmp_path / "graph.mlir"
    subprocess.run([sys.executable, "-m", "archval.emitter", "--config", str(fixtures.load("llama").config_path),
                    "--graph", "prefill", "--out", str(out)], check=True)
    assert out.read_text().startswith("module @llama_prefill")
    assert json.dumps("model.embed_tokens.weight") in out.read_text()


def test_explicit_null_sliding_window_means_none_and_an_absent_one_the_class_default():
    mistral = fixtures.load("mistral").config
    cfg = Config.from_dict({**mistral, "sliding_window": None})
    assert cfg.sliding_window is None and set(cfg.layer_types) == {"full_attention"}
    absent = {k: v for k, v in mistral.items() if k != "sliding_window"}
    assert Config.from_dict(absent).sliding_window == 4096 == hf_config(absent).sliding_window


@pytest.mark.parametrize("name,field,attribute", [("gemma2", "final_logit_softcapping", "final_softcap"),
                                                  ("gemma2", "attn_logit_softcapping", "attn_softcap"),
                                                  ("olmoe", "clip_qkv", "clip_qkv")])
def test_explicit_null_switches_a_feature_off_and_an_absent_one_takes_the_class_default(name, field, attribute):
    """Found by tests/test_fuzz.py: a null final soft-cap took Gemma 2's default 30 (|Δlogit| 1.08)."""
    raw = fixtures.load(name).config
    assert getattr(Config.from_dict({**raw, field: None}), attribute) is None
    assert getattr(hf_config({**raw, field: None}), field) is None
    absent = {k: v for k, v in raw.items() if k != field}
    assert getattr(Config.from_dict(absent), attribute) == getattr(hf_config(absent), field)


@pytest.mark.parametrize("rope", [{}, {"rope_scaling": {"rope_type": "yarn", "factor": 8.0,
                                                         "original_max_position_embeddings": 32}}])
def test_olmo3_sliding_layers_keep_the_class_default_base_as_transformers_reads_it(rope):
    """Found by tests/test_fuzz.py: Olmo3Config gives the top-level rope_theta to the full layers only."""
    raw = {**fixtures.load("olmo3").config, "rope_theta": 10_000.0, **rope}
    ours, hf = Config.from_dict(raw), hf_config(raw).rope_parameters
    assert ours.rope_full.theta == hf["full_attention"]["rope_theta"] == 10_000.0
    assert ours.rope_sliding.theta == hf["sliding_attention"]["rope_theta"] == 500_000.0


def test_refusals_name_the_field_as_the_config_writes_it():
    with pytest.raises(ConfigError, match="field 'num_layers' = 0"):
        Config.from_dict({**fixtures.load("exaone").config, "num_layers": 0})
    raw = {k: v for k, v in fixtures.load("exaone").config.items() if k != "num_layers"}
    with pytest.raises(ConfigError, match="required field 'num_layers' is missing"):
        Config.from_dict(raw)


@pytest.mark.parametrize("change", [{"sliding_window": None}, {"sliding_window_pattern": "LLLG"}])
def test_exaone4_layer_types_transformers_cannot_derive_are_refused(change):
    """EXAONE 4 derives layer_types from sliding_window_pattern, an int; with no window it sets the pattern to 0.
    transformers fails on either without layer_types (ZeroDivisionError, TypeError): the emitter refuses them."""
    raw = {**fixtures.load("exaone4").config, **change}
    with pytest.raises(ConfigError, match="field 'layer_types' = null: transformers' exaone4 config cannot derive"):
        Config.from_dict(raw, source="x/config.json")
    types = ["full_attention"] * raw["num_hidden_layers"]
    assert all(Config.from_dict({**raw, "layer_types": types}).rope_layers) == (raw.get("sliding_window", 4) is None)
