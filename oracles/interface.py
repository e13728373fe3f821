"""What a case needs from its oracle, one interface whatever the oracle is: a transformers causal LM of any model
type on seeded synthetic weights (harness/core/oracle_cache.py SeededOracle, cached), or a checkpoint directory
on its own weights (harness/core/checkpoint_oracle.py CheckpointOracle). A case reaches its fixture's oracle
through one accessor (oracle_cache.of(fixture)), so that a checkpoint case of any graph kind is never compared
with the seeded model by mistake. This module imports no torch: the harness holds the interface, the
implementations reach transformers only through oracles/hf.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol

import numpy as np

TAP_POINTS = ("attention", "mlp", "layer")  # the tap protocol's results, in this order (docs/emitter-protocol.md#taps)


@dataclass(frozen=True)
class OracleRun:
    """The oracle's greedy continuation with its own cache: logits [steps + 1, V] (row 0 is the
    prompt's last token, prefill's expectation) and the tokens they choose; plus its weights."""
    logits: np.ndarray
    tokens: np.ndarray
    weights: Mapping[str, np.ndarray]
    class_name: str
    mapping: str  # checkpoint names -> the class's names ("identity" unless a stand-in class serves the family)
    routed_layers: tuple[int, ...]  # layers whose MLP routes to experts
    cached: bool  # read from the cache directory, not computed by this process
    unread_fields: tuple[str, ...] = ()  # the config's fields the oracle never reads (oracles/fields.py)


@dataclass(frozen=True)
class BlockExpectation:
    """One MoE block of the oracle on given hidden states."""
    output: np.ndarray
    router_margin: float  # smallest gap between a token's k-th and (k+1)-th router probability
    expert_sets: int  # distinct expert sets chosen


@dataclass(frozen=True)
class Embedded:
    """The prompt as inputs_embeds, and what the oracle makes of them."""
    embeddings: np.ndarray  # f32[prompt_len, H]: the input embedding module's output
    logits: np.ndarray  # [prompt_len, V], in the dtype asked for
    table: str  # the embedding table's checkpoint name


class CaseOracle(Protocol):
    """The oracle of one fixture: its prompt at its positions, its decode steps at theirs."""

    def run(self) -> OracleRun:
        """Greedy decode through the oracle's own cache at explicit positions: the prompt's last logits, then
        each step's; the tokens chosen; the weights the graphs are bound to."""

    def cached(self) -> bool:
        """Whether run() will be read back without running a model (no torch needed for it)."""

    def prompt_logits(self, dtype: str = "float32") -> np.ndarray:
        """The logits [prompt_len, V] at every prompt position; float64: the strict bound's noise floor."""

    def fp64_logits(self, tokens: np.ndarray) -> np.ndarray:
        """The fp64 oracle teacher-forced on tokens (run()'s): [len(tokens), V]."""

    def teacher_forced(self, tokens: np.ndarray, dtype: str) -> np.ndarray:
        """The oracle in dtype (float64, bfloat16) teacher-forced on tokens: [len(tokens), V]."""

    def moe_block(self, layer: int, hidden: np.ndarray) -> BlockExpectation:
        """Layer's MoE block alone on hidden [tokens, width]."""

    def sequence(self, prompt: np.ndarray, positions: np.ndarray,
                 decode_positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Greedy decode of another prompt than the fixture's (a batched graph's row): logits, tokens as run()'s."""

    def chunked_logits(self, starts: tuple[int, ...], dtype: str = "float32") -> np.ndarray:
        """The prompt's logits [prompt_len, V], fed in chunks beginning at starts through the oracle's cache."""

    def embedded(self, dtype: str = "float32") -> Embedded:
        """The oracle fed the prompt's inputs_embeds: those embeddings and its logits."""

    def taps(self, dtype: str) -> dict[str, np.ndarray]:
        """{point: [layers, prompt_len, hidden]} hooked out of the oracle's prefill, in TAP_POINTS order."""
