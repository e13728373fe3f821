"""The MoE block alone against the oracle's block: passes when right, fails on each routing bug."""
import subprocess
import sys

import numpy as np
import pytest

from archval.emitter import Config, emit
from archval.harness.core import fixtures, oracle_cache
from archval.harness.core.case import run_case
from archval.harness.core.kinds import KINDS
from archval.harness.checks import mutants
from archval.harness.present.console import line as format_line

MOE = [n for n in fixtures.names() if Config.from_json(fixtures.load(n).config_path).moe is not None]


def _block_mutants():
    cases = []
    for name in MOE:
        fixture = fixtures.load(name)
        cfg = Config.from_json(fixture.config_path)
        for m in fixture.mutants:
            bug = mutants.MUTANTS[m]
            if bug.graph == "prefill" and emit(bug.config(cfg), "moe_block", core=bug.core) != emit(cfg, "moe_block"):
                cases.append((name, m))
    return cases


BLOCK_MUTANTS = _block_mutants()


def test_every_moe_family_has_a_fixture():
    assert {fixtures.load(n).model_type for n in MOE} >= {"mixtral", "qwen2_moe", "qwen3_moe", "olmoe"}


@pytest.mark.graph_moe_block
@pytest.mark.parametrize("name", MOE)
def test_moe_block_matches_the_oracles_block(name, emitter):
    fixture = fixtures.load(name)
    assert KINDS["moe_block"].applies(fixture), f"the emitter routes {name} but the oracle has no routed layer"
    record = run_case(fixture, "moe_block", emitter=emitter)
    assert record.verdict == "PASS", format_line(record)
    assert record.block.expert_sets > 1, "every token picks the same experts: routing is untested"


@pytest.mark.parametrize("name,mutant", BLOCK_MUTANTS, ids=[f"{n}-{m}" for n, m in BLOCK_MUTANTS])
def test_routing_mutant_fails_the_block_check(name, mutant):
    fixture, bug = fixtures.load(name), mutants.MUTANTS[mutant]
    text = emit(bug.config(Config.from_json(fixture.config_path)), "moe_block", core=bug.core)
    record = run_case(fixture, "moe_block", texts={"moe_block": text})
    assert record.verdict == "FAIL", format_line(record)


def test_routing_mutants_reach_the_block_check():
    killed = {m for _, m in BLOCK_MUTANTS}
    assert killed >= {"no_topk_renorm", "renormalize_topk", "topk_least_likely", "shared_expert_ungated",
                      "no_correction_bias", "correction_bias_in_weights", "group_limit_ignored", "no_routed_scaling",
                      "no_shared_experts"}


@pytest.mark.parametrize("name", MOE)
def test_fixture_routes_decisively_over_the_whole_continuation(name):
    """A router near-tie would let fp32 noise pick another expert: the fixture must keep clear of it."""
    import torch
    from archval.oracles.hf import Oracle
    fixture = fixtures.load(name)
    model, run = oracle_cache.model(fixture), oracle_cache.run(fixture)
    logits, inputs = [], []
    blocks = [Oracle._mlp(model.model.model.layers[i]) for i in run.routed_layers]  # GraniteMoE's block_sparse_moe
    routers = [block.gate if hasattr(block, "gate") else block.router for block in blocks]

    def keep(module, args, out) -> None:
        logits.append(out[0])
        inputs.append(args[0].reshape(-1, args[0].shape[-1]))
    hooks = [router.register_forward_hook(keep) for router in routers]
    ids = np.concatenate([fixture.prompt(), run.tokens[:-1]]).astype(np.int64)
    with torch.no_grad():
        model.model(input_ids=torch.from_numpy(ids)[None], use_cache=False)
    for h in hooks:
        h.remove()
    if model.grouped_choice(run.routed_layers[0], inputs[0]) is not None:  # DeepSeek-V3: its group and expert choices
        assert min(model.grouped_margin(layer, x) for layer, x in zip(run.routed_layers, inputs)) > 1e-4
        return
    k = fixture.config["num_experts_per_tok"]
    probs = np.sort(torch.softmax(torch.cat(logits).float(), -1).numpy(), axis=1)[:, ::-1]
    assert (probs[:, k - 1] - probs[:, k]).min() > 1e-4


def test_a_dense_family_has_no_moe_block(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "archval.emitter", "--config", str(fixtures.load("llama").config_path),
                           "--graph", "moe_block", "--out", str(tmp_path / "b.mlir")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "llama: no layer routes to experts, so there is no MoE block to emit." in proc.stderr
