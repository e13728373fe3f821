"""--merge DIR...: the shard runs' records joined into --reports as one run over all their families.

Each DIR's summary.json (this archval's, or the bare list an older one wrote) is read; the
records are put in the gate's family order, the pages copied, and the command line publishes
the rest (summary.json, the index) and says RESULT: FAIL if any record is not a PASS or a
graph drifted from its golden.
"""
from __future__ import annotations

import shutil

from pathlib import Path

from ..checks import structural
from ..core import summary
from ..core.files import write_atomic
from ..core.record import Record
from ..core.summary import RunInfo
from . import Options, Outcome, UsageError
from ..present.console import line
from ..present.pages import page_name


def read_shards(directories: list[Path]) -> tuple[list[Record], dict[str, Path]]:
    """The records of the shard runs' summary.json files, in the gate's family order (a family's own
    records in the order its shard wrote them), and the directory each family's page is in.
    UsageError, one sentence naming the file, for a missing or unreadable summary.json, or a family
    in two of them."""
    records, homes, source = [], {}, {}
    for directory in directories:
        path = directory / "summary.json"
        if not path.is_file():
            raise UsageError(f"--merge {directory}: no summary.json in it ({path}): not a gate's --reports directory")
        try:
            _, found = summary.read(path)
        except ValueError as e:
            raise UsageError(str(e)) from None
        for family in dict.fromkeys(r.family for r in found):
            if family in source:
                raise UsageError(f"--merge: family '{family}' is in both {source[family]} and {path}")
            source[family], homes[family] = path, directory
        records += found
    return sorted(records, key=lambda r: r.family), homes  # the gate's order: fixtures.names() is sorted


def run(options: Options, info: RunInfo) -> Outcome:
    if options.reports.resolve() in {d.resolve() for d in options.merge}:
        raise UsageError(f"--reports {options.reports} is one of the --merge inputs: merge into another directory, "
                         "so that no shard's reports are overwritten")
    records, homes = read_shards(options.merge)
    options.claim()
    info.merged = [str(d) for d in options.merge]
    copied, problems = set(), []
    for page, family in {page_name(r): r.family for r in records}.items():
        source = homes[family] / f"{page}.html"
        try:
            write_atomic(options.reports / source.name, source.read_text(encoding="utf-8"))
            copied.add(page)
        except OSError as e:
            problems.append(f"{source.name} not copied from {source.parent}: {e.strerror or e}")
    for record in (r for r in records if r.bundle):  # the shard's repro bundle, where the record points
        try:
            shutil.copytree(homes[record.family] / record.bundle, options.reports / record.bundle, dirs_exist_ok=True)
        except OSError as e:
            problems.append(f"{record.bundle} not copied from {homes[record.family]}: {e.strerror or e}")
            record.bundle = None
    for record in records:
        print(line(record), flush=True)
    drifted = [r for r in records if r.structural and r.structural.status not in structural.PASSING]
    for r in drifted:
        print(f"structural: {r.family} {r.graph} {r.structural.status} (see its page)", flush=True)
    return Outcome(not drifted, records, copied, problems)
