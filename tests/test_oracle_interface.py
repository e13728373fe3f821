"""The oracle interface (oracles/interface.py): a case reaches its fixture's oracle through oracle_cache.of(), so a
checkpoint case of any graph kind is judged against the checkpoint's own model, never the seeded one; and no
module on a case's path imports torch or transformers but through oracles/."""
import ast
from dataclasses import replace

import numpy as np
import pytest

from archval.harness import ROOT
from archval.harness.core import checkpoint_files as ckpt
from archval.harness.core import fixtures, oracle_cache
from archval.harness.core.case import run_case
from archval.harness.core.checkpoint_oracle import CheckpointOracle
from archval.harness.core.fixtures import Fixture
from archval.harness.modes.make_checkpoint import build

CHECKPOINT_SEED = 7  # not the fixture's: the seeded model of its config is another model than the checkpoint


@pytest.fixture(scope="module")
def mixtral(tmp_path_factory) -> Fixture:
    directory = build(dict(fixtures.load("mixtral").config), tmp_path_factory.mktemp("ckpt") / "mixtral", "f32",
                      seed=CHECKPOINT_SEED)
    checkpoint = ckpt.read(directory)
    prompt = np.array([3, 1, 4, 1, 5, 9, 2, 6])
    return Fixture(name="mixtral-checkpoint", config_path=directory / "config.json", config=checkpoint.config,
                   seed=0, prompt_len=len(prompt), bound=1e-2, bound_reason=None, purpose="a checkpoint",
                   mutants=(), decode_steps=4, prompt_ids=tuple(prompt.tolist()), sizes=(8, 12),
                   oracle=CheckpointOracle(checkpoint, prompt, 4, strict=True))


def test_every_output_of_a_checkpoint_fixture_is_its_checkpoints(mixtral):
    from archval.oracles.hf import Oracle
    assert oracle_cache.of(mixtral) is mixtral.oracle
    live = Oracle.from_checkpoint(mixtral.config_path.parent, mixtral.config)
    prompt, positions = mixtral.prompt(), mixtral.prompt_positions()
    logits, tokens = live.greedy(prompt, positions, mixtral.decode_positions())
    run = oracle_cache.run(mixtral)
    assert np.array_equal(run.tokens, tokens) and np.array_equal(run.logits, logits)
    assert isinstance(run.weights, ckpt.GraphTensors)
    assert np.array_equal(oracle_cache.prompt_logits(mixtral), live.prompt_logits(prompt, positions))
    hidden = np.random.default_rng(0).standard_normal((5, mixtral.config["hidden_size"])).astype(np.float32)
    block = oracle_cache.moe_block(mixtral, 0, hidden).output
    assert np.array_equal(block, live.moe_block(0, hidden)[0])
    seeded = oracle_cache.SeededOracle(mixtral).moe_block(0, hidden).output  # what a mix-up would compare with
    assert np.abs(block - seeded).max() > 1e-1


class MixedUp:
    """The mix-up the accessor rules out: the graphs bound to the checkpoint's weights, their outputs compared
    with the seeded model of the same config."""

    def __init__(self, fixture):
        self.seeded, self.checkpoint = oracle_cache.SeededOracle(fixture), fixture.oracle

    def run(self):
        return replace(self.seeded.run(), weights=self.checkpoint.run().weights)

    def __getattr__(self, name):
        return getattr(self.seeded, name)


@pytest.mark.parametrize("graph", ["moe_block", "decode"])
def test_a_checkpoint_case_of_any_kind_passes_on_its_oracle_and_fails_on_the_seeded_one(mixtral, graph, monkeypatch):
    record = run_case(mixtral, graph, xla=False)
    assert record.verdict == "PASS", record.message
    print(f"{graph}: on its checkpoint's oracle max |Δ| {record.max_abs_diff:.2e}, bound {record.bound:.0e}")
    monkeypatch.setattr(oracle_cache, "of", MixedUp)
    mixed = run_case(mixtral, graph, xla=False, strict_bound=False)
    print(f"{graph}: mixed up with the seeded model max |Δ| {mixed.max_abs_diff:.2e} = "
          f"{mixed.max_abs_diff / mixed.bound:.0f}x the bound")
    assert mixed.verdict == "FAIL" and mixed.max_abs_diff > 3 * mixed.bound, mixed.message


# Modules on a case's path: they reach torch and transformers only through oracles/ (the oracle interface and
# its implementations). The commands of their own that build or survey models, not cases, are named with why.
OWN_COMMANDS = {
    "harness/modes/census.py": "archval census: synthesises and runs every model type's transformers class itself",
    "harness/modes/make_checkpoint.py": "archval make-checkpoint: writes a checkpoint with save_pretrained",
    "harness/modes/checkpoint.py": "--checkpoint: a text prompt through the checkpoint's own tokenizer",
}


def test_no_harness_module_reaches_torch_or_transformers_but_through_oracles():
    found = []
    for path in sorted((ROOT / "harness").rglob("*.py")):
        where = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n.split(".")[0] in ("torch", "transformers") for n in names) and where not in OWN_COMMANDS:
                found.append(f"{where}:{node.lineno}")
    assert found == []
