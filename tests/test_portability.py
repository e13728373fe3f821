"""Emission is a function of the config alone: the same text at every SIMD level this machine has.

numpy picks its SIMD kernels at run time from the CPU's features; NPY_DISABLE_CPU_FEATURES turns
the higher ones off, so one machine can stand in for older ones. torch would vary the same way
(ATEN_CPU_CAPABILITY), but emission never imports it, so nothing torch computes reaches a text
or a golden; the subprocess checks that too.
"""
import json
import os
import subprocess
import sys

from archval.harness.core import fixtures

EMIT_EVERY_CASE = r"""
import hashlib, json, sys
from pathlib import Path
from archval.emitter import Config, ConfigError, emit
from numpy._core._multiarray_umath import __cpu_features__
texts = {}
configs = sorted(Path(sys.argv[1]).glob("*/config.json")) + sorted(Path(sys.argv[1]).glob("real/*/config.json"))
for config in configs:
    for graph in ("prefill", "decode"):
        try:
            text = emit(Config.from_json(config), graph)
        except ConfigError as refusal:
            text = f"refused: {refusal}"
        texts[f"{config.parent.name}/{graph}"] = hashlib.sha256(text.encode()).hexdigest()
print(json.dumps({"texts": texts, "torch_imported": "torch" in sys.modules,
                  "features": sorted(f for f, on in __cpu_features__.items() if on)}))
"""


def simd_levels() -> list[str]:
    """NPY_DISABLE_CPU_FEATURES values from none disabled down to the build's baseline: each drops
    the highest dispatch target this CPU still has."""
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    present = [target for target in __cpu_dispatch__ if __cpu_features__.get(target)]
    return [" ".join(present[k:]) for k in range(len(present), -1, -1)]


def emit_everything(disabled: str) -> dict:
    env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": disabled}
    proc = subprocess.run([sys.executable, "-c", EMIT_EVERY_CASE, str(fixtures.FIXTURES_DIR)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_every_case_emits_the_same_text_at_every_simd_level():
    levels = simd_levels()
    runs = {level: emit_everything(level) for level in levels}
    full = runs[""]
    assert len(full["texts"]) >= 80, "every fixture and published config, both graphs"
    assert not full["torch_imported"]
    from numpy._core._multiarray_umath import __cpu_dispatch__
    assert not set(runs[levels[-1]]["features"]) & set(__cpu_dispatch__), "the lowest level is the baseline"
    for level, run in runs.items():
        if level:
            assert set(run["features"]) < set(full["features"]), f"disabling {level} changed nothing"
        differing = sorted(k for k in full["texts"] if run["texts"][k] != full["texts"][k])
        assert not differing, f"with NPY_DISABLE_CPU_FEATURES='{level}': {len(differing)} texts differ: {differing[:5]}"


def test_the_gate_starts_with_no_tool_but_bash_dirname_and_cat(tmp_path):
    """validate_arch.sh takes its stamp digest with Python: macOS has no sha256sum."""
    import shutil
    from pathlib import Path
    for tool in ("bash", "dirname", "cat"):
        (tmp_path / tool).symlink_to(shutil.which(tool))
    script = Path(__file__).resolve().parent.parent / "validate_arch.sh"
    proc = subprocess.run([str(script), "--list"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PATH": str(tmp_path)})
    assert proc.returncode == 0 and "llama" in proc.stdout.split(), proc.stderr[-2000:]
