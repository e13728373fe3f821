"""What each graph kind is fed, built in one place from the fixture alone (its config, seed, prompt and
positions): never from which other cases or graph kinds a run selects, so that every emitter, every --graph
selection and the oracle see the same inputs (tests/test_inputs.py holds it)."""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .abi import CACHE_NAMES, LATENT_STACKED
from .emitter_protocol import CaseError
from .fixtures import DECODE_GAP, POSITION_GAP, QUIET_EVERY, QUIET_TOKENS, Fixture

# Every input name the builders below give a graph kind (docs/emitter-protocol.md#arguments): never a weight.
PROTOCOL_INPUT = re.compile(r"tokens|positions|real_len|token|position|cache_len|hidden|embeddings|block_table|"
                            r"([kv]_cache|kv_latent|k_rope)(\.(0|[1-9][0-9]*))?")

def prefill_inputs(fixture: Fixture, bucket: int) -> dict[str, np.ndarray]:
    """What a prefill graph is fed: the prompt padded to the bucket at slots 0..bucket-1, the prompt's
    positions (apart from its slots: Fixture.prompt_positions) and the padding's (its slots), its real length.
    Every position stays below the bucket, so a RoPE table of as many rows as the graph has tokens suffices."""
    return padded_prompt(fixture.prompt(), fixture.prompt_positions(), bucket)


def padded_prompt(prompt: np.ndarray, positions: np.ndarray, bucket: int) -> dict[str, np.ndarray]:
    """A prompt at its positions as a prefill graph of the bucket takes it (prefill_inputs)."""
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


def start_caches(prefill_caches: list[np.ndarray], specs, graph: str = "decode") -> dict[str, np.ndarray]:
    """The caches a graph that continues prefill starts from, by argument name: prefill's caches (its bucket,
    padding slots and all) in the first slots of the graph's own (specs: its cache arguments), zeros after."""
    caches = {}
    for cache, spec in zip(prefill_caches, specs):
        # [L, S, n_kv, D] or [S, n_kv, D]; latent attention's [L, S, width] or [S, width]
        slot_axis = len(spec.shape) - (2 if spec.name.split(".")[0] in CACHE_NAMES[LATENT_STACKED] else 3)
        full = np.zeros(spec.shape, np.float32)
        if cache.ndim != full.ndim or np.delete(cache.shape, slot_axis).tolist() != \
                np.delete(full.shape, slot_axis).tolist() or cache.shape[slot_axis] > full.shape[slot_axis]:
            raise CaseError(f"the prefill graph's cache for {spec.name} is f32{list(cache.shape)} but the {graph} "
                            f"graph's is f32{list(spec.shape)}")
        full[(slice(None),) * slot_axis + (slice(0, cache.shape[slot_axis]),)] = cache
        caches[spec.name] = full
    return caches


CHUNKS = 3  # prefill_chunked feeds the prompt in this many chunks


def chunk_starts(fixture: Fixture) -> tuple[int, ...]:
    """Where each of prefill_chunked's chunks begins in the prompt (13 tokens: 0, 5, 9): as even as can be."""
    return tuple(int(a[0]) for a in np.array_split(np.arange(len(fixture.prompt())), CHUNKS))


