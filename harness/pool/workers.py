"""Families validated in worker processes: one family per task, every graph kind it has in one worker
(they share its oracle run and compiled prefill), its page rendered there as soon as it is done.

Tasks start slowest first (pool/shard.py) so that no long one starts last on an idle pool. A
worker that dies (a signal, the OOM killer) breaks the whole pool, so the families it took down
with it run again, each in a process of its own: only the one that dies again is an ERROR.

The workers die with the gate (process_pool): each ignores SIGINT (a terminal's Ctrl-C reaches the
whole foreground group; only the gate answers it, stopping them itself), on SIGTERM kills its
running emitters' and compilers' process groups (core/contained_process.py, core/lifetime.py) and exits, and
watches its parent: when the gate is gone (even by SIGKILL) it does the same within WATCH_S.

A graph's call past its time limit (core/watchdog.py) cannot be interrupted: the worker tells the gate
whose it was (pool/stopped.py) and exits; that family's cases are ERRORs, not run again.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, as_completed, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

from ..backends import iree
from ..checks import structural
from ..checks.finish import finish
from ..core import contained_process, files, fixtures, lifetime, oracle_cache, summary, watchdog
from ..core.host import cores  # noqa: F401 - workers.cores() is what the gate's options ask
from ..core.binding import IDENTITY, graph_texts
from ..core.binding_file import load as load_binding
from ..core.bundle import Bundles
from ..core.case import error_record, run_case
from ..core.emitter_protocol import DEFAULT_EMITTER
from ..core.kinds import KINDS, selected
from ..core.record import PublishedFacts, Record
from ..core.summary import RunInfo
from . import shard, stopped

WATCH_S = 0.5
STOP_GRACE_S = 3.0


@dataclass
class Task:
    """One family to validate, and what the worker needs to do it on its own."""
    name: str
    emitter: tuple[str, ...] = DEFAULT_EMITTER
    strict_bound: bool = True
    reports: Path | None = None  # where its page goes; None: no page
    run: RunInfo | None = None  # the run the page says it is part of
    checks: dict[str, structural.StructuralResult] = field(default_factory=dict)  # the structural pass's, per kind
    directory: str | None = None  # a fixture outside fixtures/ (a --config run's)
    published: PublishedFacts | None = None  # a --config run's published config
    graphs: tuple[str, ...] | None = None  # --graph: only these kinds; None: every kind the family has
    bundle_all: bool = False  # a repro bundle for every case, not only the failing ones (needs reports)
    binding: str | None = None  # --binding FILE: the graphs' names onto the protocol's and the checkpoint's
    graph_files: str | None = None  # --graphs: the family's folder of pre-emitted graphs (no emitter runs)
    dtype: str | None = None  # --dtype: the compute dtype the emitter is asked for

    def fixture(self) -> fixtures.Fixture:
        fixture = fixtures.load(self.name) if self.directory is None else fixtures.load_dir(Path(self.directory))
        return replace(fixture, dtype=self.dtype)


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

    from ..backends import xla
    from ..core import case  # noqa: F401
    from ..present import publish  # noqa: F401
    if cold:
        from ...oracles import hf  # noqa: F401
        xla.client()


def worker_init(parent: int, notes, command: str, then=None, args: tuple = (), share: int = 1) -> None:
    summary.use_command(command)  # the replay lines the gate's own process would write
    iree.use_threads(cores() // share)  # IREE's share of the cores, set before any graph is loaded (read once)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stopped)
    watchdog.on_expiry(partial(stopped.tell, notes, _leave))
    threading.Thread(target=_watch_parent, args=(parent,), name="archval-watch-parent", daemon=True).start()
    if then is not None:
        then(*args)


def _stopped(signum, _frame) -> None:
    _leave(128 + signum)


def _leave(code: int) -> None:
    """Exit now, from any thread: the emitters killed, the scratch directories removed."""
    contained_process.kill_all()
    lifetime.kill_all()
    files.remove_scratch()
    os._exit(code)


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(WATCH_S)
        if os.getppid() != parent:  # reparented: the gate is gone, and nobody will read what this computes
            _leave(1)


def process_pool(jobs: int, initializer=None, initargs: tuple = (), share: int | None = None) -> ProcessPoolExecutor:
    """Spawned workers that die with the gate (worker_init, then initializer(*initargs)), each running IREE on
    the cores divided among the share (default: jobs) workers that run at once."""
    return ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=worker_init, initargs=(os.getpid(), stopped.notes(), summary.command(),
                                                                  initializer, initargs, share or jobs))


@contextmanager
def running(pool: ProcessPoolExecutor | None):
    """with running(pool): the pool shut down as usual at the end; when the block is left by an exception
    (Ctrl-C, SIGTERM, a bug) the workers are stopped now instead of finishing their families."""
    try:
        yield pool
    except BaseException:
        if pool is not None:
            stop(pool)
        raise
    if pool is not None:
        pool.shutdown(wait=True)


def stop(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started; SIGTERM every worker (each kills its emitters), SIGKILL what is left."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if threading.current_thread() is threading.main_thread() \
        else None  # a second Ctrl-C while stopping must not leave workers behind
    try:
        processes = list((getattr(pool, "_processes", None) or {}).values())  # no public API lists them
        manager = getattr(pool, "_executor_manager_thread", None)  # shutdown() forgets it
        pool.shutdown(wait=False, cancel_futures=True)
        for p in processes:
            if p.is_alive():
                p.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for p in processes:
            p.join(timeout=max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join(timeout=STOP_GRACE_S)
        # Python 3.11's exit handler wakes the pool's manager thread through a pipe that thread closes
        # on its way out, unlocked: a race that prints a traceback at exit. Let it finish first.
        if manager is not None:
            manager.join(timeout=STOP_GRACE_S)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def start(jobs: int, selected: list[fixtures.Fixture]) -> ProcessPoolExecutor:
    """Spawned now, so that their imports overlap the structural pass; they die with the gate: use the
    pool in `with running(pool)`."""
    pool = process_pool(jobs)
    cold = not all(oracle_cache.cached(f) for f in selected)
    for _ in range(jobs):
        pool.submit(_warm_up, cold)
    return pool


def validate(task: Task) -> Done:
    """Every graph kind of the family, a failing prefill's localisation, then its page. A localisation that
    raises, or a page that cannot be written, makes the records ERRORs at stage 'localisation' or 'report'
    (the FAIL or PASS kept in the message): a run whose diagnosis or report is missing is not a PASS."""
    stopped.validating(task.name)
    fixture = task.fixture()
    # each graph kind emitted once: by the structural pass, or by the first case that needs it
    texts = {g: c.text for g, c in task.checks.items() if c.text}
    binding = load_binding(task.binding) if task.binding else IDENTITY
    if task.graph_files:
        texts = graph_texts(Path(task.graph_files), binding, KINDS)
    records, bundles = [], task.reports and Bundles(task.reports, task.bundle_all)
    for kind in KINDS.values():
        if not selected(kind, task.graphs):
            continue
        try:
            wanted = kind.every_family or kind.applies(fixture)
        except Exception as e:  # noqa: BLE001 - not knowing whether a check applies is an ERROR, never a skip
            records.append(error_record(fixture, kind.name, "oracle", f"could not tell whether {fixture.name} has "
                                        f"a {kind.name} graph: {type(e).__name__}: {e}", task.emitter))
            continue
        if wanted:
            records.append(run_case(fixture, kind.name, texts=texts, emitter=task.emitter,
                                    strict_bound=task.strict_bound, bundles=bundles or None, binding=binding))
    from ..present.publish import pages
    written, problems = finish(records, fixture, task.emitter, binding, goldens=task.checks, published=task.published,
                               bundles=bundles or None,
                               pages=partial(pages, run=task.run, directory=task.reports) if task.reports else None)
    return Done(task.name, records, written, problems)


def order(tasks: list[Task]) -> list[str]:
    """The order the pool starts the families in (and so which of them run at a time): slowest first."""
    return shard.slowest_first(t.name for t in tasks)


def run_all(pool: ProcessPoolExecutor, tasks: list[Task]) -> Iterator[Done]:
    """Each family as it is done, slowest started first."""
    by_name = {t.name: t for t in tasks}
    stopped.forget()
    futures = {pool.submit(validate, by_name[n]): n for n in order(tasks)}
    broken = []
    for future in as_completed(futures):
        try:
            yield future.result()
        except BrokenProcessPool:
            broken.append(futures[future])
        except Exception as e:  # noqa: BLE001 - raised outside every case's stages: that family's ERROR only
            yield _errored(by_name[futures[future]], "worker", f"unexpected {type(e).__name__}: {e}",
                           f"its worker raised {type(e).__name__}")
    for name in [n for n in broken if stopped.told(n)]:
        broken.remove(name)
        yield _timed_out(by_name[name])
    if broken:
        print(f"a worker process died: running {', '.join(sorted(broken))} again, one process each", flush=True)
        yield from _validate_alone([by_name[n] for n in broken], limit=cores())


def _timed_out(task: Task) -> Done:
    """A family whose worker was stopped at a call's time limit: not run again (it would only time out again)."""
    expired = stopped.told(task.name)
    return _errored(task, expired.stage, expired.message, "its worker was stopped at the time limit of a call")


