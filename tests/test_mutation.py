"""The mutation self-test has teeth: every mutant kind, on a family it applies to, FAILs under the
strict bound (or is proven equivalent at fp32); the strict bound kills what the fixed one misses."""
import pytest

from emitter import Config
from harness.checks import mutants, mutation
from harness.cli import main as gate_main
from harness.core import fixtures
from harness.present.console import mutant_line


def first_family(mutant: str) -> str:
    for name in fixtures.names():
        fixture = fixtures.load(name)
        if mutants.applicable(mutant, Config.from_json(fixture.config_path), fixture.mutants):
            return name
    raise AssertionError(f"no fixture exercises {mutant}")


KINDS = [(first_family(m), m) for m in mutants.MUTANTS]


@pytest.mark.parametrize("family,mutant", KINDS, ids=[f"{f}-{m}" for f, m in KINDS])
def test_every_mutant_kind_is_killed(family, mutant):
    (record,) = mutation.run_family(family, only=(mutant,))
    assert record.mutant.killed or record.mutant.equivalent, mutant_line(record)


def test_predicates_cover_every_listed_mutant():
    """A fixture's listed mutants apply by predicate too, except honour_inert_window (an inert
    config field: the parsed Config cannot see it)."""
    for name in fixtures.names():
        fixture = fixtures.load(name)
        config = Config.from_json(fixture.config_path)
        by_predicate = {m for m, bug in mutants.MUTANTS.items() if bug.applies and bug.applies(config)}
        assert set(fixture.mutants) - by_predicate <= {"honour_inert_window"}, name


def test_strict_bound_kills_what_the_fixed_bound_misses():
    (record,) = mutation.run_family("llama", only=("eps_10x",))
    assert record.mutant.killed and not record.mutant.fixed_killed, mutant_line(record)
    (fixed,) = mutation.run_family("llama", strict_bound=False, only=("eps_10x",))
    assert fixed.verdict == "PASS" and not fixed.mutant.killed, mutant_line(fixed)


def test_gate_mutants_reports_kill_rate(tmp_path, capsys):
    code = gate_main(["--mutants", "--family", "llama", "--jobs", "1", "--reports", str(tmp_path)])
    said = capsys.readouterr()
    out = said.out
    assert code == 0, out
    # each mutant said as it is done: a progress line counting it (and, every 10 s, one counting what is done)
    counts = [int(line[1:].split("/", 1)[0]) for line in said.err.splitlines() if "/7 mutants]" in line]
    assert set(counts) - {0} == set(range(1, 8)) and counts == sorted(counts), said.err
    assert "llama                killed 7/7 (100%)" in out and "survivors: none" in out
    assert "llama:eps_10x" in out.split("the fixed bound alone misses")[1]
    assert (tmp_path / "mutants.json").is_file()
