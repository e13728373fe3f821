"""What gate workers stopped at a call's time limit (core/watchdog.py), told to the gate: which family, at
which stage, and the sentence, so that the gate makes that family's cases ERRORs instead of running it
again. One queue per gate for all its pools; a SimpleQueue writes at once, so a note put just before the
worker's os._exit is not lost.
"""
from __future__ import annotations

import multiprocessing

from ..core.watchdog import Expired

_queue: list = []  # in the gate: the one queue, made at the first pool
_validating: list[str] = []  # in a worker: the family it validates now
_told: dict[str, Expired] = {}  # in the gate: the notes read so far, by family


def notes():
    """The gate's queue, for its workers (passed to each as it is spawned)."""
    if not _queue:
        _queue.append(multiprocessing.get_context("spawn").SimpleQueue())
    return _queue[0]


def validating(family: str) -> None:
    """In a worker: the family whose cases it runs from now on, whose a stopped call is."""
    _validating[:] = [family]


def tell(queue, leave, expired: Expired) -> None:
    """In a worker, a call past its time limit: the gate is told whose it was, then the worker leaves (exits)."""
    queue.put((_validating[0] if _validating else None, expired))
    leave(1)


def forget() -> None:
    """In the gate, as a run starts: notes of an earlier run in this process (tests run several) do not count."""
    _read()
    _told.clear()


def told(family: str) -> Expired | None:
    """In the gate: how family's worker was stopped at a time limit, if it was."""
    _read()
    return _told.get(family)


def _read() -> None:
    while not notes().empty():
        name, expired = notes().get()
        _told[name] = expired
