"""The gate: validate every selected family, one line each, then RESULT; exit 0 pass, 1 fail, 2 bad input.

The command line is a table of modes (MODES): the first whose option is given runs, after the
options it cannot be combined with (CLASHES) are refused. A mode that writes under --reports claims
it once its input is good (modes.claim_reports: created, writable, locked against a concurrent run
until the reports are written, core/files.py). A mode returns its records and whether everything else it checks passed; the records are published here
and RESULT is printed here, once: FAIL when a report could not be written. Ctrl-C (or SIGTERM)
stops the workers and their emitters and says one line: exit 130 (143).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

from . import ROOT
from .core import contained_process, fixtures, summary, watchdog
from .core.binding_file import load as load_binding
from .core.emitter_protocol import emitter_command
from .core.files import ReportsError, claimed
from .core.kinds import KINDS
from .core.record import PASS, UNSUPPORTED
from .core.summary import RunInfo
from .modes import (
    Options,
    Outcome,
    UsageError,
    cache_admin,
    census,
    checkpoint,
    config,
    gate,
    graphs,
    make_checkpoint,
    merge,
    mutants,
)
from .pool import shard, workers
from .present.console import counts
from .present.publish import publish

# a checkout's reports/ beside its code (validate_arch.sh); an installed archval's in the directory it runs in
REPORTS_DIR = ROOT / "reports" if (ROOT / "pyproject.toml").is_file() else Path("reports")


@dataclass(frozen=True)
class Mode:
    name: str  # as the run's summary names it
    chosen: Callable[[argparse.Namespace], bool]
    run: Callable[[Options, RunInfo], Outcome | None]  # None: nothing to judge (--list)


MODES = (
    Mode("merge", lambda a: bool(a.merge), merge.run),
    Mode("checkpoint", lambda a: a.checkpoint is not None, checkpoint.run),
    Mode("config", lambda a: bool(a.config), config.run),
    Mode("graphs", lambda a: a.graphs is not None, graphs.run),
    Mode("list", lambda a: a.list, lambda options, info: print("\n".join(fixtures.names()))),
    Mode("mutants", lambda a: a.mutants, mutants.run),
    Mode("structural", lambda a: a.structural_only or a.update_goldens, gate.structural_only),
    Mode("gate", lambda a: True, gate.gate),
)
# (option, the options it cannot be combined with, why), checked in this order before any mode runs
CLASHES = (
    ("--merge", ("--family", "--shard", "--config", "--checkpoint", "--structural-only", "--update-goldens", "--mutants", "--list"),
     ""),
    ("--shard", ("--family",), "a shard's families are chosen by their cost"),
    ("--checkpoint", ("--family", "--config", "--shard", "--structural-only", "--update-goldens", "--mutants", "--list"),
     "it validates the one checkpoint"),
    ("--config", ("--family", "--structural-only", "--update-goldens"), ""),
    ("--graphs", ("--emitter", "--config", "--checkpoint", "--shard", "--structural-only", "--update-goldens",
                  "--mutants", "--list", "--merge"), "it validates the graph files given"),
    ("--binding", ("--structural-only", "--update-goldens", "--mutants", "--list", "--merge"),
     "it binds the graphs' names for their numerical validation"),
    ("--mutants", ("--emitter",), "it mutates the built-in emitter"),
    ("--graph", ("--structural-only", "--update-goldens", "--list", "--mutants", "--merge"),
     "it selects the cases to validate numerically"),
    ("--dtype", ("--checkpoint", "--graphs", "--mutants", "--structural-only", "--update-goldens", "--list", "--merge"),
     "it asks the emitter for bf16 graphs of the fixtures and published configs (docs/reduced-precision.md)"),
    ("--require-all", ("--structural-only", "--update-goldens", "--list", "--mutants"),
     "it judges the families an emitter refuses, which that mode does not validate"),
)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=Path(summary.command()).name, description=__doc__.split("\n\n")[0],
                                 epilog=f"{Path(summary.command()).name} cache info|prune [--max-size SIZE]: the cache "
                                        "directory's size by kind, and a bound on it (least recently used first). "
                                        f"{Path(summary.command()).name} make-checkpoint --family NAME --out DIR: a local "
                                        "checkpoint of seeded weights for --checkpoint (make-checkpoint --help)")
    ap.add_argument("--version", action="version", version=f"archval {summary.project_version()}")
    ap.add_argument("--family", action="append", metavar="NAME",
                    help="validate only this fixture (repeatable); default: all")
    ap.add_argument("--graph", action="append", metavar="KIND", choices=list(KINDS),
                    help=f"validate only this graph kind (repeatable; {', '.join(KINDS)}); default: every kind "
                         f"the family has but those validated on request only "
                         f"({', '.join(k for k, kind in KINDS.items() if kind.on_request)})")
    ap.add_argument("--jobs", type=int, default=min(2, workers.cores()),
                    help="worker processes (default 2; at most the cores this process may use)")
    ap.add_argument("--jobs-over-cores", action="store_true",
                    help="allow --jobs above the cores (each worker is a whole family: it oversubscribes them)")
    ap.add_argument("--config", action="append", metavar="PATH",
                    help="validate a published config.json (repeatable): shrunk to a tiny model, every "
                         "architectural choice kept, no weights needed")
    ap.add_argument("--as-is", action="store_true",
                    help="with --config: validate the config exactly as given, not shrunk (refused with the memory "
                         "estimate when it is too large to run)")
    ap.add_argument("--checkpoint", type=Path, metavar="DIR",
                    help="validate a local checkpoint (config.json and safetensors) on its own weights, at full size")
    ap.add_argument("--prompt-ids", metavar="IDS", help="with --checkpoint: the prompt's token ids, e.g. 1,2,3")
    ap.add_argument("--prompt", metavar="TEXT",
                    help="with --checkpoint: the prompt as text, through the checkpoint's own tokenizer")
    ap.add_argument("--steps", type=int, metavar="N",
                    help=f"with --checkpoint: greedy decode steps after the prompt (default {Options.steps})")
    ap.add_argument("--graphs", type=Path, metavar="DIR",
                    help="validate pre-emitted graphs: a folder per family (config.json, prefill.mlir, decode.mlir, "
                         "...), or one such folder; no emitter runs (docs/binding.md)")
    ap.add_argument("--binding", metavar="FILE",
                    help="a binding file (TOML): the graphs' own argument names onto the checkpoint's tensors and "
                         "the protocol's inputs (docs/binding.md); default: by their own names")
    ap.add_argument("--emitter", help="emitter command (default: the built-in `python -m archval.emitter`)")
    ap.add_argument("--emit-timeout", metavar="S",
                    help=f"seconds another emitter may take per graph before its process group is stopped "
                         f"(default {contained_process.DEFAULT_TIMEOUT_S:g}, or ${contained_process.TIMEOUT_ENV})")
    ap.add_argument("--reports", type=Path, default=REPORTS_DIR, metavar="DIR",
                    help="where the reports go: index.html, a page per family, summary.json, support.md, summary.csv, junit.xml, "
                         "bundles/ (default: %(default)s)")
    ap.add_argument("--bundle", choices=("failing", "all"), default="failing",
                    help="write a repro bundle (reports/bundles/: .mlir, inputs, iree-compile and iree-run-module "
                         "scripts) for the failing cases (default) or for all")
    ap.add_argument("-q", "--quiet", action="store_true",
                    help="say only what did not pass (and the result); no progress lines when not on a terminal")
    ap.add_argument("--list", action="store_true", help="list the fixtures and exit")
    ap.add_argument("--structural-only", action="store_true",
                    help="only emit and check signatures against goldens (no compile, no run, no torch)")
    ap.add_argument("--update-goldens", action="store_true",
                    help="rewrite the goldens that differ from what the emitter writes now, and say which")
    ap.add_argument("--require-all", action="store_true",
                    help="fail the run when the emitter refuses a family (UNSUPPORTED); by default a refused family "
                         "is reported and counted, and the others decide")
    ap.add_argument("--fixed-bound-only", action="store_true",
                    help="judge by the fixed bound alone (no fp64 oracle run, no strict noise-derived bound)")
    ap.add_argument("--dtype", choices=("bf16",),
                    help="ask the emitter for graphs that compute in this dtype (--dtype passed on), judged by the "
                         "bound derived from the oracle in bf16 (docs/reduced-precision.md)")
    ap.add_argument("--mutants", action="store_true",
                    help="the mutation self-test: every applicable mutant of the selected families must FAIL")
    ap.add_argument("--shard", metavar="I/N",
                    help="only shard I of N (1-based): the families given to it by their measured cost, for N "
                         "machines; --merge joins their reports")
    ap.add_argument("--merge", nargs="+", type=Path, metavar="DIR",
                    help="join the reports of shard runs (each one's --reports DIR) into --reports, as one run "
                         "over all their families would have written them")
    return ap


def check_options(args, claim: Callable[[], object] = lambda: None) -> Options:
    """The modes' Options (claim: --reports claimed); UsageError for options that cannot run together or at all."""
    if args.update_goldens and os.environ.get("PYTEST_XDIST_WORKER"):
        raise UsageError("--update-goldens refuses to run inside a parallel pytest worker "
                         f"({os.environ['PYTEST_XDIST_WORKER']}): concurrent writers would lose goldens")
    if args.jobs < 1:
        raise UsageError(f"--jobs {args.jobs}: must be at least 1")
    jobs = args.jobs if args.jobs <= workers.cores() or args.jobs_over_cores else workers.cores()
    if jobs != args.jobs:
        print(f"--jobs {args.jobs}: capped at {jobs}, the cores this process may use (--jobs-over-cores to allow more)",
              flush=True)
    given_timeout = (("--emit-timeout", args.emit_timeout) if args.emit_timeout is not None
                     else (f"${contained_process.TIMEOUT_ENV}", os.environ.get(contained_process.TIMEOUT_ENV) or None))
    if given_timeout[1] is not None and contained_process.parse_timeout(given_timeout[1]) is None:
        raise UsageError(f"{given_timeout[0]} {given_timeout[1]!r}: must be a number of seconds above 0")
    run_timeout = os.environ.get(watchdog.TIMEOUT_ENV)
    if run_timeout and contained_process.parse_timeout(run_timeout) is None:
        raise UsageError(f"${watchdog.TIMEOUT_ENV} {run_timeout!r}: must be a number of seconds above 0")
    given = {f"--{k.replace('_', '-')}" for k, v in vars(args).items() if v not in (None, False)}
    for option, refused, why in CLASHES:
        clash = next((o for o in refused if o in given), None) if option in given else None
        if clash:
            raise UsageError(f"{option} cannot be combined with {clash}" + (f": {why}" if why else ""))
    for option, needs in (("--prompt-ids", "--checkpoint"), ("--prompt", "--checkpoint"), ("--steps", "--checkpoint"),
                          ("--as-is", "--config")):
        if option in given and needs not in given:
            raise UsageError(f"{option} needs {needs}")
    try:
        part = None if args.shard is None else shard.parse(args.shard)
        emitter = emitter_command(args.emitter)
        if args.binding is not None:
            load_binding(args.binding)
    except ValueError as e:
        raise UsageError(str(e)) from None
    given = {f.name: getattr(args, f.name) for f in fields(Options) if getattr(args, f.name, None) is not None}
    return Options(**given | {name: tuple(v) for name, v in given.items() if isinstance(v, list)} | {
        "claim": claim, "emitter": emitter, "jobs": jobs, "shard": part, "bundle_all": args.bundle == "all"})


