"""Each mechanism that Phi, GPT-NeoX, Nemotron, EXAONE 4 and GLM-4 brought into the emitter bites on its
fixture: the emitter with that mechanism removed or misread (a mutant, checks/mutants.py) FAILs by at least
3x the fixed bound. The full table of every applicable mutant is `./validate_arch.sh --mutants --family F`."""
import pytest

from archval.emitter import Config
from archval.harness.checks import mutants, self_test
from archval.harness.core import fixtures
from archval.harness.present.console import mutant_line

MECHANISMS = [
    ("phi", "parallel_block_sequential"),    # one LayerNorm feeding attention and MLP in parallel
    ("phi", "layernorm_uncentred"),          # LayerNorm, not RMSNorm
    ("phi", "layernorm_bias_ignored"),       # ... with its bias
    ("phi", "rotary_full_width"),            # partial rotary (partial_rotary_factor 0.5)
    ("phi", "no_lm_head_bias"),              # the biased head
    ("gpt_neox", "qkv_fused_blockwise"),     # query_key_value fused per head, split in the graph
    ("gpt_neox", "parallel_block_sequential"),  # use_parallel_residual
    ("gpt_neox", "parallel_block_one_norm"),    # ... with the MLP's own LayerNorm
    ("gpt_neox", "rotary_full_width"),       # rotary_pct 0.25
    ("nemotron", "relu_for_relu2"),          # squared ReLU, no gate
    ("nemotron", "no_plus_one_norm"),        # LayerNorm1P: 1 + w ...
    ("nemotron", "layernorm_bias_ignored"),  # ... with bias
    ("nemotron", "rotary_full_width"),       # partial rotary
    ("exaone4", "nope_layer_rotated"),       # global layers without RoPE
    ("exaone4", "global_layer_slides"),      # hybrid sliding / global
    ("exaone4", "qk_norm_wrong_axis"),       # per-head q/k norm on a post-norm layer
    ("glm4", "gate_up_swapped"),             # fused gate_up_proj, gate half first
    ("glm4", "sandwich_norms_swapped"),      # post_self_attn / post_attention (the MLP's pre-norm) / post_mlp
    ("glm4", "rope_interleaved"),            # interleaved pairs
    ("glm4", "rotary_full_width"),           # ... on half of each head
]


@pytest.mark.parametrize("family,mutant", MECHANISMS, ids=[f"{f}-{m}" for f, m in MECHANISMS])
def test_each_new_mechanism_bites_by_three_times_the_bound(family, mutant):
    fixture = fixtures.load(family)
    assert mutant in fixture.mutants and mutants.applicable(mutant, Config.from_json(fixture.config_path))
    (record,) = self_test.run_family(family, only=(mutant,))
    assert record.verdict == "FAIL" and record.mutant.killed, mutant_line(record)
    assert record.max_abs_diff >= 3 * record.bound, mutant_line(record)
