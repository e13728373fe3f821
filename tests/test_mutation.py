"""The mutation self-test has teeth: every mutant kind, on a family it applies to, FAILs under the
strict bound (or is proven equivalent at fp32); the strict bound kills what the fixed one misses."""
import pytest

from archval.emitter import Config
from archval.harness.checks import mutants, mutation
from archval.harness.cli import main as gate_main
from archval.harness.core import fixtures
from archval.harness.present.console import mutant_line


def first_family(mutant: str) -> str:
    for name in fixtures.names():
        fixture = fixtures.load(name)
        if mutants.applicable(mutant, Config.from_json(fixture.config_path), fixture.mutants):
            return name
    raise AssertionError(f"no fixture exercises {mutant}")


KINDS = [pytest.param(first_family(m), m, id=f"{first_family(m)}-{m}") for m in mutants.MUTANTS]


@pytest.mark.parametrize("family,mutant", KINDS)
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
    (record,) = mutation.run_family("llama", only=("attn_scale_permille",))
    assert record.mutant.killed and not record.mutant.fixed_killed, mutant_line(record)
    assert record.mutant.margin >= mutation.WEAK_MARGIN and record.mutant.judged_by == "strict bound"
    (fixed,) = mutation.run_family("llama", strict_bound=False, only=("attn_scale_permille",))
    assert fixed.verdict == "PASS" and not fixed.mutant.killed, mutant_line(fixed)


def test_the_blind_spots_fail_by_a_wide_margin_on_every_family():
    """The slips an audit found passing (issue 20): epsilon read as the other common default either way, and
    RoPE by slot instead of position, in either graph. Each must FAIL by WEAK_MARGIN or more wherever it applies;
    the full table over every family is --mutants (docs/diagnosis.md)."""
    blind_spots = ("eps_10x", "eps_tenth", "rope_by_slot", "decode_rope_by_cache_len")
    for name in ("gemma3", "olmo2", "mistral"):  # 1e-6 with sandwich norms, post-norm with q/k norm, 1e-5 windowed
        for record in mutation.run_family(name, only=blind_spots):
            assert record.mutant.killed and record.mutant.margin >= mutation.WEAK_MARGIN, mutant_line(record)


def test_gate_mutants_reports_kill_rate(tmp_path, capsys):
    code = gate_main(["--mutants", "--family", "llama", "--jobs", "1", "--reports", str(tmp_path)])
    said = capsys.readouterr()
    out = said.out
    assert code == 0, out
    # each mutant said as it is done: a progress line counting it (and, every 10 s, one counting what is done)
    applicable = len(mutation.family_mutants("llama"))
    counts = [int(line[1:].split("/", 1)[0]) for line in said.err.splitlines() if f"/{applicable} mutants]" in line]
    assert set(counts) - {0} == set(range(1, applicable + 1)) and counts == sorted(counts), said.err
    assert f"llama                killed {applicable}/{applicable} (100%)" in out and "survivors: none" in out
    assert "llama:attn_scale_permille" in out.split("the fixed bound alone misses")[1]
    assert f"weak spots (killed by less than {mutation.WEAK_MARGIN:g}x): none" in out
    smallest = out.split("smallest detection margins: ")[1].splitlines()[0]
    assert len(smallest.split(", ")) == min(5, applicable), smallest
    assert (tmp_path / "mutants.json").is_file()


def test_a_tied_head_read_from_its_alias_is_refused_at_binding():
    """A tied checkpoint holds no lm_head.weight, so the oracle offers none (issue 19): the mutant's graph names a
    tensor the checkpoint lacks, its case is an ERROR at binding, and the self-test counts it as refused."""
    (record,) = mutation.run_family("gemma", only=("tied_head_alias",))
    assert record.verdict == "ERROR" and record.mutant.refused and record.mutant.killed, mutant_line(record)
    assert "refused: " in mutant_line(record) and mutants.MUTANTS["tied_head_alias"].refused_as in mutant_line(record)
