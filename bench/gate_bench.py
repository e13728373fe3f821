"""Benchmark of the gate: cold and warm full runs, the structural-only run, per-stage and
per-family times, the overhead ratio and the peak memory of the whole process tree.

    .venv/bin/python bench/gate_bench.py [--jobs N] [--family NAME ...]

Cold means an empty compile cache (a fresh ARCHVAL_CACHE_DIR); warm reruns with that cache.
overhead ratio = wall time / (sum of the stage times that cannot be avoided: emit, oracle,
compile, load, run; divided by the workers in use). Figures, not assertions: the machines
are shared and noisy, so compare ratios measured in one run.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("emit", "oracle", "compile", "load", "run")


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def run_gate(args: list[str], env: dict) -> tuple[float, int, int, str]:
    """(wall seconds, peak tree RSS bytes, exit code, output) of one gate run."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = 0
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss_bytes(proc.pid))
            done.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out = proc.communicate()[0]
    done.set()
    sampler.join()
    return time.perf_counter() - start, peak, proc.returncode, out


def stage_table(records: list[dict]) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    totals = {s: 0.0 for s in STAGES}
    per_family: dict[str, dict[str, float]] = {}
    for r in records:
        fam = per_family.setdefault(r["family"], {s: 0.0 for s in STAGES})
        for stage in STAGES:
            t = r.get("timings", {}).get(stage, 0.0)
            totals[stage] += t
            fam[stage] += t
    return totals, per_family


def report(label: str, wall: float, peak: int, code: int, records: list[dict], jobs: int) -> None:
    totals, per_family = stage_table(records)
    unavoidable = sum(totals.values()) / jobs
    print(f"\n== {label}: {wall:.1f} s wall, exit {code}, peak memory {peak / 2**30:.2f} GiB, "
          f"overhead ratio {wall / unavoidable:.2f} (stages {sum(totals.values()):.1f} s / {jobs} workers)")
    print("   stage totals: " + ", ".join(f"{s} {totals[s]:.1f} s" for s in STAGES))
    print(f"   {'family':<20}" + "".join(f"{s:>9}" for s in STAGES) + f"{'total':>9}")
    for name, stages in sorted(per_family.items(), key=lambda kv: -sum(kv[1].values())):
        print(f"   {name:<20}" + "".join(f"{stages[s]:>9.2f}" for s in STAGES) + f"{sum(stages.values()):>9.2f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--family", action="append", default=[])
    args = ap.parse_args()
    selection = [f"--family={n}" for n in args.family] + [f"--jobs={args.jobs}"]
    with tempfile.TemporaryDirectory(prefix="archval-bench-") as tmp:
        env = {**os.environ, "ARCHVAL_CACHE_DIR": str(Path(tmp) / "cache")}
        reports = Path(tmp) / "reports"
        for label in ("cold (empty compile cache)", "warm (compile cache hit)"):
            wall, peak, code, out = run_gate([*selection, "--reports", str(reports)], env)
            records = json.loads((reports / "summary.json").read_text()) if (reports / "summary.json").is_file() else []
            if code != 0:
                print(out)
            report(label, wall, peak, code, records, args.jobs)
        wall, peak, code, _ = run_gate(["--structural-only", *selection], env)
        print(f"\n== structural-only: {wall:.1f} s wall, exit {code}, peak memory {peak / 2**30:.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
