"""Process hygiene: the gate stopped (Ctrl-C, SIGTERM) says one line, exits 130/143 and leaves no process
behind; the gate killed outright (SIGKILL) leaves no worker or emitter running either."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from full_disk import FullOs

from archval.harness import ROOT

HOSTILE = Path(__file__).parent / "emitters" / "hostile.py"


def group_members(pgid: int) -> list[int]:
    """Running processes of a process group (zombies are not running)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def kill_all(proc: subprocess.Popen, started: list[int]) -> None:
    """The gate's session and the processes it started, whatever is left of them: a test leaves nothing running."""
    for kill in ([lambda: os.killpg(proc.pid, signal.SIGKILL)]
                 + [lambda pid=pid: os.kill(pid, signal.SIGKILL) for pid in started if alive(pid)]):
        try:
            kill()
        except ProcessLookupError:
            pass
    proc.wait()


def as_a_terminal_starts_it() -> None:
    """A foreground job's SIGINT is the default, whatever the test runner inherited (a suite started in the
    background of a script ignores SIGINT, and a child would inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_until(condition, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.fixture
def hanging_gate(tmp_path):
    """The gate on llama with an emitter that hangs (with grandchildren), started in a session of its own
    as a terminal would run it; yields (process, emitter pids) once the emitter is running. Its output goes
    to files (a pipe held open by a surviving worker would hang the test instead of failing it); whatever
    of it survives is killed afterwards."""
    if not Path("/proc/self/stat").exists():
        pytest.skip("reads process groups from /proc")
    pids, scratch = tmp_path / "pids", tmp_path / "tmp"
    scratch.mkdir()
    with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "archval", "--family", "llama", "--reports",
                                 str(tmp_path / "r"), "--emitter", f"{sys.executable} {HOSTILE} llama=hang"],
                                stdout=out, stderr=err, text=True, cwd=ROOT, start_new_session=True,
                                preexec_fn=as_a_terminal_starts_it,
                                env={**os.environ, "HOSTILE_PIDS": str(pids), "TMPDIR": str(scratch)})
    started = []
    try:
        assert wait_until(lambda: pids.exists() and len(pids.read_text().split()) == 3, 120), "the emitter never ran"
        started = [int(p) for p in pids.read_text().split()]
        proc.said = lambda: ((tmp_path / "out").read_text(), (tmp_path / "err").read_text())
        proc.scratch_left = lambda: sorted(p.name for p in scratch.iterdir())  # the emitter's is there now
        yield proc, started
    finally:
        kill_all(proc, started)


@pytest.mark.parametrize("how,status", [("Ctrl-C", 130), ("SIGINT to the gate alone", 130), ("SIGTERM", 143)])
def test_a_stopped_gate_says_one_line_and_leaves_nothing_running(hanging_gate, how, status):
    proc, emitters = hanging_gate
    gate_pid = proc.pid
    if how == "Ctrl-C":  # a terminal signals the whole foreground group: the gate and its workers
        os.killpg(gate_pid, signal.SIGINT)
    else:
        os.kill(gate_pid, signal.SIGTERM if how == "SIGTERM" else signal.SIGINT)
    proc.wait(timeout=60)
    out, err = proc.said()
    assert proc.returncode == status, (out[-2000:], err[-2000:])
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith(f"interrupted ({'SIGTERM' if status == 143 else 'Ctrl-C'}): the workers and their "
                          "emitters are stopped"), err
    assert wait_until(lambda: not group_members(gate_pid), 10), f"workers left: {group_members(gate_pid)}"
    assert wait_until(lambda: not any(map(alive, emitters)), 10), [p for p in emitters if alive(p)]
    assert wait_until(lambda: not proc.scratch_left(), 10), f"left in the temporary directory: {proc.scratch_left()}"


def test_a_gate_killed_outright_leaves_no_worker_or_emitter(hanging_gate):
    """SIGKILL cannot be handled: each worker notices that its parent is gone, kills its emitters and exits."""
    proc, emitters = hanging_gate
    gate_pid = proc.pid
    os.kill(gate_pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert wait_until(lambda: not group_members(gate_pid), 10), f"orphaned workers: {group_members(gate_pid)}"
    assert wait_until(lambda: not any(map(alive, emitters)), 10), [p for p in emitters if alive(p)]
    assert wait_until(lambda: not proc.scratch_left(), 10), f"left in the temporary directory: {proc.scratch_left()}"


# -- compilers: they die with the gate, and a Ctrl-C the gate ignores does not reach them alone --------------

SLOW_COMPILER = """import os, signal, subprocess, sys, time
signal.signal(signal.SIGINT, signal.SIG_DFL)  # as LLVM's own handlers in iree-compile: whatever its parent ignored
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # as iree-lld would be
with open(os.environ["COMPILER_PIDS"], "w") as f:
    f.write(f"{os.getpid()} {child.pid}")
time.sleep(600)
"""


@pytest.fixture
def compiling_gate(tmp_path, request):
    """The gate on llama, in a session of its own, with a cold cache and an iree-compile that takes ten minutes
    (and has a child, as iree-compile has iree-lld); yields (process, compiler pids) once the compiler runs.
    request.param: the gate ignores SIGINT, as a shell starts a background job."""
    if not Path("/proc/self/stat").exists():
        pytest.skip("reads process groups from /proc")
    compiler, pids = tmp_path / "iree-compile", tmp_path / "pids"
    compiler.write_text(f"#!{sys.executable}\n{SLOW_COMPILER}")
    compiler.chmod(0o755)
    ignore_sigint = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if request.param else as_a_terminal_starts_it
    with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "archval", "--family", "llama", "--graph", "prefill",
                                 "--reports", str(tmp_path / "r")], stdout=out, stderr=err, cwd=ROOT,
                                start_new_session=True, preexec_fn=ignore_sigint,
                                env={**os.environ, "ARCHVAL_IREE_COMPILE": str(compiler), "COMPILER_PIDS": str(pids),
                                     "ARCHVAL_CACHE_DIR": str(tmp_path / "cache")})
    started = []
    try:
        assert wait_until(lambda: pids.exists() and len(pids.read_text().split()) == 2, 180), "no compile started"
        started = [int(p) for p in pids.read_text().split()]
        yield proc, started
    finally:
        kill_all(proc, started)


@pytest.mark.parametrize("compiling_gate", [False, True], ids=["foreground", "background-sigint-ignored"],
                         indirect=True)
def test_a_gate_killed_mid_compile_leaves_no_compiler_or_worker(compiling_gate):
    proc, compilers = compiling_gate
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert wait_until(lambda: not any(map(alive, compilers)), 5), [p for p in compilers if alive(p)]
    assert wait_until(lambda: not group_members(proc.pid), 5), f"orphaned workers: {group_members(proc.pid)}"


def test_a_checkpoint_gate_killed_mid_compile_takes_its_compiler_with_it(tmp_path):
    """--checkpoint compiles in the gate's own process: no worker is left to stop the compiler, the kernel does
    (PR_SET_PDEATHSIG). The compiler's own children are reached only through its process group, which nothing
    is left to signal: they run to their end."""
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux's")
    from archval.harness.modes.make_checkpoint import build
    from archval.harness.core import fixtures
    checkpoint = build(dict(fixtures.load("llama").config), tmp_path / "ckpt")
    compiler, pids = tmp_path / "iree-compile", tmp_path / "pids"
    compiler.write_text(f"#!{sys.executable}\n{SLOW_COMPILER}")
    compiler.chmod(0o755)
    with open(tmp_path / "out", "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "archval", "--checkpoint", str(checkpoint), "--prompt-ids",
                                 "1,2,3", "--reports", str(tmp_path / "r")], stdout=out, stderr=out, cwd=ROOT,
                                start_new_session=True,
                                env={**os.environ, "ARCHVAL_IREE_COMPILE": str(compiler), "COMPILER_PIDS": str(pids),
                                     "ARCHVAL_CACHE_DIR": str(tmp_path / "cache")})
    started = []
    try:
        assert wait_until(lambda: pids.exists() and len(pids.read_text().split()) == 2, 180), "no compile started"
        started = [int(p) for p in pids.read_text().split()]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert wait_until(lambda: not alive(started[0]), 5), "the compiler outlived the gate"
    finally:
        for pid in [proc.pid, *started]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.parametrize("compiling_gate", [False], ids=["foreground"], indirect=True)
def test_a_ctrl_c_mid_compile_stops_the_compilers_with_the_gate(compiling_gate):
    """The compilers are in sessions of their own, out of the Ctrl-C's reach: the workers stopping kill them."""
    proc, compilers = compiling_gate
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    assert wait_until(lambda: not any(map(alive, compilers)), 5), [p for p in compilers if alive(p)]


