"""The example JAX emitter (examples/jax_emitter) through the real gate, as an external emitter: llama, qwen3
and gemma2 PASS on prefill and decode in the ABI variants the built-in emitter does not use (per-layer
caches, every position's logits) and with JAX's helper functions left in; its debug taps localise nothing
on a correct graph; each planted bug FAILs, with the layer named where the bug is in a layer; any other
model_type is refused with exit 2 and one sentence."""
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("jax")

from archval.harness.checks import localise  # after the skip: the example needs JAX
from archval.harness.core import fixtures

from archval.harness.modes.make_checkpoint import build

ROOT = Path(__file__).resolve().parents[1]
EMITTER = f"{shlex.quote(sys.executable)} examples/jax_emitter/emit.py"
FAMILIES = ("llama", "qwen3", "gemma2")


def gate(tmp_path, families, bug=None, graphs=()):
    env = dict(os.environ)
    env.pop("ARCHVAL_JAX_BUG", None)
    if bug:
        env["ARCHVAL_JAX_BUG"] = bug
    args = [sys.executable, "-m", "archval", "--emitter", EMITTER, "--jobs", "1", "--reports", str(tmp_path)]
    for f in families:
        args += ["--family", f]
    for g in graphs:
        args += ["--graph", g]
    run = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    records = json.loads((tmp_path / "summary.json").read_text())["records"]
    return run, {(r["family"], r["graph"]): r for r in records}


def test_llama_qwen3_gemma2_pass_with_per_layer_caches_every_positions_logits_and_helper_functions(tmp_path):
    run, records = gate(tmp_path, FAMILIES)
    assert run.returncode == 0, run.stdout + run.stderr
    assert sorted(records) == sorted((f, g) for f in FAMILIES for g in ("prefill", "decode"))
    for case, r in records.items():
        assert r["verdict"] == "PASS", (case, r["message"])
        assert r["abi"] == {"caches": "per layer", "logits": "every position",
                            "decode": "logits" if case[1] == "decode" else None}, case
    text = tmp_path / "g.mlir"
    subprocess.run([sys.executable, "examples/jax_emitter/emit.py", "--config", "fixtures/llama/config.json",
                    "--graph", "prefill", "--out", str(text)], cwd=ROOT, check=True, timeout=120)
    assert "func.func private @" in text.read_text() and "call @" in text.read_text(), \
        "JAX's helper functions were inlined: the test no longer shows that helpers validate"


def test_its_decode_batched_passes_with_per_layer_caches_and_isolated_rows(tmp_path):
    """jax.vmap over model.decode: three ragged rows (gemma2's: one inside its sliding window, the others past it),
    each against its own oracle run, and neither changing nor padding a row moves the others by a bit."""
    run, records = gate(tmp_path, ("llama", "gemma2"), graphs=("decode_batched",))
    assert run.returncode == 0, run.stdout + run.stderr
    for case, r in records.items():
        assert r["verdict"] == "PASS" and r["abi"]["caches"] == "per layer", (case, r["message"])
        assert r["batch"]["size"] == 3 and r["batch"]["changed_max_diff"] == r["batch"]["padded_max_diff"] == 0
    assert {row["past_window"] for row in records["gemma2", "decode_batched"]["batch"]["rows"]} == {True, False}


@pytest.mark.parametrize("family", FAMILIES)
def test_its_taps_localise_nothing_on_a_correct_graph(family):
    result = localise.of_emitter(fixtures.load(family), tuple(shlex.split(EMITTER)))
    assert result.error is None and result.taps, result.summary or result.error
    assert result.first is None, result.summary
    assert len(result.taps) == 3 * fixtures.load(family).attribute("num_hidden_layers")


@pytest.mark.parametrize("bug", ["eps", "rope"])
def test_a_bug_in_every_layer_fails_and_is_localised_to_the_first(tmp_path, bug):
    """eps: RMSNorm's epsilon 10x the config's (|Δlogit| ~5 through the quiet tokens); rope: GPT-J
    pairs instead of rotate-half. Both sit in every layer's attention, so the first layer's is named."""
    run, records = gate(tmp_path, ["llama"], bug=bug)
    assert run.returncode == 1, run.stdout + run.stderr
    prefill = records["llama", "prefill"]
    assert prefill["verdict"] == "FAIL" and records["llama", "decode"]["verdict"] == "FAIL", prefill["message"]
    first = prefill["localisation"]["first"]
    assert (first["layer"], first["point"]) == (0, "attention"), prefill["localisation"]
    assert "localised: first divergence: layer 0 attention" in run.stdout


def test_cache_slot_off_by_one_fails_decode_only(tmp_path):
    run, records = gate(tmp_path, ["llama"], bug="slot")
    assert run.returncode == 1, run.stdout + run.stderr
    assert records["llama", "prefill"]["verdict"] == "PASS"   # the bug is in decode only
    decode = records["llama", "decode"]
    assert decode["verdict"] == "FAIL" and decode["max_abs_diff"] > 1.0
    assert decode["decode"]["first_divergence"] == 1  # step 0 is prefill's logits; step 1 the first decode step
    # no taps (they are prefill's); the decode case's own step 0, its prefill, agrees and step 1 does not
    assert decode["localisation"]["summary"].startswith("decode only: step 0 (the prefill graph, on the whole "
                                                        "prompt) agrees"), decode["localisation"]
    assert "step 1 (position 16) is the first over the bound" in decode["localisation"]["summary"]
    assert "localised: decode only:" in run.stdout


@pytest.mark.parametrize("fixture", ["gemma", "mixtral", "llama-llama3-rope"])
def test_refuses_what_it_does_not_implement(tmp_path, fixture):
    run = subprocess.run([sys.executable, "examples/jax_emitter/emit.py", "--config",
                          f"fixtures/{fixture}/config.json", "--graph", "prefill",
                          "--out", str(tmp_path / "g.mlir")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 2
    assert len(run.stderr.strip().splitlines()) == 1 and run.stderr.strip().endswith(".")
    assert not (tmp_path / "g.mlir").exists()


@pytest.mark.parametrize("bug", [None, "slot"])
def test_a_checkpoint_through_it_takes_the_runs_sizes(tmp_path, bug):
    """--checkpoint passes --bucket and --capacity (docs/emitter-protocol.md): 20 prompt tokens and 24 steps
    do not fit the example's defaults (16, 32), so only an emitter that takes them can pass."""
    checkpoint = build(dict(fixtures.load("qwen3").config), tmp_path / "qwen3-ckpt", "bf16", "60KB")
    env = {k: v for k, v in os.environ.items() if k != "ARCHVAL_JAX_BUG"} | ({"ARCHVAL_JAX_BUG": bug} if bug else {})
    prompt = "3,1,4,1,5,9,2,6,5,3,5,8,9,7,9,3,2,3,8,4"  # 20 tokens: more than the default bucket, 16
    run = subprocess.run([sys.executable, "-m", "archval", "--checkpoint", str(checkpoint), "--prompt-ids", prompt,
                          "--steps", "24", "--emitter", EMITTER, "--reports", str(tmp_path / "r")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    [record] = json.loads((tmp_path / "r" / "summary.json").read_text())["records"]
    if bug is None:
        assert run.returncode == 0 and record["verdict"] == "PASS", run.stdout + run.stderr
        assert record["decode"]["steps"] == 24 and record["abi"]["caches"] == "per layer"
    else:
        assert run.returncode == 1 and record["verdict"] == "FAIL", run.stdout + run.stderr
        assert record["decode"]["first_divergence"] == 1
