"""Graphs in reduced precision (docs/reduced-precision.md): the built-in emitter's --dtype bf16 graphs judged by the
bound derived from the oracle in bf16, mutants of them failing it by at least 3x, and bf16 weight arguments fed
from a bf16 checkpoint as stored, half the bytes of the f32 ones."""
import json
import os
from dataclasses import replace

import numpy as np
import pytest

from archval.emitter import Config, emit
from archval.emitter.stablehlo import bf16_hex
from archval.harness.checks import mutants
from archval.harness.cli import main
from archval.harness.core import fixtures, precision
from archval.harness.core.case import run_case
from archval.harness.core.record import STRICT
from archval.harness.modes.make_checkpoint import build

MARGIN = 3.0  # a mutant must fail by at least this many times the bound that judges it
SAMPLE = "llama"
# the cache's slot, RoPE's positions, the norm's epsilon, GQA's head mapping, the causal mask: each emitted in bf16
# (margins over the derived bound in docs/reduced-precision.md)
MUTANTS = ("cache_slot_off_by_one", "decode_rope_by_cache_len", "rope_by_slot", "eps_10x", "gqa_heads_interleaved",
           "mask_includes_next")
WEAK = {"cache_slot_one_early": 2.0}  # killed by less than MARGIN: one earlier token lost from a 17-29-slot cache


def bf16_case(family: str, graph: str, mutant: str | None = None):
    """A case of the family's bf16 graph (the emitter asked with --dtype bf16), or of a mutant's emitted in bf16."""
    fixture = replace(fixtures.load(family), dtype="bf16")
    texts = mutants.MUTANTS[mutant].texts(fixture.config_path, "bf16") if mutant else None
    return run_case(fixture, graph, texts=texts, xla=False)


def test_bf16_constants_round_to_nearest_even():
    assert bf16_hex(1.0) == "0x3F80" and bf16_hex(-2.0) == "0xC000"
    assert bf16_hex(1.0 + 2 ** -8) == "0x3F80"  # a tie: to even
    assert bf16_hex(1.0 + 3 * 2 ** -8) == "0x3F82"  # a tie: to even, upwards


def test_a_bf16_graph_says_so_in_its_dot_generals_and_an_f32_graph_does_not():
    cfg = Config.from_json(fixtures.load(SAMPLE).config_path)
    f32, bf16 = emit(cfg, "decode"), emit(cfg, "decode", dtype="bf16")
    assert precision.compute_dtype(f32) == "f32" and "bf16" not in f32
    assert precision.compute_dtype(bf16) == "bf16"
    assert precision.compute_dtype(bf16.replace("bf16", "f16")) == "f16"  # read, and refused: no f16 oracle
    # bf16 weight arguments alone, computed in f32, are no bf16-compute graph: their values are exact
    assert precision.compute_dtype(emit(cfg, "decode", weights="bf16")) == "f32"
    # the router stays f32: a MoE graph's router dot_general is f32 even in a bf16 graph
    moe = emit(Config.from_json(fixtures.load("mixtral").config_path), "prefill", dtype="bf16")
    assert any("(tensor<16x64xf32>, tensor<4x64xf32>)" in line for line in moe.splitlines() if "dot_general" in line)


@pytest.mark.parametrize("graph", ["prefill", "decode"])
def test_a_bf16_graph_passes_under_the_derived_bound_not_the_fixed_one(graph):
    record = bf16_case(SAMPLE, graph)
    assert record.verdict == "PASS", record.message
    assert record.compute == "bf16"
    strict = next(c for c in record.checks if c.name == STRICT)
    assert strict.stage == "oracle_bf16" and strict.status == "passed"
    assert record.noise.strict_factor == precision.BF16_FACTOR
    assert record.bound == pytest.approx(precision.BF16_FACTOR * max(record.noise.floors))
    assert record.bound > fixtures.load(SAMPLE).bound  # the fixed 1e-2 would fail a correct bf16 graph