def main(argv=None) -> int:
    if argv is None and Path(sys.argv[0]).name == "archval":  # the `archval` command (pyproject.toml's entry point)
        summary.use_command("archval")  # its replay lines and usage say so, in a checkout's editable install too
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["cache"]:  # a command of its own: the cache directory, no validation
        return cache_admin.main(argv[1:])
    if argv[:1] == ["census"]:  # a command of its own: every model type synthesised and run (docs/census.md)
        return census.main(argv[1:])
    if argv[:1] == ["make-checkpoint"]:  # a command of its own: a checkpoint for --checkpoint to validate
        return make_checkpoint.main(argv[1:])
    args = parser().parse_args(argv)
    with interrupts():
        try:
            return run(args, argv)
        except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (Terminated): the workers are already stopped
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                print(f"interrupted ({'SIGTERM' if isinstance(e, Terminated) else 'Ctrl-C'}): the workers "
                      "and their emitters are stopped; this run's reports are incomplete", file=sys.stderr, flush=True)
            finally:
                signal.signal(signal.SIGINT, signal.default_int_handler)
            return 128 + (signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT)


def run(args, argv: list[str]) -> int:
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        try:
            options = check_options(args, lambda: stack.enter_context(claimed(args.reports)))
            mode = next(m for m in MODES if m.chosen(args))
            if args.emit_timeout is not None:  # the workers spawned from here on inherit it
                stack.enter_context(_environment(contained_process.TIMEOUT_ENV, args.emit_timeout))
            info = summary.run_info(mode.name, [Path(summary.command()).name, *argv], args.emitter)
            outcome = mode.run(options, info)
        except (UsageError, ReportsError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if outcome is None:
            return 0
        records, problems = outcome.records or [], 0
        if outcome.records is not None:
            said = publish(records, info, args.reports, outcome.pages, outcome.problems)
            for line in said:
                print(line, flush=True)
            print(f"{counts(records)} -> {said.summary or 'summary.json not written'} "
                  f"({time.perf_counter() - start:.1f} s)")
            problems = said.problems
            if problems:
                print(f"reports: incomplete ({problems} problem{'s' if problems > 1 else ''} above): "
                      "the run cannot pass", flush=True)
    # A run with no case, or whose every case the emitter refused, validated nothing and cannot pass (a
    # shard's may: the merge of all shards judges their records together).
    nothing = outcome.records is not None and options.shard is None and all(r.verdict == UNSUPPORTED for r in records)
    if nothing:
        print("nothing validated: " + ("the emitter refused every case (UNSUPPORTED above)" if records else
                                       f"no family chosen has a {' or '.join(args.graph)} graph" if args.graph else
                                       "no case was chosen") + "; the run cannot pass")
    passed = outcome.ok and not problems and not nothing and all(
        r.verdict == PASS or (r.verdict == UNSUPPORTED and not args.require_all) for r in records)
    print(f"RESULT: {'PASS' if passed else 'FAIL'}")
    return 0 if passed else 1


class Terminated(KeyboardInterrupt):
    """SIGTERM to the gate's main process: handled as Ctrl-C is, with its own exit status."""


@contextlib.contextmanager
def interrupts():
    """For the block: SIGTERM raises Terminated in the main thread (so that the workers are stopped and the
    gate says one line), as Ctrl-C raises KeyboardInterrupt. A no-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum, _frame):
        raise Terminated()
    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _environment(name: str, value: str):
    """$name = value for the block, restored after."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous
