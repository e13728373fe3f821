"""Live progress: a status line on a terminal, plain lines elsewhere, none under -q; what is running and
the estimate from the costs; --mutants says each mutant as it is done."""
import io
import time

import pytest

from archval.harness.cli import main
from archval.harness.present.progress import Progress


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_running_is_the_first_unfinished_in_the_order_handed_out_and_the_estimate_scales_the_costs():
    clock = Clock()
    progress = Progress(["slow", "mid", "fast", "last"], 2, {"slow": 30.0, "mid": 10.0, "fast": 10.0, "last": 20.0},
                        err=io.StringIO(), tty=False, clock=clock)
    assert progress.in_flight() == ["slow", "mid"]
    assert progress.eta_s() == pytest.approx(35.0)  # nothing done yet: the cold costs over the two workers
    clock.now += 5.0
    progress.done("mid")  # this run's pace: 10 cost-seconds in 5 s
    assert progress.in_flight() == ["slow", "fast"]
    # slow has 15 - 5 s left, fast 5 s, last 10 s: 25 s of work on two workers
    assert progress.eta_s() == pytest.approx(12.5)
    assert progress.status() == "[1/4 families] 5s elapsed, about 12s left; running: slow, fast"
    clock.now += 5.0
    progress.done("fast")  # took 5 s for 10 cost-seconds as well
    assert progress.in_flight() == ["slow", "last"]
    assert progress.eta_s() == pytest.approx(10.0)  # last: 20 x 0.5 from now, slow ends before it
    clock.now += 20.0
    assert progress.eta_s() == pytest.approx(0.0)  # overdue: never negative


def test_the_estimate_does_not_jump_when_the_first_of_parallel_ones_finishes():
    """Four equal families on two workers at the table's pace: the estimate falls as the clock runs."""
    clock = Clock()
    progress = Progress(list("abcd"), 2, dict.fromkeys("abcd", 10.0), err=io.StringIO(), tty=False, clock=clock)
    seen = [progress.eta_s()]
    for _ in range(2):
        clock.now += 5.0
        seen.append(progress.eta_s())
    progress.done("a")
    seen.append(progress.eta_s())
    progress.done("b")
    seen.append(progress.eta_s())
    assert seen == pytest.approx([20.0, 15.0, 10.0, 10.0, 10.0])


def test_a_spent_estimate_says_what_runs_and_for_how_long_never_about_0s_left():
    """A family slower than its cost (a loaded machine, a cold cache) or hanging: the status names it with the
    time it has run, and the estimate of the others stands."""
    clock = Clock()
    progress = Progress(["llama"], 1, {"llama": 10.0}, err=io.StringIO(), tty=False, clock=clock)
    clock.now += 4.0
    assert progress.status() == "[0/1 families] 4s elapsed, about 6s left; running: llama"
    for waited, said in ((6.0, "10s"), (32.0, "42s"), (600.0, "10m42s")):  # the estimate spent, then a hang
        clock.now += waited
        assert progress.status() == f"[0/1 families] {said} elapsed, past the estimate; running: llama {said}"
    two = Progress(["slow", "fast", "last"], 2, {"slow": 5.0, "fast": 20.0, "last": 20.0}, err=io.StringIO(),
                   tty=False, clock=clock)
    clock.now += 12.0
    assert two.status() == "[0/3 families] 12s elapsed, about 14s left; running: slow 12s, fast"


def test_plain_lines_come_on_each_completion_and_periodically_when_not_on_a_terminal():
    err, out = io.StringIO(), io.StringIO()
    with Progress(["a", "b"], 1, err=err, tty=False, period_s=0.05) as progress:
        time.sleep(0.3)
        progress.say("a line of the run", out)
        progress.done("a")
    lines = err.getvalue().splitlines()
    assert sum(line.startswith("[1/2 families] 0s elapsed") and "; running: b" in line for line in lines) == 1, lines
    assert sum(line.startswith("[0/2 families]") for line in lines) >= 2, lines

    assert "\r" not in err.getvalue() and out.getvalue() == "a line of the run\n"


