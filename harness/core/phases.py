"""Where a long case is: the stages it enters and the steps it takes, said to whoever listens.

A case says each stage it enters (core/case.py's Case.stage: emit, compile, oracle, run, ...) and the oracle
says each step it takes (a --checkpoint run's greedy continuation); a listener (modes/checkpoint.py's progress)
turns them into phases. Nobody listening costs a lookup: the gate's families report their own progress.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

Listener = Callable[[str, int | None], None]  # (stage or phase, the step within it where there are steps)
_listeners: list[Listener] = []


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)


def entered(stage: str, step: int | None = None) -> None:
    for listener in list(_listeners):
        listener(stage, step)
