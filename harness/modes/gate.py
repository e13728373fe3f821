"""The gate (the default mode) and the structural-only modes.

The gate signs every selected case's graphs against their goldens in this process while the
workers (pool/workers.py) validate the families numerically, reusing the texts the structural
pass emitted; the published configs' structural cases, which no family needs, are checked in a
thread meanwhile. --structural-only and --update-goldens stop after the structural pass.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..checks import published, structural
from ..core import fixtures
from ..core.case import error_record
from ..core.kinds import KINDS, selected
from ..core.emitter_protocol import DEFAULT_EMITTER
from ..core.summary import RunInfo
from ..core.record import PASS
from . import Options, Outcome, UsageError, synthesised
from ..pool import shard, workers
from ..present.console import line
from ..present.progress import Progress


@dataclass
class Selection:
    names: list[str]  # the fixture families to validate
    cases: list[str] | None  # the structural cases to sign; None: every one (orphan goldens are looked for)
    synthesised: dict[str, str] = field(default_factory=dict)  # family -> its synthesised fixture's directory


def select(options: Options, synthesise: bool = False) -> Selection:
    """The families and structural cases --family and --shard select; UsageError for an unknown or bad fixture.
    synthesise: a model type with no committed fixture gets one (modes/synthesised.py); else only the committed
    fixtures (a structural or mutation run: a synthesised fixture has no golden, no mutant)."""
    known = fixtures.names()
    chosen = options.family or (shard.assign(known, *options.shard) if options.shard else known)
    unknown = [n for n in chosen if n not in known and not (synthesise and synthesised.synthesisable(n))]
    if unknown:
        raise UsageError(f"--family {unknown[0]}: no such fixture family (known: {', '.join(known)})"
                         + ("; a transformers model type without one is synthesised for a numerical run"
                            if not synthesise and synthesised.synthesisable(unknown[0]) else ""))
    made = {}
    for name in (n for n in chosen if n not in known):
        try:
            made[name] = str(synthesised.prepare(name).config_path.parent)
        except synthesised.SynthesisRefused as e:
            raise UsageError(f"--family {e}") from None
        print(f"{name:<28} synthesised: {fixtures.load_dir(Path(made[name])).purpose}", flush=True)
    try:
        for name in chosen:
            if name in known:
                fixtures.load(name)
    except fixtures.FixtureError as e:
        raise UsageError(str(e)) from None
    names = list(dict.fromkeys(chosen))
    cases = [n for n in options.family if n in known] if options.family else None
    if options.shard:
        say_shard(options.shard, names)
        cases = names + [c.name for c in structural.cases()  # published configs' cases: no cost, by name
                         if c.name not in known and shard.by_hash(c.name, options.shard[1]) == options.shard[0]]
    return Selection(names, cases, made)


def say_shard(part: tuple[int, int], names: list[str]) -> None:
    index, count = part
    if names:
        print(f"== shard {index}/{count}: {len(names)} families, {sum(map(shard.cost, names)):.0f} s cold by "
              f"fixtures/costs.json: {' '.join(names)}", flush=True)
    else:
        print(f"== shard {index}/{count}: no families (more shards than families)", flush=True)


def structural_pass(cases: list[str] | None, update: bool, jobs: int, orphans: bool, graphs: list[str] | None = None,
                    quiet: bool = False) -> tuple[list[structural.StructuralResult], bool]:
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
    return results, all(r.passed for r in results) and not found


def said_structural(results: list[structural.StructuralResult], quiet: bool = False) -> str:
    """Prints a line per result (quiet: per result that did not pass); 'passed/all'."""
    for r in results:
        if not (quiet and r.passed):
            print(r.line(), flush=True)
    return f"{sum(r.passed for r in results)}/{len(results)}"


def check_meanwhile(cases: list[str]) -> Future | None:
    """Structural cases no numerical case needs, checked in a thread of this process while the workers run
    the families; a Future of their results, None when there are none."""
    if not cases:
        return None
    thread = ThreadPoolExecutor(max_workers=1)
    future = thread.submit(structural.run, DEFAULT_EMITTER, False, cases, 1)
    thread.shutdown(wait=False)  # its one task still runs to the end
    return future


def structural_only(options: Options, run: RunInfo) -> Outcome:
    """--structural-only, --update-goldens: emit, sign, compare (and rewrite); no compile, no run, no torch."""
    start, chosen = time.perf_counter(), select(options)
    _, ok = structural_pass(chosen.cases, options.update_goldens, options.jobs, orphans=chosen.cases is None,
                            quiet=options.quiet)
    print(f"structural-only: {time.perf_counter() - start:.2f} s")
    return Outcome(ok)


def gate(options: Options, run: RunInfo) -> Outcome:
    """Every selected family: its graphs against the goldens, then every graph kind against the oracle."""
    chosen, emitter = select(options, synthesise=True), options.emitter
    names, known = chosen.names, set(fixtures.names())
    load = lambda n: fixtures.load_dir(Path(chosen.synthesised[n])) if n in chosen.synthesised else fixtures.load(n)
    options.claim()
    pool = workers.start(min(options.jobs, len(names)), [load(n) for n in names]) if names else None
    with workers.running(pool):  # stopped, if the structural pass is interrupted too
        checks, ok, published = [], True, None
        if emitter != DEFAULT_EMITTER or options.dtype:  # the goldens record the built-in emitter's f32 graphs
            print("== structural signatures: skipped (the goldens record the built-in emitter"
                  + ("'s f32 graphs)" if options.dtype else ")"))
        else:
            every = chosen.cases if chosen.cases is not None else [c.name for c in structural.cases()]
            checks, ok = structural_pass([c for c in every if c in known], False, options.jobs,
                                         orphans=chosen.cases is None and not options.graph, graphs=options.graph,
                                         quiet=options.quiet)
            published = check_meanwhile([c for c in every if c not in known])
        print("== numerical: oracle vs IREE, and XLA CPU on the same text", flush=True)
        by_case = {(r.case, r.graph): r for r in checks}
        tasks = [workers.Task(n, emitter, not options.fixed_bound_only, options.reports, run,
                              {g: by_case[n, g] for g in structural.GRAPHS if (n, g) in by_case}, graphs=options.graph,
                              bundle_all=options.bundle_all, binding=options.binding,
                              directory=chosen.synthesised.get(n), dtype=options.dtype) for n in names]
        outcome = (validate(pool, tasks, min(options.jobs, len(names)), options.quiet) if pool
                   else Outcome(True, [], set()))
    if published:
        print("== structural signatures of the published configs (checked while the families ran)", flush=True)
        results = published.result()
        print(f"structural: {said_structural(results, options.quiet)} as recorded", flush=True)
        ok = ok and all(r.passed for r in results)
    outcome.ok = outcome.ok and ok
    return outcome


def validate_prepared(prepared: list[published.Published], options: Options, run: RunInfo, emitter: tuple[str, ...],
                      task: Callable[[published.Published], dict]) -> Outcome:
    """Configs prepared by checks/published.py, in the workers (task: each one's own Task fields); each one that
    could not be prepared an ERROR per graph kind the run meant to validate."""
    runnable = [p for p in prepared if p.error is None]
    tasks = [workers.Task(p.fixture.name, emitter, not options.fixed_bound_only, options.reports, run,
                          directory=str(p.fixture.config_path.parent), graphs=options.graph,
                          bundle_all=options.bundle_all, binding=options.binding, dtype=options.dtype, **task(p))
             for p in runnable]
    jobs = max(1, min(options.jobs, len(tasks)))
    outcome = (validate(workers.start(jobs, [p.fixture for p in runnable]), tasks, jobs, options.quiet)
               if tasks else Outcome(True, [], set()))
    for p in (p for p in prepared if p.error):
        for kind in (k for k in KINDS.values() if k.every_family and selected(k, options.graph)):
            outcome.records.append(error_record(p.fixture, kind.name, "inputs", p.error, emitter,
                                                task(p).get("published")))
            print(line(outcome.records[-1]), flush=True)
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
