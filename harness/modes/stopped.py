"""What gate workers stopped at a call's time limit (core/watchdog.py), told to the gate: which family, at
which stage, and the sentence, so that the gate makes that family's cases ERRORs instead of running it
again. One queue per gate for all its pools; a SimpleQueue writes at once, so a note put just before the
worker's os._exit is not lost.
"""
from __future__ import annotations

import multiprocessing

from archval.harness.core.watchdog import Expired

_queue: list = []  # in the gate: the one queue, made at the first pool
_told: dict[str, Expired] = {}  # in the gate: the notes read so far, by family


def notes():
    """The gate's queue, for its workers (passed to each as it is spawned)."""
    if not _queue:
        _queue.append(multiprocessing.get_context("spawn").SimpleQueue())
    return _queue[0]


def tell(queue, family: str | None, expired: Expired) -> None:
    """In a worker: family's call was stopped."""
    queue.put((family, expired))


def forget() -> None:
    """In the gate, as a run starts: notes of an earlier run in this process (tests run several) do not count."""
    told("")
    _told.clear()


def told(family: str) -> Expired | None:
    """In the gate: how family's worker was stopped at a time limit, if it was."""
    while not notes().empty():
        name, expired = notes().get()
        _told[name] = expired
    return _told.get(family)
