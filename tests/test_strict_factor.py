"""STRICT_FACTOR against the data it was chosen from: every committed per-step noise table (bench/noise_table.py),
the machine variants' included, says when, at which commit and on which machine it was measured, and the factor
stays HEADROOM times above the worst correct case of all of them, and of the worst another machine reported."""
import re

from archval.harness import ROOT
from archval.harness.core import noise

HEADROOM = 1.5
# Issue 32: the 20-seed table re-run on another 2-core AMD EPYC reached 18.70x (another seed, gemma decode).
OTHER_MACHINE_WORST = 18.70
TABLES = sorted((ROOT / "bench").glob("noise_table_*variants*.txt")) + [
    ROOT / "bench/noise_table_per_step_20_seeds.txt", ROOT / "bench/noise_table_per_step_50_seeds.txt"]


def worst_ratios(text: str) -> list[float]:
    return [float(m) for m in re.findall(r"worst ratio ([\d.]+)", text)]


def test_the_variant_tables_say_when_where_and_at_which_commit():
    variants = [t for t in TABLES if "variants" in t.name]
    assert variants, "no committed table of the machine variants (bench/noise_table.py --variants)"
    for table in variants:
        head = table.read_text().split("\n== ", 1)[0]
        assert re.search(r"\b20\d\d-\d\d-\d\d\b", head) and re.search(r"commit [0-9a-f]{7,40}", head), table.name
        assert "AMD EPYC" in head or "CPU" in head, table.name


def test_the_factor_leaves_headroom_over_every_correct_case_measured():
    worst = max([OTHER_MACHINE_WORST] + [r for t in TABLES for r in worst_ratios(t.read_text())])
    assert noise.STRICT_FACTOR >= HEADROOM * worst, f"{noise.STRICT_FACTOR} < {HEADROOM} x {worst}"
    for table in TABLES:  # those judged at today's factor (the 20-seed one was at 10) fail no correct case
        text = table.read_text()
        if f"strict factor {noise.STRICT_FACTOR:g}:" in text:
            assert "false failure: " not in text and f"strict factor {noise.STRICT_FACTOR:g}: 0 " in text, table.name
