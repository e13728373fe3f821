"""DeepSeek-V3 (issue 28): latent attention and the grouped sigmoid router.

The fixture makes each mechanism bite: the oracle itself, with the mechanism knocked out of transformers' model,
moves its logits past three times the bound. Each of the emitter's misreadings (a mutant) FAILs by three times
the bound. The decode graph keeps the latent and the rope key, not K and V; both cache layouts of the protocol
(stacked, per layer) run end to end. Refusals name the field."""
import json

import numpy as np
import pytest
import torch

from archval.emitter import Config, ConfigError, emit
from archval.emitter.decoder import Decoder
from archval.emitter.stablehlo import Function, module
from archval.harness.checks import published, self_test, shrink
from archval.harness.checks.structural import REAL_DIR
from archval.harness.core import fixtures, oracle_cache
from archval.harness.core.abi import LATENT_PER_LAYER, LATENT_STACKED, decode_caches
from archval.harness.core.case import run_case
from archval.harness.core.fixtures import QUIET_TOKENS
from archval.harness.core.graph import parse_signature
from archval.harness.present.console import line as format_line, mutant_line
from archval.oracles.hf import Oracle

MARGIN = 3  # times the bound, at least
FIXTURE = fixtures.load("deepseek_v3")


def _layers(model):
    return model.model.layers


def _routers(model):
    return [layer.mlp.gate for layer in _layers(model) if hasattr(layer.mlp, "gate")]


def _unrotated(model):
    model.model.rotary_emb.inv_freq.zero_()  # every angle 0: cos 1, sin 0
    model.model.rotary_emb.attention_scaling = 1.0


# the mechanism, and its removal from transformers' own model (the fixture's weights otherwise)
KNOCKOUTS = {
    "q LoRA norm": lambda m: [setattr(l.self_attn, "q_a_layernorm", torch.nn.Identity()) for l in _layers(m)],
    "kv latent norm": lambda m: [setattr(l.self_attn, "kv_a_layernorm", torch.nn.Identity()) for l in _layers(m)],
    "rope part rotated": _unrotated,
    "rope key": lambda m: [l.self_attn.kv_a_proj_with_mqa.weight[-FIXTURE.config["qk_rope_head_dim"]:].zero_()
                           for l in _layers(m)],
    "mscale in the score scale": lambda m: [setattr(l.self_attn, "scaling", l.self_attn.qk_head_dim ** -0.5)
                                            for l in _layers(m)],
    "correction bias in the choice": lambda m: [r.e_score_correction_bias.zero_() for r in _routers(m)],
    "group limit": lambda m: [setattr(r, "topk_group", r.num_group) for r in _routers(m)],
    "routed_scaling_factor": lambda m: [setattr(r, "routed_scaling_factor", 1.0) for r in _routers(m)],
    "norm_topk_prob": lambda m: [setattr(r, "norm_topk_prob", False) for r in _routers(m)],
    "shared experts": lambda m: [l.mlp.shared_experts.down_proj.weight.zero_() for l in _layers(m)
                                 if hasattr(l.mlp, "shared_experts")],
}


def _logits(oracle: Oracle) -> np.ndarray:
    """The oracle's logits over the prompt's last token and every decode step, fed the fixture's own tokens."""
    return oracle.teacher_forced(FIXTURE.prompt(), FIXTURE.prompt_positions(), FIXTURE.decode_positions(),
                                 oracle_cache.run(FIXTURE).tokens)


@pytest.mark.parametrize("mechanism", KNOCKOUTS)
def test_each_mechanism_moves_the_oracles_logits_past_three_times_the_bound(mechanism):
    oracle = Oracle(FIXTURE.config, FIXTURE.seed, quiet_tokens=QUIET_TOKENS)
    baseline = _logits(oracle)
    assert np.abs(baseline - oracle_cache.run(FIXTURE).logits).max() < 1e-5  # the fixture's own oracle
    with torch.no_grad():
        KNOCKOUTS[mechanism](oracle.model)
    moved = float(np.abs(_logits(oracle) - baseline).max())
    assert moved >= MARGIN * FIXTURE.bound, f"{mechanism}: max |Δlogit| {moved:.3e}"


def test_the_other_rope_pairing_moves_the_oracles_logits_past_three_times_the_bound():
    halves = Oracle({**FIXTURE.config, "rope_interleave": False}, FIXTURE.seed, quiet_tokens=QUIET_TOKENS)
    assert np.abs(_logits(halves) - oracle_cache.run(FIXTURE).logits).max() >= MARGIN * FIXTURE.bound


NEW_MUTANTS = ["no_q_lora_norm", "mla_rope_not_rotated", "rope_interleaved", "no_mla_mscale", "latent_cached_before_norm",
               "no_correction_bias", "correction_bias_in_weights", "group_limit_ignored", "no_routed_scaling",
               "no_shared_experts"]


@pytest.mark.parametrize("mutant", NEW_MUTANTS)
def test_each_misreading_fails_by_three_times_the_bound(mutant):
    assert mutant in FIXTURE.mutants
    (record,) = self_test.run_family("deepseek_v3", only=(mutant,))
    assert record.verdict == "FAIL" and record.mutant.killed, mutant_line(record)
    assert record.max_abs_diff >= MARGIN * record.bound, mutant_line(record)