def chunk_inputs(fixture: Fixture, start: int, end: int, width: int, capacity: int,
                 caches: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What one call of a prefill_chunked graph is fed: the prompt's tokens start..end-1 padded to the graph's
    width, their positions (the prompt's, its gap included) and the padding's (its slots), the chunk's real length,
    cache_len = start (the slots the earlier chunks filled, and where this one's keys and values go), the caches."""
    if end - start > width:
        raise CaseError(f"the prompt's chunk at cache_len {start} holds {end - start} tokens, but the prefill_chunked "
                        f"graph takes {width}: its tokens must hold the longest of the prompt's {CHUNKS} chunks")
    if start + width > capacity:
        raise CaseError(f"a chunk of {width} tokens at cache_len {start} reaches slot {start + width - 1}, past the "
                        f"prefill_chunked graph's {capacity} cache slots: the cache must hold the prompt's last chunk "
                        "at its offset")
    tokens, slots = np.zeros(width, np.int32), np.arange(start, start + width, dtype=np.int32)
    tokens[: end - start], slots[: end - start] = fixture.prompt()[start:end], fixture.prompt_positions()[start:end]
    return {"tokens": tokens, "positions": slots, "real_len": np.array(end - start, np.int32),
            "cache_len": np.array(start, np.int32), **caches}


def verify_inputs(tokens: np.ndarray, positions: np.ndarray, slot: int,
                  caches: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What one decode_verify call is fed: K tokens, their positions, the first one's cache slot (cache_len;
    token k's is cache_len + k), the caches."""
    return {"tokens": np.asarray(tokens, np.int32), "positions": np.asarray(positions, np.int32),
            "cache_len": np.array(slot, np.int32), **caches}


def embedding_inputs(fixture: Fixture, embeddings: np.ndarray, bucket: int) -> dict[str, np.ndarray]:
    """What a prefill_embeddings graph is fed: prefill's positions and real length, and in place of the tokens
    the prompt's inputs_embeds (the oracle's embedding module's output) padded with zero rows to the bucket."""
    fed = prefill_inputs(fixture, bucket)
    rows = np.zeros((bucket, embeddings.shape[1]), np.float32)
    rows[: len(embeddings)] = embeddings
    return {"embeddings": rows, "positions": fed["positions"], "real_len": fed["real_len"]}


def hidden_states(fixture: Fixture, tokens: int, width: int) -> np.ndarray:
    """The seeded hidden states a block check feeds."""
    return np.random.default_rng([fixture.seed, 0xB10C]).standard_normal((tokens, width)).astype(np.float32)


# The serving kinds' sequences (core/batched.py): row r's (prompt_len, decode steps) is ROWS[r % len(ROWS)]. Ragged
# prompts and ragged ends (a row that is done is a padding row for the steps left); rows 2 and 5 stay inside a
# sliding window of 4 slots while the others pass it.
ROWS = ((13, 8), (10, 6), (2, 2), (7, 8), (12, 3), (3, 1), (9, 5), (5, 7))
SHARED_PREFIX = 8  # row 1's prompt starts with row 0's first 8 tokens, at the same positions (a shared paged block)
ROW_GAP_SLOT = 1  # a row's positions jump by POSITION_GAP after its first slot: inside every prompt, and the same
# in every row, so that a shared prefix is the same keys


@dataclass(frozen=True)
class Row:
    """One sequence of a serving graph's batch: a function of the fixture's seed and its index alone."""
    index: int
    prompt: np.ndarray  # i32[prompt_len]
    positions: np.ndarray  # the prompt's positions (RoPE's), apart from its slots
    steps: int  # decode steps it runs; after them it is a padding row

    def decode_positions(self) -> np.ndarray:
        """Step s's position (s = 1..steps): its slot prompt_len + s - 1, POSITION_GAP + DECODE_GAP past it."""
        return len(self.prompt) + np.arange(self.steps, dtype=np.int32) + POSITION_GAP + DECODE_GAP

    def slot(self, step: int) -> int:
        """cache_len of decode step `step` (1-based): where its key and value go."""
        return len(self.prompt) + step - 1


def batch_row(fixture: Fixture, index: int) -> Row:
    """Row index's sequence: seeded tokens, every QUIET_EVERY-th from the last a quiet token (as the fixture's
    prompt), row 1's first SHARED_PREFIX tokens row 0's."""
    length, steps = ROWS[index % len(ROWS)]
    rng = np.random.default_rng([fixture.seed, 0x5E4E, index])
    prompt = rng.integers(len(QUIET_TOKENS), fixture.config["vocab_size"], length).astype(np.int32)
    quiet = np.arange(length - 1, -1, -QUIET_EVERY)
    prompt[quiet] = np.resize(np.array(QUIET_TOKENS, np.int32), len(quiet))
    if index == 1:
        prompt[:SHARED_PREFIX] = batch_row(fixture, 0).prompt[:SHARED_PREFIX]
    slots = np.arange(length, dtype=np.int32)
    return Row(index, prompt, slots + POSITION_GAP * (slots >= ROW_GAP_SLOT).astype(np.int32), steps)


def serving_step(rows: list[Row], step: int, tokens: list[np.ndarray]) -> dict[str, np.ndarray]:
    """What decode step `step` (1-based) of a serving graph is fed: each active row its oracle token (teacher-forced:
    tokens[r][step - 1]), position and slot; a row whose steps are done is padding, token, position and
    cache_len 0."""
    active = [step <= row.steps for row in rows]
    pick = lambda f: np.array([f(row) if on else 0 for row, on in zip(rows, active)], np.int32)
    return {"token": pick(lambda row: tokens[row.index][step - 1]),
            "position": pick(lambda row: row.decode_positions()[step - 1]),
            "cache_len": pick(lambda row: row.slot(step))}
