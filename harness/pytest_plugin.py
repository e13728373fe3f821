"""archval's pytest plugin (entry point pytest11): an emitter's repository runs archval's cases with pytest.

    pytest --archval-emitter 'CMD' -n auto            every family and graph kind against CMD
    pytest --archval-emitter 'CMD' -m family_llama    exactly llama's cases (a marker per family, per graph kind)
    pytest ... --archval-reports DIR                  the gate's reports of the cases run (summary.json, pages, ...)
    pytest ... --archval-shard I/N                    only shard I of N (harness/pool/shard.py)

With --archval-emitter the cases of harness/pytest_suite.py are collected besides the project's own
tests (ini archval_suite = false leaves them out: archval's own repository has tests/test_differential.py).
A test hands its run_case record to the `case_report` fixture; the record travels to the controlling
process in the test report's user_properties (so it works under xdist) and, at the end of the session,
is published as the gate publishes its records (harness/present/publish.py).

Which tests a run takes (markers per family and graph kind, -k with family names exactly, shards,
-n auto) is harness/pytest_selection.py's.
"""
from __future__ import annotations

import importlib
import json
import os
import shlex
import sys
import time
from pathlib import Path

import pytest

from . import pytest_selection as selection
from .checks import structural
from .checks.finish import finish
from .core import files, fixtures, summary
from .core.bundle import Bundles
from .core.binding import IDENTITY, Binding
from .core.binding_file import load as load_binding
from .core.emitter_protocol import BUILTIN_EMITTER, emitter_command
from .core.kinds import KINDS, order
from .core.record import UNSUPPORTED, MutantFacts, Record
from .core.fixtures import Fixture
from .modes import UsageError, graphs
from .pool import shard

RECORD = "archval-record"
VERDICT = "archval-verdict"
SUITE = Path(__file__).with_name("pytest_suite.py")
GRAPHS_SUITE = Path(__file__).with_name("pytest_graphs.py")
SUITES = {SUITE: "archval.harness.pytest_suite", GRAPHS_SUITE: "archval.harness.pytest_graphs"}


def pytest_addoption(parser):
    group = parser.getgroup("archval", "archval: differential validation of a StableHLO emitter")
    group.addoption("--archval-emitter", dest="archval_emitter", default=None, metavar="CMD",
                    help="emitter command to validate (CMD --config C --graph KIND --out FILE); archval's fixture "
                         "cases are collected only with it (the built-in emitter: --archval-emitter "
                         "'python -m archval.emitter')")
    group.addoption("--archval-binding", dest="archval_binding", default=None, metavar="FILE",
                    help="a binding file (TOML, docs/binding.md): the graphs' own argument names onto the checkpoint's "
                         "tensors and the protocol's inputs; default: by their own names")
    group.addoption("--archval-graphs", dest="archval_graphs", type=Path, default=None, metavar="DIR",
                    help="validate pre-emitted graph files: a folder per family (config.json, prefill.mlir, "
                         "decode.mlir, ...), or one such folder (docs/binding.md#graph-folders)")
    group.addoption("--archval-dtype", dest="archval_dtype", choices=("bf16",), default=None,
                    help="ask the emitter for graphs that compute in bf16 (--dtype bf16 passed on), judged by the bound "
                         "derived from the oracle in bf16 (docs/reduced-precision.md)")
    group.addoption("--archval-reports", dest="archval_reports", type=Path, metavar="DIR",
                    help="write the reports of the differential cases run to DIR")
    group.addoption("--archval-shard", dest="archval_shard", metavar="I/N",
                    help="run only shard I of N (1-based): a family's tests where the gate's --shard I/N puts that "
                         "family, the others by a stable hash of their node id")
    parser.addini("archval_suite", type="bool", default=True,
                  help="with --archval-emitter, also collect archval's cases (harness/pytest_suite.py)")


@pytest.fixture(scope="session")
def emitter(request) -> tuple[str, ...]:
    return emitter_command(request.config.getoption("archval_emitter"))


@pytest.fixture(scope="session")
def dtype(request) -> str | None:
    """The compute dtype the emitter is asked for (--archval-dtype); None: its own."""
    return request.config.getoption("archval_dtype")


@pytest.fixture(scope="session")
def binding(request) -> Binding:
    path = request.config.getoption("archval_binding")
    return load_binding(path) if path else IDENTITY


