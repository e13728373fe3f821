"""The run modes of the command line (harness/cli.py): each takes the parsed options and the run,
and returns an Outcome; the command line publishes its records and prints RESULT."""
from __future__ import annotations

from dataclasses import dataclass, field

from archval.harness.core.record import Record


class UsageError(Exception):
    """Bad options or input: one sentence, exit 2."""


@dataclass
class Outcome:
    ok: bool  # everything the mode checks besides the records' verdicts (structural goldens, kill rate)
    records: list[Record] | None = None  # to publish under --reports (None: the mode publishes nothing)
    pages: set[str] | None = None  # the pages already written (by the workers, or copied by --merge)
    problems: list[str] = field(default_factory=list)  # reports that could not be written


def claim_reports(args) -> None:
    """A mode that writes under --reports calls this once its input is known to be good and before it runs
    anything: the command line's claim of the directory (created, writable, and locked against a
    concurrent run until the reports are written: core/files.py). ReportsError (exit 2) when it cannot."""
    claim = getattr(args, "claim_reports", None)
    if claim is not None:
        claim()
