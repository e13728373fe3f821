"""Serving graphs: B sequences decoded together, one token each, every row at its own cache slot and position,
over dense per-row caches (decode_batched) or a paged block pool read through a block table (decode_paged).

Every per-token part of the forward (embedding, norms, projections, the MLP or MoE routing) runs on the B tokens
as one [B, H] batch, exactly as prefill runs its Lp tokens; attention alone is per row: row b's query reads row
b's keys and values under the mask of row b's cache_len. No value of one row reaches another row's logits.
"""
from __future__ import annotations

from .config import Config
from .decoder import Decoder
from .stablehlo import Function, Value, module

DEFAULT_BATCH = 4       # sequences per serving graph
DEFAULT_BLOCK_SIZE = 4  # cache slots per paged block
NULL_BLOCK = 0          # the paged pool's block 0 belongs to no sequence: padding rows' tables point at it


class BatchedDecoder(Decoder):
    """The decoder core over dense per-row caches k_cache, v_cache f32[B, L, C, n_kv, D] and cache_len i32[B]
    (rows); outside a serving graph (rows None, prefill) the plain core."""

    def __init__(self, cfg: Config, fn: Function, cache=None, rows: tuple[Value, Value, Value] | None = None):
        super().__init__(cfg, fn, cache)
        self.rows = rows

    def attend_layer(self, i, q, k, v, mask):
        if self.rows is None:
            return super().attend_layer(i, q, k, v, mask)
        g, batch = self.g, q.shape[0]
        for b in range(batch):  # every row's new key and value written before any row reads
            self.store(i, b, self.row(k, b), self.row(v, b))
        return g.concatenate([self.attend(i, self.row(q, b), *self.row_kv(i, self.read_row(b)), self.row(mask, b))
                              for b in range(batch)], dim=0)

    def row(self, x: Value, b: int) -> Value:
        """x[b:b+1]: row b of a batch, its leading axis kept."""
        return self.g.slice(x, (b,) + (0,) * (len(x.shape) - 1), (b + 1, *x.shape[1:]))

    def slot(self, b: int) -> Value:
        """Row b's cache_len: where its new key and value go, and the last slot it sees."""
        return self.g.reshape(self.row(self.rows[2], b), ())

    def read_row(self, b: int) -> int:
        """Whose keys and values row b's query reads: its own."""
        return b

    def store(self, i: int, b: int, k: Value, v: Value) -> None:
        """Row b's new key and value [1, n_kv, D] written at layer i, slot cache_len[b] of its own cache."""
        g, (k_cache, v_cache, cache_len) = self.g, self.rows
        zero = g.scalar(0, "i32")
        at = [g.scalar(b, "i32"), g.scalar(i, "i32"), self.slot(b), zero, zero]
        write = lambda cache, x: g.dynamic_update_slice(cache, g.reshape(x, (1, 1, *x.shape)), at)
        self.rows = (write(k_cache, k), write(v_cache, v), cache_len)

    def row_kv(self, i: int, b: int) -> tuple[Value, Value]:
        """Row b's keys and values of layer i, [C, n_kv, D]."""
        g, (_, _, slots, nkv, d) = self.g, self.rows[0].shape
        layer = lambda c: g.reshape(g.slice(c, (b, i, 0, 0, 0), (b + 1, i + 1, slots, nkv, d)), (slots, nkv, d))
        return layer(self.rows[0]), layer(self.rows[1])

    def row_logits(self, h: Value) -> Value:
        """Each row's logits from its final hidden state h [B, H]: f32[B, V]."""
        g = self.g
        return g.concatenate([g.reshape(self.logits(self.row(h, b)), (1, self.cfg.vocab_size))
                              for b in range(h.shape[0])], dim=0)

    def caches(self) -> tuple[Value, Value]:
        return self.rows[0], self.rows[1]


