"""An external emitter run contained: its own session, a time limit, bounded output, no survivors.

Another emitter than the built-in one (which core/emitter_protocol.py runs in-process) is a command of the
user's (--emitter): anything may run there. It starts in a new session (so its own process group: a
`kill 0` or `trap 'kill 0' EXIT` in it reaches only itself and its children, never the gate), and when it exits, times out, writes past the output limit, or the
gate is interrupted, its whole group is signalled: SIGTERM, then SIGKILL after a short grace. Its
stdout and stderr are drained (so it never blocks on a full pipe) but only their last STREAM_KEEP
bytes are kept; the output file's size is watched while it runs, and it is never read past
MAX_OUTPUT_BYTES.

A process that leaves the session itself (setsid, a daemon) is out of reach: containing that
takes cgroups or a container, which the gate does not assume.
"""
from __future__ import annotations

import math
import os
import shlex
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

TIMEOUT_ENV, MAX_OUTPUT_ENV = "ARCHVAL_EMIT_TIMEOUT_S", "ARCHVAL_EMIT_MAX_OUTPUT_BYTES"
DEFAULT_TIMEOUT_S = 120.0
MAX_OUTPUT_BYTES = 256 * 2 ** 20
STREAM_KEEP = 64 * 2 ** 10  # the tail of stdout and of stderr that is kept
GRACE_S = 2.0  # between SIGTERM and SIGKILL
POLL_S = 0.05

_live: set[int] = set()  # process groups of emitters running now, for kill_all()
_live_lock = threading.Lock()


class EmitterProblem(RuntimeError):
    """The emitter could not be run to completion within its limits; one sentence."""


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: str  # the last STREAM_KEEP bytes, decoded
    stderr: str


def timeout_s() -> float:
    """The emit time limit: $ARCHVAL_EMIT_TIMEOUT_S (the gate's --emit-timeout sets it), else 120 s."""
    return seconds_from_environment(TIMEOUT_ENV, DEFAULT_TIMEOUT_S, EmitterProblem)


def seconds_from_environment(variable: str, default: float, error: type[Exception]) -> float:
    """A time limit from the environment: the variable's positive number of seconds, else the default; error
    (one sentence) for a value that is none."""
    raw = os.environ.get(variable)
    if not raw:
        return default
    value = parse_timeout(raw)
    if value is None:
        raise error(f"${variable} = {raw!r} is not a number of seconds above 0")
    return value


def replay_options() -> list[str]:
    """What a replay line repeats of this run's limits: the emit time limit, where one was set (--emit-timeout
    sets the variable for the workers), so that an emitter that ran out of time runs out again."""
    raw = os.environ.get(TIMEOUT_ENV)
    return [f"--emit-timeout {shlex.quote(raw)}"] if raw else []


def parse_timeout(raw: str) -> float | None:
    """A positive, finite number of seconds, or None."""
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def max_output_bytes() -> int:
    raw = os.environ.get(MAX_OUTPUT_ENV)
    try:
        return int(raw) if raw else MAX_OUTPUT_BYTES
    except ValueError:
        raise EmitterProblem(f"${MAX_OUTPUT_ENV} = {raw!r} is not a whole number of bytes") from None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


class _Tail(threading.Thread):
    """Drains a pipe, keeping only its last STREAM_KEEP bytes."""

    def __init__(self, pipe):
        super().__init__(daemon=True)
        self.pipe, self.kept, self.total = pipe, bytearray(), 0

    def run(self):
        try:
            while chunk := self.pipe.read1(STREAM_KEEP):
                self.total += len(chunk)
                self.kept += chunk
                if len(self.kept) > STREAM_KEEP:
                    del self.kept[: len(self.kept) - STREAM_KEEP]
        except (OSError, ValueError):
            pass

    def text(self) -> str:
        said = self.kept.decode(errors="replace")
        return f"[{self.total - len(self.kept)} earlier bytes not kept] {said}" if self.total > len(self.kept) else said


def _signal_group(pgid: int, sig: int) -> bool:
    """False when the group has no process left."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:  # a member that changed its credentials: nothing more can be done
        return False


def stop_group(pgid: int, leader: subprocess.Popen | None = None, grace_s: float = GRACE_S) -> None:
    """SIGTERM to the whole group, SIGKILL to whatever is left after the grace period."""
    if not _signal_group(pgid, signal.SIGTERM):
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if leader is not None and leader.poll() is None:
            time.sleep(POLL_S)
            continue
        # The leader is gone; members may remain (an orphaned grandchild). Zombies not yet reaped by
        # init still answer signal 0, so after the leader the rest gets only a short chance.
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        break
    _signal_group(pgid, signal.SIGKILL)
    if leader is not None:
        try:
            leader.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass


def kill_all() -> None:
    """SIGKILL every emitter group running now (the worker is being stopped: no grace)."""
    with _live_lock:
        groups = list(_live)
    for pgid in groups:
        _signal_group(pgid, signal.SIGKILL)


def run(argv: list[str], out: Path, cwd: Path, timeout: float | None = None,
        max_output: int | None = None) -> Finished:
    """Runs argv to completion in its own session; EmitterProblem when it cannot start, runs past the
    time limit or writes more than max_output bytes to out. Its process group never outlives this call."""
    timeout = timeout_s() if timeout is None else timeout
    max_output = max_output_bytes() if max_output is None else max_output
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                cwd=cwd, start_new_session=True)
    except (OSError, ValueError) as e:
        raise EmitterProblem(f"the emitter could not start: {e}") from None
    pgid = proc.pid  # a new session's leader leads its own process group
    with _live_lock:
        _live.add(pgid)
    readers = [_Tail(proc.stdout), _Tail(proc.stderr)]
    for r in readers:
        r.start()
    problem = None
    try:
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            if _size(out) > max_output:
                problem = (f"the emitter wrote more than the output limit of {_mib(max_output)} to "
                           f"{out.name} (stopped)")
                break
            if time.monotonic() > deadline:
                problem = f"the emitter did not finish within {timeout:g} s (stopped, with its process group)"
                break
            time.sleep(POLL_S)
    finally:  # normal exit, a limit, or the worker interrupted: nothing of the emitter's survives
        stop_group(pgid, proc)
        with _live_lock:
            _live.discard(pgid)
        joined = time.monotonic() + GRACE_S
        for reader, pipe in zip(readers, (proc.stdout, proc.stderr)):
            reader.join(timeout=max(0.0, joined - time.monotonic()))
            if not reader.is_alive():  # else a process that left the session holds the pipe: closing it
                pipe.close()           # would wait for that reader; the reader (a daemon thread) keeps it
    if problem is None and _size(out) > max_output:
        problem = f"the emitter wrote {_mib(_size(out))} to {out.name}, more than the output limit of {_mib(max_output)}"
    if problem:
        said = readers[1].text().strip()
        raise EmitterProblem(problem + (f"; its stderr ends: {said.splitlines()[-1]}" if said else ""))
    return Finished(proc.returncode, readers[0].text(), readers[1].text())


def _mib(n: int) -> str:
    return f"{n / 2 ** 20:.1f} MiB" if n >= 2 ** 20 else f"{n} bytes"
