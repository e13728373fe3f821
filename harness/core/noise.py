"""The noise floor and the strict bound derived from it.

The oracle is run again in fp64 (core/oracle_cache.py: the same seeded fp32 weights, upcast), teacher-forced with
the fp32 oracle's tokens. max |fp32 oracle - fp64 oracle| is what fp32 arithmetic alone
costs on this model and these inputs: the noise floor. A correct fp32 graph is a different
but equally valid fp32 evaluation, so its error against the fp32 oracle is a small multiple
of that floor; a subtle bug (a scale 1% off, an epsilon 10x) is a large multiple while it
may still be far inside the fixed 1e-2 tanh-near-tie bound.

STRICT_FACTOR was chosen from data: bench/noise_table.py over 20 seeds of every family,
prefill and decode (400 correct cases, worst 5.1x the floor), confirmed over 50 seeds (1000
cases, worst 5.7x); docs/diagnosis.md has the table.
"""
from __future__ import annotations

import math

import numpy as np

from harness.core.record import FAILED, PASSED, STRICT, Check, NoiseResult

STRICT_FACTOR = 10.0
# A floor can never be below one f32 rounding of the largest logit: guards the ratio
# against a floor that happens to come out near zero.
F32_EPS = float(np.finfo(np.float32).eps)


def noise_floor(fp32: np.ndarray, fp64: np.ndarray) -> float:
    """max |fp32 - fp64| over the compared steps, at least one f32 ulp of the largest logit."""
    fp32, fp64 = np.asarray(fp32, np.float64), np.asarray(fp64, np.float64)
    return float(max(np.abs(fp32 - fp64).max(), F32_EPS * np.abs(fp64).max()))


class NoiseFloorError(ValueError):
    """No strict bound can be derived: the floor is zero, negative or not a number."""


def assess(error: float, floor: float, factor: float = STRICT_FACTOR) -> NoiseResult:
    """The record's strict-bound part: the floor, the error as a multiple of it, the bound.
    NoiseFloorError for a floor that is not finite and above zero (all-zero or NaN logits): the error
    cannot be judged against it, and dividing by it is never attempted."""
    if not (math.isfinite(floor) and floor > 0):
        raise NoiseFloorError(f"the fp32 noise floor is {floor} (the oracle's fp32 and fp64 logits): no strict "
                              "bound can be derived from it")
    return NoiseResult(floor, error / floor, factor, factor * floor)


def strict_check(error: float, noise: NoiseResult, fixed_bound: float) -> Check:
    """The error within the strict bound; its message says when the fixed bound alone would pass it."""
    passed = error <= noise.strict_bound
    message = "" if passed else (
        f"max |Δlogit| = {error:.3e} is {noise.noise_ratio:.1f}x the fp32 noise floor {noise.noise_floor:.2e} "
        f"(fp32 vs fp64 oracle), above the strict bound {noise.strict_factor:g}x = {noise.strict_bound:.2e}"
        + (f" (the fixed bound {fixed_bound:.1e} alone would pass it)" if error <= fixed_bound else ""))
    return Check(STRICT, "oracle_fp64", PASSED if passed else FAILED, message, error, noise.strict_bound)
