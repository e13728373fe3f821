"""The serving graphs that continue from a cache or start from embeddings: prefill_chunked, decode_verify and
prefill_embeddings (docs/emitter-protocol.md#serving-graph-kinds). The first two are one forward, several tokens
at once written into the cache at slot cache_len onwards; the third is prefill fed HF's inputs_embeds."""
from __future__ import annotations

from .config import Config
from .decoder import Decoder
from .stablehlo import Function, module

CHUNK_GRAPHS = ("prefill_chunked", "decode_verify")  # several tokens continuing a cache
EMBEDDING_GRAPHS = ("prefill_embeddings",)
VERIFY_TOKENS = 4  # decode_verify's K: the draft tokens one call checks


def continued(cfg: Config, graph: str, tokens: int, capacity: int, core: type[Decoder] = Decoder) -> str:
    """tokens i32[T], positions i32[T], (prefill_chunked: real_len i32[]), cache_len i32[], k_cache and v_cache
    f32[L, C, n_kv, D] -> the logits of every one of the T tokens f32[T, V] and the caches with their keys and
    values written at slots cache_len..cache_len+T-1. Token t is query slot cache_len + t: it sees the cache's
    earlier slots and the tokens before it, never a later one. A chunk's real_len is taken and not needed: its
    padding comes after its real tokens, so causality hides it, and the next chunk overwrites its slots."""
    g = Function("main")
    ids = g.input("tokens", (tokens,), "i32")
    positions = g.input("positions", (tokens,), "i32")
    if graph == "prefill_chunked":
        g.input("real_len", (), "i32")
    cache_len = g.input("cache_len", (), "i32")
    cache_shape = (cfg.num_layers, capacity, cfg.num_kv_heads, cfg.head_dim)
    k_cache, v_cache = g.input("k_cache", cache_shape, "f32"), g.input("v_cache", cache_shape, "f32")
    dec = core(cfg, g, cache=(k_cache, v_cache, cache_len))
    q_slots = g.add(g.iota((tokens,), 0), g.broadcast(cache_len, (tokens,), ()))
    h = dec.hidden_states(ids, positions, q_slots, g.iota((capacity,), 0), capacity=capacity)
    g.returns(dec.logits(h), *dec.cache[:2])
    return module(f"{cfg.model_type}_{graph}", [g])


def prefill_embeddings(cfg: Config, bucket: int, core: type[Decoder] = Decoder) -> str:
    """embeddings f32[Lp, H] (HF's inputs_embeds: the embedding module's output), positions i32[Lp], real_len
    i32[] -> what prefill returns: the last real token's logits f32[V] and the caches f32[L, Lp, n_kv, D]."""
    g = Function("main")
    dec = core(cfg, g)
    embeddings = g.input("embeddings", (bucket, cfg.hidden_size), "f32")
    positions = g.input("positions", (bucket,), "i32")
    real_len = g.input("real_len", (), "i32")
    slots = g.iota((bucket,), 0)
    h = dec.layers(dec.from_embeddings(embeddings), positions, slots, slots, capacity=bucket)
    last = g.dynamic_slice(h, [g.sub(real_len, g.scalar(1, "i32")), g.scalar(0, "i32")], (1, cfg.hidden_size))
    g.returns(dec.logits(last), *dec.stacked_new_kv())
    return module(f"{cfg.model_type}_prefill_embeddings", [g])
