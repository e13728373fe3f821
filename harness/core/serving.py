"""The serving graphs' ABI (docs/emitter-protocol.md#batched-and-paged-decode), read from the graph, and their caches as
the harness fills them: dense per-row caches, or a paged pool of blocks with a block table per sequence.

decode_batched takes token, position, cache_len i32[B] and k_cache, v_cache f32[B, L, C, n_kv, D] (stacked) or
k_cache.i, v_cache.i f32[B, C, n_kv, D] (per layer); decode_paged takes block_table i32[B, MB] too, and pools
f32[L, NB, BS, n_kv, D] or f32[NB, BS, n_kv, D], row b's slot s in block block_table[b, s // BS] at s % BS, block 0
no sequence's (NULL_BLOCK: padding rows point at it). Both return the logits f32[B, V], then the caches in the
order they take them. The prefill graph's caches fill each row: in decode_batched the row's first Lp slots,
padding slots and all (as decode's); in decode_paged the prompt's slots, in the blocks its table names.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .abi import PER_LAYER, PROTOCOL, STACKED, _types
from .emitter_protocol import CaseError
from .fixtures import Fixture
from .graph import FunctionSignature, TensorSpec
from .inputs import SHARED_PREFIX, Row

NULL_BLOCK = 0
PAGED_SECTION = f"{PROTOCOL}#batched-and-paged-decode"


@dataclass(frozen=True)
class Layout:
    """A serving graph's batch and caches."""
    batch: int  # B
    caches: str  # STACKED or PER_LAYER
    specs: tuple[TensorSpec, ...]  # its cache arguments, in its order (its results' order too)
    capacity: int  # slots a row can hold: C, or MB x BS
    block_size: int | None = None  # decode_paged's BS; None: dense caches
    blocks: int | None = None  # NB
    table_width: int | None = None  # MB

    @property
    def paged(self) -> bool:
        return self.block_size is not None


def serving_layout(main: FunctionSignature, fixture: Fixture, kind: str, paged: bool) -> Layout:
    """The graph's layout; CaseError naming what does not fit the protocol."""
    layers, vocab = fixture.attribute("num_hidden_layers"), fixture.attribute("vocab_size")
    inputs = [main.arg(name) for name in ("token", "position", "cache_len")]
    batch = inputs[0].shape[0] if len(inputs[0].shape) == 1 else None
    if batch is None or any((a.shape, a.dtype) != ((batch,), "i32") for a in inputs):
        raise CaseError(f"the {kind} graph's token, position, cache_len are {_types(inputs)}; the protocol wants "
                        f"i32[B] each, one entry per sequence ({PAGED_SECTION})")
    caches = tuple(a for a in main.args if a.name in ("k_cache", "v_cache") or
                   (a.name[:8] in ("k_cache.", "v_cache.") and a.name[8:].isdigit()))
    names = {a.name for a in caches}
    rank = 4  # per layer: a batch of caches [B, C, n_kv, D] or a pool [NB, BS, n_kv, D]; stacked: L before them
    per_layer_names = {f"{kv}.{i}" for kv in ("k_cache", "v_cache") for i in range(layers)}
    lead = (layers,) if paged else (batch, layers)
    if names == {"k_cache", "v_cache"} and all(len(c.shape) == rank + 1 and c.shape[:len(lead)] == lead
                                                 for c in caches):
        variant = STACKED
    elif names == per_layer_names and all(len(c.shape) == rank and (paged or c.shape[0] == batch) for c in caches):
        variant = PER_LAYER
    else:
        wanted = ("k_cache and v_cache f32[L, NB, BS, n_kv, D], or k_cache.i and v_cache.i f32[NB, BS, n_kv, D]"
                  if paged else "k_cache and v_cache f32[B, L, C, n_kv, D], or k_cache.i and v_cache.i f32[B, C, "
                                "n_kv, D]")
        shown = ", ".join(f"{a.name} {a.dtype}{list(a.shape)}" for a in caches) or "none"
        raise CaseError(f"the {kind} graph's cache arguments are {shown}; the protocol wants {wanted} for the "
                        f"{layers} layers, B = {batch} ({PAGED_SECTION})")
    if len({c.shape for c in caches}) != 1:
        raise CaseError(f"the {kind} graph's caches differ in shape: {_types(caches)}")
    results = main.results
    if len(results) != 1 + len(caches) or (results[0].shape, results[0].dtype) != ((batch, vocab), "f32") or any(
            (r.shape, r.dtype) != (c.shape, c.dtype) for r, c in zip(results[1:], caches)):
        raise CaseError(f"the {kind} graph returns {_types(results)}; the protocol wants the logits f32[{batch}, "
                        f"{vocab}], then its caches as it takes them: {_types(caches)} ({PAGED_SECTION})")
    shape = caches[0].shape
    if not paged:
        return Layout(batch, variant, caches, shape[-3])
    table = main.arg("block_table")
    if table.dtype != "i32" or len(table.shape) != 2 or table.shape[0] != batch:
        raise CaseError(f"the {kind} graph's block_table is {_types([table])}; the protocol wants i32[{batch}, MB]")
    blocks, size = shape[-4], shape[-3]
    return Layout(batch, variant, caches, table.shape[1] * size, size, blocks, table.shape[1])


