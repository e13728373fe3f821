"""The data behind the strict bound: correct graphs over many seeds, error as a multiple of the noise floor.

    .venv/bin/python bench/noise_table.py [--seeds 20] [--jobs 2] [--family NAME]... [--json OUT]
    .venv/bin/python bench/noise_table.py --variants [--seeds 5]

For every family, prefill and decode, and seeds 1..N (weights and prompt both change with the
seed; positions apart from slots and quiet tokens as every case feeds them), runs the real graph
against the fp32 oracle and the fp64 oracle. A case's ratio is judged step by step, as the strict
bound is: max over the compared steps s of max|IREE_s - fp32 oracle_s| / max|fp32 oracle_s - fp64
oracle_s|. Prints, per family and graph, the worst and median ratio, the worst error and the
smallest floor, and how many seeds the strict bound (noise.STRICT_FACTOR) would fail: it must be
zero everywhere.

The ratios are machine-specific: the oracle's fp32 logits change in their last bits with torch's CPU
kernels (ATEN_CPU_CAPABILITY) and the graph's with the code IREE generates for the target CPU, so a
table holds for the machine and the variant it was measured on. --variants measures every variant this
machine can run, each a table of its own named by its variant: torch at each capability the CPU supports
(default, avx2, avx512) with IREE tuned for the host, and torch's own choice with IREE for x86-64-v3 and
for the generic x86-64 CPU; then the worst ratio over all of them and the headroom the factor leaves.
(numpy's SIMD level, NPY_DISABLE_CPU_FEATURES, is no variant here: numpy only draws the weights, bit
for bit the same at every level, and takes exact differences and maxima.)
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from archval.harness.core import fixtures, noise  # noqa: E402

CAPABILITY_ENV = "ATEN_CPU_CAPABILITY"
HOST = "host"


def family_rows(name: str, seeds: int, iree_cpu: str = HOST) -> list[dict]:
    import torch
    torch.set_num_threads(1)
    from archval.harness.backends import iree
    from archval.harness.core.case import run_case
    # The variant's target CPU; compiled modules are cached by their flags, so no host-tuned one is reused.
    iree.TARGET_FLAGS = (*iree.TARGET_FLAGS[:-1], f"--iree-llvmcpu-target-cpu={iree_cpu}")
    variant = f"torch {torch.backends.cpu.get_cpu_capability()}, iree {iree_cpu}"
    rows = []
    for seed in range(1, seeds + 1):
        fixture = replace(fixtures.load(name), seed=seed)
        for graph in ("prefill", "decode"):
            r = run_case(fixture, graph, xla=False)
            rows.append({"variant": variant, "family": name, "graph": graph, "seed": seed, "verdict": r.verdict,
                         "fixed_verdict": r.fixed_verdict, "max_abs_diff": r.max_abs_diff,
                         "noise_floor": r.noise and r.noise.noise_floor, "noise_ratio": r.noise and r.noise.noise_ratio,
                         "message": r.message})
    return rows


def table(rows: list[dict]) -> list[str]:
    out = [f"{'family':<20} {'graph':<8} {'seeds':>5} {'max ratio':>9} {'median':>7} {'max error':>10} "
           f"{'min floor':>10} {'strict fails':>12}"]
    for key in dict.fromkeys((r["family"], r["graph"]) for r in rows):
        rs = [r for r in rows if (r["family"], r["graph"]) == key]
        ratios = [r["noise_ratio"] for r in rs if r["noise_ratio"] is not None]
        fails = sum(r["verdict"] != "PASS" for r in rs)
        out.append(f"{key[0]:<20} {key[1]:<8} {len(rs):>5} {max(ratios):>9.2f} {np.median(ratios):>7.2f} "
                   f"{max(r['max_abs_diff'] for r in rs):>10.2e} {min(r['noise_floor'] for r in rs):>10.2e} "
                   f"{fails:>12}")
    out.append(f"all {len(rows)} cases: {worst_line(rows)}; strict factor {noise.STRICT_FACTOR:g}: "
               f"{sum(r['verdict'] != 'PASS' for r in rows)} false failures")
    return out


def worst_line(rows: list[dict]) -> str:
    worst = max(rows, key=lambda r: r["noise_ratio"])
    ratios = [r["noise_ratio"] for r in rows]
    return (f"worst ratio {worst['noise_ratio']:.2f} ({worst['family']} {worst['graph']}, seed {worst['seed']}), "
            f"99th percentile {np.percentile(ratios, 99):.2f}")


def variants() -> list[tuple[str | None, str]]:
    """(ATEN_CPU_CAPABILITY or None for torch's own choice, IREE's target CPU): every variant this CPU runs."""
    import torch
    native = torch.backends.cpu.get_cpu_capability().lower()
    levels = ["default", "avx2", "avx512"]
    supported = levels[:levels.index(native) + 1] if native in levels else ["default"]
    return [(level, HOST) for level in supported] + [(None, "x86-64-v3"), (None, "generic")]


def measure(names: list[str], seeds: int, jobs: int, iree_cpu: str) -> list[dict]:
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        return [r for rs in pool.map(family_rows, names, [seeds] * len(names), [iree_cpu] * len(names)) for r in rs]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--family", action="append")
    ap.add_argument("--iree-target-cpu", default=HOST, help="IREE's target CPU (default: host)")
    ap.add_argument("--variants", action="store_true", help="every variant this machine runs, a table each")
    ap.add_argument("--json", type=Path, help="also write every row here")
    args = ap.parse_args()
    names = args.family or fixtures.names()
    rows = []
    for capability, iree_cpu in variants() if args.variants else [(os.environ.get(CAPABILITY_ENV), args.iree_target_cpu)]:
        if capability:  # read by torch as the spawned workers import it
            os.environ[CAPABILITY_ENV] = capability
        else:
            os.environ.pop(CAPABILITY_ENV, None)
        measured = measure(names, args.seeds, args.jobs, iree_cpu)
        print(f"== {measured[0]['variant']}" + (f" ({CAPABILITY_ENV}={capability})" if capability else ""))
        print("\n".join(table(measured)), flush=True)
        rows += measured
    if args.variants:
        worst = max(r["noise_ratio"] for r in rows)
        print(f"== every variant, {len(rows)} cases: {worst_line(rows)}; strict factor {noise.STRICT_FACTOR:g} "
              f"leaves {noise.STRICT_FACTOR / worst:.2f}x headroom")
    for r in rows:
        if r["verdict"] != "PASS":
            print(f"false failure: {r['variant']}: {r['family']} {r['graph']} seed {r['seed']}: {r['message']}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0 if all(r["verdict"] == "PASS" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
