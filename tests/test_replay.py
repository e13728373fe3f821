"""Every replay line a FAIL prints, run as printed, reproduces that FAIL: the emitter (shell-quoted), the
family or published config, the graph kind; and under pytest, the test's node id with its --emitter."""
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from archval.harness import ROOT
from archval.harness.cli import main

WRAPS = ROOT / "archval" / "altered_emitter.py"
ALTERED = f"{shlex.quote(sys.executable)} {shlex.quote(str(WRAPS))} --alter"  # its first RMSNorm takes √


def failures(out: str) -> dict[str, str]:
    """Each FAIL line's case (family and graph, as printed) -> its replay line."""
    found = re.findall(r"^(\S+ +\S+) .* FAIL .*\n(?:    .*\n)*?    replay: (.*)$", out, re.MULTILINE)
    return {" ".join(case.split()): replay for case, replay in found}


def replayed(replay: str, capsys, tmp_path: Path) -> tuple[int, str]:
    """The replay line run as the shell would: ./validate_arch.sh is python -m archval, here in-process
    (its reports go to tmp_path: --reports is not part of the line)."""
    argv = shlex.split(replay)
    assert argv[0] == "./validate_arch.sh", replay
    code = main([*argv[1:], "--reports", str(tmp_path)])
    return code, capsys.readouterr().out


def assert_each_replay_reproduces(out: str, capsys, tmp_path: Path, expected: set[str]) -> None:
    printed = failures(out)
    assert set(printed) == expected, out
    for i, (case, replay) in enumerate(printed.items()):
        code, again = replayed(replay, capsys, tmp_path / f"replay-{i}")
        assert code == 1 and set(failures(again)) == {case}, (replay, again)
        assert failures(again)[case] == replay  # and it says how to replay it again, the same way


def test_an_altering_emitter_replays_each_graph_with_its_emitter(tmp_path, capsys):
    main(["--family", "llama", "--reports", str(tmp_path / "run"), "--emitter", ALTERED])
    out = capsys.readouterr().out
    assert f"replay: ./validate_arch.sh --family llama --graph decode --emitter {shlex.quote(ALTERED)}" in out
    assert_each_replay_reproduces(out, capsys, tmp_path, {"llama prefill", "llama decode"})
    records = json.loads((tmp_path / "run" / "summary.json").read_text())["records"]
    assert {r["replay"] for r in records} == set(failures(out).values())


def test_the_emit_timeout_given_is_part_of_the_replay(tmp_path, capsys, monkeypatch):
    """An emitter that runs out of a short --emit-timeout must run out of it again when replayed."""
    monkeypatch.delenv("ARCHVAL_EMIT_TIMEOUT_S", raising=False)
    main(["--family", "llama", "--graph", "prefill", "--emit-timeout", "30", "--reports", str(tmp_path / "run"),
          "--emitter", ALTERED])
    out = capsys.readouterr().out
    assert (f"replay: ./validate_arch.sh --family llama --graph prefill --emitter {shlex.quote(ALTERED)} "
            "--emit-timeout 30") in out
    assert_each_replay_reproduces(out, capsys, tmp_path, {"llama prefill"})


def test_an_emitter_whose_path_needs_quoting(tmp_path, capsys):
    """An external emitter in a directory with a space and a quote in its name: the replay quotes it."""
    where = tmp_path / "an emitter's dir"
    where.mkdir()
    shutil.copy(WRAPS, where / "altered_emitter.py")
    emitter = shlex.join([sys.executable, str(where / "altered_emitter.py"), "--alter"])
    main(["--family", "qwen3", "--graph", "prefill", "--reports", str(tmp_path / "run"), "--emitter", emitter])
    assert_each_replay_reproduces(capsys.readouterr().out, capsys, tmp_path, {"qwen3 prefill"})


def test_a_published_config_replays_with_its_config(tmp_path, capsys):
    config = ROOT / "fixtures" / "real" / "Qwen2.5-0.5B" / "config.json"
    main(["--config", str(config), "--graph", "prefill", "--reports", str(tmp_path / "run"), "--emitter", ALTERED])
    out = capsys.readouterr().out
    assert f"replay: ./validate_arch.sh --config {config} --graph prefill --emitter " in out
    assert_each_replay_reproduces(out, capsys, tmp_path, {"Qwen2.5-0.5B prefill"})


def test_pytest_prints_the_node_id_and_the_emitter(tmp_path):
    """The differential test's failure message ends in the line that reruns that test with that emitter."""
    node = "tests/test_differential.py::test_prefill_matches_oracle[llama]"

    def pytest(command: list[str]) -> str:
        proc = subprocess.run([*command, "-q", "-p", "no:cacheprovider", "-p", "no:xdist"], check=False, capture_output=True,
                              text=True, cwd=ROOT)
        assert proc.returncode == 1 and "1 failed" in proc.stdout, proc.stdout[-3000:]
        return proc.stdout

    out = pytest([sys.executable, "-m", "pytest", "--emitter", ALTERED, node])
    (replay,) = set(re.findall(r"replay: (.*)", out))
    assert replay == f".venv/bin/python -m pytest {shlex.quote(node)} --emitter {shlex.quote(ALTERED)}"
    argv = shlex.split(replay)
    assert argv[:3] == [".venv/bin/python", "-m", "pytest"]
    again = pytest([sys.executable, *argv[1:]])
    assert set(re.findall(r"replay: (.*)", again)) == {replay} and "FAIL" in again
