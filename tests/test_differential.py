"""Every fixture against its oracle, and every fixture's mutants caught: the check has teeth."""
import pytest

from emitter import Config, emit
from harness import fixtures, mutants
from harness.gate import format_line
from harness.validate import run_case

NAMES = fixtures.names()
MUTANT_CASES = [(n, m) for n in NAMES for m in fixtures.load(n).mutants]


@pytest.mark.parametrize("name", NAMES)
def test_prefill_matches_oracle(name):
    record = run_case(fixtures.load(name))
    assert record["verdict"] == "PASS", format_line(record)
    assert record["argmax_match"], format_line(record)


@pytest.mark.parametrize("name,mutant", MUTANT_CASES, ids=[f"{n}-{m}" for n, m in MUTANT_CASES])
def test_mutant_fails(name, mutant):
    fixture = fixtures.load(name)
    broken = emit(mutants.apply(mutant, Config.from_json(fixture.config_path)))
    assert broken != emit(Config.from_json(fixture.config_path)), f"{mutant} does not change {name}'s graph"
    record = run_case(fixture, text=broken)
    assert record["verdict"] == "FAIL", format_line(record)


@pytest.mark.parametrize("name", NAMES)
def test_fixture_lists_known_mutants(name):
    fixture = fixtures.load(name)
    assert fixture.mutants, f"{name} lists no mutant: nothing proves its deltas are checked"
    unknown = set(fixture.mutants) - set(mutants.MUTANTS)
    assert not unknown, f"{name} lists unknown mutants {sorted(unknown)}"