@pytest.mark.parametrize("compiling_gate", [True], ids=["background-sigint-ignored"], indirect=True)
def test_a_ctrl_c_the_gate_ignores_does_not_kill_its_compilers_alone(compiling_gate):
    """A shell's background job ignores SIGINT; a Ctrl-C to its process group must not stop only the compilers
    (their cases would be ERRORs while the run went on): they are in sessions of their own."""
    proc, compilers = compiling_gate
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(2)
    assert proc.poll() is None and all(map(alive, compilers)), "a Ctrl-C the gate ignores stopped something"


# -- the --reports directory: found unwritable before the run starts, locked against a concurrent run ------

from archval.harness.cli import main
from archval.harness.core import files

REAL_CONFIG = ROOT / "fixtures" / "real" / "Llama-3.2-1B" / "config.json"
MODES = {"gate": ["--family", "llama"], "--config": ["--config", str(REAL_CONFIG)],
         "--mutants": ["--mutants", "--family", "llama"]}


def one_sentence(err: str) -> str:
    assert err.count("\n") == 1 and err.startswith("error: --reports ") and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("mode", MODES)
def test_unwritable_reports_are_refused_before_the_run_starts(tmp_path, capsys, monkeypatch, mode):
    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(files.tempfile, "mkstemp", refused)
    assert main([*MODES[mode], "--reports", str(tmp_path / "r")]) == 2
    out, err = capsys.readouterr()
    assert one_sentence(err) == f"error: --reports {tmp_path / 'r'}: is not writable (Permission denied)\n"
    assert "== numerical" not in out and "== structural" not in out and "== mutation" not in out


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_reports_that_cannot_be_a_directory_are_refused(tmp_path, capsys, where):
    (tmp_path / "file").write_text("")
    reports = tmp_path / "file" / ("" if where == "a file" else "sub")
    assert main(["--family", "llama", "--reports", str(reports)]) == 2
    err = one_sentence(capsys.readouterr().err)
    assert ("is not a directory" if where == "a file" else "cannot be created (Not a directory)") in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_a_read_only_reports_directory_is_refused(tmp_path, capsys):
    (tmp_path / "r").mkdir(mode=0o555)
    assert main(["--family", "llama", "--reports", str(tmp_path / "r")]) == 2
    assert "is not writable" in one_sentence(capsys.readouterr().err)


@pytest.mark.parametrize("mode", MODES)
def test_a_folder_of_someone_elses_files_is_refused_and_left_as_it_was(tmp_path, capsys, mode):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "index.html").write_text("<h1>my own page</h1>")
    assert main([*MODES[mode], "--reports", str(mine)]) == 2
    assert one_sentence(capsys.readouterr().err) == (
        f"error: --reports {mine}: holds files archval did not write (index.html) and is no archval reports "
        f"folder (no {files.LOCK_NAME}); give a new or empty folder\n")
    assert sorted(p.name for p in mine.iterdir()) == ["index.html"]
    assert (mine / "index.html").read_text() == "<h1>my own page</h1>"


def test_pytest_refuses_a_folder_of_someone_elses_files_for_its_reports(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "index.html").write_text("<h1>my own page</h1>")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:randomly", "--archval-reports", str(mine),
                           "--collect-only", "-q", "tests/test_compare.py"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, proc.stdout + proc.stderr
    assert f"--archval-reports {mine}: holds files archval did not write (index.html)" in proc.stderr
    assert sorted(p.name for p in mine.iterdir()) == ["index.html"]


def test_a_folder_an_earlier_run_claimed_is_archvals_whatever_else_it_holds(tmp_path):
    with files.claimed(tmp_path / "r"):
        pass
    (tmp_path / "r" / "notes.txt").write_text("the user's, beside the reports")
    with files.claimed(tmp_path / "r"):
        pass


