"""Repro bundles: a failing case handed to a compiler team runs with IREE's command-line tools alone and
gives archval's numbers to the last bit; a failed compile keeps the .mlir its diagnostics cite."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from archval.harness import ROOT
from archval.harness.backends import iree
from archval.harness.core import fixtures
from archval.harness.core.bundle import Bundles
from archval.harness.core.case import run_case
from archval.harness.core.emitter_protocol import emitter_command

WRAPS = ROOT / "archval" / "altered_emitter.py"
VENV_BIN = Path(sys.executable).parent  # iree-compile and iree-run-module, as pip installed them


def iree_tools_only(script: Path, path: str = f"{VENV_BIN}:/usr/bin:/bin", **tools: str) -> subprocess.CompletedProcess:
    """A bundle's script as a compiler engineer runs it: sh, IREE's tools on PATH, nothing of archval's
    (no PYTHONPATH, run from the bundle, its tool paths left to PATH, or given as IREE_COMPILE=...)."""
    env = {"PATH": path, "HOME": os.environ.get("HOME", "/tmp"), **tools}
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
        proc = iree_tools_only(bundle / script, IREE_COMPILE="iree-compile", IREE_LLD=str(iree.compiler_tools()[1]))
        assert proc.returncode == 0, proc.stderr[-2000:]
    logits = np.load(bundle / "out" / "call0-prefill-result0.npy")
    recorded = np.asarray(record.logits.graph_logits, np.float32)  # what the record says the graph computed
    assert same_bits(logits.reshape(-1), recorded)
    assert same_bits(logits.reshape(1, -1), np.load(bundle / "actual.npy"))
    for path in (bundle / "recorded").iterdir():  # the caches too
        assert same_bits(np.load(bundle / "out" / path.name), np.load(path)), path.name
    expected = np.load(bundle / "expected.npy")
    assert np.abs(expected - logits.reshape(1, -1)).max() == pytest.approx(record.max_abs_diff, rel=1e-6)


def test_the_scripts_find_the_tools_without_the_venv_on_path_and_on_another_machine(failing_prefill, tmp_path):
    """Beside the Python that wrote the bundle when PATH lacks that venv's bin; on PATH alone on a machine where
    that venv does not exist (the bundle copied elsewhere); one sentence, exit 127, where neither has them."""
    record, reports = failing_prefill
    here = tmp_path / "here"
    shutil.copytree(reports / record.bundle, here)
    for script in ("compile.sh", "run.sh"):
        proc = iree_tools_only(here / script, path="/usr/bin:/bin")
        assert proc.returncode == 0, proc.stderr[-2000:]
    elsewhere, tools = tmp_path / "elsewhere", tmp_path / "their-iree" / "bin"
    shutil.copytree(reports / record.bundle, elsewhere)
    tools.mkdir(parents=True)
    for tool in ("iree-compile", "iree-run-module"):
        (tools / tool).symlink_to(VENV_BIN / tool)
    for script in ("compile.sh", "run.sh"):
        text = (elsewhere / script).read_text()
        assert str(VENV_BIN.parent) not in text.replace(f"WRITER_BIN={VENV_BIN}", ""), text
        (elsewhere / script).write_text(text.replace(f"WRITER_BIN={VENV_BIN}", "WRITER_BIN=/nowhere/bin"))
        proc = iree_tools_only(elsewhere / script, path=f"{tools}:/usr/bin:/bin")
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert same_bits(np.load(here / "out" / "call0-prefill-result0.npy"),
                     np.load(elsewhere / "out" / "call0-prefill-result0.npy"))
    proc = iree_tools_only(elsewhere / "run.sh", path="/usr/bin:/bin")
    assert proc.returncode == 127 and proc.stderr == ("run.sh: iree-run-module not found on PATH nor in /nowhere/bin: "
                                                      "pip install iree-base-compiler iree-base-runtime (or set "
                                                      "IREE_RUN_MODULE)\n"), proc.stderr


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
