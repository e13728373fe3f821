"""A time limit on every execution of a compiled graph: a graph that loops at run time becomes an ERROR
naming the limit, never a hang.

A call into IREE's or XLA's runtime cannot be interrupted from Python: it runs in native code (with the
GIL released, so a thread can watch it). When a call outlives the limit, the watching thread stops the
whole process the call runs in, saying what it stopped and why: a gate worker (pool/workers.py, through
on_expiry) tells the gate, which makes that family's cases ERRORs at the call's stage without running
them again; any other process (the gate itself under --checkpoint, pytest) writes the sentence to stderr
and exits 1. The limit is per call, $ARCHVAL_RUN_TIMEOUT_S seconds, 300 by default: far above the slowest
calls measured, a 1.1B-parameter checkpoint's (docs/checkpoints.md: 33 calls in 237 s).
"""
from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

from .contained_process import seconds_from_environment

TIMEOUT_ENV = "ARCHVAL_RUN_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 300.0
POLL_S = 0.1


class RunTimeoutError(ValueError):
    """$ARCHVAL_RUN_TIMEOUT_S is not a number of seconds."""


@dataclass(frozen=True)
class Expired:
    """A call stopped at its limit: the case's stage it ran in (run, xla_run) and the sentence that says so."""
    stage: str
    message: str


def timeout_s() -> float:
    return seconds_from_environment(TIMEOUT_ENV, DEFAULT_TIMEOUT_S, RunTimeoutError)


def exit_saying(expired: Expired) -> None:
    """What a process other than a gate worker does: the sentence on stderr, exit 1 (a case that did not pass)."""
    sys.stderr.write(f"error: stage '{expired.stage}': {expired.message}\n")
    sys.stderr.flush()
    os._exit(1)


_armed: dict[int, tuple[float, Expired]] = {}  # thread id -> (deadline, what its call is)
_lock = threading.Lock()
_action: list[Callable[[Expired], None]] = [exit_saying]
_watching: list[threading.Thread] = []


def on_expiry(action: Callable[[Expired], None]) -> None:
    """What this process does when a call outlives its limit; action must not return (os._exit)."""
    _action[0] = action


@contextmanager
def time_limit(stage: str, what: str):
    """with time_limit('run', 'IREE running @main'): the block is one call; past the limit the process stops."""
    limit = timeout_s()
    expired = Expired(stage, f"{what} did not finish within {limit:g} s (${TIMEOUT_ENV}; a graph that loops at run "
                             "time?): stopped, with the process it ran in")
    with _lock:
        if not _watching:
            _watching.append(threading.Thread(target=_watch, name="archval-run-time-limit", daemon=True))
            _watching[0].start()
        _armed[threading.get_ident()] = (time.monotonic() + limit, expired)
    try:
        yield
    finally:
        with _lock:
            _armed.pop(threading.get_ident(), None)


def _watch() -> None:
    while True:
        time.sleep(POLL_S)
        now = time.monotonic()
        with _lock:
            expired = next((e for deadline, e in _armed.values() if now > deadline), None)
        if expired is not None:
            _action[0](expired)
            os._exit(1)  # an action that returned: the call still runs, and nothing else can stop it
