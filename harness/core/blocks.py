"""Block-level checks: one emitted block against the oracle's own module, on seeded hidden states.

A routing bug shows in the logits too, but only as "the logits differ". Here the first
routed layer's MoE block is compared alone, at a bound near fp32 noise, so the bug is
localised to the block. The layer is read from the graph's argument names.
"""
from __future__ import annotations

import re

import numpy as np

from harness.core import compare, oracle_cache
from harness.core.fixtures import Fixture
from harness.core.graph import GraphError
from harness.backends.iree import BackendError
from harness.core.case import DEFAULT_EMITTER, CaseError, CompiledGraph, new_record, timed

BLOCK_BOUND = 1e-4  # fp32 noise of one block is ~1e-6; routing or mixing bugs move it by >1e-1
_LAYER = re.compile(r"model\.layers\.(\d+)\.mlp\.")


def applies(fixture: Fixture) -> bool:
    """Whether the oracle (not the emitter: its bug must not skip the check) routes any layer to experts."""
    return bool(oracle_cache.run(fixture).routed_layers)


def hidden_states(fixture: Fixture, tokens: int, width: int) -> np.ndarray:
    return np.random.default_rng([fixture.seed, 0xB10C]).standard_normal((tokens, width)).astype(np.float32)


def run_moe_block(fixture: Fixture, text: str | None = None, emitter=DEFAULT_EMITTER) -> dict:
    """The first routed layer's MoE block, emitted alone, against the oracle's block; never raises."""
    record = new_record(fixture, "moe_block", BLOCK_BOUND)
    try:
        graph = CompiledGraph("moe_block", text, fixture, emitter, record["timings"], record)
        layers = {int(m.group(1)) for a in graph.main.args if (m := _LAYER.match(a.name))}
        if len(layers) != 1:
            raise CaseError(f"the moe_block graph's weights name {len(layers)} layers ({sorted(layers)}), not one")
        layer = layers.pop()
        tokens, width = graph.main.arg("hidden").shape
        hidden = hidden_states(fixture, tokens, width)
        with timed(record["timings"], "oracle"):
            expected = oracle_cache.moe_block(fixture, layer, hidden)
        record["router_margin"], record["expert_sets"] = expected.router_margin, expected.expert_sets
        (out,) = graph(oracle_cache.run(fixture).weights, {"hidden": hidden})
        record.update(layer=layer, tokens=tokens)
        diff = np.abs(np.asarray(out, np.float64) - expected.output)
        nonfinite = int((~np.isfinite(out)).sum())
        record["max_abs_diff"] = float(np.nan_to_num(diff, nan=np.inf).max())
        worst_token = int(np.nan_to_num(diff, nan=np.inf).max(axis=1).argmax())
        if nonfinite:
            record["verdict"], record["message"] = compare.FAIL, f"block output holds {nonfinite} NaN/Inf values"
        elif not record["max_abs_diff"] <= BLOCK_BOUND:
            record["verdict"], record["message"] = compare.FAIL, (
                f"max |Δ| of layer {layer}'s MoE block = {record['max_abs_diff']:.3e} at token {worst_token} "
                f"exceeds the block bound {BLOCK_BOUND:.1e}")
        else:
            record["verdict"] = compare.PASS
    except (CaseError, GraphError, BackendError) as e:
        record["message"] = str(e)
    except Exception as e:  # noqa: BLE001 - one family's crash must never stop the others
        record["message"] = f"unexpected {type(e).__name__}: {e}"
    return record
