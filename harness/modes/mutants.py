"""--mutants: the mutation self-test instead of the gate (checks/mutation.py): every applicable mutant of the
selected families must FAIL, by at least mutation.WEAK_MARGIN times its bound; a line per mutant as its family
finishes, then the kill rates, the smallest detection margins, and
mutants.json (the records, with their mutant part) under --reports."""
from __future__ import annotations

import time

from harness.checks import mutation
from harness.core import summary
from harness.core.summary import RunInfo
from harness.modes import Outcome
from harness.modes.gate import select
from harness.present.console import kill_summary, mutant_line


def run(args, info: RunInfo) -> Outcome:
    start, names = time.perf_counter(), select(args).names
    bound = "the strict and the fixed bound" if not args.fixed_bound_only else "the fixed bound alone"
    print(f"== mutation self-test: every applicable mutant must FAIL ({bound})", flush=True)
    records = []
    for family in mutation.run_all(names, max(1, min(args.jobs, len(names))), not args.fixed_bound_only):
        records += family
        for record in family:
            print(mutant_line(record), flush=True)
    path = args.reports / "mutants.json"
    summary.write(path, info, records)
    lines, ok = kill_summary(records, mutation.WEAK_MARGIN)
    print("\n".join(lines))
    print(f"-> {path} ({time.perf_counter() - start:.1f} s)")
    return Outcome(ok)
