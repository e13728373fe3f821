"""The generic example emitter (examples/torch_emitter: transformers' own model, torch.export, torch-mlir)
through the real gate, as an external emitter: a sample of 8 families PASS prefill and decode in the
default run, every fixture's family with ARCHVAL_TORCH_EXAMPLE_ALL=1 (timed); each planted bug FAILs by more
than 3x the bound; a fusing checkpoint conversion and another graph kind are refused with exit 2."""
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch_mlir", reason="examples/torch_emitter needs torch-mlir (examples/torch_emitter/requirements.txt)")

from archval.harness.core import fixtures  # after the skip: the example needs torch-mlir

ROOT = Path(__file__).resolve().parents[1]
EMITTER = f"{shlex.quote(sys.executable)} examples/torch_emitter/emit.py"
SAMPLE = ("cohere", "cohere2", "granite", "stablelm", "starcoder2", "exaone", "gemma2", "gpt_neox")
README = ROOT / "examples" / "torch_emitter" / "README.md"


def gate(tmp_path, families, bug=None, graphs=()):
    env = {k: v for k, v in os.environ.items() if k != "ARCHVAL_TORCH_BUG"}
    if bug:
        env["ARCHVAL_TORCH_BUG"] = bug
    args = [sys.executable, "-m", "archval", "--emitter", EMITTER, "--reports", str(tmp_path)]
    args += [a for f in families for a in ("--family", f)] + [a for g in graphs for a in ("--graph", g)]
    run = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600, check=False)
    records = json.loads((tmp_path / "summary.json").read_text())["records"]
    return run, {(r["family"], r["graph"]): r for r in records}


def test_a_sample_of_8_families_pass_prefill_and_decode(tmp_path):
    run, records = gate(tmp_path, SAMPLE)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert sorted(records) == sorted((f, g) for f in SAMPLE for g in ("prefill", "decode"))
    for case, r in records.items():
        assert r["verdict"] == "PASS", (case, r["message"])
        assert r["abi"]["caches"] == "per layer" and r["abi"]["logits"] == "every position", (case, r["abi"])


def readme_passes():
    """The fixtures the README's table says PASS both graphs: what the opt-in run must reproduce."""
    rows = re.findall(r"^\| `([\w-]+)` \| PASS \| PASS \| [^|]* \| fixture", README.read_text(), re.M)
    assert len(rows) >= 20, "the README's table of families was not found"
    return rows


@pytest.mark.skipif(not os.environ.get("ARCHVAL_TORCH_EXAMPLE_ALL"),
                    reason="every fixture through the torch example is opt-in: set ARCHVAL_TORCH_EXAMPLE_ALL=1")
def test_every_family_the_readme_lists_passes(tmp_path):
    names = fixtures.names()
    started = time.monotonic()
    run, records = gate(tmp_path, names)
    print(f"{len(names)} families through examples/torch_emitter in {time.monotonic() - started:.0f} s")
    passing = {f for f in names if all(records.get((f, g), {}).get("verdict") == "PASS" for g in ("prefill", "decode"))}
    assert set(readme_passes()) <= passing, sorted(set(readme_passes()) - passing)
    assert passing <= set(readme_passes()), f"passes but the README does not say so: {sorted(passing - set(readme_passes()))}"


@pytest.mark.parametrize("bug, graph", [("slot", "decode"), ("position", "prefill"), ("names", "prefill")])
def test_a_planted_bug_fails_by_more_than_3x_the_bound(tmp_path, bug, graph):
    """slot: decode writes one slot late (prefill still PASSes); position: RoPE by slot, archval's positions
    ignored; names: two weights of one shape bound to each other's tensors."""
    run, records = gate(tmp_path, ["llama"], bug=bug, graphs=[] if bug == "slot" else [graph])
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-3000:]
    failed = records["llama", graph]
    assert failed["verdict"] == "FAIL", failed["message"]
    error, bound = failed["max_abs_diff"], failed["bound"]
    assert error > 3 * bound, (bug, error, bound)
    if bug == "slot":
        assert records["llama", "prefill"]["verdict"] == "PASS"


@pytest.mark.parametrize("argv, words", [
    (["--config", "fixtures/mixtral/config.json", "--graph", "prefill"], "converts this checkpoint's tensors"),
    (["--config", "fixtures/qwen2_moe/config.json", "--graph", "moe_block"], "prefill and decode only"),
])
def test_it_refuses_with_exit_2_and_one_sentence(tmp_path, argv, words):
    run = subprocess.run([sys.executable, "examples/torch_emitter/emit.py", *argv, "--out", str(tmp_path / "g.mlir")],
                         cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 2, run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("examples/torch_emitter: ") and words in last, last
    assert not (tmp_path / "g.mlir").exists()
