"""The gate (the default mode) and the structural-only modes.

The gate signs every selected case's graphs against their goldens in this process while the
workers (modes/workers.py) validate the families numerically, reusing the texts the structural
pass emitted; the published configs' structural cases, which no family needs, are checked in a
thread meanwhile. --structural-only and --update-goldens stop after the structural pass.
"""
from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from archval.harness.checks import structural
from archval.harness.core import fixtures
from archval.harness.core.emitters import DEFAULT_EMITTER, emitter_command
from archval.harness.core.summary import RunInfo
from archval.harness.core.record import PASS
from archval.harness.modes import Outcome, UsageError, claim_reports, shard, workers
from archval.harness.present.console import line
from archval.harness.present.progress import Progress


@dataclass
class Selection:
    names: list[str]  # the fixture families to validate
    cases: list[str] | None  # the structural cases to sign; None: every one (orphan goldens are looked for)


def select(args) -> Selection:
    """The families and structural cases --family and --shard select; UsageError for an unknown or bad fixture."""
    known = fixtures.names()
    chosen = args.family or (shard.assign(known, *args.shard) if args.shard else known)
    unknown = [n for n in chosen if n not in known]
    if unknown:
        raise UsageError(f"--family {unknown[0]}: no such fixture family (known: {', '.join(known)})")
    try:
        for name in chosen:
            fixtures.load(name)
    except fixtures.FixtureError as e:
        raise UsageError(str(e)) from None
    names, cases = list(dict.fromkeys(chosen)), args.family
    if args.shard:
        say_shard(args.shard, names)
        cases = names + [c.name for c in structural.cases()  # published configs' cases: no cost, by name
                         if c.name not in known and shard.by_hash(c.name, args.shard[1]) == args.shard[0]]
    return Selection(names, cases)


def say_shard(part: tuple[int, int], names: list[str]) -> None:
    index, count = part
    if names:
        print(f"== shard {index}/{count}: {len(names)} families, {sum(map(shard.cost, names)):.0f} s cold by "
              f"fixtures/costs.json: {' '.join(names)}", flush=True)
    else:
        print(f"== shard {index}/{count}: no families (more shards than families)", flush=True)


def emitter_of(args) -> tuple[str, ...]:
    return emitter_command(args.emitter)


def structural_pass(cases: list[str] | None, update: bool, jobs: int, orphans: bool,
                    graphs: list[str] | None = None, quiet: bool = False) -> tuple[list[dict], bool]:
    """These cases (None: all) signed and compared with their goldens, of the graph kinds given (None:
    every signed one); orphan goldens looked for when asked (only a run over every case can tell one)."""
    print("== structural signatures" + (" (updating goldens)" if update else ""), flush=True)
    results = structural.run(DEFAULT_EMITTER, update=update, names=cases, jobs=max(1, jobs), graphs=graphs)
    said = said_structural(results, quiet)
    found = structural.orphan_goldens() if orphans else []
    for path in found:
        print(f"golden without a case: fixtures/{path}")
    print(f"structural: {said} as recorded, "
          + (f"{len(found)} orphan goldens" if orphans else "orphan goldens not checked (a part of the cases)"),
          flush=True)
    return results, all(structural.passed(r) for r in results) and not found


def said_structural(results: list[dict], quiet: bool = False) -> str:
    """Prints a line per result (quiet: per result that did not pass); 'passed/all'."""
    for r in results:
        if not (quiet and structural.passed(r)):
            print(structural.format_result(r), flush=True)
    return f"{sum(structural.passed(r) for r in results)}/{len(results)}"


def check_meanwhile(cases: list[str]) -> Future | None:
    """Structural cases no numerical case needs, checked in a thread of this process while the workers run
    the families; a Future of their results, None when there are none."""
    if not cases:
        return None
    thread = ThreadPoolExecutor(max_workers=1)
    future = thread.submit(structural.run, DEFAULT_EMITTER, False, cases, 1)
    thread.shutdown(wait=False)  # its one task still runs to the end
    return future


def structural_only(args, run: RunInfo) -> Outcome:
    """--structural-only, --update-goldens: emit, sign, compare (and rewrite); no compile, no run, no torch."""
    start, chosen = time.perf_counter(), select(args)
    _, ok = structural_pass(chosen.cases, args.update_goldens, args.jobs, orphans=chosen.cases is None,
                            quiet=args.quiet)
    print(f"structural-only: {time.perf_counter() - start:.2f} s")
    return Outcome(ok)


def gate(args, run: RunInfo) -> Outcome:
    """Every selected family: its graphs against the goldens, then every graph kind against the oracle."""
    chosen, emitter = select(args), emitter_of(args)
    names, known = chosen.names, set(fixtures.names())
    claim_reports(args)
    pool = workers.start(min(args.jobs, len(names)), [fixtures.load(n) for n in names]) if names else None
    with workers.running(pool):  # stopped, if the structural pass is interrupted too
        checks, ok, published = [], True, None
        if emitter != DEFAULT_EMITTER or args.dtype:  # the goldens record the built-in emitter's f32 graphs
            print("== structural signatures: skipped (the goldens record the built-in emitter"
                  + ("'s f32 graphs)" if args.dtype else ")"))
        else:
            every = chosen.cases if chosen.cases is not None else [c.name for c in structural.cases()]
            checks, ok = structural_pass([c for c in every if c in known], False, args.jobs,
                                         orphans=chosen.cases is None and not args.graph, graphs=args.graph,
                                         quiet=args.quiet)
            published = check_meanwhile([c for c in every if c not in known])
        print("== numerical: oracle vs IREE, and XLA CPU on the same text", flush=True)
        by_case = {(r["case"], r["graph"]): r for r in checks}
        tasks = [workers.Task(n, emitter, not args.fixed_bound_only, args.reports, run,
                              {g: by_case[n, g] for g in structural.GRAPHS if (n, g) in by_case}, graphs=args.graph,
                              bundle_all=args.bundle == "all", binding=args.binding, dtype=args.dtype) for n in names]
        outcome = validate(pool, tasks, min(args.jobs, len(names)), args.quiet) if pool else Outcome(True, [], set())
    if published:
        print("== structural signatures of the published configs (checked while the families ran)", flush=True)
        results = published.result()
        print(f"structural: {said_structural(results, args.quiet)} as recorded", flush=True)
        ok = ok and all(structural.passed(r) for r in results)
    outcome.ok = outcome.ok and ok
    return outcome


def validate(pool, tasks: list[workers.Task], jobs: int, quiet: bool = False) -> Outcome:
    """The tasks in the pool, a line per record (quiet: per record that did not pass) as each family is done,
    and the progress on stderr; the records in the tasks' order. The pool's workers are stopped if this is
    interrupted (workers.running)."""
    done = {}
    costs = {t.name: shard.cost(t.name) for t in tasks}
    with workers.running(pool), Progress(workers.order(tasks), jobs, costs, quiet=quiet) as progress:
        for family in workers.run_all(pool, tasks):
            done[family.name] = family
            for record in family.records:
                if not (quiet and record.verdict == PASS):
                    progress.say(line(record))
            progress.done(family.name)
    families = [done[t.name] for t in tasks]
    return Outcome(True, [r for f in families for r in f.records], set().union(*(f.pages for f in families)),
                   [p for f in families for p in f.problems])
