"""The gate: validate every selected family, one line each, then RESULT; exit 0 pass, 1 fail, 2 bad input."""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shlex
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from . import fixtures, structural
from .compare import PASS
from .validate import DEFAULT_EMITTER, new_record

REPORTS_DIR = Path(__file__).resolve().parent.parent / "reports"
GRAPHS = structural.GRAPHS


def _validate_family(name: str, emitter: tuple[str, ...], texts: dict[str, str]) -> list[dict]:
    """Every graph kind of one family in one worker: they share its oracle run and compiled prefill;
    a family with a routed MLP adds its block-level check."""
    from . import blocks
    from .validate import run_case
    fixture = fixtures.load(name)
    records = [run_case(fixture, graph, texts=texts, emitter=emitter) for graph in GRAPHS]
    if blocks.applies(fixture):
        records.append(blocks.run_moe_block(fixture, emitter=emitter))
    return records


def format_line(r: dict) -> str:
    diff = "-" if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.3e}"
    if r["graph"] == "moe_block":
        agree = (f"layer {r['layer']}, {r['expert_sets']} expert sets, router margin {r['router_margin']:.1e}"
                 if "layer" in r else "-")
    elif r["graph"] == "decode" and r["argmax_match"] is not None:
        tokens = r["steps"] + 1
        agree = (f"greedy {tokens}/{tokens} tokens" if r["first_divergence"] is None
                 else f"greedy {r['divergence']} at step {r['first_divergence']}")
    else:
        agree = {None: "-", True: "argmax match", False: "argmax differs"}[r["argmax_match"]]
        if r.get("near_tie_flip"):
            agree = "argmax near-tie flip"
    metric = "max|Δ|    " if r["graph"] == "moe_block" else "max|Δlogit|"
    line = (f"{r['family']:<20} {r['graph']:<9} {metric} {diff:>9}  bound {r['bound']:.0e}  "
            f"{agree:<30} {r['verdict']}")
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


def run_all(names: list[str], jobs: int, emitter: tuple[str, ...], texts: dict) -> list[dict]:
    """Numerical validation in worker processes, one family per task; texts already emitted by the
    structural pass are reused. A worker that dies (signal, OOM) breaks the whole pool, so the families
    it took down with it are run again, each in a process of its own: only the one that dies again is
    an ERROR."""
    by_family: dict[str, list[dict]] = {}
    family_texts = {n: {g: texts[(n, g)] for g in GRAPHS if (n, g) in texts} for n in names}
    broken = []
    with ProcessPoolExecutor(max_workers=jobs, mp_context=_SPAWN) as pool:
        futures = {pool.submit(_validate_family, n, emitter, family_texts[n]): n for n in names}
        for future in as_completed(futures):
            name = futures[future]
            try:
                by_family[name] = future.result()
            except BrokenProcessPool:
                broken.append(name)
                continue
            for record in by_family[name]:
                print(format_line(record), flush=True)
    if broken:
        print(f"a worker process died: running {', '.join(sorted(broken))} again, one process each", flush=True)
        with ThreadPoolExecutor(max_workers=jobs) as threads:
            futures = {threads.submit(_validate_isolated, n, emitter, family_texts[n]): n for n in broken}
            for future in as_completed(futures):
                by_family[futures[future]] = future.result()
                for record in by_family[futures[future]]:
                    print(format_line(record), flush=True)
    return [record for name in names for record in by_family[name]]


_SPAWN = multiprocessing.get_context("spawn")


def _validate_isolated(name: str, emitter: tuple[str, ...], texts: dict) -> list[dict]:
    """One family in a worker process of its own; if that process dies, its cases are ERRORs."""
    with ProcessPoolExecutor(max_workers=1, mp_context=_SPAWN) as pool:
        try:
            return pool.submit(_validate_family, name, emitter, texts).result()
        except BrokenProcessPool as e:
            fixture = fixtures.load(name)
            return [{**new_record(fixture, graph, fixture.bound), "message": f"the worker process died (run alone too): {e}"}
                    for graph in GRAPHS]


def structural_pass(family: list[str] | None, update: bool, jobs: int) -> tuple[list[dict], bool]:
    """Every case (or the --family ones) signed and compared with its golden; orphans reported."""
    print("== structural signatures" + (" (updating goldens)" if update else ""), flush=True)
    results = structural.run(DEFAULT_EMITTER, update=update, names=family, jobs=max(1, jobs))
    for r in results:
        print(structural.format_result(r), flush=True)
    orphans = [] if family else structural.orphan_goldens()
    for path in orphans:
        print(f"golden without a case: fixtures/{path}")
    ok = all(structural.passed(r) for r in results) and not orphans
    print(f"structural: {sum(structural.passed(r) for r in results)}/{len(results)} as recorded, "
          f"{len(orphans)} orphan goldens", flush=True)
    return results, ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="validate_arch.sh", description=__doc__)
    ap.add_argument("--family", action="append", metavar="NAME",
                    help="validate only this fixture (repeatable); default: all")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes")
    ap.add_argument("--emitter", help="emitter command (default: the built-in `python -m emitter`)")
    ap.add_argument("--reports", type=Path, default=REPORTS_DIR, help="where summary.json goes")
    ap.add_argument("--list", action="store_true", help="list the fixtures and exit")
    ap.add_argument("--structural-only", action="store_true",
                    help="only emit and check signatures against goldens (no compile, no run, no torch)")
    ap.add_argument("--update-goldens", action="store_true",
                    help="rewrite the goldens that differ from what the emitter writes now, and say which")
    args = ap.parse_args(argv)

    if args.update_goldens and os.environ.get("PYTEST_XDIST_WORKER"):
        print("error: --update-goldens refuses to run inside a parallel pytest worker "
              f"({os.environ['PYTEST_XDIST_WORKER']}): concurrent writers would lose goldens", file=sys.stderr)
        return 2
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
    emitter = tuple(shlex.split(args.emitter)) if args.emitter else DEFAULT_EMITTER
    names = list(dict.fromkeys(selected))

    start = time.perf_counter()
    structural_results, structural_ok = [], True
    if emitter == DEFAULT_EMITTER:  # goldens record the built-in emitter; another one has none
        structural_results, structural_ok = structural_pass(args.family, args.update_goldens, args.jobs)
    else:
        print("== structural signatures: skipped (the goldens record the built-in emitter)")
    if args.structural_only or args.update_goldens:
        print(f"structural-only: {time.perf_counter() - start:.2f} s")
        print(f"RESULT: {'PASS' if structural_ok else 'FAIL'}")
        return 0 if structural_ok else 1

    print("== numerical: oracle vs IREE", flush=True)
    texts = {(r["case"], r["graph"]): r["text"] for r in structural_results if r["text"]}
    records = run_all(names, min(args.jobs, len(names)), emitter, texts)
    structural_by_case = {(r["case"], r["graph"]): r for r in structural_results}
    for record in records:
        s_result = structural_by_case.get((record["family"], record["graph"]))
        record["structural"] = s_result and {"status": s_result["status"], "detail": s_result["detail"]}
    write_json_atomic(args.reports / "summary.json", records)
    numeric_ok = all(r["verdict"] == PASS for r in records)
    counts = {v: sum(r["verdict"] == v for r in records) for v in ("PASS", "FAIL", "ERROR")}
    print(f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['ERROR']} errors "
          f"-> {args.reports / 'summary.json'} ({time.perf_counter() - start:.1f} s)")
    passed = numeric_ok and structural_ok
    print(f"RESULT: {'PASS' if passed else 'FAIL'}")
    return 0 if passed else 1
