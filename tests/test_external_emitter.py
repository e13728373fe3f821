"""An emitter of one's own, driven through the protocol: PASS as the built-in writes it, FAIL once altered."""
import json
import os
import subprocess
import sys

import pytest

from archval.harness.cli import main
from archval.harness import ROOT

WRAPS = ROOT / "archval" / "altered_emitter.py"


@pytest.mark.parametrize("alter,verdict", [(False, "PASS"), (True, "FAIL")])
def test_wrapping_emitter_passes_unaltered_and_fails_altered(tmp_path, capsys, alter, verdict):
    command = f"{sys.executable} {WRAPS}" + (" --alter" if alter else "")
    code = main(["--family", "llama", "--reports", str(tmp_path), "--emitter", command])
    out = capsys.readouterr().out
    records = json.loads((tmp_path / "summary.json").read_text())["records"]
    assert {r["graph"]: r["verdict"] for r in records} == {"prefill": verdict, "decode": verdict}, out
    assert code == (0 if verdict == "PASS" else 1)
    assert "structural signatures: skipped" in out
    assert all((r["max_abs_diff"] > r["bound"]) == alter for r in records), out


@pytest.mark.parametrize("taps,localised", [
    ("", "first divergence: layer 0 attention"),  # the altered rsqrt is layer 0's input norm
    (" --no-taps", ("not available: the emitter gave no taps (asked with --debug-taps it exited 2: altered_emitter: error: "
                    "unrecognized arguments: --debug-taps)")),
], ids=["taps", "no-taps"])
def test_any_emitters_failing_prefill_is_localised_through_its_taps_or_says_it_gave_none(tmp_path, capsys, taps,
                                                                                       localised):
    code = main(["--family", "llama", "--reports", str(tmp_path), "--emitter",
                 f"{sys.executable} {WRAPS} --alter{taps}"])
    out = capsys.readouterr().out
    prefill = next(r for r in json.loads((tmp_path / "summary.json").read_text())["records"] if r["graph"] == "prefill")
    assert code == 1 and prefill["verdict"] == "FAIL"
    assert prefill["localisation"]["summary"].startswith(localised), prefill["localisation"]
    assert f"localised: {localised}" in out
    assert localised in (tmp_path / "llama.html").read_text()


@pytest.mark.parametrize("alter,returncode", [(False, 0), (True, 1)])
def test_pytest_emitter_option_runs_the_differential_tests_through_it(alter, returncode):
    command = f"{sys.executable} {WRAPS}" + (" --alter" if alter else "")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--emitter", command,
                           "tests/test_differential.py::test_prefill_matches_oracle[llama]"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == returncode, proc.stdout[-2000:]
    assert ("1 passed" if returncode == 0 else "1 failed") in proc.stdout


def test_the_emitter_runs_where_archval_was_started_so_relative_paths_are_the_users(tmp_path):
    """An installed archval started in an emitter's repository: `python my_emitter.py` is that repository's file
    (checked up front, and run there); a mistyped one is refused before anything runs (python exits 2 for a
    script it cannot open, which the protocol would read as a refusal)."""
    project = tmp_path / "my-emitter"
    project.mkdir()
    (project / "my_emitter.py").write_text(WRAPS.read_text())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ran = subprocess.run([sys.executable, "-m", "archval", "--family", "llama", "--reports", str(tmp_path / "r"),
                          "--emitter", f"{sys.executable} my_emitter.py"], cwd=project, env=env,
                         capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0 and ran.stdout.rstrip().endswith("RESULT: PASS"), ran.stdout + ran.stderr
    typo = subprocess.run([sys.executable, "-m", "archval", "--family", "llama", "--reports", str(tmp_path / "r"),
                           "--emitter", f"{sys.executable} my_emiter.py"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=600)
    assert typo.returncode == 2 and typo.stdout == "", typo
    assert typo.stderr == (f"error: --emitter '{sys.executable} my_emiter.py': my_emiter.py is no file (relative to "
                           f"{project}, where the emitter runs)\n")