def _errored(task: Task, stage: str, message: str, why: str) -> Done:
    """A family whose worker could not give its records: each of its cases an ERROR, no page."""
    return Done(task.name, [error_record(task.fixture(), kind.name, stage, message, task.emitter)
                            for kind in KINDS.values()
                            if kind.every_family and selected(kind, task.graphs)],
                set(), [f"{task.name}.html not written: {why}"])


def _validate_alone(tasks: list[Task], limit: int) -> Iterator[Done]:
    """Each family in a worker process of its own, at most limit at a time, as they finish; if that process
    dies too, the family's cases are ERRORs. Interrupted, every one of these workers is stopped."""
    pending, active = list(tasks), {}
    try:
        while pending or active:
            while pending and len(active) < limit:
                task, pool = pending.pop(0), process_pool(1, share=limit)
                active[pool.submit(validate, task)] = (task, pool)
            done, _ = wait(active, return_when=FIRST_COMPLETED)
            for future in done:
                task, pool = active.pop(future)
                try:
                    outcome = future.result()
                except BrokenProcessPool as e:
                    outcome = _timed_out(task) if stopped.told(task.name) else _errored(
                        task, "worker", f"the worker process died (run alone too): {e}", "its worker died")
                except Exception as e:  # noqa: BLE001 - raised outside every case's stages: that family's ERROR
                    outcome = _errored(task, "worker", f"unexpected {type(e).__name__}: {e}",
                                       f"its worker raised {type(e).__name__}")
                pool.shutdown(wait=True)
                yield outcome
    except BaseException:
        for _, pool in active.values():
            stop(pool)
        raise
