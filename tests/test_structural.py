"""Structural goldens: every case as recorded, drift reported readably, goldens change only on request."""
import os
import shutil
import subprocess
import sys
from dataclasses import replace

import pytest

from archval.emitter import Config, emit
from archval.emitter.families import FULL, SLIDING
from archval.harness.core import fixtures
from archval.harness.checks import structural
from archval.harness.cli import main
from archval.harness.checks.signature import signature
from archval.harness.core.emitter_protocol import DEFAULT_EMITTER

CASES = structural.cases()


@pytest.mark.parametrize("case,graph", [(c, g) for c in CASES for g in structural.GRAPHS],
                         ids=[f"{c.name}-{g}" for c in CASES for g in structural.GRAPHS])
def test_signature_matches_golden(case, graph):
    result = structural.check(case, graph, DEFAULT_EMITTER)
    assert result.passed, result.line()


def test_no_orphan_goldens_and_every_recorded_real_checkpoint_signed():
    """Every published checkpoint whose golden records a signature (not a refusal) is signed and matches:
    the count comes from the goldens on disk, so dropping one checkpoint's signature shows here."""
    assert structural.orphan_goldens() == []
    real = [c for c in CASES if c.name.startswith("real/")]
    recorded = [c.name for c in real if structural.golden_paths(c.directory, "prefill")[0].is_file()]
    signed = [c.name for c in real if structural.check(c, "prefill", DEFAULT_EMITTER).status == structural.MATCH]
    assert recorded and signed == recorded


@pytest.fixture
def llama_copy(tmp_path):
    """The llama case with its goldens, in a scratch directory (the real goldens stay untouched)."""
    directory = tmp_path / "llama"
    shutil.copytree(fixtures.FIXTURES_DIR / "llama", directory)
    return structural.StructuralCase("llama-copy", directory)


def test_hand_edited_golden_is_a_drift_with_a_readable_report(llama_copy):
    sig_path, text_path = structural.golden_paths(llama_copy.directory, "prefill")
    sig = sig_path.read_text().replace('"model.norm.weight"', '"model.final_norm.weight"')
    sig = sig.replace('"stablehlo.tanh"', '"stablehlo.tanh_x"')
    sig_path.write_text(sig.replace('"stablehlo.rsqrt": 5', '"stablehlo.rsqrt": 4'))
    text_path.write_text(text_path.read_text().replace("stablehlo.rsqrt", "stablehlo.sqrt", 1))
    result = structural.check(llama_copy, "prefill", DEFAULT_EMITTER)
    report = "\n".join(result.detail)
    assert result.status == structural.DRIFT
    assert "argument appeared: model.norm.weight f32[64]" in report
    assert "argument vanished: model.final_norm.weight" in report
    assert "stablehlo.rsqrt x4 -> x5 (+1)" in report
    assert "first differing line" in report and "stablehlo.rsqrt" in report


def test_an_unchanged_emitter_is_not_run_again_and_a_changed_one_is(llama_copy, tmp_path, monkeypatch):
    """The built-in emitter's text is a function of its source, Python's and numpy's versions and the config's
    bytes: a second check of the same case takes the golden text it wrote before without emitting, and a change
    to any of them emits again, so that a changed graph is a DRIFT, never a stale match."""
    monkeypatch.setenv("ARCHVAL_CACHE_DIR", str(tmp_path / "cache"))
    first, again = (structural.check(llama_copy, "decode", DEFAULT_EMITTER) for _ in range(2))
    assert first.status == again.status == structural.MATCH and first.text == again.text
    assert first.emit_s is not None and again.emit_s is None
    wrong = first.text.replace("stablehlo.rsqrt", "stablehlo.sqrt", 1)
    monkeypatch.setattr(structural, "emit", lambda *_: wrong)  # the emitter's source changed, and its graph
    monkeypatch.setattr(structural, "builtin_identity", lambda: "another emitter")
    changed = structural.check(llama_copy, "decode", DEFAULT_EMITTER)
    assert changed.status == structural.DRIFT and changed.emit_s is not None
    config = llama_copy.config_path
    config.write_text(config.read_text().replace('"vocab_size": 96', '"vocab_size": 97'))
    assert structural.check(llama_copy, "decode", DEFAULT_EMITTER).emit_s is not None  # another config: emitted


