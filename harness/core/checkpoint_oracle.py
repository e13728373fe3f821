"""The CaseOracle (oracles/interface.py) of a checkpoint directory (`--checkpoint DIR`): transformers loads DIR
(eager attention, the in-tree class, the config archval read) computing in f32, its layers held in f32 or, where
that would not fit, as stored; runs the greedy continuation and the prompt's logits at every position, then, for
the strict bound, computes in f64 one layer at a time, teacher-forced on its own tokens in one forward over the
whole sequence; then it is freed, before any graph weight is read
(core/checkpoint_files.py MemoryEstimate: the peak is one of the two). The weights the graphs are bound to are the
checkpoint's own tensors (GraphTensors), never the seeded model's. What only one graph kind asks for (an MoE
block, the localisation's taps) loads DIR again for that call, and frees it after.
"""
from __future__ import annotations

import gc

import numpy as np

from . import phases
from .checkpoint_files import Checkpoint, GraphTensors
from ...oracles.interface import BlockExpectation, Embedded, OracleRun


class CheckpointOracle:
    def __init__(self, checkpoint: Checkpoint, prompt: np.ndarray, steps: int, strict: bool, held: str = "f32"):
        """held: the dtype the model's layers are held in (MemoryEstimate.held)."""
        self.checkpoint, self.prompt, self.steps, self.strict, self.held = checkpoint, prompt, steps, strict, held
        n = len(prompt)  # the prompt at its slots, each decode step at its own (Fixture.prompt_positions)
        self.positions, self.step_positions = np.arange(n), np.arange(n, n + steps)
        self._run: OracleRun | None = None
        self._fp64: np.ndarray | None = None
        self._prompt: dict[str, np.ndarray] = {}

    def _load(self):
        from ...oracles.hf import Oracle
        return Oracle.from_checkpoint(self.checkpoint.directory, self.checkpoint.config, self.held)

    def run(self) -> OracleRun:
        if self._run is None:
            oracle = self._load()
            logits, tokens = oracle.greedy(self.prompt, self.positions, self.step_positions,
                                           lambda s: phases.entered("oracle step", s))
            self._prompt["float32"] = oracle.prompt_logits(self.prompt, self.positions)
            routed, unread = tuple(oracle.routed_layers()), tuple(oracle.unread_fields(self.checkpoint.config))
            if self.strict:
                phases.entered("oracle fp64")
                oracle.to_float64()  # one pass over the whole sequence, not a forward per step
                every = oracle.sequence_logits(self.prompt, self.positions, self.step_positions, tokens, every=True)
                self._prompt["float64"], self._fp64 = every[: len(self.prompt)], every[len(self.prompt) - 1:]
            binding = oracle.binding
            del oracle
            gc.collect()
            self._run = OracleRun(logits, tokens, GraphTensors(self.checkpoint), binding.class_name,
                                  "identity (the graph takes the safetensors names)", routed, False, unread)
        return self._run

    def cached(self) -> bool:
        return False  # its weights are on disk already, and its logits depend on every byte of them

    def fp64_logits(self, tokens: np.ndarray) -> np.ndarray:
        run = self.run()
        if self._fp64 is None or not np.array_equal(tokens, run.tokens):
            raise ValueError("the checkpoint's fp64 oracle ran only on its own greedy tokens, with the strict bound")
        return self._fp64

    def teacher_forced(self, tokens: np.ndarray, dtype: str) -> np.ndarray:
        if dtype != "float64":
            raise ValueError(f"a checkpoint's oracle runs in f32 and fp64 only, not {dtype}")
        return self.fp64_logits(tokens)

    def prompt_logits(self, dtype: str = "float32") -> np.ndarray:
        self.run()
        if dtype not in self._prompt:
            raise ValueError("the checkpoint's fp64 oracle ran only with the strict bound")
        return self._prompt[dtype]

    def moe_block(self, layer: int, hidden: np.ndarray) -> BlockExpectation:
        return BlockExpectation(*self._loaded_once(lambda oracle: oracle.moe_block(layer, hidden)))

    def sequence(self, prompt: np.ndarray, positions: np.ndarray,
                 decode_positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._loaded_once(lambda oracle: oracle.greedy(prompt, positions, decode_positions))

    def chunked_logits(self, starts: tuple[int, ...], dtype: str = "float32") -> np.ndarray:
        return self._loaded_once(lambda oracle: oracle.chunked_logits(self.prompt, self.positions, list(starts)),
                                 dtype)

    def embedded(self, dtype: str = "float32") -> Embedded:
        return Embedded(*self._loaded_once(lambda oracle: oracle.embedded_logits(self.prompt, self.positions), dtype))

    def taps(self, dtype: str) -> dict[str, np.ndarray]:
        return self._loaded_once(lambda oracle: oracle.taps(self.prompt, self.positions), dtype)

    def _loaded_once(self, call, dtype: str = "float32"):
        """call on DIR loaded for it alone (in dtype), freed after."""
        oracle = self._load()
        try:
            if dtype == "float64":
                oracle.to_float64()
            return call(oracle)
        finally:
            del oracle
            gc.collect()
