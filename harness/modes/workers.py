"""Families validated in worker processes: one family per task, every graph kind it has in one worker
(they share its oracle run and compiled prefill), its page rendered there as soon as it is done.

Tasks start slowest first (modes/shard.py) so that no long one starts last on an idle pool. A
worker that dies (a signal, the OOM killer) breaks the whole pool, so the families it took down
with it run again, each in a process of its own: only the one that dies again is an ERROR.
"""
from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from harness.checks import structural
from harness.core import fixtures, oracle_cache
from harness.core.bundle import Bundles
from harness.core.case import error_record, run_case
from harness.core.emitters import DEFAULT_EMITTER
from harness.core.kinds import KINDS
from harness.core.record import PublishedFacts, Record
from harness.core.summary import RunInfo
from harness.modes import shard


@dataclass
class Task:
    """One family to validate, and what the worker needs to do it on its own."""
    name: str
    emitter: tuple[str, ...] = DEFAULT_EMITTER
    strict_bound: bool = True
    reports: Path | None = None  # where its page goes; None: no page
    run: RunInfo | None = None  # the run the page says it is part of
    checks: dict[str, dict] = field(default_factory=dict)  # the structural pass's result per graph kind
    directory: str | None = None  # a fixture outside fixtures/ (a --config run's)
    published: PublishedFacts | None = None  # a --config run's published config
    graphs: list[str] | None = None  # --graph: only these kinds; None: every kind the family has
    bundle_all: bool = False  # a repro bundle for every case, not only the failing ones (needs reports)

    def fixture(self) -> fixtures.Fixture:
        return fixtures.load(self.name) if self.directory is None else fixtures.load_dir(Path(self.directory))


@dataclass
class Done:
    """A validated family: its records in graph-kind order, the page written, the problems met."""
    name: str
    records: list[Record]
    pages: set[str]
    problems: list[str]


def _warm_up(cold: bool) -> None:
    """Runs in each new worker while the main process does the structural pass: the imports that every
    family needs and, when the cache lacks the oracle's outputs (and so XLA's, keyed by the oracle's
    weights), torch and XLA's client, so that the first family does not pay for them (nor carry them in
    its measured cost)."""
    import iree.runtime  # noqa: F401

    from harness.backends import xla
    from harness.core import case  # noqa: F401
    from harness.present import publish  # noqa: F401
    if cold:
        import oracles.hf  # noqa: F401
        xla.client()


def start(jobs: int, selected: list[fixtures.Fixture]) -> ProcessPoolExecutor:
    """Spawned now, so that their imports overlap the structural pass."""
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))
    cold = not all(oracle_cache.cached(f) for f in selected)
    for _ in range(jobs):
        pool.submit(_warm_up, cold)
    return pool


def validate(task: Task) -> Done:
    """Every graph kind of the family, then its page."""
    fixture = task.fixture()
    texts = {g: c["text"] for g, c in task.checks.items() if c["text"]}  # emitted once, by the structural pass
    records, bundles = [], task.reports and Bundles(task.reports, task.bundle_all)
    for kind in KINDS.values():
        if task.graphs and kind.name not in task.graphs:
            continue
        try:
            wanted = kind.every_family or kind.applies(fixture)
        except Exception as e:  # noqa: BLE001 - not knowing whether a check applies is an ERROR, never a skip
            records.append(error_record(fixture, kind.name, "oracle", f"could not tell whether {fixture.name} has "
                                        f"a {kind.name} graph: {type(e).__name__}: {e}", task.emitter))
            continue
        if wanted:
            records.append(run_case(fixture, kind.name, texts=texts, emitter=task.emitter,
                                    strict_bound=task.strict_bound, bundles=bundles or None))
    for record in records:
        record.published = task.published
        check = task.checks.get(record.graph)
        if check:
            record.structural = structural.brief(check)
            if "emit_s" in check:
                record.timings.setdefault("emit", check["emit_s"])
        if task.emitter == DEFAULT_EMITTER:
            from harness.checks import builtin
            builtin.annotate(record, fixture)
    if task.reports is None:
        return Done(task.name, records, set(), [])
    from harness.present.publish import pages
    written, problems = pages(records, task.run, task.reports)
    return Done(task.name, records, written, bundles.problems + problems)


def order(tasks: list[Task]) -> list[str]:
    """The order the pool starts the families in (and so which of them run at a time): slowest first."""
    return shard.slowest_first(t.name for t in tasks)


def run_all(pool: ProcessPoolExecutor, tasks: list[Task]) -> Iterator[Done]:
    """Each family as it is done, slowest started first."""
    by_name = {t.name: t for t in tasks}
    futures = {pool.submit(validate, by_name[n]): n for n in order(tasks)}
    broken = []
    for future in as_completed(futures):
        try:
            yield future.result()
        except BrokenProcessPool:
            broken.append(futures[future])
    if broken:
        print(f"a worker process died: running {', '.join(sorted(broken))} again, one process each", flush=True)
        with ThreadPoolExecutor(max_workers=min(len(broken), os.cpu_count() or 1)) as threads:
            again = [threads.submit(_validate_alone, by_name[n]) for n in broken]
            for future in as_completed(again):
                yield future.result()


def _validate_alone(task: Task) -> Done:
    """One family in a worker process of its own; if that process dies too, its cases are ERRORs."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            return pool.submit(validate, task).result()
        except BrokenProcessPool as e:
            fixture = task.fixture()
            return Done(task.name, [error_record(fixture, kind.name, "worker",
                                                 f"the worker process died (run alone too): {e}", task.emitter)
                                    for kind in KINDS.values()
                                    if kind.every_family and (not task.graphs or kind.name in task.graphs)],
                        set(), [f"{task.name}.html not written: its worker died"])
