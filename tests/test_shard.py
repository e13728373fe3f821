"""Sharding: the cost table, slowest first, a deterministic balanced split, --shard, --merge, pytest --shard."""
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from archval.harness.cli import main
from archval.harness.core import fixtures, summary
from archval.harness.core.case import error_record
from archval.harness.pool import shard

ROOT = Path(__file__).resolve().parent.parent
NAMES = fixtures.names()


def loads(count: int) -> list[float]:
    return [sum(map(shard.cost, shard.assign(NAMES, i, count))) for i in range(1, count + 1)]


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7, len(NAMES), len(NAMES) + 5])
def test_assign_is_a_deterministic_partition_in_the_gates_order(count):
    shards = [shard.assign(NAMES, i, count) for i in range(1, count + 1)]
    assert sorted(n for s in shards for n in s) == NAMES  # every family exactly once
    assert all(s == sorted(s) for s in shards)  # in the order given (fixtures.names() is sorted)
    assert shards == [shard.assign(NAMES, i, count) for i in range(1, count + 1)]


def test_membership_does_not_depend_on_the_order_given():
    for count in (2, 3, 4):
        for i in range(1, count + 1):
            assert set(shard.assign(NAMES, i, count)) == set(shard.assign(NAMES[::-1], i, count))


@pytest.mark.parametrize("count", [2, 3, 4])
def test_shards_are_balanced(count):
    costs = [shard.cost(n) for n in NAMES]
    mean = sum(costs) / count
    lower = max(mean, max(costs))  # no split of these families can finish sooner
    found = loads(count)
    assert max(found) <= 4 / 3 * lower, found  # Graham's bound for longest-first
    assert max(found) - min(found) <= max(costs), found  # the last family onto the fullest shard went to the emptiest
    naive = [sum(map(shard.cost, NAMES[i::count])) for i in range(count)]
    assert max(found) < max(naive), (found, naive)  # better than dealing alphabetically


def test_longest_first_ties_go_to_the_lowest_shard_and_by_name(monkeypatch):
    monkeypatch.setattr(shard, "table", lambda: {"a": 3.0, "b": 3.0, "c": 2.0, "d": 2.0, "e": 2.0})
    assert shard.slowest_first(["e", "d", "c", "b", "a"]) == ["a", "b", "c", "d", "e"]
    assert shard.bins(["e", "d", "c", "b", "a"], 2) == [["a", "c", "e"], ["b", "d"]]
    assert shard.assign(["e", "d", "c", "b", "a"], 1, 2) == ["e", "c", "a"]


def test_slowest_first_on_the_table():
    order = shard.slowest_first(NAMES)
    assert sorted(order) == NAMES
    assert [shard.cost(n) for n in order] == sorted((shard.cost(n) for n in NAMES), reverse=True)
    assert order[0] == max(NAMES, key=shard.cost)


def test_a_family_without_a_measured_cost_costs_the_median():
    assert shard.cost("not-a-fixture") == statistics.median(shard.table().values())
    assert set(shard.table()) <= set(NAMES)  # _about is no family


def test_by_hash_is_stable_and_spreads():
    assert shard.by_hash("tests/test_config.py::test_x", 4) == shard.by_hash("tests/test_config.py::test_x", 4)
    spread = {shard.by_hash(f"case-{i}", 3) for i in range(50)}
    assert spread == {1, 2, 3}


OLD_RECORD = {"verdict": "PASS", "max_abs_diff": 1e-5, "argmax_match": True, "bound": 0.01, "message": "",
              "replay": "./validate_arch.sh --family qwen2"}


