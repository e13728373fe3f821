"""The serving emitter's families (Granite, StarCoder2, StableLM, Cohere, Cohere2, Phi-3, GraniteMoE): each fixture's new
mechanism bites. Removing it (its mutant, harness/checks/mutants.py) moves the logits by at least three times
the fixture's bound; the fused tensors are taken as the checkpoint stores them."""
import pytest

from archval.emitter import Config, ConfigError, emit
from archval.harness.checks import mutants
from archval.harness.checks.structural import REAL_DIR
from archval.harness.core import fixtures
from archval.harness.core.graph import parse_signature
from archval.harness.core.case import run_case
from archval.harness.present.console import line as format_line

MARGIN = 3  # times the bound, at least


def graph_weights(published: str) -> dict[str, tuple[int, ...]]:
    """The prefill graph's weight arguments for a published config: name -> shape."""
    main = parse_signature(emit(Config.from_json(REAL_DIR / published / "config.json"), "prefill")).functions["main"]
    return {a.name: a.shape for a in main.args if "." in a.name}

# (fixture, the mutant that removes or misreads one of its new mechanisms)
MECHANISMS = [
    ("granite", "no_embedding_multiplier"), ("granite", "no_residual_multiplier"),
    ("granite", "no_attention_multiplier"), ("granite", "no_logits_scaling"),
    ("starcoder2", "layernorm_bias_ignored"), ("starcoder2", "layernorm_uncentred"), ("starcoder2", "no_mlp_bias"),
    ("starcoder2", "silu_for_gelu"),
    ("stablelm", "rotary_full_width"), ("stablelm", "parallel_block_sequential"), ("stablelm", "layernorm_bias_ignored"),
    ("cohere", "parallel_block_sequential"), ("cohere", "layernorm_uncentred"), ("cohere", "rope_interleaved"),
    ("cohere", "no_logit_scale"), ("cohere", "no_qk_norm"), ("stablelm", "no_qk_norm"),
    ("cohere2", "nope_layer_rotated"), ("cohere2", "global_layer_slides"), ("cohere2", "decode_ignores_window"),
    ("phi3", "qkv_fused_kv_swapped"), ("phi3", "gate_up_swapped"), ("phi3", "no_rope_scaling"),
    ("phi3", "no_longrope_attention_factor"), ("phi3", "longrope_long_factor"),
    ("granitemoe", "no_embedding_multiplier"), ("granitemoe", "no_residual_multiplier"),
    ("granitemoe", "stacked_gate_up_swapped"), ("granitemoe", "no_topk_renorm"),
]


@pytest.mark.parametrize("name,mutant", MECHANISMS, ids=[f"{n}-{m}" for n, m in MECHANISMS])
def test_removing_the_mechanism_moves_the_logits_past_three_times_the_bound(name, mutant):
    fixture, bug = fixtures.load(name), mutants.MUTANTS[mutant]
    assert mutant in fixture.mutants and bug.applies(Config.from_json(fixture.config_path)), (name, mutant)
    record = run_case(fixture, bug.graph, texts=bug.texts(fixture.config_path), xla=False, strict_bound=False)
    assert record.verdict == "FAIL", format_line(record)
    assert record.max_abs_diff >= MARGIN * fixture.bound, format_line(record)


def test_phi3_takes_its_fused_tensors_as_published():
    """Phi-3's checkpoints store qkv_proj and gate_up_proj fused: the graph takes those, and no split names."""
    names = graph_weights("Phi-3-mini-4k-instruct")
    assert names["model.layers.0.self_attn.qkv_proj.weight"] == (3 * 3072, 3072)
    assert names["model.layers.31.mlp.gate_up_proj.weight"] == (2 * 8192, 3072)
    assert not [n for n in names if any(p in n for p in (".q_proj", ".k_proj", ".v_proj", ".gate_proj", ".up_proj"))]


def test_starcoder2_takes_its_checkpoint_names():
    names = graph_weights("starcoder2-3b")
    for name in ("model.layers.0.mlp.c_fc.weight", "model.layers.0.mlp.c_fc.bias", "model.layers.0.mlp.c_proj.bias",
                 "model.layers.0.input_layernorm.bias", "model.norm.bias", "model.layers.0.self_attn.o_proj.bias"):
        assert name in names, name


@pytest.mark.parametrize("name,change,field", [
    ("stablelm", {"head_dim": 32}, "head_dim"),
    ("phi3", {"rope_scaling": {"type": "longrope", "short_factor": [1.0] * 3, "long_factor": [1.0] * 8}},
     "rope_scaling.short_factor"),
    ("phi3", {"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, "rope_scaling.rope_type"),
    ("stablelm", {"partial_rotary_factor": 0.1}, "partial_rotary_factor"),
])
def test_what_the_serving_set_does_not_implement_is_refused_naming_the_field(name, change, field):
    with pytest.raises(ConfigError) as err:
        Config.from_dict({**fixtures.load(name).config, **change}, source="x/config.json")
    assert str(err.value).startswith(f"x/config.json: field '{field}'"), err.value


def test_cohere2_global_layers_are_nope_and_without_a_window_no_layer_rotates():
    cfg = Config.from_json(fixtures.load("cohere2").config_path)
    assert cfg.rope_layers == (True, True, True, False) and cfg.layer_types[3] == "full_attention"
    windowless = Config.from_dict({**fixtures.load("cohere2").config, "sliding_window": None})
    assert windowless.rope_layers == (False,) * 4


def test_granitemoe_takes_its_stacked_experts_as_the_checkpoint_stores_them():
    from archval.harness.core.graph import parse_signature as parse
    fixture = fixtures.load("granitemoe")
    main = parse(emit(Config.from_json(fixture.config_path), "moe_block")).functions["main"]
    names = {a.name: a.shape for a in main.args if "." in a.name}
    assert names == {"model.layers.0.block_sparse_moe.router.layer.weight": (4, 64),
                     "model.layers.0.block_sparse_moe.input_linear.weight": (4, 64, 64),
                     "model.layers.0.block_sparse_moe.output_linear.weight": (4, 64, 32)}


def test_the_layernorm_qk_norms_take_each_checkpoints_weights():
    """Cohere's q_norm is one [heads, head_dim] weight; StableLM's q_layernorm one LayerNorm module per head."""
    from archval.harness.core.graph import parse_signature as parse

    def weights(name):
        main = parse(emit(Config.from_json(fixtures.load(name).config_path), "prefill")).functions["main"]
        return {a.name: a.shape for a in main.args if "norm" in a.name and a.name.startswith("model.layers.0.")}
    cohere, stablelm = weights("cohere"), weights("stablelm")
    assert cohere["model.layers.0.self_attn.q_norm.weight"] == (4, 16)
    assert cohere["model.layers.0.self_attn.k_norm.weight"] == (2, 16)
    assert [n for n in stablelm if "layernorm.norms" in n] == [
        *(f"model.layers.0.self_attn.q_layernorm.norms.{h}.weight" for h in range(4)),
        *(f"model.layers.0.self_attn.k_layernorm.norms.{h}.weight" for h in range(2))]
