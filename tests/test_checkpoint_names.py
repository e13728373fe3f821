"""Every family's graph arguments are the tensor names of its published checkpoints: the names
save_pretrained writes (transformers 5 reverts its on-load renamings and expert fusions there),
per-expert 2-D tensors [out, in], and no lm_head.weight for a tied head."""
import dataclasses
import re
from pathlib import Path

import pytest

from archval.emitter import Config, Decoder, emit
from archval.harness import ROOT
from archval.harness.core import fixtures
from archval.harness.core.case import run_case
from archval.harness.core.graph import parse_signature
from archval.harness.core.record import EVERY_WEIGHT

REAL = ROOT / "fixtures" / "real"


def graph_weights(config_path: Path, graph: str = "prefill") -> dict[str, tuple[int, ...]]:
    """The built-in emitter's weight arguments: name -> shape (the inputs' names have no dot)."""
    main = parse_signature(emit(Config.from_json(config_path), graph)).functions["main"]
    return {a.name: a.shape for a in main.args if "." in a.name}


@pytest.mark.parametrize("name", fixtures.names())
def test_arguments_are_what_save_pretrained_writes(name, tmp_path):
    """The strongest check short of downloading checkpoints: transformers' own writer of checkpoints,
    on the oracle's model, writes exactly the tensors the graph takes, in the graph's shapes; and the
    oracle hands out the same ones."""
    from safetensors import safe_open

    from archval.oracles.hf import Oracle
    fixture = fixtures.load(name)
    oracle = Oracle(fixture.config, fixture.seed)
    oracle.model.save_pretrained(tmp_path)
    with safe_open(tmp_path / "model.safetensors", "np") as saved:
        written = {key: tuple(saved.get_slice(key).get_shape()) for key in saved.keys()}  # noqa: SIM118 - safe_open has no __iter__
    assert graph_weights(fixture.config_path) == written
    assert {k: v.shape for k, v in oracle.state_dict().items()} == written


# Names read from the published checkpoints' model.safetensors.index.json (one layer's worth is enough:
# the naming scheme is what a loader must follow).
PUBLISHED_NAMES = {
    "Mixtral-8x7B-v0.1": ["model.layers.0.block_sparse_moe.gate.weight",
                          "model.layers.0.block_sparse_moe.experts.0.w1.weight",
                          "model.layers.0.block_sparse_moe.experts.7.w2.weight",
                          "model.layers.0.block_sparse_moe.experts.3.w3.weight"],
    "OLMoE-1B-7B-0924": ["model.layers.0.mlp.gate.weight", "model.layers.0.mlp.experts.0.gate_proj.weight",
                         "model.layers.0.mlp.experts.63.down_proj.weight", "model.layers.0.mlp.experts.5.up_proj.weight"],
    "Qwen1.5-MoE-A2.7B": ["model.layers.0.mlp.gate.weight", "model.layers.0.mlp.experts.59.gate_proj.weight",
                          "model.layers.0.mlp.shared_expert.down_proj.weight",
                          "model.layers.0.mlp.shared_expert_gate.weight"],
    "Qwen3-30B-A3B": ["model.layers.0.mlp.gate.weight", "model.layers.0.mlp.experts.127.up_proj.weight",
                      "model.layers.47.mlp.experts.0.down_proj.weight"],
    "phi-2": ["model.embed_tokens.weight", "model.final_layernorm.bias", "lm_head.bias",
              "model.layers.0.self_attn.dense.weight", "model.layers.0.mlp.fc1.bias", "model.layers.31.mlp.fc2.weight"],
    "pythia-1b": ["gpt_neox.embed_in.weight", "embed_out.weight", "gpt_neox.final_layer_norm.bias",
                  "gpt_neox.layers.0.attention.query_key_value.weight", "gpt_neox.layers.0.attention.dense.bias",
                  "gpt_neox.layers.0.mlp.dense_h_to_4h.weight", "gpt_neox.layers.15.post_attention_layernorm.bias"],
    "GLM-4-9B-0414": ["model.layers.0.mlp.gate_up_proj.weight", "model.layers.0.post_self_attn_layernorm.weight",
                      "model.layers.0.post_mlp_layernorm.weight", "model.layers.0.self_attn.q_proj.bias"],
    "EXAONE-3.5-2.4B-Instruct": ["transformer.wte.weight", "transformer.ln_f.weight",
                                 "transformer.h.0.attn.attention.out_proj.weight", "transformer.h.0.mlp.c_fc_0.weight"],
}