def test_decode_keeps_the_normed_latent_and_the_rotated_rope_key_not_k_and_v():
    cfg = Config.from_json(FIXTURE.config_path)
    main = parse_signature(emit(cfg, "decode")).functions["main"]
    variant, caches = decode_caches(main, FIXTURE)
    assert variant == LATENT_STACKED
    assert [(c.name, c.shape) for c in caches] == [("kv_latent", (3, 32, 16)), ("k_rope", (3, 32, 8))]
    assert not {"k_cache", "v_cache"} & {a.name for a in main.args}


def _per_layer_texts(cfg: Config) -> dict[str, str]:
    """The built-in graphs with the latent caches split per layer (kv_latent.i, k_rope.i), the protocol's other
    layout: the same core, its caches stacked inside the graph and split again."""
    g = Function("main")
    dec = Decoder(cfg, g)
    tokens, positions, real_len = g.input("tokens", (16,), "i32"), g.input("positions", (16,), "i32"), \
        g.input("real_len", (), "i32")
    h = dec.hidden_states(tokens, positions, g.iota((16,), 0), g.iota((16,), 0), capacity=16)
    last = g.dynamic_slice(h, [g.sub(real_len, g.scalar(1, "i32")), g.scalar(0, "i32")], (1, cfg.hidden_size))
    g.returns(dec.logits(last), *[c for pair in dec.new_kv for c in pair])
    prefill = module("per_layer_prefill", [g])

    g = Function("main")
    token, position, cache_len = (g.input(n, (), "i32") for n in ("token", "position", "cache_len"))
    widths = {"kv_latent": cfg.mla.kv_lora_rank, "k_rope": cfg.mla.qk_rope_head_dim}
    layers = range(cfg.num_layers)
    inputs = {(n, i): g.input(f"{n}.{i}", (32, widths[n]), "f32") for i in layers for n in widths}  # layer by layer
    stacked = [g.concatenate([g.reshape(inputs[n, i], (1, 32, w)) for i in layers], dim=0) for n, w in widths.items()]
    dec = Decoder(cfg, g, cache=(*stacked, cache_len))
    one = lambda x: g.reshape(x, (1,))
    h = dec.hidden_states(one(token), one(position), one(cache_len), g.iota((32,), 0), capacity=32)
    split = lambda c, i: g.reshape(g.slice(c, (i, 0, 0), (i + 1, *c.shape[1:])), c.shape[1:])
    g.returns(dec.logits(h), *[split(c, i) for i in layers for c in dec.cache[:2]])
    return {"prefill": prefill, "decode": module("per_layer_decode", [g])}


def test_the_per_layer_latent_caches_run_end_to_end():
    record = run_case(FIXTURE, "decode", texts=_per_layer_texts(Config.from_json(FIXTURE.config_path)))
    assert record.verdict == "PASS" and record.abi.caches == LATENT_PER_LAYER, format_line(record)


@pytest.mark.parametrize("change,field", [
    ({"num_key_value_heads": 2}, "num_key_value_heads"),
    ({"n_group": 3}, "n_group"),
    ({"topk_group": 5}, "topk_group"),
    ({"n_group": 4, "topk_group": 1, "num_experts_per_tok": 3}, "topk_group"),
])
def test_what_transformers_cannot_run_is_refused_naming_the_field(change, field):
    with pytest.raises(ConfigError, match=f"'{field}'"):
        Config.from_dict({**FIXTURE.config, **change})


def test_the_published_config_shrinks_keeping_latent_attention_and_the_router():
    raw = json.loads((REAL_DIR / "DeepSeek-V3" / "config.json").read_text())
    tiny = shrink.shrink(raw)
    assert tiny.layers == (0, 3) and tiny.config["first_k_dense_replace"] == 1
    assert (tiny.config["n_routed_experts"], tiny.config["n_group"], tiny.config["topk_group"]) == (16, 8, 4)
    assert "latent attention with q LoRA, interleaved RoPE" in tiny.kept
    cfg = Config.from_dict(tiny.config)
    assert cfg.moe.routed_layers == (False, True) and cfg.moe.routed_scaling == 2.5


def test_the_router_margin_reads_the_grouped_choice():
    """The margin is the grouped router's (biased scores inside the kept groups, and the groups' scores): the
    raw logits' ranking is not what DeepSeek-V3 chooses by."""
    assert published.router_margin(FIXTURE) > published.ROUTER_MARGIN


@pytest.mark.parametrize("graph", ["prefill_chunked", "decode_verify", "decode_batched", "decode_paged"])
def test_the_serving_graphs_that_continue_a_cache_are_refused_for_latent_attention(graph):
    """The built-in emitter keeps the latent caches in decode alone: asked for another graph that continues a cache,
    it refuses (exit 2, the case UNSUPPORTED) instead of writing a graph that does not parse."""
    with pytest.raises(ConfigError, match=f"no {graph} graph"):
        emit(Config.from_json(FIXTURE.config_path), graph)