def _emitter_option(config) -> str:
    """The option the emitter was given by: --archval-emitter (on the command line, in PYTEST_ADDOPTS or the
    ini's addopts), or this repository's --emitter."""
    given = [*map(str, config.invocation_params.args), *shlex.split(os.environ.get("PYTEST_ADDOPTS", "")),
             *config.getini("addopts")]
    return "--archval-emitter" if any(a.startswith("--archval-emitter") for a in given) else "--emitter"


def pytest_configure(config):
    try:  # as the gate's --emitter: an empty one (an unset variable) must not test the built-in emitter
        emitter_command(config.getoption("archval_emitter"), _emitter_option(config))
        if config.getoption("archval_binding"):
            load_binding(config.getoption("archval_binding"))
    except ValueError as e:
        raise pytest.UsageError(str(e)) from None
    if config.getoption("archval_shard") is not None:
        try:
            shard.parse(config.getoption("archval_shard"))
        except ValueError as e:
            raise pytest.UsageError(str(e)) from None
    selection.synthesise(config)
    for name, mark in selection.family_markers().items():
        config.addinivalue_line("markers", f"{mark}: the cases of the {name} fixture family (exact: -m {mark})")
    for kind in KINDS:
        config.addinivalue_line("markers", f"{selection.marker('graph', kind)}: the cases of the {kind} graph kind")
    if config.getoption("archval_emitter") is not None and config.getini("archval_suite"):
        config.args.append(str(SUITE))
    if config.getoption("archval_graphs") is not None:  # (this repository's own run names the module instead)
        try:
            graphs.folders(config.getoption("archval_graphs"), None)
        except UsageError as e:
            raise pytest.UsageError(str(e)) from None
        if config.getini("archval_suite"):
            config.args.append(str(GRAPHS_SUITE))
    if not hasattr(config, "workerinput"):  # the controlling process judges the run and writes the reports
        config.pluginmanager.register(_NothingValidated(), "archval-nothing-validated")
        directory = config.getoption("archval_reports")
        if directory:
            try:  # a folder of someone's own files is never written into (as the gate's --reports)
                files.check_ours(directory, "--archval-reports")
            except files.ReportsError as e:
                raise pytest.UsageError(str(e)) from None
            config.pluginmanager.register(_ReportWriter(directory), "archval-reports")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """xdist: each worker is handed the controlling process's synthesised fixtures."""
    node.workerinput[selection.SYNTHESISED_INPUT] = node.config.stash.get(selection.SYNTHESISED, {})


def pytest_report_collectionfinish(config, items):
    """A selection by archval's markers or family names that took nothing, in a run without an emitter or graph
    folders: said why (archval's cases are collected only with them), not left as a bare `1 deselected`."""
    given = config.getoption("archval_emitter") is not None or config.getoption("archval_graphs") is not None
    if items or given or not config.getini("archval_suite") or not selection.names_archval_cases(config):
        return None
    return ("archval: no archval case was collected: its cases are collected only with --archval-emitter CMD "
            "(the built-in emitter: --archval-emitter 'python -m archval.emitter') or --archval-graphs DIR")


def pytest_pycollect_makemodule(module_path, parent):
    """archval's suite imported by its module name: by its path, pytest would import it as a top-level
    `harness.pytest_suite` from an editable install's checkout, and put the checkout on sys.path."""
    if module_path in SUITES:
        return _Suite.from_parent(parent, path=module_path)
    return None


class _Suite(pytest.Module):
    def _getobj(self):
        return importlib.import_module(SUITES[self.path])


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config):
    return selection.auto_workers(config)


@pytest.hookimpl(wrapper=True)  # around every other collection hook, pytest's own -k and -m among them
def pytest_collection_modifyitems(config, items):
    keyword = selection.mark(config, items)
    result = yield
    selection.select(config, items, keyword)
    return result


@pytest.fixture
def case_report(request) -> CaseReport:
    return CaseReport(request)


