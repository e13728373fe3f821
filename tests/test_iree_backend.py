"""The compile cache: keyed by content, hit on the second compile, a corrupt entry detected and rebuilt. The
runtime: graphs on the threads asked for, weights bound once and read in place."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from archval.harness import ROOT
from archval.harness.backends import iree
from archval.harness.core.checkpoint_files import aligned_f32
from archval.harness.core.graph import parse_signature

DOUBLE = """module @double {
  func.func public @main(%x: tensor<4xf32> loc("x")) -> (tensor<4xf32>) {
    %0 = stablehlo.add %x, %x : tensor<4xf32>
    return %0 : tensor<4xf32>
  }
}
"""


def run(vmfb):
    main = parse_signature(DOUBLE).functions["main"]
    (out,) = iree.IreeModule(main, vmfb, "double", cache_hit=False).call({}, {"x": np.arange(4, dtype=np.float32)})
    return out


def test_cache_hits_and_rebuilds_a_corrupt_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHVAL_CACHE_DIR", str(tmp_path))
    vmfb, hit = iree.compile_text(DOUBLE)
    assert not hit and run(vmfb).tolist() == [0, 2, 4, 6]
    assert iree.compile_text(DOUBLE)[1]
    (entry,) = tmp_path.glob("*.vmfb")
    entry.write_bytes(entry.read_bytes()[: len(vmfb) // 2])  # a torn write
    rebuilt, hit = iree.compile_text(DOUBLE)
    assert not hit and rebuilt == vmfb and run(rebuilt).tolist() == [0, 2, 4, 6]
    assert iree.cache_key(DOUBLE) != iree.cache_key(DOUBLE.replace("add", "multiply"))


def iree_workers(pid: int) -> int:
    """The IREE worker threads of process pid, by the names IREE gives them."""
    tasks = Path(f"/proc/{pid}/task")
    return sum((t / "comm").read_text().startswith("iree-worker") for t in tasks.iterdir())


SHOW_WORKERS = """
import os, sys
import numpy as np
from archval.harness.backends import iree
from archval.harness.core.graph import parse_signature
from tests.test_iree_backend import DOUBLE, iree_workers
said = iree.use_threads(int(sys.argv[1]))
main = parse_signature(DOUBLE).functions["main"]
module = iree.IreeModule(main, iree.compile_text(DOUBLE)[0], "double", cache_hit=False)
assert module.call({}, {"x": np.arange(4, dtype=np.float32)})[0].tolist() == [0, 2, 4, 6]
print(said, iree_workers(os.getpid()), iree.use_threads(int(sys.argv[1]) + 1))
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads through /proc")
@pytest.mark.parametrize("threads,workers", [(1, 0), (3, 3)])  # one: local-sync, in the calling thread
def test_graphs_run_on_the_threads_asked_for_before_the_first_load_and_no_later_ask_changes_them(
        threads, workers, tmp_path):
    env = {**os.environ, "ARCHVAL_CACHE_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", SHOW_WORKERS, str(threads)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(threads), str(workers), str(threads)]  # asked, running, a late ask's answer


def test_a_weight_is_bound_once_in_place_never_copied(tmp_path, monkeypatch):
    """The graph reads the weight's own memory (a change to the array shows in the next call) through one
    device array made at the first call and reused (a per-call copy would cost a checkpoint's whole weights
    at every decode step)."""
    monkeypatch.setenv("ARCHVAL_CACHE_DIR", str(tmp_path))
    main = parse_signature(DOUBLE).functions["main"]
    module = iree.IreeModule(main, iree.compile_text(DOUBLE)[0], "double", cache_hit=False)
    weight = aligned_f32((4,))
    weight[...] = np.arange(4)
    made = []
    wrap = module._in_place
    monkeypatch.setattr(module, "_in_place", lambda a: made.append(a) or wrap(a))
    assert module.call({"x": weight}, {})[0].tolist() == [0, 2, 4, 6]
    weight[...] = 10  # the graph must see this: no copy was taken at the first call
    assert module.call({"x": weight}, {})[0].tolist() == [20, 20, 20, 20]
    assert len(made) == 1
    other = aligned_f32((4,))  # another array is bound on its own, never mistaken for the first
    other[...] = 1
    assert module.call({"x": other}, {})[0].tolist() == [2, 2, 2, 2] and len(made) == 2


def test_the_logits_are_the_same_bits_on_any_driver_and_thread_count(tmp_path):
    """The verdicts must not depend on the cores a run gets: IREE's reductions are tiled when it compiles,
    not by its threads. Prefill and decode of a dense family, one with sliding windows and soft-capping, and
    one with experts, on local-sync and local-task with 1 and 2 threads (bench/iree_threads.py)."""
    env = {**os.environ, "ARCHVAL_CACHE_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "iree_threads.py"), "llama", "gemma2", "mixtral"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0 and proc.stdout.splitlines()[-1] == "bit-identical: yes", proc.stdout + proc.stderr
    assert len(proc.stdout.splitlines()) == 4  # a line per configuration: each ran
