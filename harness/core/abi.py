"""The documented ABI variants (docs/emitter-protocol.md#abi-variants), read from the graphs themselves.

A logit kind's graphs may carry the KV caches stacked (k_cache and v_cache, [L, S, n_kv, D]) or per
layer (k_cache.{i} and v_cache.{i}, [S, n_kv, D]), or, for latent attention (DeepSeek-V3), the latent and the
rope key, stacked (kv_latent [L, S, rank] and k_rope [L, S, rope]) or per layer (kv_latent.{i} [S, rank] and
k_rope.{i} [S, rope]); prefill may return the logits of the last real
token (f32[V]) or of every position (f32[Lp, V]), and either graph may return the greedy token instead
(i32[]: a serving graph's on-device argmax), judged token by token. Nothing is declared: the decode graph's
argument names (under a binding's input aliases) and the graphs' result types say which, and the kinds
(core/kinds.py) read them here. Each graph is checked on its own, so a decode case names its own graph's
problem rather than repeating its prefill's.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .emitter_protocol import CaseError
from .fixtures import Fixture
from .graph import FunctionSignature, TensorSpec

STACKED, PER_LAYER = "stacked", "per layer"  # k_cache, v_cache [L, S, n_kv, D]; k_cache.{i}, v_cache.{i} [S, n_kv, D]
LATENT_STACKED, LATENT_PER_LAYER = "latent stacked", "latent per layer"  # kv_latent, k_rope [L, S, r]; .{i} [S, r]
CACHE_NAMES = {STACKED: ("k_cache", "v_cache"), LATENT_STACKED: ("kv_latent", "k_rope")}  # and PER_LAYER's, by rank
LAST, EVERY = "last position", "every position"  # prefill's logits: f32[V] of token real_len - 1; f32[Lp, V]
LOGITS, TOKEN = "logits", "token"  # decode's first result: f32[V]; either graph's greedy token, i32[]
PROTOCOL = "docs/emitter-protocol.md"
_PER_LAYER_CACHE = re.compile(r"([kv]_cache|kv_latent|k_rope)\.\d+")


@dataclass(frozen=True)
class PrefillResults:
    """How a prefill graph's results are laid out: its logits, then its caches (in the order the decode
    graph takes them), then, in a graph emitted with --debug-taps, the taps."""
    logits: str  # LAST, EVERY or TOKEN
    caches: str  # STACKED, PER_LAYER, LATENT_STACKED or LATENT_PER_LAYER
    count: int  # the logits and the caches: the results of a graph emitted without taps


def prefill_results(main: FunctionSignature, fixture: Fixture, tapped: bool = False) -> PrefillResults:
    """The prefill graph's result layout; CaseError naming what does not fit the protocol. tapped: results after
    the caches are the taps (harness/checks/localise.py reads them), not an error."""
    layers, vocab = fixture.attribute("num_hidden_layers"), fixture.attribute("vocab_size")
    fed = "embeddings" if any(a.name == "embeddings" for a in main.args) else "tokens"  # prefill_embeddings'
    bucket, results = main.arg(fed).shape[0], main.results
    logits = _first_result(results, {(vocab,): LAST, (bucket, vocab): EVERY})
    if logits is None:
        raise CaseError(f"the prefill graph's first result is {_types(results[:1])}; the protocol wants the "
                        f"logits, f32[{vocab}] (the last real token's) or f32[{bucket}, {vocab}] (every "
                        f"position's), or the last real token's greedy token, i32[] ({PROTOCOL}#results)")
    caches = _prefill_caches(results, layers, bucket)
    if caches is None:
        raise CaseError(f"the prefill graph's results after its logits are {_types(results[1:])}; the protocol "
                        f"wants the caches: k_cache, v_cache f32[{layers}, {bucket}, n_kv, D], or f32[{bucket}, n_kv, "
                        f"D] for each of the {layers} layers' k_cache.i and v_cache.i (latent attention: kv_latent, "
                        f"k_rope f32[{layers}, {bucket}, r], or f32[{bucket}, r] per layer), in the order decode takes "
                        f"them ({PROTOCOL}#abi-variants)")
    count = 1 + (2 if caches in CACHE_NAMES else 2 * layers)
    if len(results) > count and not tapped:
        raise CaseError(f"the prefill graph returns {_types(results[count:])} after its caches; taps are returned "
                        f"only when asked with --debug-taps ({PROTOCOL}#taps)")
    return PrefillResults(logits, caches, count)


def _prefill_caches(results, layers: int, bucket: int) -> str | None:
    """Which cache variant the prefill graph's results after its logits are, by their shapes: K/V caches of one
    shape; latent attention's two of their own widths."""
    stacked, per_layer = results[1:3], results[1:1 + 2 * layers]
    if len(stacked) == 2 and all(len(c.shape) in (3, 4) and c.shape[:2] == (layers, bucket) for c in stacked):
        if len(stacked[0].shape) == 4:
            return STACKED if stacked[0].shape == stacked[1].shape else None
        return LATENT_STACKED if len(stacked[1].shape) == 3 else None
    if len(per_layer) != 2 * layers or any(c.shape[:1] != (bucket,) for c in per_layer):
        return None
    ranks = {len(c.shape) for c in per_layer}
    if ranks == {3} and len({c.shape for c in per_layer}) == 1:
        return PER_LAYER
    return LATENT_PER_LAYER if ranks == {2} else None


