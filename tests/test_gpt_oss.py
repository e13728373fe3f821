"""GPT-OSS (issue 28): every mechanism its fixture carries bites. Removed from the oracle (transformers' own
GptOssForCausalLM, the same seeded weights, teacher-forced on the same tokens), each moves the logits past three
times the fixture's bound; removed or misread in the emitter (its mutant), each FAILs the gate by as much. The
graphs take the tensors as the checkpoint stores them."""
import json
from dataclasses import replace

import numpy as np
import pytest

from archval.emitter import Config, emit
from archval.harness.checks import mutants, shrink
from archval.harness.checks.structural import REAL_DIR
from archval.harness.core import fixtures
from archval.harness.core.case import run_case
from archval.harness.core.graph import parse_signature
from archval.harness.present.console import line as format_line

MARGIN = 3  # times the bound, at least
FIXTURE = fixtures.load("gpt_oss")


def _no_sinks(model):
    for layer in model.model.layers:
        layer.self_attn.sinks.fill_(float("-inf"))  # exp(-inf) = 0: nothing added to the denominator


def _no_clamp(model):
    for layer in model.model.layers:
        layer.mlp.experts.limit = float("inf")


def _zeroed(*suffixes):
    def remove(model):
        for name, p in model.named_parameters():
            if name.endswith(suffixes):
                p.zero_()
    return remove


def _every_layer_full(config: dict) -> dict:
    return {**config, "layer_types": ["full_attention"] * config["num_hidden_layers"]}


# (mechanism, how the oracle's model loses it, how its config does)
REMOVALS = {
    "attention sinks": (_no_sinks, None),
    "clamped SwiGLU's clamps": (_no_clamp, None),
    "q/k/v/o biases": (_zeroed("q_proj.bias", "k_proj.bias", "v_proj.bias", "o_proj.bias"), None),
    "router bias": (_zeroed("router.bias"), None),
    "experts' biases": (_zeroed("gate_up_proj_bias", "down_proj_bias"), None),
    "sliding window": (None, _every_layer_full),
}


def _oracle_logits(config: dict, change=None, tokens=None):
    """The oracle's logits [steps + 1, V]: greedy, or teacher-forced on tokens (another run's choices)."""
    import torch

    from archval.harness.core.fixtures import QUIET_TOKENS
    from archval.oracles.hf import Oracle
    oracle = Oracle(config, FIXTURE.seed, quiet_tokens=QUIET_TOKENS)
    if change:
        with torch.no_grad():
            change(oracle.model)
    prompt, positions, steps = FIXTURE.prompt(), FIXTURE.prompt_positions(), FIXTURE.decode_positions()
    if tokens is None:
        return oracle.greedy(prompt, positions, steps)
    return oracle.teacher_forced(prompt, positions, steps, tokens), tokens


@pytest.fixture(scope="module")
def intact():
    return _oracle_logits(FIXTURE.config)


@pytest.mark.parametrize("mechanism", REMOVALS)
def test_removing_each_mechanism_moves_the_oracles_logits_past_three_times_the_bound(intact, mechanism):
    logits, tokens = intact
    change_model, change_config = REMOVALS[mechanism]
    config = change_config(FIXTURE.config) if change_config else FIXTURE.config
    without, _ = _oracle_logits(config, change_model, tokens)
    moved = float(np.abs(without.astype(np.float64) - logits).max())
    assert moved >= MARGIN * FIXTURE.bound, f"{mechanism}: max |Δlogit| {moved:.3e}"


NEW_MUTANTS = ["no_attention_sinks", "no_swiglu_clamp", "gate_up_halves", "no_router_bias", "no_expert_bias",
               "yarn_truncated"]


@pytest.mark.parametrize("mutant", NEW_MUTANTS)
def test_each_new_mechanisms_mutant_fails_by_three_times_the_bound(mutant):
    bug = mutants.MUTANTS[mutant]
    assert mutant in FIXTURE.mutants and bug.applies(Config.from_json(FIXTURE.config_path))
    record = run_case(FIXTURE, bug.graph, texts=bug.texts(FIXTURE.config_path), xla=False, strict_bound=False)
    assert record.verdict == "FAIL" and record.max_abs_diff >= MARGIN * FIXTURE.bound, format_line(record)


@pytest.mark.parametrize("mutant", ["no_router_bias", "gate_up_halves", "no_swiglu_clamp"])
def test_the_moe_block_check_names_a_router_or_expert_slip_at_the_block(mutant):
    bug = replace(mutants.MUTANTS[mutant], graph="moe_block")
    record = run_case(FIXTURE, "moe_block", texts=bug.texts(FIXTURE.config_path), xla=False, strict_bound=False)
    assert record.verdict == "FAIL" and record.max_abs_diff >= MARGIN * record.bound, format_line(record)


def _arguments(config: Config, graph: str) -> dict[str, tuple[int, ...]]:
    main = parse_signature(emit(config, graph)).functions["main"]
    return {a.name: a.shape for a in main.args if "." in a.name}


def test_the_graphs_take_the_experts_and_sinks_as_the_checkpoint_stores_them():
    config = Config.from_json(FIXTURE.config_path)
    assert _arguments(config, "moe_block") == {
        "model.layers.0.mlp.router.weight": (4, 64), "model.layers.0.mlp.router.bias": (4,),
        "model.layers.0.mlp.experts.gate_up_proj": (4, 64, 64),  # [E, H, 2I], gate and up interleaved
        "model.layers.0.mlp.experts.gate_up_proj_bias": (4, 64),
        "model.layers.0.mlp.experts.down_proj": (4, 32, 64), "model.layers.0.mlp.experts.down_proj_bias": (4, 64)}
    prefill = _arguments(config, "prefill")
    assert [prefill[f"model.layers.{i}.self_attn.sinks"] for i in range(4)] == [(4,)] * 4
    assert prefill["model.layers.3.self_attn.o_proj.bias"] == (64,)


def test_without_rope_fields_the_class_default_yarn_is_taken_and_num_experts_is_read():
    raw = {k: v for k, v in FIXTURE.config.items() if k not in ("rope_parameters", "num_local_experts")}
    config = Config.from_dict({**raw, "num_experts": 4})
    assert (config.rope_full.kind, config.rope_full.factor, config.rope_full.theta, config.rope_full.truncate,
            config.rope_full.original_max_position) == ("yarn", 32.0, 150000.0, False, 4096)
    assert config.moe.experts == 4 and config.moe.swiglu_clamp == (1.702, 3.0)


def test_the_kept_line_names_every_flag_off_the_baseline():
    """Issue 28: the shrunk config's kept line named none of the flags added after it was written."""
    def kept(name):
        return shrink.shrink(json.loads((REAL_DIR / name / "config.json").read_text())).kept
    assert {"norm_kind layernorm", "parallel_block two_norms", "rotary_dim", "qkv_fused per_head",
            "mlp_gated False"} <= set(kept("pythia-1b"))
    assert {"attention_sinks", "router_bias", "expert_bias", "gate_up_interleaved", "stacked in_out",
            "swiglu_clamp (1.702, 7.0)"} <= set(kept("gpt-oss-20b"))
