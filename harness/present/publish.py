"""Records in, reports out: summary.json, a page per family (and mutant), index.html, summary.csv and
junit.xml.

The gate and pytest publish through here, from the records and the run alone. Workers render
their family's pages as soon as the family is validated (pages()), so that rendering runs in
parallel with validation; publish() then writes what is left. A report that cannot be written
is said on a line (reports: ...) and never changes a verdict.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from harness.core import summary
from harness.core.files import write_atomic
from harness.core.record import Record
from harness.core.summary import RunInfo
from harness.present import index, junit, manifest
from harness.present.pages import page_name, render


def pages(records: list[Record], run: RunInfo, directory: Path) -> tuple[set[str], list[str]]:
    """One page per family (and mutant): (the pages written, the problems met)."""
    groups: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        groups[page_name(record)].append(record)
    written, problems = set(), []
    for name, group in groups.items():
        try:
            write_atomic(Path(directory) / f"{name}.html", render(name, group, run))
            written.add(name)
        except Exception as e:  # noqa: BLE001 - reports explain a verdict, they never decide or stop it
            problems.append(f"{name}.html not written: {type(e).__name__}: {e}")
    return written, problems


def publish(records: list[Record], run: RunInfo, directory: Path, written: set[str] | None = None,
            problems: list[str] | None = None) -> list[str]:
    """Writes summary.json and the reports under directory; written: the pages already written (by the
    workers; None: render them here). Returns the lines to say: the problems, then where the reports are."""
    directory = Path(directory)
    summary.write(directory / "summary.json", run, records)
    problems = list(problems or [])
    if written is None:
        written, page_problems = pages(records, run, directory)
        problems += page_problems
    try:
        html, csv = index.render(records, run, written, problems)
        write_atomic(directory / "summary.csv", csv)
        write_atomic(directory / "index.html", html)
    except Exception as e:  # noqa: BLE001 - reports explain a verdict, they never decide or stop it
        problems.append(f"index.html not written: {type(e).__name__}: {e} (the verdict is unaffected)")
    try:
        write_atomic(directory / "junit.xml", junit.render(records, run))
    except Exception as e:  # noqa: BLE001
        problems.append(f"junit.xml not written: {type(e).__name__}: {e} (the verdict is unaffected)")
    ours = {"summary.json", "summary.csv", "index.html", "junit.xml", *(f"{p}.html" for p in written),
            *(r.bundle for r in records if r.bundle)}
    try:
        problems += manifest.tidy(directory, ours)
    except OSError as e:
        problems.append(f"{manifest.MANIFEST} not written: {e.strerror or e} (the next run removes nothing)")
    return [f"reports: {p}" for p in problems] + [f"reports: {directory / 'index.html'} and a page per family"]
