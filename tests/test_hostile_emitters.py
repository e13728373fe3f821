"""Hostile emitters are contained: a group kill reaches only the emitter, a hang and its grandchildren are
stopped, output without end is cut at the limit and never read whole, a flood of stderr is kept bounded.
Each is a one-sentence CaseError of the emit, that family's ERROR in the gate, whose other families finish."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from archval.harness import ROOT
from archval.harness.core import contained_process, fixtures, messages, summary
from archval.harness.core.case import run_case
from archval.harness.core.emitter_protocol import CaseError, emit
from archval.harness.core.record import ERRORED

EMITTERS = Path(__file__).parent / "emitters"
HOSTILE, TRAP = EMITTERS / "hostile.py", EMITTERS / "trap_kill0.sh"
LLAMA = fixtures.load("llama")


def hostile(mode: str, model_type: str = "llama") -> tuple[str, ...]:
    return (sys.executable, str(HOSTILE), f"{model_type}={mode}")


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (macOS)
        state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
        return bool(state) and not state.startswith("Z")


def wait_dead(pids: list[int], within_s: float = 5.0) -> list[int]:
    """The pids still running after within_s."""
    deadline = time.monotonic() + within_s
    while any(map(alive, pids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def error_stage(record) -> str | None:
    return next((c.stage for c in record.checks if c.status == ERRORED), None)


def pids_in(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def test_a_hanging_emitter_and_its_grandchildren_are_stopped(tmp_path, monkeypatch):
    monkeypatch.setenv(contained_process.TIMEOUT_ENV, "1.5")
    monkeypatch.setenv("HOSTILE_PIDS", str(tmp_path / "pids"))
    start = time.monotonic()
    with pytest.raises(CaseError, match=r"^the emitter did not finish within 1.5 s \(stopped, with its process "
                                        r"group\)$"):
        emit(hostile("hang"), LLAMA.config_path, "prefill")
    assert time.monotonic() - start < 1.5 + 2 * contained_process.GRACE_S + 2
    pids = pids_in(tmp_path / "pids")
    assert len(pids) == 3, pids  # the emitter, its child, the daemonised grandchild that ignores SIGTERM
    assert wait_dead(pids) == [], "an emitter process survived"


@pytest.mark.parametrize("emitter", [hostile("kill_group"), ("bash", str(TRAP), sys.executable)],
                         ids=["kill 0", "trap 'kill 0' EXIT"])
def test_an_emitter_signalling_its_group_reaches_only_itself(emitter):
    """Run in a session of its own, so that a failure of containment kills that child, not pytest."""
    code = ("import sys; from archval.harness.core import fixtures; from archval.harness.core.emitter_protocol import emit\n"
            f"try:\n    emit({emitter!r}, fixtures.load('llama').config_path, 'prefill')\n"
            "except Exception as e:\n    print(f'{type(e).__name__}: {e}')\nelse:\n    print('emitted')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          start_new_session=True, timeout=120)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout.startswith("CaseError: the emitter "), proc.stdout
    assert "SIGTERM" in proc.stdout or "143" in proc.stdout, proc.stdout


def test_a_process_that_leaves_the_session_does_not_hang_the_gate(tmp_path, monkeypatch):
    """Out of reach (setsid: its own session) and holding the emitter's pipes: the emission still returns."""
    monkeypatch.setenv("HOSTILE_PIDS", str(tmp_path / "pids"))
    start = time.monotonic()
    try:
        assert "func.func public @main" in emit(hostile("escape"), LLAMA.config_path, "prefill")
        assert time.monotonic() - start < 30
    finally:
        for pid in pids_in(tmp_path / "pids"):
            if alive(pid):
                os.kill(pid, 9)


def test_output_without_end_is_stopped_at_the_limit(monkeypatch):
    monkeypatch.setenv(contained_process.MAX_OUTPUT_ENV, str(2 ** 20))
    start = time.monotonic()
    with pytest.raises(CaseError, match=r"^the emitter wrote more than the output limit of 1.0 MiB to prefill.mlir "
                                        r"\(stopped\)$"):
        emit(hostile("endless"), LLAMA.config_path, "prefill")
    assert time.monotonic() - start < 30


def test_output_past_the_limit_is_refused_without_reading_it(monkeypatch):
    monkeypatch.setenv(contained_process.MAX_OUTPUT_ENV, str(2 ** 20))
    monkeypatch.setenv("HOSTILE_BIG_BYTES", str(3 * 2 ** 20))
    for method in ("read_bytes", "read_text"):
        monkeypatch.setattr(Path, method, lambda self: pytest.fail(f"read the output file ({self.name})"))
    with pytest.raises(CaseError, match=r"^the emitter wrote (3.0 MiB|more than the output limit of 1.0 MiB) to "
                                        r"prefill.mlir"):
        emit(hostile("big"), LLAMA.config_path, "prefill")


def test_the_default_output_limit_is_256_mib(monkeypatch):
    monkeypatch.delenv(contained_process.MAX_OUTPUT_ENV, raising=False)
    assert contained_process.max_output_bytes() == 256 * 2 ** 20


def test_a_flood_of_one_line_stderr_is_kept_bounded(monkeypatch):
    monkeypatch.setenv("HOSTILE_STDERR_BYTES", str(20 * 10 ** 6))
    with pytest.raises(CaseError) as raised:
        emit(hostile("stderr"), LLAMA.config_path, "prefill")
    said = str(raised.value)
    assert said.startswith("the emitter exited with 1: [") and "earlier bytes not kept" in said
    assert len(said) < contained_process.STREAM_KEEP + 200
    record = run_case(LLAMA, emitter=hostile("stderr"))
    assert record.verdict == "ERROR" and error_stage(record) == "emit"
    assert len(record.message) <= messages.MAX_CHARS + 100 and "characters cut" in record.message
    assert record.message.startswith("stage 'emit': the emitter exited with 1: [")


