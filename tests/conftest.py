"""This repository's own test run uses archval's pytest plugin (harness/pytest_plugin.py: the
case_report and emitter fixtures, the family_* and graph_* markers, the reports, the shards) with
its options under the names the gate gives them: --emitter, --reports, --shard. Its own
differential cases are tests/test_differential.py and tests/test_blocks.py, so the plugin's
suite is left out (pyproject.toml: archval_suite = false)."""
from pathlib import Path

pytest_plugins = ["archval.harness.pytest_plugin"]


def pytest_addoption(parser):
    parser.addoption("--emitter", dest="archval_emitter", default=None,
                     help="emitter command to validate (CMD --config C --graph KIND --out FILE); default: the built-in")
    parser.addoption("--binding", dest="archval_binding", metavar="FILE",
                     help="a binding file for the emitter's graphs (docs/binding.md), as --archval-binding")
    parser.addoption("--dtype", dest="archval_dtype", choices=("bf16",), default=None,
                     help="ask the emitter for bf16-compute graphs, as --archval-dtype (docs/reduced-precision.md)")
    parser.addoption("--reports", dest="archval_reports", type=Path, metavar="DIR",
                     help="write the HTML reports of the differential cases run to DIR")
    parser.addoption("--shard", dest="archval_shard", metavar="I/N",
                     help="run only shard I of N (1-based), as --archval-shard")