@pytest.mark.parametrize("checkpoint", sorted(PUBLISHED_NAMES))
def test_published_configs_take_their_checkpoints_names(checkpoint):
    names = graph_weights(REAL / checkpoint / "config.json")
    assert not set(PUBLISHED_NAMES[checkpoint]) - set(names)
    assert not [n for n in names if re.search(r"experts\.gate_up_proj|experts\.(gate|down)_proj$", n)], "fused experts"


def test_expert_tensors_are_per_expert_out_by_in():
    names = graph_weights(REAL / "Mixtral-8x7B-v0.1" / "config.json")
    assert names["model.layers.0.block_sparse_moe.experts.0.w1.weight"] == (14336, 4096)  # gate [I, H]
    assert names["model.layers.0.block_sparse_moe.experts.0.w2.weight"] == (4096, 14336)  # down [H, I]


@pytest.mark.parametrize("config", sorted(p.name for p in REAL.iterdir()))
def test_a_tied_head_takes_no_lm_head(config):
    """No tied checkpoint ships lm_head.weight: a tied graph reads the embedding, an untied one the head."""
    path = REAL / config / "config.json"
    cfg = Config.from_json(path)  # an untied head under the checkpoint's name (GPT-NeoX's embed_out)
    assert (cfg.checkpoint_name("lm_head.weight") in graph_weights(path)) != cfg.tie_word_embeddings


def test_exaone_oracle_maps_by_transformers_own_mapping():
    """EXAONE is computed by Llama's class; its names are reverted by the same mechanism as every family's."""
    from archval.oracles.hf import Oracle
    fixture = fixtures.load("exaone")
    oracle = Oracle(fixture.config, fixture.seed)
    llama_name = dict(oracle.model.named_parameters())["model.layers.0.mlp.gate_proj.weight"]
    assert (oracle.state_dict()["transformer.h.0.mlp.c_fc_0.weight"] == llama_name.detach().numpy()).all()
    assert "conversion_mapping['exaone']" in oracle.binding.mapping


def test_mimo_ignores_its_multi_token_prediction_layers():
    from archval.oracles.hf import binding
    stand_in = binding("mimo").config(fixtures.load("mimo").config)
    assert stand_in["model_type"] == "qwen2" and "num_nextn_predict_layers" not in stand_in
    assert not [n for n in graph_weights(fixtures.load("mimo").config_path, "decode") if "mtp" in n]


class IgnoresFinalNormWeight(Decoder):
    """A forward that leaves the final RMSNorm's weight out (as if it were all ones)."""
    def rms_norm(self, x, name):
        if name != "model.norm":
            return super().rms_norm(x, name)
        g, last = self.g, len(x.shape) - 1
        mean_sq = g.div(g.reduce(g.mul(x, x), g.scalar(0.0), "add", [last]), g.scalar(float(x.shape[-1])))
        inv_rms = g.rsqrt(g.add(mean_sq, g.scalar(self.cfg.rms_norm_eps)))
        return g.mul(x, g.broadcast(inv_rms, x.shape, list(range(last))))


class ReadsLmHead(Decoder):
    """A head that reads lm_head.weight even where the checkpoint ties it to the embedding."""
    def logits(self, h):
        self.cfg = dataclasses.replace(self.cfg, tie_word_embeddings=False)
        return super().logits(h)


def test_a_weight_the_graph_does_not_take_fails_by_name():
    fixture = fixtures.load("llama")
    text = emit(Config.from_json(fixture.config_path), "prefill", core=IgnoresFinalNormWeight)
    record = run_case(fixture, "prefill", texts={"prefill": text}, xla=False, strict_bound=False)
    check = next(c for c in record.checks if c.name == EVERY_WEIGHT)
    assert record.verdict == "FAIL" and check.status == "failed", check
    assert check.message == "the graph takes no argument for 1 tensor(s) of the checkpoint: 'model.norm.weight' (prefill)"
    assert record.oracle.unused_tensors == ["model.norm.weight"]


def test_a_tied_graph_naming_lm_head_is_an_error():
    fixture = fixtures.load("qwen2")
    text = emit(Config.from_json(fixture.config_path), "prefill", core=ReadsLmHead)
    record = run_case(fixture, "prefill", texts={"prefill": text}, xla=False, strict_bound=False)
    assert record.verdict == "ERROR"
    assert record.message.startswith("stage 'bind': @main argument 'lm_head.weight' names neither an input of this "
                                     "graph (tokens, positions, real_len) nor a tensor of the checkpoint (a tied "), \
        record.message
