"""The oracle's outputs in the cache directory: the same numbers back, no torch on a warm run,
recomputed when anything they depend on changes or an entry is corrupt."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from archval.harness.core import cache, fixtures, oracle_cache

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def cold_cache(tmp_path, monkeypatch):
    directory = tmp_path / "cache"
    monkeypatch.setenv(cache.DIR_ENV, str(directory))
    return directory


def counting(arrays: dict, meta: dict):
    calls = []

    def compute():
        calls.append(1)
        return arrays, meta
    return compute, calls


def test_an_entry_is_computed_once_then_read_back(cold_cache):
    compute, calls = counting({"x": np.arange(5, dtype=np.float32)}, {"name": "llama"})
    first = oracle_cache._stored("run", {"seed": 1}, compute)
    second = oracle_cache._stored("run", {"seed": 1}, compute)
    assert len(calls) == 1 and (first[2], second[2]) == (False, True)
    assert second[0]["x"].dtype == np.float32 and np.array_equal(second[0]["x"], first[0]["x"])
    assert second[1] == {"name": "llama"}


def test_other_inputs_or_another_oracle_source_recompute(cold_cache, monkeypatch, tmp_path):
    compute, calls = counting({"x": np.zeros(2)}, {})
    oracle_cache._stored("run", {"seed": 1}, compute)
    oracle_cache._stored("run", {"seed": 2}, compute)
    oracle_cache._stored("fp64", {"seed": 1}, compute)
    assert len(calls) == 3
    edited = tmp_path / "hf.py"
    edited.write_text(oracle_cache.SOURCES[0].read_text() + "\n# an edit\n")
    monkeypatch.setattr(oracle_cache, "SOURCES", (edited, *oracle_cache.SOURCES[1:]))
    oracle_cache._identity.cache_clear()
    try:
        oracle_cache._stored("run", {"seed": 1}, compute)
    finally:
        oracle_cache._identity.cache_clear()
    assert len(calls) == 4


def test_a_corrupt_entry_is_recomputed(cold_cache):
    compute, calls = counting({"x": np.ones(3)}, {})
    oracle_cache._stored("run", {"seed": 1}, compute)
    (entry,) = cold_cache.glob("*.oracle")
    entry.write_bytes(entry.read_bytes()[:-40] + bytes(40))
    assert oracle_cache._stored("run", {"seed": 1}, compute)[2] is False
    assert len(calls) == 2


def test_the_cached_run_is_the_live_oracle_bit_for_bit(cold_cache):
    fixture = fixtures.load("exaone")  # a stand-in class with renamed checkpoint weights
    oracle_cache._run.cache_clear()
    assert not oracle_cache.cached(fixture)
    cached = oracle_cache.run(fixture)
    assert not cached.cached and oracle_cache.cached(fixture)
    oracle_cache._run.cache_clear()
    again = oracle_cache.run(fixture)
    assert again.cached
    live = oracle_cache.model(fixture)
    logits, tokens = live.greedy(fixture.prompt(), fixture.prompt_positions(), fixture.decode_positions())
    assert np.array_equal(again.logits, logits) and np.array_equal(again.tokens, tokens)
    state = live.state_dict()
    assert list(again.weights) == list(state)
    assert all(np.array_equal(again.weights[k], v) and again.weights[k].dtype == v.dtype for k, v in state.items())
    assert (again.class_name, again.mapping) == (live.binding.class_name, live.binding.mapping)


WARM_RUN = textwrap.dedent("""
    import json, sys
    from archval.harness.core import fixtures, kinds
    from archval.harness.core.case import run_case
    out = {}
    for name in ("olmoe",):  # a routed family: its block check reads the cache too
        fixture = fixtures.load(name)
        records = [run_case(fixture, kind.name) for kind in kinds.applicable(fixture)]
        out[name] = [(r.verdict, r.max_abs_diff, r.noise and r.noise.noise_floor, r.cache_hit.get("oracle"))
                     for r in records]
    out["torch"] = "torch" in sys.modules
    print(json.dumps(out))
""")


def test_a_warm_run_never_imports_torch_and_judges_the_same(cold_cache):
    env = {"ARCHVAL_CACHE_DIR": str(cold_cache), "PATH": "/usr/bin:/bin"}
    runs = [json.loads(subprocess.run([sys.executable, "-c", WARM_RUN], cwd=ROOT, env=env, capture_output=True,
                                      text=True, check=True).stdout) for _ in range(2)]
    cold, warm = runs
    assert cold.pop("torch") and not warm.pop("torch")
    for name in cold:
        assert [r[:3] for r in cold[name]] == [r[:3] for r in warm[name]]
        assert all(r[0] == "PASS" for r in warm[name]), warm
        # prefill, decode, moe_block and the serving kinds (core/continued.py, core/batched.py): their oracle
        # entries cached too
        assert len(cold[name]) == 8
        assert [r[3] for r in cold[name]] == [False] * 8
        assert [r[3] for r in warm[name]] == [True] * 8


def test_machines_of_different_kinds_sharing_a_cache_keep_their_oracle_outputs_apart(cold_cache, monkeypatch):
    """torch's kernels round by CPU: an AVX-512 runner's logits must not be served to an AVX2 one."""
    from archval.harness.core import host
    compute, calls = counting({"x": np.arange(3, dtype=np.float32)}, {})
    paths = []
    for kind in ("avx512 machine", "avx2 machine", "avx512 machine"):
        monkeypatch.setattr(host, "cpu_identity", lambda kind=kind: kind)
        oracle_cache._identity.cache_clear()
        paths.append(oracle_cache._entry_path("run", {"seed": 1}))
        oracle_cache._stored("run", {"seed": 1}, compute)
    oracle_cache._identity.cache_clear()
    assert paths[0] != paths[1] and paths[0] == paths[2] and len(calls) == 2


def test_the_cpu_identity_names_the_kernel_switches(monkeypatch):
    from archval.harness.core import host
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    plain = host.cpu_identity()
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    assert host.cpu_identity() != plain and "ATEN_CPU_CAPABILITY=avx2" in host.cpu_identity()
    assert host.cpu_model() and "\n" not in host.cpu_model() and host.cpu_features()