def block_tables(layout: Layout, rows: list[Row], seed: int) -> np.ndarray:
    """Each row's blocks, i32[B, MB]: drawn from a seeded permutation of the pool (scattered, in no order), row 1's
    first blocks row 0's (their prompts share SHARED_PREFIX tokens at the same positions), the rest NULL_BLOCK."""
    size, width = layout.block_size, layout.table_width
    shared = SHARED_PREFIX // size if len(rows) > 1 else 0
    if len(rows) > 1 and not shared:
        raise CaseError(f"the decode_paged graph's blocks hold {size} slots, more than the {SHARED_PREFIX}-token "
                        f"prefix rows 0 and 1 share: the protocol wants blocks of at most {SHARED_PREFIX} slots so "
                        "that a block is shared")
    free = iter(np.random.default_rng([seed, 0xB10C5]).permutation(np.arange(1, layout.blocks)).tolist())
    tables = np.full((len(rows), width), NULL_BLOCK, np.int32)
    needed = [-(-(len(row.prompt) + row.steps) // size) for row in rows]
    if max(needed) > width or sum(needed) - shared + 1 > layout.blocks:
        raise CaseError(f"rows of up to {max(needed)} blocks, {sum(needed) - shared} in all, do not fit the "
                        f"decode_paged graph's block_table of {width} per row and pool of {layout.blocks} blocks "
                        f"(block {NULL_BLOCK} is no sequence's)")
    for row, count in zip(rows, needed):
        for j in range(count):
            tables[row.index, j] = tables[0, j] if row.index == 1 and j < shared else next(free)
    return tables


def owned(tables: np.ndarray, row: int) -> list[int]:
    """The blocks row's table names that no other row's does."""
    others = {int(b) for r, t in enumerate(tables) if r != row for b in t}
    return [int(b) for b in tables[row] if b != NULL_BLOCK and int(b) not in others]


def fill(layout: Layout, row: Row, prefill: list[np.ndarray], storage: dict[str, np.ndarray],
         tables: np.ndarray | None) -> None:
    """Writes row's prefill caches (the order the serving graph takes its caches) into storage: the row's first Lp
    slots of its dense caches, or its prompt's slots into its own blocks (a shared block its owner, row 0, fills)."""
    for cache, spec in zip(prefill, layout.specs):
        target = storage[spec.name]
        into = target if layout.paged else target[row.index]  # [(L,) NB, BS, n_kv, D] or [(L,) C, n_kv, D]
        lead = into.shape[:-4] if layout.paged else into.shape[:-3]
        if cache.shape[:-3] != lead or cache.shape[-2:] != into.shape[-2:] or cache.shape[-3] > layout.capacity:
            raise CaseError(f"the prefill graph's cache for {spec.name} is f32{list(cache.shape)}, which does not fit "
                            f"the serving graph's f32{list(spec.shape)}")
        if not layout.paged:
            into[..., : cache.shape[-3], :, :] = cache
            continue
        mine = owned(tables, row.index) + ([] if row.index else [int(b) for b in tables[0]])
        for j, block in enumerate(tables[row.index]):
            start = j * layout.block_size
            end = min(start + layout.block_size, len(row.prompt))
            if start < end and int(block) in mine:
                into[..., int(block), : end - start, :, :] = cache[..., start:end, :, :]


def scramble(layout: Layout, storage: dict[str, np.ndarray], row: int, tables: np.ndarray | None,
             rng: np.random.Generator) -> None:
    """Row's own cache contents replaced by noise (its dense caches, or the blocks no other row names)."""
    for target in storage.values():
        if layout.paged:
            for block in owned(tables, row):
                target[..., block, :, :, :] = rng.standard_normal(target[..., block, :, :, :].shape)
        else:
            target[row] = rng.standard_normal(target[row].shape)
