"""Fault injection: a broken tool, a poisoned graph, a dying worker or an interrupted update never
yields a wrong verdict; each fault is that case's ERROR or FAIL, with its own sentence.

Elsewhere already: a corrupt cache entry rebuilt (test_iree_backend.py), a broken emitter, a compile
error and a prompt past the vocabulary (test_isolation.py), NaN/Inf verdicts on hand-made logits
(test_compare.py).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from full_disk import FullDisk

from archval.emitter import Config, emit
from archval.harness.backends import iree
from archval.harness import ROOT
from archval.harness.checks import structural
from archval.harness.checks.signature import golden_paths
from archval.harness.cli import main
from archval.harness.core import files, fixtures, triangulate, watchdog
from archval.harness.core.case import run_case
from archval.harness.core.emitter_protocol import DEFAULT_EMITTER
from archval.harness.present.console import line as format_line

KILLS_WORKER = Path(__file__).parent / "emitters" / "kills_worker.py"
DOUBLE = """module @double {
  func.func public @main(%x: tensor<4xf32> loc("x")) -> (tensor<4xf32>) {
    %0 = stablehlo.add %x, %x : tensor<4xf32>
    return %0 : tensor<4xf32>
  }
}
"""


def fake_compiler(tmp_path: Path, name: str, body: str) -> Path:
    """An executable standing in for iree-compile (this interpreter, so no PATH lookup)."""
    path = tmp_path / name
    path.write_text(f"#!{sys.executable}\nimport os, signal, sys, time\n{body}\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def cold_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHVAL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def left_behind(cache: Path) -> list[Path]:
    """The files a compile left in the cache directory."""
    return sorted(p for p in cache.rglob("*") if p.is_file())


# -- iree-compile missing, crashing, hanging ---------------------------------------------------------

def test_missing_compiler_is_a_backend_error_naming_it(tmp_path, monkeypatch, cold_cache):
    monkeypatch.setenv(iree.COMPILER_ENV, str(tmp_path / "no-such-iree-compile"))
    with pytest.raises(iree.BackendError,
                       match=r"iree-compile could not start \(.*no-such-iree-compile\): No such file or directory"):
        iree.compile_text(DOUBLE)


def test_crashing_compiler_names_the_signal_and_its_stderr(tmp_path, monkeypatch, cold_cache):
    crash = fake_compiler(tmp_path, "crashes", "sys.stderr.write('Stack dump: pass XYZ\\n'); "
                                               "sys.stderr.flush(); os.kill(os.getpid(), signal.SIGSEGV)")
    monkeypatch.setenv(iree.COMPILER_ENV, str(crash))
    with pytest.raises(iree.BackendError,
                       match=r"iree-compile was killed by SIGSEGV; its stderr: Stack dump: pass XYZ"):
        iree.compile_text(DOUBLE)
    assert left_behind(cold_cache) == [iree.source_path(DOUBLE)], "a crashed compile leaves only its source"


def test_hanging_compiler_times_out_with_its_stderr(tmp_path, monkeypatch, cold_cache):
    hang = fake_compiler(tmp_path, "hangs", "sys.stderr.write('stuck in a pass\\n'); sys.stderr.flush(); "
                                            "time.sleep(600)")
    monkeypatch.setenv(iree.COMPILER_ENV, str(hang))
    monkeypatch.setenv(iree.TIMEOUT_ENV, "1.5")
    start = time.perf_counter()
    with pytest.raises(iree.BackendError,
                       match=r"iree-compile did not finish within 1.5 s \(killed\); its stderr: stuck in a pass"):
        iree.compile_text(DOUBLE)
    assert time.perf_counter() - start < 30
    assert left_behind(cold_cache) == [iree.source_path(DOUBLE)]


@pytest.mark.parametrize("writes", ["nothing", "an empty file"])
def test_a_compiler_that_exits_0_without_a_module_is_said_so(writes, tmp_path, monkeypatch, cold_cache):
    out = "open(sys.argv[sys.argv.index('-o') + 1], 'wb').close()" if writes == "an empty file" else "pass"
    quiet = fake_compiler(tmp_path, "quiet", f"{out}; sys.stderr.write('all fine\\n')")
    monkeypatch.setenv(iree.COMPILER_ENV, str(quiet))
    with pytest.raises(iree.BackendError, match=r"^iree-compile exited 0 but wrote no module; its stderr: all fine$"):
        iree.compile_text(DOUBLE)
    assert left_behind(cold_cache) == [iree.source_path(DOUBLE)], "nothing cached"


def test_compiler_fault_is_that_cases_error_with_a_replay(tmp_path, monkeypatch, cold_cache):
    """End to end: the record is an ERROR naming the fault, never a PASS or FAIL."""
    crash = fake_compiler(tmp_path, "crashes", "os.kill(os.getpid(), signal.SIGKILL)")
    monkeypatch.setenv(iree.COMPILER_ENV, str(crash))
    record = run_case(fixtures.load("llama"))
    assert record.verdict == "ERROR"
    assert "iree-compile was killed by SIGKILL; it wrote nothing to stderr" in record.message
    assert "replay: ./validate_arch.sh --family llama" in format_line(record)


def test_the_compiler_override_is_part_of_the_cache_key(monkeypatch):
    """A vmfb another compiler wrote is never served as the real compiler's."""
    real = iree.cache_key(DOUBLE)
    monkeypatch.setenv(iree.COMPILER_ENV, "/opt/other/iree-compile")
    assert iree.cache_key(DOUBLE) != real


