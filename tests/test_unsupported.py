"""A family the emitter refuses (exit 2, one sentence) is UNSUPPORTED with that sentence: counted apart, shown
in every report, and no failure of the run unless --require-all asks for every family."""
import csv
import json
import sys
from pathlib import Path

import pytest

from archval.harness.cli import main
from archval.harness.core import fixtures

ONLY = Path(__file__).parent / "emitters" / "only.py"
SUPPORTED = ("llama", "qwen3")


@pytest.mark.parametrize("require_all", [False, True])
def test_a_refusing_emitter_over_all_families(tmp_path, capsys, require_all):
    code = main(["--reports", str(tmp_path), "--emitter", f"{sys.executable} {ONLY} {','.join(SUPPORTED)}",
                 *(["--require-all"] if require_all else [])])
    out = capsys.readouterr().out
    records = json.loads((tmp_path / "summary.json").read_text())["records"]
    supported = [r for r in records if r["model_type"] in SUPPORTED]
    refused = [r for r in records if r["model_type"] not in SUPPORTED]
    assert {r["verdict"] for r in supported} == {"PASS"} and len(supported) == 6, out  # llama x2 fixtures, qwen3
    assert {r["family"] for r in refused} == set(fixtures.names()) - {r["family"] for r in supported}
    gemma = next(r for r in refused if r["family"] == "gemma" and r["graph"] == "prefill")
    assert gemma["verdict"] == "UNSUPPORTED" and gemma["message"] == "only.py implements llama and qwen3, not gemma."
    assert {r["verdict"] for r in refused} == {"UNSUPPORTED"}
    assert f"6 passed, 0 failed, 0 errors, {len(refused)} unsupported" in out
    assert "gemma                prefill" in out and "UNSUPPORTED\n    only.py implements llama and qwen3, not gemma." in out
    assert (code, out.splitlines()[-1]) == ((1, "RESULT: FAIL") if require_all else (0, "RESULT: PASS"))

    rows = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert sum(row["verdict"] == "UNSUPPORTED" for row in rows) == len(refused)
    index = (tmp_path / "index.html").read_text()
    assert f"{len(refused)} unsupported" in index and 'class="verdict UNSUPPORTED"' in index
    page = (tmp_path / "gemma.html").read_text()
    assert "The emitter refuses this config (exit 2), in its words: only.py implements llama and qwen3" in page


def test_a_run_whose_every_case_is_refused_validated_nothing_and_fails(tmp_path, capsys):
    code = main(["--reports", str(tmp_path), "--emitter", f"{sys.executable} {ONLY} {','.join(SUPPORTED)}",
                 "--family", "gemma", "--family", "olmo2"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[-3].startswith("0 passed, 0 failed, 0 errors, 4 unsupported")
    assert lines[-2:] == ["nothing validated: the emitter refused every case (UNSUPPORTED above); the run cannot pass",
                          "RESULT: FAIL"] and code == 1
    code = main(["--reports", str(tmp_path), "--emitter", f"{sys.executable} {ONLY} {','.join(SUPPORTED)}",
                 "--family", "gemma", "--family", "llama"])
    assert code == 0 and capsys.readouterr().out.splitlines()[-1] == "RESULT: PASS"  # llama was validated


def test_a_shard_whose_every_case_is_refused_leaves_the_judgement_to_the_merge(tmp_path, capsys):
    """An emitter of llama and qwen3 alone, over three shards: one of them gets neither (the cost table's choice)."""
    from archval.harness.pool import shard
    index = next(i for i in (1, 2, 3) if not set(SUPPORTED) & set(shard.assign(fixtures.names(), i, 3)))
    code = main(["--reports", str(tmp_path), "--emitter", f"{sys.executable} {ONLY} {','.join(SUPPORTED)}",
                 "--shard", f"{index}/3"])
    out = capsys.readouterr().out
    assert "nothing validated" not in out and (code, out.splitlines()[-1]) == (0, "RESULT: PASS")


def test_a_run_that_chose_no_case_validated_nothing_and_fails(tmp_path, capsys):
    code = main(["--reports", str(tmp_path), "--family", "llama", "--graph", "moe_block"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2:] == ["nothing validated: no family chosen has a moe_block graph; the run cannot pass",
                          "RESULT: FAIL"] and code == 1


def test_under_pytest_a_run_whose_every_case_is_refused_fails_too(tmp_path):
    """pytest skips a refused case: without the plugin's judgement, an emitter whose script path is mistyped
    (python exits 2, the protocol's refusal) would be a green run of skips."""
    import os
    import subprocess
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "my-emitter"\nversion = "0"\n')

    def pytest_run(selection: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist",
                               "--archval-emitter", f"{sys.executable} {ONLY} llama", "-m", selection],
                              cwd=tmp_path, capture_output=True, text=True, timeout=600,
                              env={k: v for k, v in os.environ.items() if k != "PYTEST_XDIST_WORKER"})
    refused = pytest_run("family_gemma")
    assert refused.returncode == 1, refused.stdout[-2000:]
    assert "archval: nothing validated: the emitter refused all 2 cases (UNSUPPORTED, skipped); the run fails" \
        in refused.stdout
    mixed = pytest_run("family_gemma or family_llama")
    assert mixed.returncode == 0 and "nothing validated" not in mixed.stdout, mixed.stdout[-2000:]
