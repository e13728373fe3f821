"""The documented ABI variants (docs/emitter-protocol.md#abi-variants), read from the graphs themselves.

A logit kind's graphs may carry the KV caches stacked (k_cache and v_cache, [L, S, n_kv, D]) or per
layer (k_cache.{i} and v_cache.{i}, [S, n_kv, D]), and prefill may return the logits of the last real
token (f32[V]) or of every position (f32[Lp, V]). Nothing is declared: the decode graph's argument
names and the prefill graph's result shapes say which, and the kinds (core/kinds.py) read them here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from archval.harness.core.emitters import CaseError
from archval.harness.core.fixtures import Fixture
from archval.harness.core.graph import FunctionSignature, TensorSpec

STACKED, PER_LAYER = "stacked", "per layer"  # k_cache, v_cache [L, S, n_kv, D]; k_cache.{i}, v_cache.{i} [S, n_kv, D]
LAST, EVERY = "last position", "every position"  # prefill's logits: f32[V] of token real_len - 1; f32[Lp, V]
PROTOCOL = "docs/emitter-protocol.md"
_PER_LAYER_CACHE = re.compile(r"[kv]_cache\.\d+")


@dataclass(frozen=True)
class PrefillResults:
    """How a prefill graph's results are laid out: its logits, then its caches (in the order the decode
    graph takes them), then, in a graph emitted with --debug-taps, the taps."""
    logits: str  # LAST or EVERY
    caches: str  # STACKED or PER_LAYER
    count: int  # the logits and the caches: the results of a graph emitted without taps


def prefill_results(main: FunctionSignature, fixture: Fixture, tapped: bool = False) -> PrefillResults:
    """The prefill graph's result layout; CaseError naming what does not fit the protocol. tapped: results after
    the caches are the taps (harness/checks/localise.py reads them), not an error."""
    layers, vocab = fixture.attribute("num_hidden_layers"), fixture.attribute("vocab_size")
    bucket, results = main.arg("tokens").shape[0], main.results
    logits = {(vocab,): LAST, (bucket, vocab): EVERY}.get(results[0].shape) if results else None
    if logits is None or results[0].dtype != "f32":
        raise CaseError(f"the prefill graph's first result is {_types(results[:1])}; the protocol wants the "
                        f"logits, f32[{vocab}] (the last real token's) or f32[{bucket}, {vocab}] (every "
                        f"position's) ({PROTOCOL}#results)")
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


def decode_caches(main: FunctionSignature, fixture: Fixture) -> tuple[str, tuple[TensorSpec, ...]]:
    """(STACKED or PER_LAYER, the decode graph's cache arguments in its order: its results' order too)."""
    layers = fixture.attribute("num_hidden_layers")
    caches = tuple(a for a in main.args if a.name in ("k_cache", "v_cache") or _PER_LAYER_CACHE.fullmatch(a.name))
    names, ranks = {a.name for a in caches}, {len(a.shape) for a in caches}
    if names == {"k_cache", "v_cache"} and ranks == {4} and all(c.shape[0] == layers for c in caches):
        variant = STACKED
    elif names == {f"{kv}.{i}" for kv in ("k_cache", "v_cache") for i in range(layers)} and ranks == {3}:
        variant = PER_LAYER
    else:
        shown = ", ".join(f"{a.name} {a.dtype}{list(a.shape)}" for a in caches) or "none"
        raise CaseError(f"the decode graph's cache arguments are {shown}; the protocol wants k_cache and v_cache "
                        f"f32[{layers}, C, n_kv, D], or k_cache.i and v_cache.i f32[C, n_kv, D] for i in "
                        f"0..{layers - 1} ({PROTOCOL}#abi-variants)")
    if len({c.shape for c in caches}) != 1:
        raise CaseError(f"the decode graph's caches differ in shape: {_types(caches)}")
    return variant, caches


def _types(specs) -> str:
    return ", ".join(f"{s.dtype}{list(s.shape)}" for s in specs) or "nothing"
