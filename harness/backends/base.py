"""The backend interface: StableHLO text compiled and loaded into a module; call(weights, inputs) runs it.

A backend is a compiler and runtime that executes the emitted text. The subject backend (IREE)
is the one the verdict judges; reference backends (XLA CPU) run the same text so that a
disagreement can be blamed on the emitter or on a compiler (core/triangulate.py). Arguments
are bound by the names the graph carries (core/graph.py), never by position.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from typing import Callable

import numpy as np

from ..core.graph import FunctionSignature, GraphSignature, bind

Stage = Callable[[str], AbstractContextManager]  # times a stage of the case by its name


class BackendError(RuntimeError):
    """Compiling or running the graph failed; the message carries the tool's own words."""


class Module(ABC):
    """A graph compiled and loaded by one backend."""

    def __init__(self, main: FunctionSignature, cache_hit: bool):
        self.main = main
        self.cache_hit = cache_hit  # the compiled code came from the cache directory

    def call(self, weights: dict[str, np.ndarray], inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """@main on the weights and inputs its arguments name: its results, in order."""
        return self.execute(bind(self.main, weights, inputs), inputs)

    @abstractmethod
    def execute(self, args: list[np.ndarray], inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """@main on args in its own order (inputs: which of them change from call to call)."""


class Backend(ABC):
    name: str  # as the record and the cache name it
    run_stage: str  # the timing stage its calls are counted in

    @abstractmethod
    def load(self, text: str, graph: GraphSignature, stage: Stage) -> Module:
        """The text compiled (or read from the cache directory) and loaded; BackendError when it cannot be."""

    @abstractmethod
    def cache_key(self, text: str) -> str:
        """What its compiled code depends on: the text, its build, its options, the host CPU."""
