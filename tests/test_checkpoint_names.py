"""Families served by another family's class: the graph speaks the checkpoint's names, the oracle maps them."""
import re

from emitter import Config, emit
from harness.core import fixtures
from harness.core.graph import parse_signature


def weight_names(name: str, graph: str = "prefill") -> list[str]:
    text = emit(Config.from_json(fixtures.load(name).config_path), graph)
    return [a.name for a in parse_signature(text).functions["main"].args if "." in a.name]


def test_exaone_arguments_carry_exaone_checkpoint_names():
    names = weight_names("exaone")
    assert "transformer.wte.weight" in names and "transformer.ln_f.weight" in names
    assert "transformer.h.1.mlp.c_fc_0.weight" in names and "transformer.h.0.attn.attention.out_proj.weight" in names
    assert not [n for n in names if re.match(r"model\.|lm_head", n)], names  # tied head: the embedding


def test_exaone_oracle_hands_out_the_same_names_from_transformers_own_mapping():
    from oracles.hf import Oracle
    fixture = fixtures.load("exaone")
    oracle = Oracle(fixture.config, fixture.seed)
    weights = oracle.state_dict()
    assert set(weight_names("exaone")) | {"lm_head.weight"} == set(weights)
    llama_name = dict(oracle.model.named_parameters())["model.layers.0.mlp.gate_proj.weight"]
    assert (weights["transformer.h.0.mlp.c_fc_0.weight"] == llama_name.detach().numpy()).all()


def test_mimo_ignores_its_multi_token_prediction_layers():
    from oracles.hf import binding
    stand_in = binding("mimo").config(fixtures.load("mimo").config)
    assert stand_in["model_type"] == "qwen2" and "num_nextn_predict_layers" not in stand_in
    assert not [n for n in weight_names("mimo", "decode") if "mtp" in n]
