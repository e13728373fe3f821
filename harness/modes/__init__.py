"""The run modes of the command line (harness/cli.py): each takes the Options and the run, and returns an
Outcome; the command line publishes its records and prints RESULT."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..core.emitter_protocol import DEFAULT_EMITTER
from ..core.record import Record


@dataclass(frozen=True)
class Options:
    """What the modes take of the command line: built once, checked, from the parsed arguments (cli.check_options)."""
    reports: Path  # --reports
    claim: Callable[[], object] = lambda: None  # claims --reports, once the mode's input is known to be good: the
    # directory created, writable, and locked against a concurrent run until the reports are written (core/files.py)
    emitter: tuple[str, ...] = DEFAULT_EMITTER  # --emitter, as a command
    family: tuple[str, ...] | None = None  # --family; None: every one
    graph: tuple[str, ...] | None = None  # --graph; None: every kind the family has
    jobs: int = 1  # --jobs, at most the cores unless --jobs-over-cores
    shard: tuple[int, int] | None = None  # --shard I/N
    config: tuple[str, ...] = ()  # --config
    as_is: bool = False
    checkpoint: Path | None = None
    prompt_ids: str | None = None
    prompt: str | None = None
    steps: int = 32  # --steps, with --checkpoint: greedy decode steps after the prompt (this is its default)
    graphs: Path | None = None  # --graphs DIR
    binding: str | None = None  # --binding FILE
    dtype: str | None = None  # --dtype: what the emitter's graphs compute in, None: f32 (docs/reduced-precision.md)
    bundle_all: bool = False  # --bundle all
    quiet: bool = False
    fixed_bound_only: bool = False
    update_goldens: bool = False
    merge: tuple[Path, ...] = ()


class UsageError(Exception):
    """Bad options or input: one sentence, exit 2."""


@dataclass
class Outcome:
    ok: bool  # everything the mode checks besides the records' verdicts (structural goldens, kill rate)
    records: list[Record] | None = None  # to publish under --reports (None: the mode publishes nothing)
    pages: set[str] | None = None  # the pages already written (by the workers, or copied by --merge)
    problems: list[str] = field(default_factory=list)  # reports that could not be written
