"""The processes archval starts die with the one that started them, however it dies.

A compiler is started in a session of its own, so that a Ctrl-C to the gate's process group reaches the
gate (which stops its workers itself) and never the compilers alone: a gate started in the background
ignores SIGINT, and killing only its compilers would turn cases into ERRORs while the run went on. Each
is also asked, between fork and exec, to be sent SIGKILL when its parent dies (Linux's
PR_SET_PDEATHSIG): a worker or a --checkpoint gate killed outright (SIGKILL: none of its code runs)
takes its compiler with it. Where there is no such call (macOS), the workers' watch on their parent
(pool/workers.py) kills the compilers' process groups as the worker leaves (kill_all), as it does
for every exit it makes itself.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading

PR_SET_PDEATHSIG = 1  # linux/prctl.h
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None

_live: set[int] = set()  # process groups of the children running now, for kill_all()
_live_lock = threading.Lock()


def _die_with(parent: int):
    """A preexec_fn: runs in the child between fork and exec, where only async-signal-safe work is sound
    (one system call through a function looked up before the fork)."""
    prctl = _LIBC.prctl if _LIBC is not None else None

    def preexec() -> None:
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request was made: nobody would stop this child
            os.kill(os.getpid(), signal.SIGKILL)
    return preexec


def start(command: list[str]) -> subprocess.Popen:
    """command started in a session of its own, stdin empty, stdout and stderr piped, dying with this process;
    stop it with finish(), whatever happens."""
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, preexec_fn=_die_with(os.getpid()))
    with _live_lock:
        _live.add(proc.pid)  # a new session's leader leads its own process group
    return proc


def finish(proc: subprocess.Popen) -> None:
    """The child's whole process group killed (a compiler's own children too) and the child reaped."""
    with _live_lock:
        _live.discard(proc.pid)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def kill_all() -> None:
    """SIGKILL every child's process group running now: this process is about to exit without unwinding."""
    with _live_lock:
        groups = list(_live)
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