@pytest.mark.parametrize("mutant", MUTANTS + tuple(WEAK))
def test_a_bf16_mutant_fails_by_three_times_its_derived_bound(mutant):
    record = bf16_case(SAMPLE, mutants.MUTANTS[mutant].graph, mutant)
    assert record.verdict == "FAIL", record.message
    margin = record.noise.noise_ratio / record.noise.strict_factor  # the worst error / the derived bound
    assert margin >= WEAK.get(mutant, MARGIN), f"{mutant}: {margin:.2f}x its derived bound"


@pytest.mark.skipif(not os.environ.get("ARCHVAL_ALL_BF16"), reason="every family in bf16: set ARCHVAL_ALL_BF16=1")
@pytest.mark.parametrize("family", fixtures.names())
def test_every_family_passes_as_a_bf16_graph(family):
    for graph in ("prefill", "decode"):
        record = bf16_case(family, graph)
        assert record.verdict == "PASS" and record.compute == "bf16", f"{family} {graph}: {record.message}"


def test_bf16_weight_arguments_are_fed_from_a_bf16_checkpoint_as_stored_in_half_the_bytes(tmp_path, capsys):
    checkpoint = build(dict(fixtures.load(SAMPLE).config), tmp_path / "ckpt", "bf16", None)
    weights = {}
    for variant in ("f32", "bf16"):
        code = main(["--checkpoint", str(checkpoint), "--prompt-ids", "3,1,4,1,5", "--steps", "4", "--reports",
                     str(tmp_path / variant), "--emitter", f".venv/bin/python -m archval.emitter --weights {variant}"])
        out = capsys.readouterr().out
        (record,) = json.loads((tmp_path / variant / "summary.json").read_text())["records"]
        assert code == 0 and record["verdict"] == "PASS", out
        assert record["max_abs_diff"] <= 1e-4  # the same values: bf16 upcast inside, or before
        weights[variant] = record["checkpoint"]["graph_weight_bytes"]
    parameters = record["checkpoint"]["parameters"]
    assert weights == {"f32": 4 * parameters, "bf16": 2 * parameters}


def test_bf16_weight_arguments_from_f32_weights_are_the_cases_error_naming_the_argument():
    cfg = Config.from_json(fixtures.load(SAMPLE).config_path)
    record = run_case(fixtures.load(SAMPLE), "prefill", texts={"prefill": emit(cfg, "prefill", weights="bf16")},
                      xla=False)
    assert record.verdict == "ERROR"
    assert "'model.embed_tokens.weight' is bf16: a bf16 weight argument is fed from a checkpoint" in record.message
    assert np.isnan(record.max_abs_diff or np.nan)


def test_dtype_is_refused_where_no_bf16_graph_of_a_fixture_is_emitted(capsys):
    assert main(["--checkpoint", "ckpt", "--prompt-ids", "1", "--dtype", "bf16"]) == 2
    assert "--dtype cannot be combined with --checkpoint" in capsys.readouterr().err


def test_an_f16_compute_graph_is_the_cases_error_not_judged_by_any_bound():
    fixture = fixtures.load(SAMPLE)
    text = emit(Config.from_json(fixture.config_path), "prefill", dtype="bf16").replace("bf16", "f16")
    record = run_case(fixture, "prefill", texts={"prefill": text}, xla=False)
    assert record.verdict == "ERROR" and record.compute == "f16"
    assert "computes in f16 (a dot_general's operands): archval derives a bound for f32 and bf16" in record.message


def test_a_bf16_block_graph_is_refused_not_judged_by_the_f32_block_bound():
    """moe_block's bound (1e-4) is f32's: the built-in emitter writes no bf16 block (exit 2, UNSUPPORTED), and another
    emitter's bf16 block graph is the case's ERROR in a sentence, never a FAIL or a PASS against that bound."""
    from archval.emitter import ConfigError
    from archval.emitter.decoder import Decoder, moe_block
    fixture = fixtures.load("mixtral")
    cfg = Config.from_json(fixture.config_path)
    with pytest.raises(ConfigError, match="f32 only"):
        emit(cfg, "moe_block", dtype="bf16")
    record = run_case(fixture, "moe_block", texts={"moe_block": moe_block(cfg, 16, Decoder, "bf16", "f32")})
    assert record.verdict == "ERROR" and record.compute == "bf16", record.message
    assert "derives a reduced-precision bound for the kinds with a strict bound only" in record.message