class CaseReport:
    """The `case_report` fixture. Called with a run_case record (and text, the graph it judged when that is not
    the emitter's own, a mutant's), it makes the record final as the gate does (checks/finish.py), with this
    test's command line as its replay; under --archval-reports the record goes into the reports. `bundles` is
    run_case's, for the repro bundles of failing cases (None without --archval-reports)."""

    def __init__(self, request):
        self.request = request
        reports = request.config.getoption("archval_reports")
        self.bundles = Bundles(reports) if reports else None

    def __call__(self, record: Record, text: str | None = None, mutant: str | None = None,
                 fixture: Fixture | None = None, emitter: tuple[str, ...] | None = None) -> None:
        """fixture: the record's, where it is no fixture of fixtures/ (a --archval-graphs folder's config); emitter:
        run_case's, where it is not the run's (PRE_EMITTED: pre-emitted graphs, no emitter to ask for taps)."""
        request = self.request
        reported = request.config.getoption("archval_reports") is not None
        goldens = facts = None  # as the gate: goldens of the built-in emitter's graphs (checked for the reports)
        if reported and (record.emitter == BUILTIN_EMITTER or text is not None):
            goldens = {record.graph: structural.of_case(record.family, record.graph, text)}
        if mutant:
            from .checks.mutants import MUTANTS
            facts = MutantFacts(mutant, MUTANTS[mutant].description)
        finish([record], fixture or fixtures.load(record.family), emitter or request.getfixturevalue("emitter"),
               request.getfixturevalue("binding"), goldens=goldens, replay=replay_command(request), mutant=facts,
               bundles=self.bundles)
        request.node.user_properties.append((VERDICT, record.verdict))
        if reported:
            request.node.user_properties.append((RECORD, json.dumps(record.to_json())))


def replay_command(request) -> str:
    """This test alone, with the emitter it validated (if it takes one): in archval's checkout by its node id;
    archval's suite in another project (harness/pytest_suite.py) by its markers."""
    emitter, binding = request.config.getoption("archval_emitter"), request.config.getoption("archval_binding")
    if request.node.path == GRAPHS_SUITE:
        return (f"pytest --archval-graphs {shlex.quote(str(request.config.getoption('archval_graphs')))}"
                + (f" --archval-binding {shlex.quote(binding)}" if binding else "")
                + f" -k {shlex.quote(request.node.callspec.id)}")
    if request.node.path == SUITE:
        params = request.node.callspec.params
        return (f"pytest --archval-emitter {shlex.quote(emitter)}"
                + (f" --archval-binding {shlex.quote(binding)}" if binding else "") + " -m "
                f"'{selection.marker('family', params['family'])} and {selection.marker('graph', params['graph'])}'")
    command = f".venv/bin/python -m pytest {shlex.quote(request.node.nodeid)}"
    if emitter is not None and "emitter" in request.fixturenames:
        command += f" --emitter {shlex.quote(emitter)}"
    if binding is not None and "binding" in request.fixturenames:
        command += f" --binding {shlex.quote(binding)}"
    return command


class _NothingValidated:
    """As the gate: a run whose every case the emitter refused (all skipped as UNSUPPORTED: a mistyped
    script path exits 2 as a refusal does) validated nothing, and fails. A shard's is left alone."""
    def __init__(self):
        self.verdicts: list[str] = []

    def pytest_runtest_logreport(self, report):
        if report.when == "call":
            self.verdicts += [value for key, value in report.user_properties if key == VERDICT]

    def refused_all(self, config) -> bool:
        return bool(self.verdicts) and set(self.verdicts) == {UNSUPPORTED} and config.getoption("archval_shard") is None

    def pytest_sessionfinish(self, session):
        if self.refused_all(session.config) and session.exitstatus == pytest.ExitCode.OK:  # not over a Ctrl-C's
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter):
        if self.refused_all(terminalreporter.config):
            terminalreporter.write_line(f"archval: nothing validated: the emitter refused all {len(self.verdicts)} "
                                        "cases (UNSUPPORTED, skipped); the run fails", red=True)


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
        from .present.publish import publish
        start = time.perf_counter()
        records = sorted(self.records, key=lambda r: (r.family, r.mutant.name if r.mutant else "", order(r.graph)))
        run = summary.run_info("pytest", ["pytest", *sys.argv[1:]], session.config.getoption("archval_emitter"))
        said = publish(records, run, self.directory)
        self.said = "\n".join([*said[:-1], f"reports: {len(records)} records -> {self.directory / 'index.html'} "
                                            f"({time.perf_counter() - start:.1f} s)"])

    def pytest_terminal_summary(self, terminalreporter):
        if self.said:
            terminalreporter.write_line(self.said)
