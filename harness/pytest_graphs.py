"""archval's cases over pre-emitted graph files, collected by the plugin (harness/pytest_plugin.py) when a run
gives --archval-graphs DIR: each family folder's graph kinds, judged as `archval --graphs DIR` judges them.

    pytest --archval-graphs DIR --archval-binding FILE -n auto
    pytest --archval-graphs DIR -k 'tiny-llama-decode'      one folder's one graph kind
"""
from pathlib import Path

import pytest

from .checks import published
from .core.binding import graph_texts
from .core.case import run_case
from .core.emitter_protocol import PRE_EMITTED
from .core.kinds import KINDS
from .core.record import PASS, UNSUPPORTED
from .modes.graphs import folders
from .present.console import line


def pytest_generate_tests(metafunc):
    if "folder" in metafunc.fixturenames:
        found = folders(Path(metafunc.config.getoption("archval_graphs")), None)
        cases = [(name, kind) for name in found for kind in KINDS]
        metafunc.parametrize("folder,graph", cases, ids=[f"{name}-{kind}" for name, kind in cases])


@pytest.fixture(scope="session")
def prepared(request, tmp_path_factory):
    """Each folder's config taken as given and seeded, once per process (as `archval --graphs` does)."""
    directory, work, done = Path(request.config.getoption("archval_graphs")), tmp_path_factory.mktemp("graphs"), {}

    def prepare(name: str):
        if name not in done:
            folder = folders(directory, [name])[name]
            done[name] = folder, published.prepare(str(folder / "config.json"), work, name, as_is=True,
                                                   replay=f"archval --graphs {directory} --family {name}")
        return done[name]
    return prepare


def test_graphs(folder, graph, binding, prepared, case_report, request):
    directory, ready = prepared(folder)
    kind = KINDS[graph]
    if kind.on_request and f"graph_{graph}" not in request.config.getoption("markexpr", ""):
        pytest.skip(f"{graph} runs on request, as in the gate: select it with -m graph_{graph}")
    if ready.error:
        pytest.fail(ready.error)
    if not kind.every_family and not kind.applies(ready.fixture):  # decided by the oracle, never by the files
        pytest.skip(f"{folder} has no {graph} graph: its oracle routes no layer to experts")
    record = run_case(ready.fixture, graph, texts=graph_texts(directory, binding, KINDS), emitter=PRE_EMITTED,
                      bundles=case_report.bundles, binding=binding)
    case_report(record, fixture=ready.fixture, emitter=PRE_EMITTED)
    if record.verdict == UNSUPPORTED:
        pytest.skip(f"UNSUPPORTED: {record.message}")
    assert record.verdict == PASS, line(record)
