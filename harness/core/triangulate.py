"""Three-way comparison: the oracle, IREE and XLA CPU on the same emitted text.

Two compilers and one oracle vote. IREE and XLA agreeing against the oracle means the text
itself computes the wrong thing (an emitter bug); XLA agreeing with the oracle against IREE
points at IREE (a compiler problem); the oracle and IREE against XLA points at XLA.
"""
from __future__ import annotations

import numpy as np

from .record import ThreeWay

AGREE = "all agree"
EMITTER = "emitter bug: IREE and XLA agree against the oracle"
IREE = "compiler problem: XLA agrees with the oracle against IREE"
XLA = "XLA is the odd one out: the oracle and IREE agree against it"
NONE = "no two agree"
BOTH_NONFINITE = "emitter bug: IREE and XLA both compute NaN/Inf from this text"


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| over every step and logit; NaN/Inf anywhere is an infinite difference."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    with np.errstate(invalid="ignore"):  # inf - inf is NaN, counted as infinite below
        diff = np.abs(a - b)
    return float(np.where(np.isfinite(diff), diff, np.inf).max())


def odd_one_out(oracle_iree: float, oracle_xla: float, iree_xla: float, bound: float) -> str:
    """Which side disagrees with the other two, each pair judged against the same bound."""
    agree = {pair: d <= bound for pair, d in
             (("oracle-iree", oracle_iree), ("oracle-xla", oracle_xla), ("iree-xla", iree_xla))}
    if all(agree.values()):
        return AGREE
    if agree["iree-xla"] and not agree["oracle-iree"] and not agree["oracle-xla"]:
        return EMITTER
    if agree["oracle-xla"]:
        return IREE
    if agree["oracle-iree"]:
        return XLA
    return NONE


def triangulate(oracle: np.ndarray, iree: np.ndarray, xla: np.ndarray, bound: float, cache_hit: bool) -> ThreeWay:
    """oracle, iree, xla: logits [steps, V] fed the same tokens. The record's `xla` part."""
    pairs = (max_abs_diff(oracle, iree), max_abs_diff(oracle, xla), max_abs_diff(iree, xla))
    xla = np.asarray(xla).reshape(len(oracle), -1)
    oracle_tokens = np.asarray(oracle).reshape(len(oracle), -1).argmax(axis=1)
    # NaN never equals NaN: two compilers computing NaN/Inf from the same text agree that it does
    both_nonfinite = not np.isfinite(iree).all() and not np.isfinite(xla).all()
    return ThreeWay(None, *pairs, bound, bool((xla.argmax(axis=1) == oracle_tokens).all()),
                    BOTH_NONFINITE if both_nonfinite else odd_one_out(*pairs, bound), cache_hit)


def unavailable(error: str) -> ThreeWay:
    """XLA could not run: its error, no comparison."""
    return ThreeWay(error, None, None, None, None, None, None, None)
