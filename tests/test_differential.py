"""Every fixture against its oracle, prefill and decode, and every fixture's mutants caught: the checks have teeth."""
from dataclasses import replace

import pytest

from archval.emitter import Config, emit
from archval.harness.core import fixtures
from archval.harness.checks import mutants
from archval.harness.present.console import line as format_line
from archval.harness.core.case import run_case
from archval.harness.core.record import UNSUPPORTED

NAMES = fixtures.case_names()  # with those synthesised for the run (-k MODEL_TYPE with --emitter)
MUTANT_CASES = [(n, m) for n in NAMES for m in fixtures.load(n).mutants]


def skip_if_refused(record):
    """An emitter that refuses the family (exit 2) has nothing to test here: skipped, in its words."""
    if record.verdict == UNSUPPORTED:
        pytest.skip(f"UNSUPPORTED: {record.message}")


@pytest.mark.graph_prefill
@pytest.mark.parametrize("name", NAMES)
def test_prefill_matches_oracle(name, emitter, binding, dtype, case_report):
    record = run_case(replace(fixtures.load(name), dtype=dtype), emitter=emitter, bundles=case_report.bundles,
                      binding=binding)
    case_report(record)
    skip_if_refused(record)
    assert record.verdict == "PASS", format_line(record)
    assert record.tokens or record.logits.argmax_match, format_line(record)  # tokens: judged one by one


@pytest.mark.graph_decode
@pytest.mark.parametrize("name", NAMES)
def test_decode_matches_oracle_token_for_token(name, emitter, binding, dtype, case_report):
    fixture = replace(fixtures.load(name), dtype=dtype)
    record = run_case(fixture, "decode", emitter=emitter, bundles=case_report.bundles, binding=binding)
    case_report(record)
    skip_if_refused(record)
    assert record.verdict == "PASS", format_line(record)
    if record.tokens:  # graphs that return tokens: every one the oracle's, the rest is about logits
        assert record.tokens.first_divergence is None, format_line(record)
        return
    assert record.decode.first_divergence is None, format_line(record)
    timeline = record.decode.timeline
    assert len(timeline) == fixture.decode_steps + 1
    assert [t.position for t in timeline[1:]] == fixture.decode_positions().tolist()
    # a continuation that repeats one token would exercise the cache with one key: the fixture is too weak
    assert len({step.oracle_token for step in timeline}) > len(timeline) // 2, timeline


@pytest.mark.parametrize("name,mutant", MUTANT_CASES, ids=[f"{n}-{m}" for n, m in MUTANT_CASES])
def test_mutant_fails(name, mutant, case_report):
    fixture, bug = fixtures.load(name), mutants.MUTANTS[mutant]
    broken = bug.texts(fixture.config_path)
    assert broken[bug.graph] != emit(Config.from_json(fixture.config_path), bug.graph), \
        f"{mutant} does not change {name}'s graph"
    # The fixed bound alone, and no XLA run: every listed mutant must show without the strict bound
    # (the --mutants suite and tests/test_mutation.py cover the strict one and the triangulation).
    record = run_case(fixture, bug.graph, texts=broken, xla=False, strict_bound=False)
    case_report(record, text=broken[bug.graph], mutant=mutant)
    assert record.verdict == "FAIL", format_line(record)


@pytest.mark.parametrize("name", fixtures.names())  # the committed ones: a synthesised fixture has no mutant
def test_fixture_lists_known_mutants(name):
    fixture = fixtures.load(name)
    assert fixture.mutants, f"{name} lists no mutant: nothing proves its deltas are checked"
    unknown = set(fixture.mutants) - set(mutants.MUTANTS)
    assert not unknown, f"{name} lists unknown mutants {sorted(unknown)}"
    assert "cache_slot_off_by_one" in fixture.mutants, f"{name}: nothing proves its decode cache is checked"
