"""The gate: validate every selected family, one line each, then RESULT; exit 0 pass, 1 fail, 2 bad input."""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shlex
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from . import fixtures
from .compare import ERROR, PASS

REPORTS_DIR = Path(__file__).resolve().parent.parent / "reports"
GRAPHS = ("prefill",)


def _worker_init(threads: int) -> None:
    import torch
    torch.set_num_threads(threads)


def _validate(name: str, graph: str, emitter: tuple[str, ...] | None) -> dict:
    from .validate import DEFAULT_EMITTER, run_case
    return run_case(fixtures.load(name), graph, emitter=emitter or DEFAULT_EMITTER)


def format_line(r: dict) -> str:
    diff = "-" if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.3e}"
    agree = {None: "-", True: "match", False: "differs"}[r["argmax_match"]]
    if r.get("near_tie_flip"):
        agree = "near-tie flip"
    line = (f"{r['family']:<20} {r['graph']:<8} max|Δlogit| {diff:>9}  bound {r['bound']:.0e}  "
            f"argmax {agree:<13} {r['verdict']}")
    if r["verdict"] != PASS or r["message"]:
        line += f"\n    {r['message']}\n    replay: {r['replay']}"
    return line


def write_json_atomic(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(value, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def run_all(names: list[str], jobs: int, emitter: tuple[str, ...] | None) -> list[dict]:
    cases = [(n, g) for n in names for g in GRAPHS]
    records: dict[tuple[str, str], dict] = {}
    threads = max(1, (os.cpu_count() or 1) // jobs)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_init,
                             initargs=(threads,)) as pool:
        futures = {pool.submit(_validate, n, g, emitter): (n, g) for n, g in cases}
        for future in as_completed(futures):
            name, graph = futures[future]
            try:
                record = future.result()
            except BrokenProcessPool as e:  # a worker died (signal, OOM): that case is an ERROR
                record = {"family": name, "graph": graph, "verdict": ERROR, "max_abs_diff": None,
                          "argmax_match": None, "bound": fixtures.load(name).bound,
                          "message": f"the worker process died: {e}", "replay": f"./validate_arch.sh --family {name}"}
            records[(name, graph)] = record
            print(format_line(record), flush=True)
    return [records[c] for c in cases]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="validate_arch.sh", description=__doc__)
    ap.add_argument("--family", action="append", metavar="NAME",
                    help="validate only this fixture (repeatable); default: all")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes")
    ap.add_argument("--emitter", help="emitter command (default: the built-in `python -m emitter`)")
    ap.add_argument("--reports", type=Path, default=REPORTS_DIR, help="where summary.json goes")
    ap.add_argument("--list", action="store_true", help="list the fixtures and exit")
    args = ap.parse_args(argv)

    known = fixtures.names()
    if args.list:
        print("\n".join(known))
        return 0
    selected = args.family or known
    unknown = [n for n in selected if n not in known]
    if unknown:
        print(f"error: --family {unknown[0]}: no such fixture under fixtures/ (known: {', '.join(known)})",
              file=sys.stderr)
        return 2
    if args.jobs < 1:
        print(f"error: --jobs {args.jobs}: must be at least 1", file=sys.stderr)
        return 2
    try:
        for name in selected:
            fixtures.load(name)
    except fixtures.FixtureError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    emitter = tuple(shlex.split(args.emitter)) if args.emitter else None

    records = run_all(list(dict.fromkeys(selected)), min(args.jobs, len(selected)), emitter)
    write_json_atomic(args.reports / "summary.json", records)
    passed = all(r["verdict"] == PASS for r in records)
    counts = {v: sum(r["verdict"] == v for r in records) for v in ("PASS", "FAIL", "ERROR")}
    print(f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['ERROR']} errors "
          f"-> {args.reports / 'summary.json'}")
    print(f"RESULT: {'PASS' if passed else 'FAIL'}")
    return 0 if passed else 1
