"""Repro bundles: a failing case handed to a compiler team runs with IREE's command-line tools alone and
gives archval's numbers to the last bit; a failed compile keeps the .mlir its diagnostics cite."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from archval.harness.backends import iree
from archval.harness.core import fixtures
from archval.harness.core.bundle import Bundles
from archval.harness.core.case import run_case
from archval.harness.core.emitters import emitter_command

WRAPS = Path(__file__).parent / "emitters" / "wraps.py"
VENV_BIN = Path(sys.executable).parent  # iree-compile and iree-run-module, as pip installed them


def iree_tools_only(script: Path) -> subprocess.CompletedProcess:
    """A bundle's script as a compiler engineer runs it: sh, IREE's tools on PATH, nothing of archval's
    (no PYTHONPATH, run from the bundle, its tool paths left to PATH)."""
    env = {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"),
           "IREE_COMPILE": "iree-compile", "IREE_LLD": str(iree.compiler_tools()[1])}
    return subprocess.run(["sh", script.name], cwd=script.parent, env=env, capture_output=True, text=True,
                          timeout=600)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.fixture(scope="module")
def failing_prefill(tmp_path_factory):
    """llama's prefill by an emitter whose first RMSNorm takes sqrt for rsqrt: a FAIL, with its bundle."""
    reports = tmp_path_factory.mktemp("reports")
    emitter = emitter_command(f"{sys.executable} {WRAPS} --alter")
    record = run_case(fixtures.load("llama"), "prefill", emitter=emitter, xla=False, bundles=Bundles(reports))
    return record, reports


def test_a_fail_gets_a_bundle_named_in_its_record(failing_prefill):
    record, reports = failing_prefill
    assert record.verdict == "FAIL"
    assert record.bundle == "bundles/llama-prefill"
    bundle = reports / record.bundle
    assert {p.name for p in bundle.iterdir()} >= {"prefill.mlir", "compile.sh", "run.sh", "README.txt",
                                                  "expected.npy", "actual.npy", "weights", "recorded", "call0-prefill"}
    assert "stablehlo.sqrt" in (bundle / "prefill.mlir").read_text()
    assert record.message in (bundle / "README.txt").read_text()


def test_iree_tools_alone_reproduce_the_recorded_logits_bit_for_bit(failing_prefill):
    record, reports = failing_prefill
    bundle = reports / record.bundle
    for script in ("compile.sh", "run.sh"):
        proc = iree_tools_only(bundle / script)
        assert proc.returncode == 0, proc.stderr[-2000:]
    logits = np.load(bundle / "out" / "call0-prefill-result0.npy")
    recorded = np.asarray(record.logits.graph_logits, np.float32)  # what the record says the graph computed
    assert same_bits(logits.reshape(-1), recorded)
    assert same_bits(logits.reshape(1, -1), np.load(bundle / "actual.npy"))
    for path in (bundle / "recorded").iterdir():  # the caches too
        assert same_bits(np.load(bundle / "out" / path.name), np.load(path)), path.name
    expected = np.load(bundle / "expected.npy")
    assert np.abs(expected - logits.reshape(1, -1)).max() == pytest.approx(record.max_abs_diff, rel=1e-6)


def test_a_pass_gets_a_bundle_only_when_every_case_is_asked_for(tmp_path):
    fixture = fixtures.load("llama")
    record = run_case(fixture, "prefill", xla=False, strict_bound=False, bundles=Bundles(tmp_path))
    assert record.verdict == "PASS" and record.bundle is None and not (tmp_path / "bundles").exists()
    record = run_case(fixture, "prefill", xla=False, strict_bound=False, bundles=Bundles(tmp_path, every=True))
    assert record.bundle == "bundles/llama-prefill" and (tmp_path / record.bundle / "run.sh").is_file()


BROKEN = "module @broken {\n  func.func @main(%x: tensor<4xf32> loc(\"x\")) -> tensor<4xf32> {\n    return %y\n  }\n}\n"


def test_a_failed_compile_cites_the_kept_mlir(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHVAL_CACHE_DIR", str(tmp_path))
    with pytest.raises(iree.BackendError) as raised:
        iree.compile_text(BROKEN)
    source = iree.source_path(BROKEN)
    assert f"{source}:3:" in str(raised.value), str(raised.value)
    assert source.read_text() == BROKEN
    assert '"-":' not in str(raised.value)


def test_an_error_before_any_call_still_bundles_the_mlir_and_its_compile(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHVAL_CACHE_DIR", str(tmp_path / "cache"))
    refuses = tmp_path / "refuses"
    refuses.write_text(f"#!{sys.executable}\nimport sys\nsys.exit('error: refusing on purpose')\n")
    refuses.chmod(0o755)
    monkeypatch.setenv(iree.COMPILER_ENV, str(refuses))
    record = run_case(fixtures.load("llama"), "prefill", xla=False, bundles=Bundles(tmp_path / "reports"))
    assert record.verdict == "ERROR" and "refusing on purpose" in record.message
    bundle = tmp_path / "reports" / record.bundle
    assert {p.name for p in bundle.iterdir()} == {"prefill.mlir", "compile.sh", "README.txt"}
    assert "No call of @main was made" in (bundle / "README.txt").read_text()
    assert str(refuses) in (bundle / "compile.sh").read_text()