@pytest.mark.parametrize("mode", MODES)
def test_reports_in_use_by_another_run_are_refused(tmp_path, capsys, mode):
    with files.claimed(tmp_path):  # another run holds the directory
        assert main([*MODES[mode], "--reports", str(tmp_path)]) == 2
    err = one_sentence(capsys.readouterr().err)
    assert err == (f"error: --reports {tmp_path}: another gate run (pid {os.getpid()}) is writing there; wait for "
                   "it to finish or give another --reports\n")
    assert not (tmp_path / "summary.json").exists()


def test_the_lock_is_another_processes_and_dies_with_its_holder(tmp_path):
    """A second gate on the same --reports, from the command line: exit 2, one line. The lock file a
    killed run leaves behind blocks nobody."""
    with files.claimed(tmp_path):
        proc = subprocess.run([sys.executable, "-m", "archval", "--family", "llama", "--reports", str(tmp_path)],
                              capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2 and "another gate run" in one_sentence(proc.stderr)
    (tmp_path / files.LOCK_NAME).write_text("99999\n")  # stale: no process holds it
    with files.claimed(tmp_path):
        pass


# -- a full filesystem while the reports are written ------------------------------------------------------


def test_a_full_disk_while_writing_the_reports_fails_the_run_with_a_result_line(tmp_path, capsys, monkeypatch):
    """summary.json, support.md, summary.csv, index.html, junit.xml and the list of archval's files (written by the
    gate's main process) hit a full disk: each is said in one line, the run ends with its counts and RESULT: FAIL
    (exit 1), no temporary file is left."""
    monkeypatch.setattr("archval.harness.core.files.os", FullOs())  # the one writer (the worker writes llama.html)
    assert main(["--family", "llama", "--reports", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = out.splitlines()
    assert lines[-1] == "RESULT: FAIL" and lines[-2] == "reports: incomplete (5 problems above): the run cannot pass"
    assert "reports: summary.json not written: No space left on device" in lines
    assert any(line.startswith("reports: support.md not written: OSError: [Errno 28]") for line in lines)
    assert any(line.startswith("reports: index.html and summary.csv not written: OSError: [Errno 28]") for line in lines)
    assert any(line.startswith("reports: junit.xml not written: OSError: [Errno 28]") for line in lines)
    assert any(line.startswith("reports: .archval-written.json not written") for line in lines)
    assert "2 passed, 0 failed, 0 errors, 0 unsupported -> summary.json not written" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == [files.LOCK_NAME, "llama.html"]


# -- --jobs capped at the cores -------------------------------------------------------------------------

@pytest.mark.parametrize("over,expected", [(False, 2), (True, 3)])
def test_jobs_are_capped_at_the_cores_unless_asked(tmp_path, capsys, monkeypatch, over, expected):
    """Three families, two cores: --jobs 1000 starts two workers, or three with --jobs-over-cores."""
    from archval.harness.pool import workers
    started = []

    def spy(jobs, selected):
        started.append(jobs)
        raise KeyboardInterrupt  # stop the run here: only the pool's size is looked at
    monkeypatch.setattr(workers, "cores", lambda: 2)
    monkeypatch.setattr(workers, "start", spy)
    argv = ["--jobs", "1000", "--family", "llama", "--family", "qwen3", "--family", "olmo2", "--reports", str(tmp_path)]
    assert main(argv + (["--jobs-over-cores"] if over else [])) == 130
    assert started == [expected]
    out = capsys.readouterr().out
    assert ("--jobs 1000: capped at 2, the cores this process may use (--jobs-over-cores to allow more)" in out) != over


@pytest.mark.parametrize("argv", [["--setup", "--family", "x"], ["--family", "llama", "--setup"]])
def test_setup_with_another_option_is_refused_before_any_set_up(argv):
    """--setup only sets up .venv: an option beside it would be silently ignored."""
    proc = subprocess.run([str(ROOT / "validate_arch.sh"), *argv], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == "", proc
    assert proc.stderr == f"error: --setup only sets up .venv and takes no other option (got: {' '.join(argv)})\n"
