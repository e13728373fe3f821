"""The same config gives the same bytes in any process."""
import hashlib
import os
import subprocess
import sys

import pytest

from archval.emitter import GRAPHS
from archval.harness.core import fixtures


def emit_in_fresh_process(config, graph, out, hash_seed):
    env = {**os.environ, "PYTHONHASHSEED": str(hash_seed)}
    subprocess.run([sys.executable, "-m", "archval.emitter", "--config", str(config), "--graph", graph,
                    "--out", str(out)], check=True, env=env)
    return hashlib.sha256(out.read_bytes()).hexdigest()


@pytest.mark.parametrize("graph", GRAPHS)
@pytest.mark.parametrize("name", fixtures.names())
def test_emission_is_byte_identical_across_processes(name, graph, tmp_path):
    config = fixtures.load(name).config_path
    first = emit_in_fresh_process(config, graph, tmp_path / "a.mlir", 1)
    second = emit_in_fresh_process(config, graph, tmp_path / "b.mlir", 2)
    assert first == second
