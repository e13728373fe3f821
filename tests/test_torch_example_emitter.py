"""The generic example emitter (examples/torch_emitter: transformers' own model, torch.export, torch-mlir)
through the real gate, as an external emitter: a sample of 8 families PASS prefill and decode in the
default run, every fixture's family on request (-m torch_example_all, timed); positions past LongRoPE's original
context and dynamic NTK's cached length PASS; each planted bug FAILs by more than 3x the bound; a fusing
checkpoint conversion and another graph kind are refused with exit 2."""
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
SAMPLE = ("cohere", "cohere2", "granite", "phi3", "stablelm", "starcoder2", "exaone", "gemma2")
README = ROOT / "examples" / "torch_emitter" / "README.md"
ALL = "torch_example_all"  # pyproject.toml's marker: every fixture, on request


def gate(tmp_path, families=(), bug=None, graphs=(), configs=()):
    """The gate through the example (configs: as given, --as-is); its records by (family, graph kind)."""
    env = {k: v for k, v in os.environ.items() if k != "ARCHVAL_TORCH_BUG"}
    if bug:
        env["ARCHVAL_TORCH_BUG"] = bug
    reports = tmp_path / "reports"
    args = [sys.executable, "-m", "archval", "--emitter", EMITTER, "--reports", str(reports)]
    args += [a for f in families for a in ("--family", f)] + [a for g in graphs for a in ("--graph", g)]
    args += [a for c in configs for a in ("--config", str(c))] + (["--as-is"] if configs else [])
    run = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600, check=False)
    records = json.loads((reports / "summary.json").read_text())["records"]
    return run, {(r["family"], r["graph"]): r for r in records}


def fixture_config(tmp_path, family, name, **changed):
    """A fixture's config.json with fields changed, in a folder of its own: the family's name in the records."""
    config = json.loads((ROOT / "fixtures" / family / "config.json").read_text()) | changed
    path = tmp_path / "configs" / name / "config.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(config, indent=2))
    return path


# Positions that cross where the rotary's inverse frequencies change (the fixtures' never do: phi3's reach 31, its
# original context 32; internlm3's 64): the prompt's reach 14 (slots 0-12, a gap of 2), decode's 16 to 31.
# phi3 within 15: prefill at the bound exactly (its padding's slots 13-15 must not count), decode past it;
# phi3 within 20: decode crosses at step 5 (position 20); internlm3 cached 20: dynamic NTK grows from step 5 on.
CROSSING = {"phi3-longrope-15": ("phi3", dict(original_max_position_embeddings=15, max_position_embeddings=60)),
            "phi3-longrope-20": ("phi3", dict(original_max_position_embeddings=20, max_position_embeddings=80)),
            "internlm3-dynamic-20": ("internlm3", dict(max_position_embeddings=20))}


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


def test_positions_past_the_rotary_update_bound_pass(tmp_path):
    """longrope's short or long factors and dynamic NTK's growth chosen in the graph, by the positions' maximum."""
    configs = [fixture_config(tmp_path, family, name, **changed) for name, (family, changed) in CROSSING.items()]
    run, records = gate(tmp_path, configs=configs)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert sorted(records) == sorted((name, g) for name in CROSSING for g in ("prefill", "decode"))
    assert all(r["verdict"] == "PASS" for r in records.values()), {c: r["message"] for c, r in records.items()}


@pytest.mark.torch_example_all
def test_every_family_the_readme_lists_passes(tmp_path, request):
    if ALL not in request.config.getoption("markexpr", ""):
        pytest.skip(f"every fixture through the torch example runs on request: select it with -m {ALL}")
    names = fixtures.names()
    started = time.monotonic()
    run, records = gate(tmp_path, names)
    print(f"{len(names)} families through examples/torch_emitter in {time.monotonic() - started:.0f} s")
    passing = {f for f in names if all(records.get((f, g), {}).get("verdict") == "PASS" for g in ("prefill", "decode"))}
    assert set(readme_passes()) <= passing, sorted(set(readme_passes()) - passing)
    assert passing <= set(readme_passes()), f"passes but the README does not say so: {sorted(passing - set(readme_passes()))}"


@pytest.mark.parametrize("bug, graph", [("slot", "decode"), ("position", "prefill"), ("names", "prefill"),
                                       ("rope_short", "decode")])
def test_a_planted_bug_fails_by_more_than_3x_the_bound(tmp_path, bug, graph):
    """slot: decode writes one slot late (prefill still PASSes); position: RoPE by slot, archval's positions
    ignored; names: two weights of one shape bound to each other's tensors; rope_short: LongRoPE's short factors
    only, as a graph traced within the original context keeps them (phi3 within 20: prefill still PASSes, decode
    FAILs from position 20)."""
    if bug == "rope_short":
        family, (fixture, changed) = "phi3-longrope-20", CROSSING["phi3-longrope-20"]
        run, records = gate(tmp_path, bug=bug, configs=[fixture_config(tmp_path, fixture, family, **changed)])
    else:
        family = "llama"
        run, records = gate(tmp_path, ["llama"], bug=bug, graphs=[] if bug == "slot" else [graph])
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-3000:]
    failed = records[family, graph]
    assert failed["verdict"] == "FAIL", failed["message"]
    error, bound = failed["max_abs_diff"], failed["bound"]
    assert error > 3 * bound, (bug, error, bound)
    if graph == "decode":
        assert records[family, "prefill"]["verdict"] == "PASS"


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
