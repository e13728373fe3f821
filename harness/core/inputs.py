"""What each graph kind is fed, built in one place from the fixture alone (its config, seed, prompt and
positions): never from which other cases or graph kinds a run selects, so that every emitter, every --graph
selection and the oracle see the same inputs (tests/test_inputs.py holds it)."""
from __future__ import annotations

import re

import numpy as np

from archval.harness.core.emitters import CaseError
from archval.harness.core.fixtures import Fixture

# Every input name the builders below give a graph kind (docs/emitter-protocol.md#arguments): never a weight.
PROTOCOL_INPUT = re.compile(r"tokens|positions|real_len|token|position|cache_len|hidden|([kv]_cache|kv_latent|k_rope)(\.(0|[1-9][0-9]*))?")

def prefill_inputs(fixture: Fixture, bucket: int) -> dict[str, np.ndarray]:
    """What a prefill graph is fed: the prompt padded to the bucket at slots 0..bucket-1, the prompt's
    positions (apart from its slots: Fixture.prompt_positions) and the padding's (its slots), its real length.
    Every position stays below the bucket, so a RoPE table of as many rows as the graph has tokens suffices."""
    prompt, positions = fixture.prompt(), fixture.prompt_positions()
    if positions.max() >= bucket:
        raise CaseError(f"the prompt's positions reach {int(positions.max())}, past the graph's prefill bucket "
                        f"{bucket}: the bucket must hold prompt_len {len(prompt)} and the positions' gap")
    tokens, slots = np.zeros(bucket, np.int32), np.arange(bucket, dtype=np.int32)
    tokens[: len(prompt)], slots[: len(prompt)] = prompt, positions
    return {"tokens": tokens, "positions": slots, "real_len": np.array(len(prompt), np.int32)}


def decode_inputs(token: int, position: int, slot: int, caches: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What one decode step is fed: the token, its position (RoPE's), its cache slot (cache_len: where its key
    and value go, and how many slots the masks let it see), and the caches by argument name."""
    return {"token": np.array(token, np.int32), "position": np.array(position, np.int32),
            "cache_len": np.array(slot, np.int32), **caches}


def hidden_states(fixture: Fixture, tokens: int, width: int) -> np.ndarray:
    """The seeded hidden states a block check feeds."""
    return np.random.default_rng([fixture.seed, 0xB10C]).standard_normal((tokens, width)).astype(np.float32)
