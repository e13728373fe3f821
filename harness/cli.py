"""The gate: validate every selected family, one line each, then RESULT; exit 0 pass, 1 fail, 2 bad input.

The command line is a table of modes (MODES): the first whose option is given runs, after the
options it cannot be combined with (CLASHES) are refused. A mode returns its records and
whether everything else it checks passed; the records are published here and RESULT is
printed here, once.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness import ROOT
from harness.core import fixtures, summary
from harness.core.emitters import emitter_command
from harness.core.kinds import KINDS
from harness.core.record import PASS, UNSUPPORTED
from harness.core.summary import RunInfo
from harness.modes import Outcome, UsageError, cache, config, gate, merge, mutants, shard
from harness.present.console import counts
from harness.present.publish import publish

# a checkout's reports/ beside its code (validate_arch.sh); an installed archval's in the directory it runs in
REPORTS_DIR = ROOT / "reports" if (ROOT / "pyproject.toml").is_file() else Path("reports")


@dataclass(frozen=True)
class Mode:
    name: str  # as the run's summary names it
    chosen: Callable[[argparse.Namespace], bool]
    run: Callable[[argparse.Namespace, RunInfo], Outcome | None]  # None: nothing to judge (--list)


def list_fixtures(args, info: RunInfo) -> None:
    print("\n".join(fixtures.names()))


MODES = (
    Mode("merge", lambda a: bool(a.merge), merge.run),
    Mode("config", lambda a: bool(a.config), config.run),
    Mode("list", lambda a: a.list, list_fixtures),
    Mode("mutants", lambda a: a.mutants, mutants.run),
    Mode("structural", lambda a: a.structural_only or a.update_goldens, gate.structural_only),
    Mode("gate", lambda a: True, gate.gate),
)
# (option, the options it cannot be combined with, why), checked in this order before any mode runs
CLASHES = (
    ("--merge", ("--family", "--shard", "--config", "--structural-only", "--update-goldens", "--mutants", "--list"),
     ""),
    ("--shard", ("--family",), "a shard's families are chosen by their cost"),
    ("--config", ("--family", "--structural-only", "--update-goldens"), ""),
    ("--mutants", ("--emitter",), "it mutates the built-in emitter"),
    ("--graph", ("--structural-only", "--update-goldens", "--list", "--mutants", "--merge"),
     "it selects the cases to validate numerically"),
    ("--require-all", ("--structural-only", "--update-goldens", "--list", "--mutants"),
     "it judges the families an emitter refuses, which that mode does not validate"),
)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="validate_arch.sh", description=__doc__.split("\n\n")[0])
    ap.add_argument("--version", action="version", version=f"archval {summary.project_version()}")
    ap.add_argument("--family", action="append", metavar="NAME",
                    help="validate only this fixture (repeatable); default: all")
    ap.add_argument("--graph", action="append", metavar="KIND", choices=list(KINDS),
                    help=f"validate only this graph kind (repeatable; {', '.join(KINDS)}); default: every kind "
                         "the family has")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes")
    ap.add_argument("--config", action="append", metavar="PATH",
                    help="validate a published config.json (repeatable): shrunk to a tiny model, every "
                         "architectural choice kept, no weights needed")
    ap.add_argument("--emitter", help="emitter command (default: the built-in `python -m emitter`)")
    ap.add_argument("--reports", type=Path, default=REPORTS_DIR, help="where summary.json goes")
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
    ap.add_argument("--mutants", action="store_true",
                    help="the mutation self-test: every applicable mutant of the selected families must FAIL")
    ap.add_argument("--shard", metavar="I/N",
                    help="only shard I of N (1-based): the families modes/shard.py assigns it by their cost in "
                         "fixtures/costs.json, for N machines; --merge joins their reports")
    ap.add_argument("--merge", nargs="+", type=Path, metavar="DIR",
                    help="join the reports of shard runs (each one's --reports DIR) into --reports, as one run "
                         "over all their families would have written them")
    return ap


def check_options(args) -> None:
    """UsageError for options that cannot run together or values that cannot run at all."""
    if args.update_goldens and os.environ.get("PYTEST_XDIST_WORKER"):
        raise UsageError("--update-goldens refuses to run inside a parallel pytest worker "
                         f"({os.environ['PYTEST_XDIST_WORKER']}): concurrent writers would lose goldens")
    if args.jobs < 1:
        raise UsageError(f"--jobs {args.jobs}: must be at least 1")
    given = {f"--{k.replace('_', '-')}" for k, v in vars(args).items() if v not in (None, False)}
    for option, refused, why in CLASHES:
        clash = next((o for o in refused if o in given), None) if option in given else None
        if clash:
            raise UsageError(f"{option} cannot be combined with {clash}" + (f": {why}" if why else ""))
    try:
        args.shard = None if args.shard is None else shard.parse(args.shard)
        emitter_command(args.emitter)
    except ValueError as e:
        raise UsageError(str(e)) from None


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["cache"]:  # a command of its own: the cache directory, no validation
        return cache.main(argv[1:])
    args = parser().parse_args(argv)
    start = time.perf_counter()
    try:
        check_options(args)
        mode = next(m for m in MODES if m.chosen(args))
        info = summary.run_info(mode.name, ["validate_arch.sh", *argv], args.emitter)
        outcome = mode.run(args, info)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if outcome is None:
        return 0
    records = outcome.records or []
    if outcome.records is not None:
        for said in publish(records, info, args.reports, outcome.pages, outcome.problems):
            print(said, flush=True)
        print(f"{counts(records)} -> {args.reports / 'summary.json'} ({time.perf_counter() - start:.1f} s)")
    passed = outcome.ok and all(r.verdict == PASS or (r.verdict == UNSUPPORTED and not args.require_all)
                                for r in records)
    print(f"RESULT: {'PASS' if passed else 'FAIL'}")
    return 0 if passed else 1