# -- NaN / Inf in the emitter's output graph -------------------------------------------------------

def poison_logits(text: str, bits: str, index: int) -> str:
    """Write one NaN or Inf (f32 bit pattern) into the logits that @main returns."""
    match = re.search(r"^(\s*)return (%\w+), (.*): tensor<(\d+)xf32>, ", text, re.M)
    indent, logits, rest, vocab = match.groups()
    poison = (f"{indent}%poison = stablehlo.constant dense<{bits}> : tensor<1xf32>\n"
              f"{indent}%poison_at = stablehlo.constant dense<{index}> : tensor<i32>\n"
              f"{indent}%poisoned = stablehlo.dynamic_update_slice {logits}, %poison, %poison_at : "
              f"(tensor<{vocab}xf32>, tensor<1xf32>, tensor<i32>) -> tensor<{vocab}xf32>\n")
    return text[:match.start()] + poison + text[match.start():].replace(f"return {logits}, ", "return %poisoned, ", 1)


@pytest.mark.parametrize("graph,bits,expected", [
    ("prefill", "0x7FC00000", "graph logits hold 1 NaN/Inf values (first at vocab index 7)"),
    ("decode", "0x7F800000", "step 1: graph logits hold 1 NaN/Inf values (first at vocab index 7)"),
])
def test_nan_or_inf_in_the_emitted_graph_fails_with_its_own_message(graph, bits, expected):
    fixture = fixtures.load("llama")
    config = Config.from_json(fixture.config_path)
    texts = {g: emit(config, g) for g in ("prefill", "decode")}
    texts[graph] = poison_logits(texts[graph], bits, 7)
    record = run_case(fixture, graph, texts=texts)
    assert record.verdict == "FAIL", format_line(record)
    assert expected in record.message, record.message
    assert "bound" not in record.message  # the NaN message, not a numeric one
    # XLA computes the same NaN/Inf from the text: said in words, not `no two agree`
    assert record.xla.verdict == triangulate.BOTH_NONFINITE, record.xla
    assert "[xla inf: both NaN/Inf]" in format_line(record) and "no two agree" not in format_line(record)


# -- a graph that never returns -----------------------------------------------------------------------