def test_no_periodic_line_right_after_a_completion():
    err = io.StringIO()
    with Progress(["a", "b"], 1, err=err, tty=False, period_s=1.0) as progress:
        time.sleep(0.5)
        progress.done("a")
        time.sleep(0.7)  # the period's tick falls here (at 1 s): a line was said 0.5 s before it
    assert [line.split(" ")[0] for line in err.getvalue().splitlines()] == ["[1/2"], err.getvalue()


def test_on_a_terminal_one_status_line_is_redrawn_and_cleared_for_each_line_said():
    err, out = Terminal(), io.StringIO()
    with Progress(["a"], 1, err=err) as progress:
        progress.done("a")
        progress.say("said", out)
    assert err.getvalue().count("\r\x1b[2K[1/1 families]") == 2  # drawn after done, redrawn after said
    assert err.getvalue().endswith("\r\x1b[2K") and "\n" not in err.getvalue()


def test_quiet_says_nothing_but_lines_that_did_not_pass(tmp_path):
    err = io.StringIO()
    with Progress(["a"], 1, err=err, tty=False, quiet=True, period_s=0.01) as progress:
        time.sleep(0.1)
        progress.done("a")
    assert err.getvalue() == ""


def test_the_gate_says_progress_on_stderr_and_quiet_only_what_failed(tmp_path, capsys):
    assert main(["--family", "llama", "--family", "qwen2", "--reports", str(tmp_path)]) == 0
    said = capsys.readouterr()
    assert "[1/2 families]" in said.err and "[2/2 families]" in said.err and "families]" not in said.out
    assert "llama                prefill" in said.out
    assert main(["--family", "llama", "--reports", str(tmp_path), "-q"]) == 0
    said = capsys.readouterr()
    assert "PASS  [" not in said.out and "match" not in said.out and said.err == ""
    assert said.out.rstrip().endswith("RESULT: PASS")


def test_a_checkpoint_run_says_its_phases_and_steps_in_order_never_going_back():
    from archval.harness.present.phase_progress import PHASES, PhaseProgress, costs
    clock = Clock()
    expected = costs(1_000_000_000, 2)  # a large checkpoint: the graph (IREE, one thread per call) the longest
    assert list(expected) == list(PHASES) and expected["graph"] > expected["oracle"] > 0
    progress = Progress(list(PHASES), 1, expected, unit="phases", err=io.StringIO(), tty=False, clock=clock)
    listen = PhaseProgress(progress, steps=2)
    for stage in ("emit", "compile", "load", "emit", "compile", "load"):
        listen(stage, None)
    assert progress.in_flight() == ["compiling"]
    clock.now += 10.0
    listen("oracle", None)  # transformers loading the checkpoint
    assert progress.in_flight() == ["reading"] and list(progress.finished) == ["compiling"]
    listen("oracle step", 0)
    listen("oracle step", 1)
    assert progress.status().endswith("running: oracle step 2/3")
    listen("oracle fp64", None)
    assert progress.status().endswith("running: oracle fp64 pass")
    for _ in range(2):
        listen("bind", None)  # not a phase: ignored
        listen("run", None)
    assert progress.status().startswith("[3/4 phases]") and progress.status().endswith("running: graph step 2/3")
    listen("oracle_fp64", None)  # the strict bound reads the fp64 logits back after the graph: no phase again
    listen("oracle", None)
    assert progress.in_flight() == ["graph"] and progress.status().endswith("graph step 2/3")


def test_a_checkpoint_run_prints_its_phases(tmp_path, capsys):
    from archval.harness.core import fixtures
    from archval.harness.modes.make_checkpoint import build
    checkpoint = build(dict(fixtures.load("llama").config), tmp_path / "ckpt", "f32", None)
    code = main(["--checkpoint", str(checkpoint), "--prompt-ids", "3,1,4", "--steps", "2", "--reports",
                 str(tmp_path / "reports")])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    said = [line for line in err.splitlines() if line.startswith("[")]
    assert said[0].startswith("[1/4 phases]") and "running: reading" in said[0]
    assert any(line.startswith("[3/4 phases]") and "running: graph" in line for line in said)
