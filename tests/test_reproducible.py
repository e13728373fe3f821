"""Same seeds, same verdicts and metrics, in separate processes; every failure says how to replay it."""
import json
import os
import subprocess
import sys
from pathlib import Path

from archval.harness.core import fixtures
from archval.harness.core.case import new_record
from archval.harness.present.console import line as format_line

ROOT = Path(__file__).resolve().parent.parent
# Everything a record measures; timings and cache_hit describe the run, not the case.
RUN_ONLY = {"timings", "cache_hit"}
RUN_CASES = """
import json, sys
from archval.harness.core import fixtures
from archval.harness.core.case import run_case
fixture = fixtures.load(sys.argv[1])
print(json.dumps([run_case(fixture, graph).to_json() for graph in ("prefill", "decode")]))
"""


def records_in_fresh_processes(name: str, hash_seeds: tuple[str, ...]) -> list[list[dict]]:
    """run_case on both graphs of one fixture, once per process, the processes side by side."""
    procs = [subprocess.Popen([sys.executable, "-c", RUN_CASES, name], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                              env={**os.environ, "PYTHONHASHSEED": seed}) for seed in hash_seeds]
    outputs = [proc.communicate(timeout=600)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * len(procs)
    return [json.loads(out.strip().splitlines()[-1]) for out in outputs]


def test_two_runs_give_identical_verdicts_and_metrics():
    """Every metric compared exactly, the decode timeline included."""
    first, second = records_in_fresh_processes("llama", ("1", "2"))
    assert [r["verdict"] for r in first] == ["PASS", "PASS"]
    for a, b in zip(first, second):
        assert {k: v for k, v in a.items() if k not in RUN_ONLY} == {k: v for k, v in b.items() if k not in RUN_ONLY}
        assert a["max_abs_diff"] > 0  # a metric that is measured, not a constant


def test_every_failed_or_errored_line_prints_the_command_that_replays_it():
    fixture = fixtures.load("olmo2")
    for verdict, message in (("FAIL", "max |Δlogit| = 2.0e+00 at vocab index 3 exceeds the bound 1.0e-02"),
                             ("ERROR", "the emitter exited with 1: boom")):
        record = new_record(fixture, "prefill")
        if verdict == "FAIL":
            record.check("bound", "compare", False, message)
        else:
            record.errored("emit", message)
        line = format_line(record)
        assert line.splitlines()[-2:] == [f"    {message}", "    replay: ./validate_arch.sh --family olmo2 --graph prefill"]