class PagedDecoder(BatchedDecoder):
    """The core over a block pool k_cache, v_cache f32[L, NB, BS, n_kv, D] and block_table i32[B, MB]: row b's
    logical slot s lies in block block_table[b, s // BS] at offset s % BS."""

    def __init__(self, cfg, fn, cache=None, rows=None, block_table: Value | None = None):
        super().__init__(cfg, fn, cache, rows)
        self.block_table = block_table

    def physical(self, block: Value) -> Value:
        """The pool's block for a block-table entry: the entry itself."""
        return block

    def store(self, i, b, k, v):
        g, (k_pool, v_pool, cache_len) = self.g, self.rows
        size = g.scalar(k_pool.shape[2], "i32")
        slot, zero = self.slot(b), g.scalar(0, "i32")
        logical = g.div(slot, size)
        entry = g.reshape(g.dynamic_slice(self.block_table, [g.scalar(b, "i32"), logical], (1, 1)), ())
        at = [g.scalar(i, "i32"), self.physical(entry), g.sub(slot, g.mul(logical, size)), zero, zero]
        write = lambda pool, x: g.dynamic_update_slice(pool, g.reshape(x, (1, 1, *x.shape)), at)
        self.rows = (write(k_pool, k), write(v_pool, v), cache_len)

    def row_kv(self, i, b):
        g, (_, blocks, size, nkv, d) = self.g, self.rows[0].shape
        table = self.physical(g.reshape(self.row(self.block_table, b), (self.block_table.shape[1],)))
        slots = table.shape[0] * size

        def gathered(pool):  # layer i's blocks as rows of a 2-D table, row b's taken in its table's order
            flat = g.reshape(g.slice(pool, (i, 0, 0, 0, 0), (i + 1, blocks, size, nkv, d)), (blocks, size * nkv * d))
            return g.reshape(g.take_rows(flat, table), (slots, nkv, d))
        return gathered(self.rows[0]), gathered(self.rows[1])


def _serving(core: type[Decoder], base: type[BatchedDecoder]) -> type[BatchedDecoder]:
    """core as a serving core: itself where it already is one (a serving mutant), else base over it, so that a
    plain core's slip (a mask, a norm) shows in the serving graphs too."""
    return core if issubclass(core, base) else type(f"{base.__name__}Over{core.__name__}", (base, core), {})


def _inputs(g: Function, batch: int) -> tuple[Value, Value, Value]:
    return tuple(g.input(name, (batch,), "i32") for name in ("token", "position", "cache_len"))


def decode_batched(cfg: Config, batch: int, capacity: int, core: type[Decoder] = Decoder) -> str:
    """token, position, cache_len i32[B], k_cache and v_cache f32[B, L, C, n_kv, D] -> logits f32[B, V] and the
    caches with row b's token written at its slot cache_len[b]."""
    g = Function("main")
    token, position, cache_len = _inputs(g, batch)
    shape = (batch, cfg.num_layers, capacity, cfg.num_kv_heads, cfg.head_dim)
    k_cache, v_cache = g.input("k_cache", shape, "f32"), g.input("v_cache", shape, "f32")
    dec = _serving(core, BatchedDecoder)(cfg, g, rows=(k_cache, v_cache, cache_len))
    h = dec.hidden_states(token, position, cache_len, g.iota((capacity,), 0), capacity=capacity)
    g.returns(dec.row_logits(h), *dec.caches())
    return module(f"{cfg.model_type}_decode_batched", [g])


def decode_paged(cfg: Config, batch: int, capacity: int, core: type[Decoder] = Decoder,
                 block_size: int = DEFAULT_BLOCK_SIZE) -> str:
    """token, position, cache_len i32[B], block_table i32[B, C / BS], k_cache and v_cache f32[L, NB, BS, n_kv, D]
    (NB = 1 + B * C / BS: every row's blocks and the null block) -> logits f32[B, V] and the pools with row b's
    token written at its slot cache_len[b], in the block its table names."""
    if capacity % block_size:
        raise ValueError(f"the capacity {capacity} is no whole number of {block_size}-slot blocks")
    per_row = capacity // block_size
    g = Function("main")
    token, position, cache_len = _inputs(g, batch)
    block_table = g.input("block_table", (batch, per_row), "i32")
    shape = (cfg.num_layers, 1 + batch * per_row, block_size, cfg.num_kv_heads, cfg.head_dim)
    k_pool, v_pool = g.input("k_cache", shape, "f32"), g.input("v_cache", shape, "f32")
    dec = _serving(core, PagedDecoder)(cfg, g, rows=(k_pool, v_pool, cache_len), block_table=block_table)
    h = dec.hidden_states(token, position, cache_len, g.iota((capacity,), 0), capacity=capacity)
    g.returns(dec.row_logits(h), *dec.caches())
    return module(f"{cfg.model_type}_decode_paged", [g])
