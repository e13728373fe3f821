"""A --checkpoint run's progress: its one case by phase, the long run users wait on (present/progress.py's status
line or plain lines, on stderr).

The phases, in the order the case runs them: compiling the graphs, reading the checkpoint (transformers loading it
for the oracle), the oracle's steps (the prompt, each greedy step, then the fp64 pass), the graph's steps (prefill,
then each decode call). The case says where it is (core/phases.py); a phase ends when a later one starts, and
never starts again (the strict bound's fp64 logits are read back after the graph's steps: no new oracle phase).
Each phase's expected cost is a line through the one measured checkpoint run (docs/checkpoints.md: 1.1B
parameters, 33 steps: compile 19 s, oracle 120 s, IREE 237 s) plus a fixed cost per phase and step, rescaled by
this run's pace once a phase is done: an estimate, not a promise.
"""
from __future__ import annotations

from .progress import Progress

PHASES = ("compiling", "reading", "oracle", "graph")
STAGES = {"emit": "compiling", "compile": "compiling", "load": "compiling", "oracle": "reading",
          "oracle step": "oracle", "oracle fp64": "oracle", "run": "graph"}
# seconds per parameter and step (the measured run's oracle and IREE), and fixed seconds per phase and per step
PER_PARAMETER_STEP = {"oracle": 120 / (1.1e9 * 33), "graph": 237 / (1.1e9 * 33)}
FIXED_S = {"compiling": 10.0, "reading": 2.0, "oracle": 1.0, "graph": 1.0}
PER_STEP_S = {"oracle": 0.05, "graph": 0.02}


def costs(parameters: int, steps: int) -> dict[str, float]:
    """Each phase's expected seconds for a checkpoint of `parameters` and `steps` decode steps."""
    calls = steps + 1
    return {phase: FIXED_S[phase] + calls * (PER_STEP_S.get(phase, 0.0) + parameters * PER_PARAMETER_STEP.get(phase, 0.0))
            for phase in PHASES}


class PhaseProgress:
    """Listens to the case (core/phases.py) and moves a Progress over PHASES; the steps of the oracle and graph
    phases are shown beside them (`oracle step 12/33`)."""

    def __init__(self, progress: Progress, steps: int):
        self.progress, self.calls = progress, steps + 1
        self.current, self.graph_calls = 0, 0

    def __call__(self, stage: str, step: int | None) -> None:
        phase = STAGES.get(stage)
        if phase is None or PHASES.index(phase) < self.current:
            return
        if stage == "oracle step":  # said first, so that the line a phase's end prints shows it
            self.progress.details[phase] = f" step {step + 1}/{self.calls}"
        elif stage == "oracle fp64":
            self.progress.details[phase] = " fp64 pass"
        elif stage == "run":
            self.graph_calls += 1
            self.progress.details[phase] = f" step {self.graph_calls}/{self.calls}"
        for finished in PHASES[self.current: PHASES.index(phase)]:
            self.progress.done(finished)
        self.current = PHASES.index(phase)