LOOPS = Path(__file__).parent / "emitters" / "loops.py"
LOOP = """module @loops {
  func.func public @main(%x: tensor<4xf32> loc("x")) -> (tensor<4xf32>) {
    %c0 = stablehlo.constant dense<0> : tensor<i32>
    %r:2 = stablehlo.while(%i = %c0, %acc = %x) : tensor<i32>, tensor<4xf32>
      cond {
        %go = stablehlo.compare GE, %i, %c0 : (tensor<i32>, tensor<i32>) -> tensor<i1>
        stablehlo.return %go : tensor<i1>
      } do {
        %twice = stablehlo.add %acc, %acc : tensor<4xf32>
        stablehlo.return %i, %twice : tensor<i32>, tensor<4xf32>
      }
    return %r#1 : tensor<4xf32>
  }
}
"""
CALLS_LOOP = f"""import contextlib, sys
import numpy as np
from archval.harness.backends import iree, xla
from archval.harness.core.graph import parse_signature
backend = {{"iree": iree.IREE, "xla": xla.XLA}}[sys.argv[1]]
module = backend.load({LOOP!r}, parse_signature({LOOP!r}), lambda stage: contextlib.nullcontext())
module.call({{}}, {{"x": np.ones(4, np.float32)}})
print("returned")
"""


def test_a_graph_that_loops_at_run_time_is_its_familys_error_naming_the_limit(tmp_path, capsys, monkeypatch):
    """Its worker is stopped (a call into IREE cannot be interrupted) and the family is not run again."""
    monkeypatch.setenv(watchdog.TIMEOUT_ENV, "3")
    start = time.monotonic()
    code = main(["--family", "llama", "--reports", str(tmp_path / "r"), "--emitter", f"{sys.executable} {LOOPS}"])
    out = capsys.readouterr().out
    records = json.loads((tmp_path / "r" / "summary.json").read_text())["records"]
    assert code == 1 and "RESULT: FAIL" in out and "again" not in out, out
    assert [r["verdict"] for r in records] == ["ERROR", "ERROR"]
    assert all(r["message"].startswith("stage 'run': IREE running @main did not finish within 3 s "
                                       "($ARCHVAL_RUN_TIMEOUT_S") for r in records), records[0]["message"]
    assert time.monotonic() - start < 120


@pytest.mark.parametrize("backend,stage,what", [("iree", "run", "IREE running @main"),
                                                ("xla", "xla_run", "XLA running @main")])
def test_a_call_past_the_limit_outside_a_worker_stops_its_process_with_one_sentence(backend, stage, what, tmp_path):
    """Where no gate worker runs the call (--checkpoint runs it in the gate's own process, pytest in its own)."""
    proc = subprocess.run([sys.executable, "-c", CALLS_LOOP, backend], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, watchdog.TIMEOUT_ENV: "2",
                                            "ARCHVAL_CACHE_DIR": str(tmp_path / "cache")})
    assert proc.returncode == 1 and "returned" not in proc.stdout, proc.stdout + proc.stderr
    assert proc.stderr == (f"error: stage '{stage}': {what} did not finish within 2 s ($ARCHVAL_RUN_TIMEOUT_S; a "
                           "graph that loops at run time?): stopped, with the process it ran in\n"), proc.stderr


def test_a_run_time_limit_that_is_no_number_is_refused(capsys, monkeypatch):
    monkeypatch.setenv(watchdog.TIMEOUT_ENV, "soon")
    assert main(["--family", "llama"]) == 2
    assert capsys.readouterr().err == "error: $ARCHVAL_RUN_TIMEOUT_S 'soon': must be a number of seconds above 0\n"


# -- out-of-vocabulary tokens ------------------------------------------------------------------------

@pytest.mark.parametrize("prompt,token", [([1, -1, 3], -1), ([1, 96, 3], 96)])
def test_token_outside_the_vocabulary_is_refused_before_compiling(monkeypatch, prompt, token):
    """IREE's gather clamps an index silently, so the harness must refuse it; nothing is compiled or run."""
    fixture = fixtures.load("llama")
    monkeypatch.setattr(type(fixture), "prompt", lambda self: np.array(prompt, np.int32))
    monkeypatch.setattr("archval.harness.backends.iree.compile_text", lambda text: pytest.fail("compiled an invalid case"))
    record = run_case(fixture)
    assert record.verdict == "ERROR"
    assert f"prompt token {token} is outside the vocabulary [0, 96)" in record.message


# -- a worker killed mid-run -------------------------------------------------------------------------