@pytest.mark.parametrize("mode", ["clean", "stderr"])
def test_a_familys_cases_emit_each_graph_kind_once(tmp_path, monkeypatch, mode):
    """The decode case runs the prefill graph too: it reuses the prefill case's text, or its failure (a hang
    would otherwise cost its time limit twice)."""
    monkeypatch.setenv("HOSTILE_LOG", str(tmp_path / "log"))
    monkeypatch.setenv("HOSTILE_STDERR_BYTES", "100")
    emitter = hostile(mode, "llama" if mode != "clean" else "no_such_type")
    texts = {}
    records = [run_case(LLAMA, graph, texts=texts, emitter=emitter, xla=False) for graph in ("prefill", "decode")]
    calls = (tmp_path / "log").read_text().splitlines()
    if mode == "clean":
        assert [r.verdict for r in records] == ["PASS", "PASS"]
        assert calls == ["llama prefill", "llama decode"]
    else:
        assert [r.verdict for r in records] == ["ERROR", "ERROR"]
        assert records[0].message == records[1].message and calls == ["llama prefill"]


def test_the_emit_timeout_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(contained_process.TIMEOUT_ENV, raising=False)
    assert contained_process.timeout_s() == contained_process.DEFAULT_TIMEOUT_S == 120
    monkeypatch.setenv(contained_process.TIMEOUT_ENV, "7.5")
    assert contained_process.timeout_s() == 7.5
    for bad in ("0", "-1", "nan", "inf", "soon"):
        monkeypatch.setenv(contained_process.TIMEOUT_ENV, bad)
        with pytest.raises(contained_process.EmitterProblem, match="is not a number of seconds above 0"):
            contained_process.timeout_s()


@pytest.mark.parametrize("value", ["0", "-3", "nan", "soon"])
def test_a_bad_emit_timeout_is_a_usage_error(capsys, monkeypatch, value):
    from archval.harness.cli import main
    assert main(["--family", "llama", "--emit-timeout", value]) == 2
    assert capsys.readouterr().err == f"error: --emit-timeout {value!r}: must be a number of seconds above 0\n"
    monkeypatch.setenv(contained_process.TIMEOUT_ENV, value)
    assert main(["--family", "llama"]) == 2
    assert capsys.readouterr().err == (f"error: ${contained_process.TIMEOUT_ENV} {value!r}: must be a number of seconds "
                                       "above 0\n")


def test_hostile_emitters_are_each_their_familys_error_and_the_others_finish(tmp_path):
    """One gate run, in a session of its own: a group kill (qwen3), a hang with grandchildren (gemma), output
    without end (mistral) and a flood of stderr (olmo2) are each an ERROR at stage 'emit', with short messages
    everywhere; llama, emitted by the same command, passes; each graph kind is emitted once per family; no
    emitter process survives; the gate ends with its counts and RESULT."""
    modes = "qwen3=kill_group,gemma=hang,mistral=endless,olmo2=stderr"
    env = {**os.environ, "HOSTILE_PIDS": str(tmp_path / "pids"), "HOSTILE_LOG": str(tmp_path / "log"),
           "HOSTILE_STDERR_BYTES": str(20 * 10 ** 6), contained_process.MAX_OUTPUT_ENV: str(2 ** 20)}
    reports = tmp_path / "reports"
    proc = subprocess.run([sys.executable, "-m", "archval", "--reports", str(reports), "--emit-timeout", "2",
                           "--emitter", f"{sys.executable} {HOSTILE} {modes}",
                           *(a for f in ("llama", "qwen3", "gemma", "mistral", "olmo2") for a in ("--family", f))],
                          capture_output=True, text=True, cwd=ROOT, env=env, start_new_session=True, timeout=600)
    out = proc.stdout
    assert proc.returncode == 1 and out.rstrip().endswith("RESULT: FAIL"), (proc.returncode, out[-3000:],
                                                                             proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr and "2 passed, 0 failed, 8 errors, 0 unsupported" in out, out[-3000:]
    _, records = summary.read(reports / "summary.json")
    verdicts = {(r.family, r.graph): r.verdict for r in records}
    assert {k: v for k, v in verdicts.items() if k[0] == "llama"} == {("llama", "prefill"): "PASS",
                                                                      ("llama", "decode"): "PASS"}
    for r in records:
        if r.family != "llama":
            assert r.verdict == "ERROR" and error_stage(r) == "emit", r
            assert len(r.message) <= messages.MAX_CHARS + 100
    by_family = {r.family: r.message for r in records if r.graph == "prefill"}
    assert "killed by SIGTERM" in by_family["qwen3"]
    assert "did not finish within 2 s" in by_family["gemma"]
    assert "more than the output limit of 1.0 MiB" in by_family["mistral"]
    assert "earlier bytes not kept" in by_family["olmo2"]
    assert max(map(len, out.splitlines())) < messages.MAX_CHARS + 200
    assert (reports / "summary.csv").stat().st_size < 40_000 and (reports / "olmo2.html").stat().st_size < 200_000
    calls = (tmp_path / "log").read_text().splitlines()
    assert sorted(set(calls)) == sorted(calls), f"a graph was emitted twice: {calls}"
    assert {"llama prefill", "llama decode"} <= set(calls)
    assert wait_dead(pids_in(tmp_path / "pids")) == []
