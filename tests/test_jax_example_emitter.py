"""The example JAX emitter (examples/jax_emitter) through the real gate, as an external
emitter: llama, qwen3 and gemma2 PASS on prefill and decode; a planted bug FAILs; any
other model_type is refused with exit 2 and one sentence."""
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("jax")

ROOT = Path(__file__).resolve().parents[1]
EMITTER = f"{shlex.quote(sys.executable)} examples/jax_emitter/emit.py"
FAMILIES = ("llama", "qwen3", "gemma2")


def gate(tmp_path, families, bug=None):
    env = dict(os.environ)
    env.pop("ARCHVAL_JAX_BUG", None)
    if bug:
        env["ARCHVAL_JAX_BUG"] = bug
    args = [sys.executable, "-m", "harness", "--emitter", EMITTER, "--jobs", "1",
            "--reports", str(tmp_path)]
    for f in families:
        args += ["--family", f]
    run = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    summary = json.loads((tmp_path / "summary.json").read_text())
    records = summary["records"] if isinstance(summary, dict) else summary
    return run, {(r["family"], r["graph"]): r for r in records}


def test_llama_qwen3_gemma2_pass(tmp_path):
    run, records = gate(tmp_path, FAMILIES)
    assert run.returncode == 0, run.stdout + run.stderr
    assert sorted(records) == sorted((f, g) for f in FAMILIES for g in ("prefill", "decode"))
    for case, r in records.items():
        assert r["verdict"] == "PASS", (case, r["message"])


def test_cache_slot_off_by_one_fails(tmp_path):
    run, records = gate(tmp_path, ["llama"], bug="slot")
    assert run.returncode == 1, run.stdout + run.stderr
    assert records["llama", "prefill"]["verdict"] == "PASS"   # the bug is in decode only
    decode = records["llama", "decode"]
    assert decode["verdict"] == "FAIL" and decode["max_abs_diff"] > 1.0


@pytest.mark.parametrize("fixture", ["gemma", "mixtral", "llama-llama3-rope"])
def test_refuses_what_it_does_not_implement(tmp_path, fixture):
    run = subprocess.run([sys.executable, "examples/jax_emitter/emit.py", "--config",
                          f"fixtures/{fixture}/config.json", "--graph", "prefill",
                          "--out", str(tmp_path / "g.mlir")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 2
    assert len(run.stderr.strip().splitlines()) == 1 and run.stderr.strip().endswith(".")
    assert not (tmp_path / "g.mlir").exists()
