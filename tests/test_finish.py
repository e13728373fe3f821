"""The gate and pytest finish a case alike (harness/checks/finish.py): the same cases through the gate and through
this repository's pytest cases give the same records, field by field, but for the fields each run has its own."""
import json
import shlex
import subprocess
import sys

import pytest

from archval.harness import ROOT
from archval.harness.cli import main

ALTERED = f"{shlex.quote(sys.executable)} {shlex.quote(str(ROOT / 'archval' / 'altered_emitter.py'))} --alter"
# What each run has of its own: the wall times, whether the cache held the oracle and the compiled graphs (the
# first run fills it for the second), and the replay (the gate's command line; under pytest, the test's node id).
RUN_FIELDS = ("timings", "cache_hit", "replay")
TESTS = ("tests/test_differential.py::test_prefill_matches_oracle[llama]",
         "tests/test_differential.py::test_decode_matches_oracle_token_for_token[llama]")


def records(directory) -> dict[str, dict]:
    said = json.loads((directory / "summary.json").read_text())["records"]
    return {r["graph"]: {k: v for k, v in r.items() if k not in RUN_FIELDS} for r in said}


@pytest.mark.parametrize("emitter", [None, ALTERED], ids=["built-in", "altered"])
def test_the_gate_and_pytest_write_the_same_records(emitter, tmp_path):
    """The built-in emitter's PASS (goldens, flags) and an altered emitter's FAILs (localised, bundled)."""
    given = ["--emitter", emitter] if emitter else []
    main(["--family", "llama", "--jobs", "1", "--reports", str(tmp_path / "gate"), *given])
    done = subprocess.run([sys.executable, "-m", "pytest", *TESTS, "-p", "no:randomly", "-p", "no:cacheprovider",
                           "-n", "0", "-q", "--reports", str(tmp_path / "pytest"), *given], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    gate, under_pytest = records(tmp_path / "gate"), records(tmp_path / "pytest")
    assert set(gate) == set(under_pytest) == {"prefill", "decode"}, done.stdout[-2000:]
    for graph, record in gate.items():
        differ = {k: (v, under_pytest[graph].get(k)) for k, v in record.items() if under_pytest[graph].get(k) != v}
        assert differ == {} and set(record) == set(under_pytest[graph]), graph
    verdicts = {r["verdict"] for r in gate.values()}
    assert verdicts == ({"FAIL"} if emitter else {"PASS"})
    if emitter:  # what follows a failing case ran on both sides
        assert gate["prefill"]["localisation"]["first"] and gate["prefill"]["bundle"] == "bundles/llama-prefill"
    else:
        assert gate["prefill"]["structural"]["status"] == "match" and gate["prefill"]["emitter_flags"]
