"""The documented ABI variants (docs/emitter-protocol.md#abi-variants), read from the graphs themselves.

A logit kind's graphs may carry the KV caches stacked (k_cache and v_cache, [L, S, n_kv, D]) or per
layer (k_cache.{i} and v_cache.{i}, [S, n_kv, D]); prefill may return the logits of the last real
token (f32[V]) or of every position (f32[Lp, V]), and either graph may return the greedy token instead
(i32[]: a serving graph's on-device argmax), judged token by token. Nothing is declared: the decode graph's
argument names (under a binding's input aliases) and the graphs' result types say which, and the kinds
(core/kinds.py) read them here. Each graph is checked on its own, so a decode case names its own graph's
problem rather than repeating its prefill's.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from archval.harness.core.emitters import CaseError
from archval.harness.core.fixtures import Fixture
from archval.harness.core.graph import FunctionSignature, TensorSpec

STACKED, PER_LAYER = "stacked", "per layer"  # k_cache, v_cache [L, S, n_kv, D]; k_cache.{i}, v_cache.{i} [S, n_kv, D]
LAST, EVERY = "last position", "every position"  # prefill's logits: f32[V] of token real_len - 1; f32[Lp, V]
LOGITS, TOKEN = "logits", "token"  # decode's first result: f32[V]; either graph's greedy token, i32[]
PROTOCOL = "docs/emitter-protocol.md"
_PER_LAYER_CACHE = re.compile(r"[kv]_cache\.\d+")


@dataclass(frozen=True)
class PrefillResults:
    """How a prefill graph's results are laid out: its logits, then its caches (in the order the decode
    graph takes them), then, in a graph emitted with --debug-taps, the taps."""
    logits: str  # LAST, EVERY or TOKEN
    caches: str  # STACKED or PER_LAYER
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
    stacked = len(results) >= 3 and all(len(c.shape) == 4 and c.shape[:2] == (layers, bucket) for c in results[1:3])
    per_layer = len(results) > 2 * layers and all(len(c.shape) == 3 and c.shape[0] == bucket
                                                  for c in results[1:1 + 2 * layers])
    count = 1 + (2 if stacked else 2 * layers)
    if not (stacked or per_layer) or len({c.shape for c in results[1:count]}) != 1:
        raise CaseError(f"the prefill graph's results after its logits are {_types(results[1:])}; the protocol "
                        f"wants the caches: k_cache, v_cache f32[{layers}, {bucket}, n_kv, D], or f32[{bucket}, n_kv, "
                        f"D] for each of the {layers} layers' k_cache.i and v_cache.i, in the order decode takes them "
                        f"({PROTOCOL}#abi-variants)")
    if len(results) > count and not tapped:
        raise CaseError(f"the prefill graph returns {_types(results[count:])} after its caches; taps are returned "
                        f"only when asked with --debug-taps ({PROTOCOL}#taps)")
    return PrefillResults(logits, STACKED if stacked else PER_LAYER, count)


def decode_caches(main: FunctionSignature, fixture: Fixture, graph: str = "decode") -> tuple[str, tuple[TensorSpec, ...]]:
    """(STACKED or PER_LAYER, the cache arguments of the decode graph (or another that takes caches: graph) in its
    order: its results' order too)."""
    layers = fixture.attribute("num_hidden_layers")
    caches = tuple(a for a in main.args if a.name in ("k_cache", "v_cache") or _PER_LAYER_CACHE.fullmatch(a.name))
    names, ranks = {a.name for a in caches}, {len(a.shape) for a in caches}
    if names == {"k_cache", "v_cache"} and ranks == {4} and all(c.shape[0] == layers for c in caches):
        variant = STACKED
    elif names == {f"{kv}.{i}" for kv in ("k_cache", "v_cache") for i in range(layers)} and ranks == {3}:
        variant = PER_LAYER
    else:
        shown = ", ".join(f"{a.name} {a.dtype}{list(a.shape)}" for a in caches) or "none"
        raise CaseError(f"the {graph} graph's cache arguments are {shown}; the protocol wants k_cache and v_cache "
                        f"f32[{layers}, C, n_kv, D], or k_cache.i and v_cache.i f32[C, n_kv, D] for i in "
                        f"0..{layers - 1} ({PROTOCOL}#abi-variants)")
    if len({c.shape for c in caches}) != 1:
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
