"""Every input a case feeds (weights, tokens, positions, caches, hidden states, a published config's seed) is a
function of the fixture alone: the same bytes whichever graph kinds a run selects (core/inputs.py)."""
import subprocess
from pathlib import Path

import numpy as np
import pytest

from archval.harness import ROOT

GATE = str(ROOT / "validate_arch.sh")
SUBSETS = (["moe_block"], ["decode"], ["prefill", "decode", "moe_block"])


def fed(reports: Path) -> dict[str, bytes]:
    """Every array the run fed its graphs and the oracle's sides it compared, by bundle path."""
    return {str(p.relative_to(reports / "bundles")): np.load(p).tobytes()
            for p in sorted((reports / "bundles").rglob("*.npy")) if "recorded" not in p.parts}


@pytest.mark.parametrize("selection", [["--family", "olmoe"],
                                       ["--config", str(ROOT / "fixtures/real/Qwen3-30B-A3B/config.json")]],
                         ids=["fixture", "published"])
def test_what_each_case_is_fed_does_not_depend_on_the_graph_kinds_selected(selection, tmp_path):
    runs = {}
    for subset in SUBSETS:
        reports = tmp_path / "-".join(subset)
        command = [GATE, *selection, *(a for k in subset for a in ("--graph", k)), "--bundle", "all",
                   "--reports", str(reports)]
        run = subprocess.run(command, capture_output=True, text=True, timeout=900)
        assert run.returncode == 0, run.stdout + run.stderr
        runs[tuple(subset)] = fed(reports)
    every = runs[tuple(SUBSETS[-1])]
    for subset in SUBSETS[:-1]:
        alone = runs[tuple(subset)]
        assert alone and all(name.split("/")[0].endswith(tuple(subset)) for name in alone)
        assert {name: every[name] == data for name, data in alone.items()} == {name: True for name in alone}
