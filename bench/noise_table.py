"""The data behind the strict bound: correct graphs over many seeds, error as a multiple of the noise floor.

    .venv/bin/python bench/noise_table.py [--seeds 20] [--jobs 2] [--family NAME]... [--json OUT]

For every family, prefill and decode, and seeds 1..N (weights and prompt both change with the
seed; positions apart from slots and quiet tokens as every case feeds them), runs the real graph
against the fp32 oracle and the fp64 oracle. A case's ratio is judged step by step, as the strict
bound is: max over the compared steps s of max|IREE_s - fp32 oracle_s| / max|fp32 oracle_s - fp64
oracle_s|. Prints, per family and graph, the worst and median ratio, the worst error and the
smallest floor, and how many seeds the strict bound (noise.STRICT_FACTOR) would fail: it must be
zero everywhere.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from archval.harness.core import fixtures, noise  # noqa: E402


def family_rows(name: str, seeds: int) -> list[dict]:
    import torch
    torch.set_num_threads(1)
    from archval.harness.core.case import run_case
    rows = []
    for seed in range(1, seeds + 1):
        fixture = replace(fixtures.load(name), seed=seed)
        for graph in ("prefill", "decode"):
            r = run_case(fixture, graph, xla=False)
            rows.append({"family": name, "graph": graph, "seed": seed, "verdict": r.verdict,
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
    ratios = [r["noise_ratio"] for r in rows]
    out.append(f"all {len(rows)} cases: worst ratio {max(ratios):.2f}, 99th percentile "
               f"{np.percentile(ratios, 99):.2f}; strict factor {noise.STRICT_FACTOR:g}: "
               f"{sum(r['verdict'] != 'PASS' for r in rows)} false failures")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--family", action="append")
    ap.add_argument("--json", type=Path, help="also write every row here")
    args = ap.parse_args()
    names = args.family or fixtures.names()
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        rows = [r for rs in pool.map(family_rows, names, [args.seeds] * len(names)) for r in rs]
    print("\n".join(table(rows)))
    for r in rows:
        if r["verdict"] != "PASS":
            print(f"false failure: {r['family']} {r['graph']} seed {r['seed']}: {r['message']}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0 if all(r["verdict"] == "PASS" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
