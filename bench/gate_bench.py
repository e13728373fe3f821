"""Benchmark of the gate: cold and warm full runs, the structural-only run, per-stage and
per-family times, the overhead ratio and the peak memory of the whole process tree.

    .venv/bin/python bench/gate_bench.py [--jobs N] [--family NAME ...] [--graph KIND ...] [--write-costs]

Cold means an empty cache directory (ARCHVAL_CACHE_DIR: compiled modules and the oracle's
outputs); warm reruns with it. The stages are the work a gate cannot skip: emit, oracle (the
fp32 run and the fp64 noise-floor run), compile (IREE, and XLA for the triangulation), load,
run (IREE and XLA). overhead ratio = wall time / (their sum / the workers in use): what the
harness adds beyond them (process starts, imports, the structural pass, report pages, idle
cores). Figures, not assertions: the machines are shared and noisy, so compare ratios
measured in one run.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from archval.harness.core import summary  # noqa: E402 - the project root is not on the path of a script under bench/
from archval.harness.core.record import Record  # noqa: E402
from archval.harness.pool import shard  # noqa: E402
# stage -> the record timings it sums
STAGES = {"emit": ("emit",), "oracle": ("oracle", "oracle_fp64"), "compile": ("compile", "xla_compile"),
          "load": ("load",), "run": ("run", "xla_run")}
COLUMNS = ("emit", "oracle", "oracle_fp64", "compile", "xla_compile", "load", "run", "xla_run")


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
    proc = subprocess.Popen([sys.executable, "-m", "archval", *args], cwd=ROOT, env=env,
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


def stage_table(records: list[Record]) -> dict[str, dict[str, float]]:
    """family -> record timing -> seconds, summed over the family's records."""
    per_family: dict[str, dict[str, float]] = {}
    for r in records:
        family = per_family.setdefault(r.family, dict.fromkeys(COLUMNS, 0.0))
        for column in COLUMNS:
            family[column] += r.timings.get(column, 0.0)
    return per_family


def report(label: str, wall: float, peak: int, code: int, records: list[Record], jobs: int) -> None:
    per_family = stage_table(records)
    column = {c: sum(f[c] for f in per_family.values()) for c in COLUMNS}
    stages = {s: sum(column[c] for c in parts) for s, parts in STAGES.items()}
    work = sum(stages.values())
    print(f"\n== {label}: {wall:.1f} s wall, exit {code}, peak memory {peak / 2**30:.2f} GiB, "
          f"overhead ratio {wall / (work / jobs):.2f} (stages {work:.1f} s / {jobs} workers = {work / jobs:.1f} s)")
    print("   stages: " + ", ".join(
        f"{s} {stages[s]:.1f} s" + (f" ({' + '.join(f'{c} {column[c]:.1f}' for c in parts)})" if len(parts) > 1 else "")
        for s, parts in STAGES.items()))
    print(f"   {'family':<20}" + "".join(f"{c:>12}" for c in COLUMNS) + f"{'total':>9}")
    for name, times in sorted(per_family.items(), key=lambda kv: -sum(kv[1].values())):
        print(f"   {name:<20}" + "".join(f"{times[c]:>12.2f}" for c in COLUMNS) + f"{sum(times.values()):>9.2f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--family", action="append", default=[])
    ap.add_argument("--graph", action="append", default=[], help="only these graph kinds, as the gate's --graph "
                                                                  "(the on-request serving kinds run only so)")
    ap.add_argument("--write-costs", action="store_true",
                    help="rewrite fixtures/costs.json (scheduling, --shard) from the cold run's figures")
    args = ap.parse_args()
    selection = [f"--family={n}" for n in args.family] + [f"--graph={g}" for g in args.graph] + [f"--jobs={args.jobs}"]
    with tempfile.TemporaryDirectory(prefix="archval-bench-") as tmp:
        env = {**os.environ, "ARCHVAL_CACHE_DIR": str(Path(tmp) / "cache")}
        reports = Path(tmp) / "reports"
        for label in ("cold (empty cache directory)", "warm (cache hit)"):
            wall, peak, code, out = run_gate([*selection, "--reports", str(reports)], env)
            records = summary.read(reports / "summary.json")[1] if (reports / "summary.json").is_file() else []
            if code != 0:
                print(out)
            report(label, wall, peak, code, records, args.jobs)
            if args.write_costs and label.startswith("cold") and records:
                costs = shard.write_costs(reports / "summary.json")
                print(f"   {shard.COSTS_PATH.relative_to(ROOT)}: {len(costs)} families rewritten")
        wall, peak, code, _ = run_gate(["--structural-only", *selection], env)
        print(f"\n== structural-only: {wall:.1f} s wall, exit {code}, peak memory {peak / 2**30:.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