def test_write_costs_sums_every_stage_of_every_record(tmp_path):
    costs = tmp_path / "costs.json"
    costs.write_text(json.dumps({"_about": "note", "qwen2": 1.0, "mimo": 2.0, "gone": 9.0}))
    found = tmp_path / "summary.json"
    found.write_text(json.dumps([  # as archval wrote it before schema_version 1: a bare list of flat records
        {**OLD_RECORD, "family": "qwen2", "graph": "prefill", "timings": {"compile": 1.25, "oracle": 2.0}},
        {**OLD_RECORD, "family": "qwen2", "graph": "decode", "timings": {"compile": 0.5}},
        {**OLD_RECORD, "family": "Some-Published-7B", "graph": "prefill", "timings": {"compile": 4.0}},
    ]))
    assert shard.write_costs(found, costs) == {"mimo": 2.0, "qwen2": 3.8}
    assert json.loads(costs.read_text()) == {"_about": "note", "mimo": 2.0, "qwen2": 3.8}
    found.write_text("[{]")
    with pytest.raises(ValueError, match="summary.json: not a gate summary.json"):
        shard.write_costs(found, costs)


@pytest.mark.parametrize("value,why", [("0/2", "I must be between 1 and N (2)"), ("3/2", "I must be between 1 and N (2)"),
                                       ("2", "expected I/N"), ("a/b", "expected I/N"), ("1/0", "N must be at least 1")])
