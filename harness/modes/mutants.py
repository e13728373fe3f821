"""--mutants: the mutation self-test instead of the gate (checks/self_test.py): every applicable mutant of the
selected families must FAIL, by at least self_test.WEAK_MARGIN times its bound; a line per mutant as it is done
(with the progress on stderr), then the kill rates, the smallest detection margins, and mutants.json (the
records, with their mutant part, in family order) under --reports."""
from __future__ import annotations

import time

from ..checks import self_test
from ..core import summary
from ..core.summary import RunInfo
from . import Options, Outcome
from ..pool import workers
from .gate import select
from ..present.console import kill_summary, mutant_line
from ..present.progress import Progress


def run(options: Options, info: RunInfo) -> Outcome:
    start, names = time.perf_counter(), select(options).names
    options.claim()
    bound = "the strict and the fixed bound" if not options.fixed_bound_only else "the fixed bound alone"
    print(f"== mutation self-test: every applicable mutant must FAIL ({bound})", flush=True)
    work = self_test.order(names)
    jobs = max(1, min(options.jobs, len(work)))
    done = {}
    pool = workers.process_pool(jobs)
    with workers.running(pool), Progress([f"{n}:{m}" for n, m in work], jobs, unit="mutants",
                                          quiet=options.quiet) as progress:  # the workers die with the gate
        for family, mutant, record in self_test.run_all(pool, work, not options.fixed_bound_only):
            done[family, mutant] = record
            if not (options.quiet and record.mutant.killed):
                progress.say(mutant_line(record))
            progress.done(f"{family}:{mutant}")
    records = [done[family, mutant] for name in names for family, mutant in work if family == name]
    lines, ok = kill_summary(records, self_test.WEAK_MARGIN)
    print("\n".join(lines))
    path = options.reports / "mutants.json"
    try:
        summary.write(path, info, records)
        print(f"-> {path} ({time.perf_counter() - start:.1f} s)")
    except OSError as e:  # the evidence of the kill rate is missing
        print(f"reports: mutants.json not written: {e.strerror or e}: the run cannot pass", flush=True)
        ok = False
    return Outcome(ok)