def test_a_killed_worker_takes_down_only_its_own_family(tmp_path, capsys, monkeypatch):
    """The emitter SIGKILLs the worker validating qwen3 (as the OOM killer would) while llama's is in
    flight. The pool breaks for both; they are run again one process each, so only qwen3 is an ERROR.
    (A worker killed outright cannot remove its scratch directory: the workers' go to this test's own.)"""
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    code = main(["--family", "llama", "--family", "qwen3", "--jobs", "2", "--reports", str(tmp_path / "reports"),
                 "--emitter", f"{sys.executable} {KILLS_WORKER} qwen3"])
    out = capsys.readouterr().out
    records = json.loads((tmp_path / "reports" / "summary.json").read_text())["records"]
    verdicts = {(r["family"], r["graph"]): r["verdict"] for r in records}
    assert verdicts == {("llama", "prefill"): "PASS", ("llama", "decode"): "PASS",
                        ("qwen3", "prefill"): "ERROR", ("qwen3", "decode"): "ERROR"}, out
    assert code == 1 and "RESULT: FAIL" in out
    assert "the worker process died (run alone too)" in records[2]["message"]
    assert out.count("replay: ./validate_arch.sh --family qwen3") == 2


# -- an interrupted --update-goldens -----------------------------------------------------------------

@pytest.fixture
def scratch_fixtures(tmp_path, monkeypatch):
    """A copy of the llama fixture whose goldens are out of date, in a fixtures/ of its own."""
    shutil.copytree(fixtures.FIXTURES_DIR / "llama", tmp_path / "llama")
    monkeypatch.setattr(fixtures, "FIXTURES_DIR", tmp_path)
    monkeypatch.setattr(structural, "REAL_DIR", tmp_path / "real")
    stale = {}
    for graph in structural.GRAPHS:
        for path in golden_paths(tmp_path / "llama", graph):
            path.write_text(path.read_text().replace("stablehlo.", "stablehlo.stale_"))
            stale[path] = path.read_text()
    return tmp_path / "llama", stale


class FaultyOs:
    """The atomic writer's view of `os` (core/files.py), with one call made to fail (the emitter's own os is
    untouched)."""

    def __init__(self, **overrides):
        self.__dict__.update(overrides)

    def __getattr__(self, name):
        return getattr(os, name)


@pytest.mark.parametrize("fault", ["interrupt_between_files", "disk_full_mid_file"])
def test_interrupted_update_leaves_no_half_written_golden(scratch_fixtures, monkeypatch, fault):
    case_dir, stale = scratch_fixtures
    fresh_texts = {golden_paths(case_dir, g)[1]: emit(Config.from_json(case_dir / "config.json"), g)
                   for g in structural.GRAPHS}
    replaced = []

    def replace_then_interrupt(src, dst):
        replaced.append(dst)
        if len(replaced) == 2:
            raise KeyboardInterrupt  # Ctrl-C between the first golden file and the second
        os.replace(src, dst)

    faulty = (FaultyOs(replace=replace_then_interrupt) if fault == "interrupt_between_files"
              else FaultyOs(fdopen=lambda fd, mode: FullDisk(os.fdopen(fd, mode))))
    with monkeypatch.context() as m:
        m.setattr(files, "os", faulty)
        with pytest.raises(KeyboardInterrupt if fault == "interrupt_between_files" else OSError):
            structural.run(DEFAULT_EMITTER, update=True, names=["llama"], jobs=1)

    assert sorted(p.name for p in (case_dir / "golden").iterdir()) == sorted(p.name for p in stale), \
        "a temporary file was left beside the goldens"
    for path, old in stale.items():  # each golden file is whole: the old one or the new one
        now = path.read_text()
        if now != old:
            assert now == fresh_texts[path] if path.suffix == ".mlir" else json.loads(now)["sha256"]
    assert structural.orphan_goldens() == []
    rerun = structural.run(DEFAULT_EMITTER, update=True, names=["llama"], jobs=1)
    assert [r.status for r in rerun] == ["match", "match"]
    assert all(path.read_text() == text for path, text in fresh_texts.items())