def test_bad_shard_values_exit_2_naming_the_option_and_value(capsys, value, why):
    assert main(["--shard", value, "--structural-only"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --shard {value}: ") and why in err and err.count("\n") == 1


def test_shard_with_family_is_refused(capsys):
    assert main(["--shard", "1/2", "--family", "qwen2"]) == 2
    assert "--shard cannot be combined with --family" in capsys.readouterr().err


def structural_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if re.match(r"\S+ +(prefill|decode) +\S", line)]


def test_structural_shards_cover_every_case_exactly_once(capsys):
    assert main(["--structural-only"]) == 0
    everything = structural_lines(capsys.readouterr().out)
    parts = []
    for i in (1, 2, 3):
        assert main(["--shard", f"{i}/3", "--structural-only"]) == 0
        out = capsys.readouterr().out
        assert f"== shard {i}/3: " in out and "orphan goldens not checked" in out
        families = {line.split()[0] for line in structural_lines(out) if not line.startswith("real/")}
        assert families == set(shard.assign(NAMES, i, 3))
        parts += structural_lines(out)
    assert sorted(parts) == sorted(everything) and len(parts) == len(set(parts))


def test_a_shard_without_families_passes_with_no_records(tmp_path, capsys):
    n = len(fixtures.names()) + 1  # more shards than families: the last holds none
    assert main(["--shard", f"{n}/{n}", "--reports", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"== shard {n}/{n}: no families" in out and "RESULT: PASS" in out
    assert json.loads((tmp_path / "summary.json").read_text())["records"] == []


# ---- --merge: two shard runs joined are the one run over both

def without_timings(records: list[dict]) -> list[dict]:
    """What a record measures: not how long it took, nor what the cache held then."""
    return [{k: v for k, v in r.items() if k not in ("timings", "cache_hit")} for r in records]


def table_rows(index: Path) -> list[str]:
    """The index's rows without their time cell (the last but one, before the reason)."""
    body = index.read_text().split("<tbody>")[1].split("</tbody>")[0]
    rows = [row.strip().rsplit("<td", 2) for row in body.split("</tr>") if row.strip()]
    return [f"{before}<td{why}" for before, _, why in rows]


def test_merge_writes_what_one_run_over_every_family_writes(tmp_path, capsys):
    """Shard directories from two cheap one-family runs, against one run over both families."""
    for name, families in (("qwen2", ["qwen2"]), ("mimo", ["mimo"]), ("both", ["mimo", "qwen2"])):
        argv = [a for f in families for a in ("--family", f)] + ["--reports", str(tmp_path / name), "--jobs", "1"]
        assert main(argv) == 0
    capsys.readouterr()
    out, both = tmp_path / "merged", tmp_path / "both"
    assert main(["--merge", str(tmp_path / "qwen2"), str(tmp_path / "mimo"), "--reports", str(out)]) == 0
    printed = capsys.readouterr().out
    merged, whole = (json.loads((d / "summary.json").read_text())["records"] for d in (out, both))
    assert [(r["family"], r["graph"]) for r in merged] == [(r["family"], r["graph"]) for r in whole]
    assert without_timings(merged) == without_timings(whole)
    csv = [pd.read_csv(d / "summary.csv").drop(columns="time_s") for d in (out, both)]
    assert len(csv[0]) == 4 and csv[0].equals(csv[1])
    assert table_rows(out / "index.html") == table_rows(both / "index.html")
    for family in ("qwen2", "mimo"):
        assert (out / f"{family}.html").read_bytes() == (tmp_path / family / f"{family}.html").read_bytes()
    assert printed.index("mimo ") < printed.index("qwen2 ")  # the gate's family order, whatever the shard order
    assert "4 passed, 0 failed, 0 errors, 0 unsupported" in printed and printed.rstrip().endswith("RESULT: PASS")


def shard_dir(directory: Path, *families: str) -> Path:
    """A shard's reports as a run whose emitter failed on every case would leave them (no pages)."""
    records = [error_record(fixtures.load(f), graph, "emit", "the emitter exited with 1").to_json() for f in families
               for graph in ("prefill", "decode")]
    directory.mkdir()
    (directory / "summary.json").write_text(json.dumps(records))
    return directory


def test_merge_fails_when_a_shard_failed_and_says_which_page_is_missing(tmp_path, capsys):
    a, b = shard_dir(tmp_path / "a", "qwen2"), shard_dir(tmp_path / "b", "llama", "mimo")
    assert main(["--merge", str(a), str(b), "--reports", str(tmp_path / "out")]) == 1
    printed = capsys.readouterr().out
    assert [r["family"] for r in json.loads((tmp_path / "out" / "summary.json").read_text())["records"]] == \
        ["llama", "llama", "mimo", "mimo", "qwen2", "qwen2"]
    assert "0 passed, 0 failed, 6 errors, 0 unsupported" in printed and printed.rstrip().endswith("RESULT: FAIL")
    assert f"reports: qwen2.html not copied from {a}" in printed


def test_merge_reads_an_old_bare_list_beside_the_new_form(tmp_path, capsys):
    """A shard run by an archval from before schema_version 1 (a bare list of flat records) joins a new one."""
    old = tmp_path / "old"
    old.mkdir()
    (old / "summary.json").write_text(json.dumps([
        {"family": "qwen2", "model_type": "qwen2", "graph": graph, "verdict": "ERROR", "max_abs_diff": None,
         "argmax_match": None, "bound": 0.01, "message": "the emitter exited with 1",
         "replay": "./validate_arch.sh --family qwen2"} for graph in ("prefill", "decode")]))
    new = tmp_path / "new"
    summary.write(new / "summary.json", summary.run_info("gate", ["validate_arch.sh"], None),
                  [error_record(fixtures.load("llama"), graph, "emit", "the emitter exited with 2") for graph in
                   ("prefill", "decode")])
    assert main(["--merge", str(old), str(new), "--reports", str(tmp_path / "out")]) == 1
    _, records = summary.read(tmp_path / "out" / "summary.json")
    assert [(r.family, r.verdict, r.message) for r in records] == [
        ("llama", "ERROR", "stage 'emit': the emitter exited with 2"),
        ("llama", "ERROR", "stage 'emit': the emitter exited with 2"),
        ("qwen2", "ERROR", "the emitter exited with 1"), ("qwen2", "ERROR", "the emitter exited with 1")]
    assert "0 passed, 0 failed, 4 errors, 0 unsupported" in capsys.readouterr().out


def test_merge_refuses_a_family_in_two_shards(tmp_path, capsys):
    a, b = shard_dir(tmp_path / "a", "qwen2", "llama"), shard_dir(tmp_path / "b", "qwen2")
    assert main(["--merge", str(a), str(b), "--reports", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"family 'qwen2' is in both {a / 'summary.json'} and {b / 'summary.json'}" in err
    assert not (tmp_path / "out").exists()


def test_merge_refuses_a_directory_without_summary_or_with_a_broken_one(tmp_path, capsys):
    a, empty = shard_dir(tmp_path / "a", "qwen2"), tmp_path / "empty"
    empty.mkdir()
    assert main(["--merge", str(a), str(empty), "--reports", str(tmp_path / "out")]) == 2
    assert f"--merge {empty}: no summary.json in it" in capsys.readouterr().err
    (empty / "summary.json").write_text('[{"family": "x"')
    assert main(["--merge", str(empty), "--reports", str(tmp_path / "out")]) == 2
    assert f"{empty / 'summary.json'}: not readable as JSON" in capsys.readouterr().err
    (empty / "summary.json").write_text('[{"family": "x"}]')
    assert main(["--merge", str(empty), "--reports", str(tmp_path / "out")]) == 2
    assert f"{empty / 'summary.json'}: not a gate summary.json" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_merge_never_writes_into_one_of_its_inputs(tmp_path, capsys):
    a, b = shard_dir(tmp_path / "a", "qwen2"), shard_dir(tmp_path / "b", "mimo")
    before = {p.name: p.read_bytes() for p in a.iterdir()}
    assert main(["--merge", str(a), str(b), "--reports", str(a)]) == 2
    assert "is one of the --merge inputs" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in a.iterdir()} == before


# ---- pytest --shard: the same families as the gate's shard, everything exactly once

def collected(*options: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           "tests/test_config.py", "tests/test_structural.py", *options],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def node_ids(result: subprocess.CompletedProcess) -> list[str]:
    assert result.returncode == 0, result.stdout + result.stderr
    return [line for line in result.stdout.splitlines() if "::" in line]


def test_pytest_shards_partition_the_tests_and_follow_the_gates_families():
    everything = node_ids(collected())
    parts = [node_ids(collected("--shard", f"{i}/2")) for i in (1, 2)]
    assert sorted(parts[0] + parts[1]) == sorted(everything)
    assert not set(parts[0]) & set(parts[1]) and all(parts)
    for i, part in enumerate(parts, 1):
        for family in shard.assign(NAMES, i, 2):
            assert f"tests/test_config.py::test_flags_agree_with_transformers[{family}]" in part
            assert f"tests/test_structural.py::test_signature_matches_golden[{family}-decode]" in part


def test_pytest_refuses_a_bad_shard():
    result = collected("--shard", "3/2")
    assert result.returncode == 4 and "--shard 3/2: I must be between 1 and N (2)" in result.stderr


def test_merge_copies_each_shards_repro_bundles_where_their_records_point(tmp_path, capsys):
    records = []
    for family in ("qwen2", "llama"):
        record = error_record(fixtures.load(family), "prefill", "compile", "iree-compile exited with 1")
        record.bundle = f"bundles/{family}-prefill"
        (tmp_path / family / record.bundle).mkdir(parents=True)
        (tmp_path / family / record.bundle / "prefill.mlir").write_text(f"module @{family} {{}}\n")
        summary.write(tmp_path / family / "summary.json", summary.run_info("gate", [], None), [record])
        records.append(record)
    (tmp_path / "llama" / records[1].bundle / "prefill.mlir").unlink()
    (tmp_path / "llama" / records[1].bundle).rmdir()  # a shard that lost one: said, and no dangling link
    assert main(["--merge", str(tmp_path / "qwen2"), str(tmp_path / "llama"), "--reports", str(tmp_path / "out")]) == 1
    assert (tmp_path / "out/bundles/qwen2-prefill/prefill.mlir").read_text() == "module @qwen2 {}\n"
    assert "reports: bundles/llama-prefill not copied from" in capsys.readouterr().out
    merged = {r.family: r.bundle for r in summary.read(tmp_path / "out" / "summary.json")[1]}
    assert merged == {"llama": None, "qwen2": "bundles/qwen2-prefill"}