def test_update_goldens_rewrites_only_what_differs(llama_copy):
    sig_path, text_path = structural.golden_paths(llama_copy.directory, "prefill")
    text_path.write_text("stale\n")
    before = sig_path.stat().st_mtime_ns
    first = structural.check(llama_copy, "prefill", DEFAULT_EMITTER, update=True)
    assert len(first.rewrote) == 1 and first.rewrote[0].endswith("golden/prefill.mlir")
    assert sig_path.stat().st_mtime_ns == before
    again = structural.check(llama_copy, "prefill", DEFAULT_EMITTER, update=True)
    assert again.rewrote == [] and again.status == structural.MATCH


def test_missing_golden_is_reported(llama_copy):
    shutil.rmtree(llama_copy.directory / "golden")
    result = structural.check(llama_copy, "prefill", DEFAULT_EMITTER)
    assert result.status == structural.MISSING


def test_update_goldens_refuses_inside_a_parallel_worker(monkeypatch, capsys):
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw9")
    assert main(["--update-goldens"]) == 2
    assert "parallel pytest worker" in capsys.readouterr().err


def test_structural_only_never_imports_torch():
    code = ("import sys; from archval.harness.cli import main; rc = main(['--structural-only']); "
            "sys.exit(rc or (3 if 'torch' in sys.modules else 0))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=fixtures.FIXTURES_DIR.parent, env={**os.environ, "PYTHONPATH": "."})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


# -- property tests: one flag changes the graph by exactly what it should ---------------------

BASE = Config.from_json(fixtures.load("llama").config_path)  # 2 layers, untied, no bias


def ops_and_args(cfg):
    sig = signature(emit(cfg))["functions"]["main"]
    return sig["ops"], [a[0] for a in sig["args"]]


def delta(after, before):
    ops = {k: after[0].get(k, 0) - before[0].get(k, 0) for k in set(after[0]) | set(before[0])}
    return {k: v for k, v in ops.items() if v}, set(after[1]) - set(before[1]), set(before[1]) - set(after[1])


BASE_SIG = ops_and_args(BASE)


def test_qkv_bias_adds_three_arguments_and_three_adds_per_layer():
    ops, added, removed = delta(ops_and_args(replace(BASE, qkv_bias=True)), BASE_SIG)
    layers = BASE.num_layers
    assert len(added) == 3 * layers and all(a.endswith("_proj.bias") for a in added) and not removed
    assert ops == {"stablehlo.add": 3 * layers, "stablehlo.broadcast_in_dim": 3 * layers}


def test_sliding_window_adds_its_mask_once_however_many_layers_slide():
    four = replace(BASE, num_layers=4, layer_types=(FULL,) * 4, rope_layers=(True,) * 4)
    base = ops_and_args(four)
    one = delta(ops_and_args(replace(four, sliding_window=4, layer_types=(SLIDING, FULL, FULL, FULL))), base)
    three = delta(ops_and_args(replace(four, sliding_window=4, layer_types=(SLIDING, SLIDING, SLIDING, FULL))), base)
    assert one == three and not one[1] and not one[2]
    assert one[0]["stablehlo.compare"] == 2 and one[0]["stablehlo.select"] == 1  # causal + window, one select


def test_a_nope_layer_drops_its_rotation():
    ops, added, removed = delta(ops_and_args(replace(BASE, rope_layers=(True, False))), BASE_SIG)
    assert not added and not removed
    assert ops == {"stablehlo.concatenate": -2, "stablehlo.slice": -4, "stablehlo.multiply": -8,
                   "stablehlo.add": -2, "stablehlo.subtract": -2, "stablehlo.broadcast_in_dim": -4}


def test_plus_one_norms_add_one_add_per_norm():
    norms = 2 * BASE.num_layers + 1
    assert delta(ops_and_args(replace(BASE, norm_plus_one=True)), BASE_SIG)[0] == {
        "stablehlo.add": norms, "stablehlo.constant": norms, "stablehlo.broadcast_in_dim": norms}


def test_tied_head_drops_the_lm_head_argument():
    _, added, removed = delta(ops_and_args(replace(BASE, tie_word_embeddings=True)), BASE_SIG)
    assert not added and removed == {"lm_head.weight"}


def test_final_softcap_adds_one_tanh():
    ops, _, _ = delta(ops_and_args(replace(BASE, final_softcap=5.0)), BASE_SIG)
    assert ops == {"stablehlo.tanh": 1, "stablehlo.divide": 1, "stablehlo.multiply": 1, "stablehlo.constant": 1,
                   "stablehlo.broadcast_in_dim": 2}
