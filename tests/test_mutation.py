"""The mutation self-test has teeth: every mutant kind, on a family it applies to, FAILs under the
strict bound (or is proven equivalent at fp32); the strict bound kills what the fixed one misses."""
import pytest

from archval.emitter import Config
from archval.harness.checks import mutants, self_test
from archval.harness.cli import main as gate_main
from archval.harness.core import fixtures
from archval.harness.present.console import kill_summary, mutant_line


def first_family(mutant: str) -> str:
    for name in fixtures.names():
        fixture = fixtures.load(name)
        if mutants.applicable(mutant, Config.from_json(fixture.config_path), fixture.mutants):
            return name
    raise AssertionError(f"no fixture exercises {mutant}")


KINDS = [pytest.param(first_family(m), m, id=f"{first_family(m)}-{m}") for m in mutants.MUTANTS]


@pytest.mark.parametrize("family,mutant", KINDS)
def test_every_mutant_kind_is_killed(family, mutant):
    (record,) = self_test.run_family(family, only=(mutant,))
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
    (record,) = self_test.run_family("llama", only=("attn_scale_permille",))
    assert record.mutant.killed and not record.mutant.fixed_killed, mutant_line(record)
    assert record.mutant.margin >= self_test.WEAK_MARGIN and record.mutant.judged_by == "strict bound"
    (fixed,) = self_test.run_family("llama", strict_bound=False, only=("attn_scale_permille",))
    assert fixed.verdict == "PASS" and not fixed.mutant.killed, mutant_line(fixed)


def test_the_blind_spots_fail_by_a_wide_margin_on_every_family():
    """The slips an audit found passing (issue 20): epsilon read as the other common default either way, and
    RoPE by slot instead of position, in either graph. Each must FAIL by WEAK_MARGIN or more wherever it applies;
    the full table over every family is --mutants (docs/diagnosis.md)."""
    blind_spots = ("eps_10x", "eps_tenth", "rope_by_slot", "decode_rope_by_cache_len")
    for name in ("gemma3", "olmo2", "mistral"):  # 1e-6 with sandwich norms, post-norm with q/k norm, 1e-5 windowed
        for record in self_test.run_family(name, only=blind_spots):
            assert record.mutant.killed and record.mutant.margin >= self_test.WEAK_MARGIN, mutant_line(record)


def test_gate_mutants_reports_kill_rate(tmp_path, capsys):
    code = gate_main(["--mutants", "--family", "llama", "--jobs", "1", "--reports", str(tmp_path)])
    said = capsys.readouterr()
    out = said.out
    assert code == 0, out
    # each mutant said as it is done: a progress line counting it (and, every 10 s, one counting what is done)
    applicable = len(self_test.family_mutants("llama"))
    counts = [int(line[1:].split("/", 1)[0]) for line in said.err.splitlines() if f"/{applicable} mutants]" in line]
    assert set(counts) - {0} == set(range(1, applicable + 1)) and counts == sorted(counts), said.err
    assert f"llama                killed {applicable}/{applicable} (100%): {applicable} FAIL, 0 refused" in out
    assert f"kill rate {applicable}/{applicable} (100.0%): {applicable} FAIL, each with its margin; 0 refused" in out
    assert "survivors: none" in out and "FAIL with no margin (no failed check has a ratio): none" in out
    assert "llama:attn_scale_permille" in out.split("the fixed bound alone misses")[1]
    assert f"weak spots (killed by less than {self_test.WEAK_MARGIN:g}x): none" in out
    smallest = out.split("smallest detection margins: ")[1].splitlines()[0]
    assert len(smallest.split(", ")) == min(5, applicable), smallest
    assert (tmp_path / "mutants.json").is_file()


def test_a_tied_head_read_from_its_alias_is_refused_at_binding():
    """A tied checkpoint holds no lm_head.weight, so the oracle offers none (issue 19): the mutant's graph names a
    tensor the checkpoint lacks, its case is an ERROR at binding, and the self-test counts it as refused."""
    (record,) = self_test.run_family("gemma", only=("tied_head_alias",))
    assert record.verdict == "ERROR" and record.mutant.refused and record.mutant.killed, mutant_line(record)
    assert "refused: " in mutant_line(record) and mutants.MUTANTS["tied_head_alias"].refused_as in mutant_line(record)
    assert record.mutant.margin is None, mutant_line(record)


def test_refusals_are_counted_apart_from_failed_kills():
    """A refusal is no measurement: the kill rate says how many kills are FAILs (each with its margin) and how many
    are refusals, and names the refused."""
    records = self_test.run_family("gemma", only=("tied_head_alias", "attn_scale_1pct"))
    lines, ok = kill_summary(records, self_test.WEAK_MARGIN)
    assert ok and "gemma                killed 2/2 (100%): 1 FAIL, 1 refused   fixed bound alone 2/2" in lines, lines
    assert "kill rate 2/2 (100.0%): 1 FAIL, each with its margin; 1 refused (ERROR at binding, as the mutant " \
           "expects: no margin)" in lines, lines
    assert "refused: gemma:tied_head_alias" in lines and any("gemma:attn_scale_1pct" in line for line in lines
                                                               if line.startswith("smallest detection margins")), lines


WINDOWED = ("mistral", "gemma2", "cohere2")  # every layer sliding; alternating with (1 + w) norms; 3 of 4 sliding


@pytest.mark.parametrize("family", WINDOWED)
def test_a_window_measured_in_positions_fails_by_a_wide_margin(family):
    """Transformers measures windows over cache slots; the fixtures' positions are apart from their slots
    (fixture.prompt_positions), so a window measured in positions is narrower where it bites, and must FAIL by
    WEAK_MARGIN or more on a family with sliding layers (every one: --mutants, docs/diagnosis.md)."""
    (record,) = self_test.run_family(family, only=("window_by_position",))
    assert record.verdict == "FAIL" and record.mutant.margin >= self_test.WEAK_MARGIN, mutant_line(record)
