"""The data behind the bf16 graphs' derived bound: correct bf16 graphs over seeds, error in bf16 noise floors.

    .venv/bin/python bench/bf16_table.py [--seeds 3] [--jobs 2] [--family NAME]... [--json OUT]

For every family, prefill and decode, and seeds 1..N (weights and prompt change with the seed), emits the
built-in emitter's --dtype bf16 graphs and runs them against the fp32 oracle; each compared step's floor is
max |bf16 oracle - fp64 oracle| (the model in bf16, teacher-forced with the same tokens). A case's ratio is the
largest over its steps of the step's error / the step's floor, as precision.BF16_FACTOR judges it. Prints, per
family and graph, the worst and median ratio, the worst error and the smallest floor, and how many cases the
factor would fail: it must be zero everywhere.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from archval.harness.core import fixtures, precision  # noqa: E402


def family_rows(name: str, seeds: int) -> list[dict]:
    import torch
    torch.set_num_threads(1)
    from archval.harness.core.case import run_case
    rows, texts = [], {}
    for seed in range(1, seeds + 1):
        fixture = replace(fixtures.load(name), seed=seed, dtype="bf16")
        for graph in ("prefill", "decode"):
            r = run_case(fixture, graph, texts=texts, xla=False)
            rows.append({"family": name, "graph": graph, "seed": seed, "verdict": r.verdict, "compute": r.compute,
                         "max_abs_diff": r.max_abs_diff, "noise_floor": r.noise and r.noise.noise_floor,
                         "noise_ratio": r.noise and r.noise.noise_ratio, "message": r.message,
                         "floors": r.noise and r.noise.floors,
                         "errors": [s.max_abs_diff for s in r.decode.timeline] if r.decode else [r.max_abs_diff]})
    return rows


def table(rows: list[dict]) -> list[str]:
    out = [f"{'family':<20} {'graph':<8} {'seeds':>5} {'max ratio':>9} {'median':>7} {'max error':>10} "
           f"{'min floor':>10} {'fails':>5}"]
    judged = [r for r in rows if r["noise_ratio"] is not None]
    for key in dict.fromkeys((r["family"], r["graph"]) for r in judged):
        rs = [r for r in judged if (r["family"], r["graph"]) == key]
        ratios = [r["noise_ratio"] for r in rs]
        out.append(f"{key[0]:<20} {key[1]:<8} {len(rs):>5} {max(ratios):>9.2f} {np.median(ratios):>7.2f} "
                   f"{max(r['max_abs_diff'] for r in rs):>10.2e} {min(r['noise_floor'] for r in rs):>10.2e} "
                   f"{sum(r['verdict'] != 'PASS' for r in rs):>5}")
    ratios = [r["noise_ratio"] for r in judged]
    out.append(f"all {len(judged)} judged cases of {len(rows)}: worst ratio {max(ratios):.2f}, 99th percentile "
               f"{np.percentile(ratios, 99):.2f}, median {np.median(ratios):.2f}; factor {precision.BF16_FACTOR:g}: "
               f"{sum(r['verdict'] != 'PASS' for r in rows)} false failures")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--family", action="append")
    ap.add_argument("--json", type=Path, help="also write every row here")
    args = ap.parse_args()
    names = args.family or fixtures.names()
    by_family = {}
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(family_rows, name, args.seeds): name for name in names}
        for done in as_completed(futures):
            by_family[futures[done]] = done.result()
            print(f"{futures[done]}: done ({len(by_family)}/{len(names)})", file=sys.stderr, flush=True)
    rows = [r for name in names for r in by_family[name]]
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print("\n".join(table(rows)))
    for r in rows:
        if r["verdict"] != "PASS":
            print(f"false failure: {r['family']} {r['graph']} seed {r['seed']}: {r['message']}")
    return 0 if all(r["verdict"] == "PASS" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
