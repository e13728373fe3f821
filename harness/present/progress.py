"""Live progress of a long run, on stderr (stdout keeps the record lines and RESULT, unchanged).

On a terminal, one status line redrawn every second: done/total, what is in flight, the elapsed
time and an estimate of what is left. Anywhere else (CI logs, a pipe), the same status as a plain
line every PERIOD_S seconds and after each completion, so that a log shows a long run moving
(none under -q, which says only what did not pass).

What is in flight is read from the order work was handed out: the pool takes its tasks first
in, first out, so the first `jobs` unfinished ones are those running, each since the moment it
took a free worker. The estimate is the costs given (fixtures/costs.json's cold seconds, for
families) times this run's pace: the time the finished ones took per second of their cost (a
warm cache runs several times faster than the table; 1 until one is done). What is left of
each running one (its cost at that pace less the time it has run) and the queue's costs share
the workers, and the longest running one bounds it from below, so that the estimate does not
jump when the first of several parallel ones finishes. An estimate spent (a slow machine, a cold cache, a
hang) is no figure at all: the status then says `past the estimate` and, for each running one past its own,
how long it has run (`running: llama 42s`), never `about 0s left`.
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
        self.finished: dict[str, float] = {}  # name: seconds it ran
        self.details: dict[str, str] = {}  # name: where a running one is (a phase's step), shown after its name
        self.started = dict.fromkeys(self.order[: self.jobs], self.start)
        self._lock, self._stop, self._drawn = threading.Lock(), threading.Event(), False
        self._said_at = self.start  # the last plain line
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

    def _pace(self) -> float:
        """Seconds this run takes per second of cost: the finished ones' (1 until one is done)."""
        cost_done = sum(self.costs[n] for n in self.finished)
        return sum(self.finished.values()) / cost_done if cost_done else 1.0

    def _left_s(self, name: str, now: float) -> float:
        """What is left of a running one at this run's pace; 0 once it is past its estimate."""
        return max(0.0, self.costs[name] * self._pace() - (now - self.started[name]))

    def eta_s(self) -> float | None:
        """Seconds left: the costs at this run's pace, shared by the workers (module docstring)."""
        now, running = self.clock(), self.in_flight()
        if not running:
            return None
        running_left = [self._left_s(n, now) for n in running]
        queued = sum(self.costs[n] for n in self.order if n not in self.finished and n not in running) * self._pace()
        return max(max(running_left), (sum(running_left) + queued) / self.jobs)

    def status(self) -> str:
        now, eta, running = self.clock(), self.eta_s(), self.in_flight()
        spent = eta is not None and duration(eta) == "0s"  # what would read `about 0s left` while work runs
        shown = [n + self.details.get(n, "") + (f" {duration(now - self.started[n])}"
                                                if duration(self._left_s(n, now)) == "0s" else "")
                 for n in running]
        return (f"[{len(self.finished)}/{len(self.order)} {self.unit}] {duration(now - self.start)} elapsed"
                + ("" if eta is None else ", past the estimate" if spent else f", about {duration(eta)} left")
                + (f"; running: {', '.join(shown)}" if running else ""))

    def say(self, text: str, out: TextIO | None = None) -> None:
        """A line of the run's output (stdout), with the status line out of its way."""
        with self._lock:
            self._clear()
            print(text, file=out or sys.stdout, flush=True)
            self._draw()

    def done(self, name: str) -> None:
        with self._lock:
            now = self.clock()
            self.finished[name] = now - self.started.get(name, self.start)
            for newly in self.in_flight():
                self.started.setdefault(newly, now)
            if self.plain:
                self._say_status()
            self._draw()

    def _say_status(self) -> None:
        print(self.status(), file=self.err, flush=True)
        self._said_at = self.clock()

    def _tick(self) -> None:
        """The terminal's line redrawn; a plain line when none was said for a period (not right after a
        completion's)."""
        while not self._stop.wait(self.period_s if self.tty else self._until_next_line()):
            with self._lock:
                if self.tty:
                    self._draw()
                elif self.plain and self.clock() - self._said_at >= self.period_s:
                    self._say_status()

    def _until_next_line(self) -> float:
        return max(0.01, self.period_s - (self.clock() - self._said_at))

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
