"""`pytest --reports DIR`: the differential tests' records become the gate's reports under DIR.
`pytest --emitter 'CMD'`: the differential tests validate that emitter (docs/emitter-protocol.md).
`pytest --shard I/N`: only shard I of N; a test about one fixture family runs in the shard the gate's
`--shard I/N` gives that family (harness/modes/shard.py), any other by a stable hash of its node id.

A test hands its run_case record to the `case_report` fixture; the record travels to the
controlling process in the test report's user_properties (so it works under xdist), and
at the end of the session it is published as the gate publishes its records
(harness/present/publish.py): summary.json, summary.csv, index.html and a page per family under DIR.
"""
import json
import shlex
import sys
import time
from pathlib import Path

import pytest

from harness.checks import builtin, structural
from harness.checks.signature import drift, load_golden, signature
from harness.core import fixtures, summary
from harness.core.emitters import BUILTIN_EMITTER, DEFAULT_EMITTER, emitter_command
from harness.core.kinds import order
from harness.core.record import MutantFacts, Record
from harness.modes import shard

RECORD = "archval-record"


def pytest_addoption(parser):
    parser.addoption("--reports", type=Path, metavar="DIR",
                     help="write the HTML reports of the differential cases run to DIR")
    parser.addoption("--emitter", default=None,
                     help="emitter command to validate (CMD --config C --graph KIND --out FILE); default: the built-in")
    parser.addoption("--shard", metavar="I/N",
                     help="run only shard I of N (1-based): a family's tests where the gate's --shard I/N puts that "
                          "family, the others by a stable hash of their node id")


@pytest.fixture(scope="session")
def emitter(request) -> tuple[str, ...]:
    return emitter_command(request.config.getoption("--emitter"))


def pytest_configure(config):
    try:  # as the gate's --emitter: an empty one (an unset variable) must not test the built-in emitter
        emitter_command(config.getoption("--emitter"))
    except ValueError as e:
        raise pytest.UsageError(str(e)) from None
    if config.getoption("--shard") is not None:
        try:
            shard.parse(config.getoption("--shard"))
        except ValueError as e:
            raise pytest.UsageError(str(e)) from None
    directory = config.getoption("--reports")
    if directory and not hasattr(config, "workerinput"):  # only the controlling process writes
        config.pluginmanager.register(_ReportWriter(directory), "archval-reports")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--shard") is None:
        return
    index, count = shard.parse(config.getoption("--shard"))
    names = fixtures.names()
    mine = set(shard.assign(names, index, count))
    keep, deselected = [], []
    for item in items:
        family = _family_of(item, names)
        here = family in mine if family else shard.by_hash(item.nodeid, count) == index
        (keep if here else deselected).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = keep


def _family_of(item, names: list[str]) -> str | None:
    """The fixture family a test is parametrised over: a parameter that is its name (or a case
    named after it, such as a StructuralCase)."""
    callspec = getattr(item, "callspec", None)
    for value in callspec.params.values() if callspec else ():
        name = value if isinstance(value, str) else getattr(value, "name", None)
        if name in names:
            return name
    return None


@pytest.fixture
def case_report(request):
    """keep(record, text=None, mutant=None): the record's replay becomes this test's command line, and the
    record goes into --reports (only that is a no-op without it). text is the graph the record judged
    when it is not the built-in emitter's (a mutant's)."""
    def keep(record: Record, text: str | None = None, mutant: str | None = None) -> None:
        record.replay = replay_command(request)
        if not request.config.getoption("--reports"):
            return
        record.structural = _structural(record.family, record.graph, text)
        if record.emitter == BUILTIN_EMITTER:  # its parsed flags; another emitter's reading is its own
            builtin.annotate(record, fixtures.load(record.family))
        if mutant:
            from harness.checks.mutants import MUTANTS
            record.mutant = MutantFacts(mutant, MUTANTS[mutant].description)
        request.node.user_properties.append((RECORD, json.dumps(record.to_json())))
    return keep


def replay_command(request) -> str:
    """This test alone, run from the project root, with the --emitter it validated (if it takes one)."""
    command = f".venv/bin/python -m pytest {shlex.quote(request.node.nodeid)}"
    emitter = request.config.getoption("--emitter")
    if emitter is not None and "emitter" in request.fixturenames:
        command += f" --emitter {shlex.quote(emitter)}"
    return command


def _structural(family: str, graph: str, text: str | None):
    """The gate's structural brief: of the built-in emission, or of the given text against the golden."""
    case = structural.StructuralCase(family, fixtures.FIXTURES_DIR / family)
    if text is None:
        return structural.brief(structural.check(case, graph, DEFAULT_EMITTER))
    sig, golden = signature(text), load_golden(case.directory, graph)
    changes = drift(*golden, sig, text) if golden else ["no golden recorded"]
    return structural.brief({"status": structural.DRIFT if changes else structural.MATCH, "detail": changes,
                             "sha256": sig["sha256"], "signature": sig, "golden": golden and golden[0]})


class _ReportWriter:
    def __init__(self, directory: Path):
        self.directory = directory
        self.records: list[Record] = []
        self.said = ""

    def pytest_runtest_logreport(self, report):
        if report.when == "call":
            self.records += [Record.from_json(json.loads(value)) for key, value in report.user_properties
                             if key == RECORD]

    def pytest_sessionfinish(self, session):
        if not self.records:
            self.said = f"reports: no differential case ran, nothing written to {self.directory}"
            return
        from harness.present.publish import publish
        start = time.perf_counter()
        records = sorted(self.records, key=lambda r: (r.family, r.mutant.name if r.mutant else "", order(r.graph)))
        run = summary.run_info("pytest", ["pytest", *sys.argv[1:]], session.config.getoption("--emitter"))
        said = publish(records, run, self.directory)
        self.said = "\n".join([*said[:-1], f"reports: {len(records)} records -> {self.directory / 'index.html'} "
                                            f"({time.perf_counter() - start:.1f} s)"])

    def pytest_terminal_summary(self, terminalreporter):
        if self.said:
            terminalreporter.write_line(self.said)
