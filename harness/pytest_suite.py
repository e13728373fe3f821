"""archval's cases as pytest tests, collected by the plugin (harness/pytest_plugin.py) when a run gives
--archval-emitter: every fixture family and every graph kind it has (but those validated on request only), judged
as the gate judges them.

    pytest --archval-emitter 'CMD' -n auto
    pytest --archval-emitter 'CMD' -m family_llama          one family
    pytest --archval-emitter 'CMD' -m graph_decode          one graph kind
    pytest --archval-emitter 'CMD' -k cohere2_moe           a model type with no fixture: one synthesised
"""
from dataclasses import replace

import pytest

from .core import fixtures
from .core.case import run_case
from .core.kinds import KINDS
from .core.record import PASS, UNSUPPORTED
from .present.console import line

CASES = [(family, kind) for family in fixtures.case_names() for kind in KINDS]


@pytest.mark.parametrize("family,graph", CASES, ids=[f"{f}-{k}" for f, k in CASES])
def test_case(family, graph, emitter, binding, dtype, case_report, request):
    fixture, kind = replace(fixtures.load(family), dtype=dtype), KINDS[graph]
    if kind.on_request and f"graph_{graph}" not in request.config.getoption("markexpr", ""):
        pytest.skip(f"{graph} runs on request, as in the gate: select it with -m graph_{graph}")
    if not kind.every_family and not kind.applies(fixture):  # decided by the oracle, never by the emitter
        pytest.skip(f"{family} has no {graph} graph: it checks a mixture-of-experts block, and {family}'s oracle "
                    "routes no layer through experts")
    record = run_case(fixture, graph, emitter=emitter, bundles=case_report.bundles, binding=binding)
    case_report(record)  # as the gate: a failing prefill localised, a failing case's repro bundle
    if record.verdict == UNSUPPORTED:  # the emitter refuses the family (exit 2), in its own words
        pytest.skip(f"UNSUPPORTED: {record.message}")
    assert record.verdict == PASS, line(record)
