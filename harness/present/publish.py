"""Records in, reports out: summary.json, support.md (the family × graph-kind matrix), a page per family (and
mutant), index.html, summary.csv and junit.xml.

The gate and pytest publish through here, from the records and the run alone. Workers render
their family's pages as soon as the family is validated (pages()), so that rendering runs in
parallel with validation; publish() then writes what is left. A report that cannot be written (a
full disk) is said on a line (reports: ...), leaves no temporary file (core/files.py), and makes
the run incomplete: the command line says so and the run does not pass, its evidence is missing.
A family page the worker could not write has already made its records ERRORs (stage 'report').
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from ..core import summary
from ..core.files import write_atomic
from ..core.messages import clip
from ..core.record import Record
from ..core.summary import RunInfo
from . import index, junit, manifest, matrix
from .pages import page_name, render


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
        except Exception as e:  # noqa: BLE001 - said, and the family's records become ERRORs (pool/workers.py)
            problems.append(f"{name}.html not written: {type(e).__name__}: {e}")
    return written, problems


class Said(list):
    """The lines publish() says (the problems, then where the reports are), and how the writing went."""
    problems: int = 0  # reports not written: the run is incomplete and does not pass
    summary: Path | None = None  # summary.json, when it was written


def publish(records: list[Record], run: RunInfo, directory: Path, written: set[str] | None = None,
            problems: list[str] | None = None) -> list[str]:
    """Writes summary.json and the reports under directory; written: the pages already written (by the
    workers; None: render them here). Returns the lines to say: the problems, then where the reports are
    (Said: with the count of problems, and summary.json's path if it was written)."""
    directory, said = Path(directory), Said()
    problems = list(problems or [])
    try:
        summary.write(directory / "summary.json", run, records)
        said.summary = directory / "summary.json"
    except OSError as e:
        problems.append(f"summary.json not written: {e.strerror or e}")
    try:
        write_atomic(directory / "support.md", matrix.markdown(records, run))
    except Exception as e:  # noqa: BLE001 - said, and the run fails; never a traceback
        problems.append(f"support.md not written: {type(e).__name__}: {clip(e)}")
    if written is None:
        written, page_problems = pages(records, run, directory)
        problems += page_problems
    indexed = True
    try:
        html, csv = index.render(records, run, written, problems)
        write_atomic(directory / "summary.csv", csv)
        write_atomic(directory / "index.html", html)
    except Exception as e:  # noqa: BLE001 - said, and the run fails; never a traceback
        problems.append(f"index.html and summary.csv not written: {type(e).__name__}: {clip(e)}")
        indexed = False
    try:
        write_atomic(directory / "junit.xml", junit.render(records, run))
    except Exception as e:  # noqa: BLE001 - said, and the run fails; never a traceback
        problems.append(f"junit.xml not written: {type(e).__name__}: {clip(e)}")
    ours = {"summary.json", "support.md", "summary.csv", "index.html", "junit.xml", *(f"{p}.html" for p in written),
            *(r.bundle for r in records if r.bundle)}
    try:
        problems += manifest.tidy(directory, ours)
    except OSError as e:
        problems.append(f"{manifest.MANIFEST} not written: {e.strerror or e} (the next run removes nothing)")
    said += [f"reports: {clip(p)}" for p in problems]
    if indexed:
        said.append(f"reports: {directory / 'index.html'} and a page per family")
    said.problems = len(problems)
    return said