def decode_caches(main: FunctionSignature, fixture: Fixture, graph: str = "decode") -> tuple[str, tuple[TensorSpec, ...]]:
    """(the cache variant, the cache arguments of the decode graph (or another that takes caches: graph) in its
    order: its results' order too)."""
    layers = fixture.attribute("num_hidden_layers")
    stacked_names = {n for pair in CACHE_NAMES.values() for n in pair}
    caches = tuple(a for a in main.args if a.name in stacked_names or _PER_LAYER_CACHE.fullmatch(a.name))
    names, ranks = {a.name for a in caches}, {len(a.shape) for a in caches}
    per_layer = lambda pair: {f"{n}.{i}" for n in pair for i in range(layers)}
    variant = None
    for stacked, each, rank in ((STACKED, PER_LAYER, 4), (LATENT_STACKED, LATENT_PER_LAYER, 3)):
        if names == set(CACHE_NAMES[stacked]) and ranks == {rank} and all(c.shape[0] == layers for c in caches):
            variant = stacked
        elif names == per_layer(CACHE_NAMES[stacked]) and ranks == {rank - 1}:
            variant = each
    if variant is None:
        shown = ", ".join(f"{a.name} {a.dtype}{list(a.shape)}" for a in caches) or "none"
        raise CaseError(f"the {graph} graph's cache arguments are {shown}; the protocol wants k_cache and v_cache "
                        f"f32[{layers}, C, n_kv, D], or k_cache.i and v_cache.i f32[C, n_kv, D] for i in "
                        f"0..{layers - 1} (latent attention: kv_latent f32[{layers}, C, rank] and k_rope "
                        f"f32[{layers}, C, rope], or kv_latent.i and k_rope.i f32[C, ...]) ({PROTOCOL}#abi-variants)")
    for name in {c.name.split(".")[0] for c in caches}:  # each cache's layers alike; the latent and rope widths differ
        if len({c.shape for c in caches if c.name.split(".")[0] == name}) != 1:
            raise CaseError(f"the {graph} graph's {name} caches differ in shape: {_types(caches)}")
    same_width = variant not in (STACKED, PER_LAYER) or len({c.shape for c in caches}) == 1
    if len({c.shape[:-1] for c in caches}) != 1 or not same_width:
        raise CaseError(f"the {graph} graph's caches differ in shape: {_types(caches)}")
    return variant, caches


def decode_results(main: FunctionSignature, fixture: Fixture) -> str:
    """LOGITS or TOKEN: the decode graph's first result; CaseError naming what does not fit the protocol (its
    caches, their count and shapes, as its cache arguments)."""
    _, caches = decode_caches(main, fixture)
    vocab, results = fixture.attribute("vocab_size"), main.results
    first = _first_result(results, {(vocab,): LOGITS})
    if first is None:
        raise CaseError(f"the decode graph's first result is {_types(results[:1])}; the protocol wants the "
                        f"logits f32[{vocab}] or the greedy token i32[] ({PROTOCOL}#results)")
    if len(results) != 1 + len(caches):
        raise CaseError(f"the decode graph returns {len(results)} results; the protocol wants the "
                        f"{'token' if first == TOKEN else 'logits'}, then its {len(caches)} caches in the order it "
                        f"takes them ({PROTOCOL}#results)")
    for cache, result in zip(caches, results[1:]):
        if (result.shape, result.dtype) != (cache.shape, cache.dtype):
            raise CaseError(f"the decode graph returns {_types([result])} where it takes {cache.name} "
                            f"{_types([cache])}: the caches come back in the order, shape and type it takes them "
                            f"({PROTOCOL}#results)")
    return first


def _first_result(results, logits: dict) -> str | None:
    """What the first result is: a logits layout by its f32 shape, TOKEN for i32[], None for anything else."""
    if not results:
        return None
    first = results[0]
    if first.dtype == "i32" and first.shape == ():
        return TOKEN
    return logits.get(first.shape) if first.dtype == "f32" else None


def _types(specs) -> str:
    return ", ".join(f"{s.dtype}{list(s.shape)}" for s in specs) or "nothing"
