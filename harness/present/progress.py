"""Live progress of a long run, on stderr (stdout keeps the record lines and RESULT, unchanged).

On a terminal, one status line redrawn every second: done/total, what is in flight, the elapsed
time and an estimate of what is left. Anywhere else (CI logs, a pipe), the same status as a plain
line every PERIOD_S seconds and after each completion, so that a log shows a long run moving
(none under -q, which says only what did not pass).

What is in flight is read from the order work was handed out: the pool takes its tasks first
in, first out, so the first `jobs` unfinished ones are those running. The estimate starts from
the costs given (fixtures/costs.json's cold seconds, for families) and, once something is done,
scales them by how fast this run goes (a warm cache runs several times faster than the table).
"""
from __future__ import annotations

import shutil
import sys
import threading
import time
from typing import TextIO

PERIOD_S = 10.0  # plain lines: often enough that a CI log never looks stuck
REDRAW_S = 1.0  # the terminal's status line


def duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """Tracks names handed out in order to `jobs` workers; say() prints a line, done() marks one finished."""

    def __init__(self, order: list[str], jobs: int, costs: dict[str, float] | None = None, unit: str = "families",
                 quiet: bool = False, err: TextIO | None = None, tty: bool | None = None,
                 period_s: float = PERIOD_S, clock=time.monotonic):
        self.order, self.jobs, self.unit = list(order), max(1, jobs), unit
        self.costs = costs or dict.fromkeys(self.order, 1.0)  # no costs known: every task alike
        self.err = err or sys.stderr
        self.tty = self.err.isatty() if tty is None else tty
        self.plain = not self.tty and not quiet  # plain status lines
        self.period_s = REDRAW_S if self.tty else period_s
        self.clock, self.start = clock, clock()
        self.finished: set[str] = set()
        self._lock, self._stop, self._drawn = threading.Lock(), threading.Event(), False
        self._thread = threading.Thread(target=self._tick, daemon=True, name="archval-progress")

    def __enter__(self) -> Progress:
        if self.order and (self.tty or self.plain):
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        with self._lock:
            self._clear()

    def in_flight(self) -> list[str]:
        return [n for n in self.order if n not in self.finished][: self.jobs]

    def eta_s(self) -> float | None:
        """Seconds left by the costs, scaled by this run's pace once something is done."""
        left = sum(self.costs[n] for n in self.order if n not in self.finished)
        done = sum(self.costs[n] for n in self.finished)
        elapsed = self.clock() - self.start
        if done:
            return elapsed * left / done
        return max(0.0, left / self.jobs - elapsed) if left else None

    def status(self) -> str:
        eta = self.eta_s()
        running = self.in_flight()
        return (f"[{len(self.finished)}/{len(self.order)} {self.unit}] {duration(self.clock() - self.start)} elapsed"
                + (f", about {duration(eta)} left" if eta is not None and running else "")
                + (f"; running: {', '.join(running)}" if running else ""))

    def say(self, text: str, out: TextIO | None = None) -> None:
        """A line of the run's output (stdout), with the status line out of its way."""
        with self._lock:
            self._clear()
            print(text, file=out or sys.stdout, flush=True)
            self._draw()

    def done(self, name: str) -> None:
        with self._lock:
            self.finished.add(name)
            if self.plain:
                print(self.status(), file=self.err, flush=True)
            self._draw()

    def _tick(self) -> None:
        while not self._stop.wait(self.period_s):
            with self._lock:
                if self.tty:
                    self._draw()
                elif self.plain:
                    print(self.status(), file=self.err, flush=True)

    def _draw(self) -> None:
        if self.tty:
            width = shutil.get_terminal_size().columns - 1
            self.err.write("\r\x1b[2K" + self.status()[:width])
            self.err.flush()
            self._drawn = True

    def _clear(self) -> None:
        if self._drawn:
            self.err.write("\r\x1b[2K")
            self.err.flush()
            self._drawn = False
