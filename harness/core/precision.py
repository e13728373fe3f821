"""Graphs that compute in bf16, judged by a bound derived from the oracle run in bf16 (docs/reduced-precision.md).

A graph is a bf16-compute graph when any of its dot_generals takes bf16 operands: read from the text, so that any
emitter's is judged so, asked or not. The fixed bound (1e-2) and the fp32 strict bound mean nothing for it: bf16
alone moves tiny models' logits by 5e-2 to 1. Its bound is derived from the oracle run with the model in bf16
(torch, model.to(bfloat16): weights and every op in bf16) against the fp64 oracle, teacher-forced with the same
tokens: each step's floor is max |bf16 - fp64| over its logits, and every step's error is held to BF16_FACTOR x
the noisiest step's floor, the record's `bound` (which the token rule reads too: a near tie is a swap within 2x
it). Not each step to its own floor, as the fp32 strict bound is: one bf16 row's maximum is so noisy a statistic
that correct graphs reached 6.3x their step's floor but only 2.1x the run's (bench/bf16_table.txt).

BF16_FACTOR is read off correct graphs: bench/bf16_table.py over seeds 1 and 2 of every family, prefill and decode,
the built-in emitter's --dtype bf16 graphs against the fp32 oracle: 136 cases, worst 2.12x the run's floor (mixtral
decode, a routing near tie that bf16 flips), 99th percentile 1.53x, median 0.73x. 3.5 leaves 1.65x to the worst, the
headroom the strict bound's 30 leaves its worst correct case (core/noise.py); docs/reduced-precision.md has the
mutants' margins over it.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np

from . import noise
from .emitter_protocol import CaseError
from .record import FAILED, PASSED, STRICT, Check, NoiseResult

if TYPE_CHECKING:
    from .case import Case

BF16_FACTOR = 3.5
TORCH_DTYPE = {"bf16": "bfloat16"}
_REDUCED_DOT = re.compile(r"stablehlo\.dot_general [^\n]*: \(tensor<[0-9x]*(bf16|f16)>")


def compute_dtype(text: str) -> str:
    """bf16 (or f16) where a dot_general of the text takes operands of it, else f32."""
    found = _REDUCED_DOT.search(text)
    return found.group(1) if found else "f32"


def floors(expected: np.ndarray, fp64: np.ndarray, low: np.ndarray) -> np.ndarray:
    """Each step's bf16 floor: max |bf16 oracle - fp64 oracle|, at least the fp32 floor (a guard against zero)."""
    return np.maximum(noise.step_floors(low, fp64), noise.step_floors(expected, fp64))


def assess(errors: np.ndarray, step_floors: np.ndarray) -> NoiseResult:
    """The record's bound part: every step's error against the run's bound, BF16_FACTOR x its noisiest step's
    floor (every step's floor kept for the charts); the step with the largest error judges. NoiseFloorError for
    a floor that is not finite and above zero."""
    errors, step_floors = np.atleast_1d(np.asarray(errors, np.float64)), np.atleast_1d(np.asarray(step_floors))
    noise.assess(errors, step_floors)  # its checks of the floors
    run_floor, s = float(step_floors.max()), int(np.argmax(errors))
    return NoiseResult(run_floor, float(errors[s]) / run_floor, BF16_FACTOR, BF16_FACTOR * run_floor, s,
                       [float(f) for f in step_floors])


def check(error: float, result: NoiseResult, where: str) -> Check:
    """The judging step's error within its derived bound (the strict bound's place in the record)."""
    passed = error <= result.strict_bound
    message = "" if passed else (
        f"max |Δlogit| = {error:.3e}{where} is {result.noise_ratio:.2f}x the bf16 noise floor "
        f"{result.noise_floor:.2e} (bf16 vs fp64 oracle), above the derived bound {result.strict_factor:g}x = "
        f"{result.strict_bound:.2e}")
    return Check(STRICT, "oracle_bf16", PASSED if passed else FAILED, message, error, result.strict_bound)


def prepare(case: Case, expected: np.ndarray) -> np.ndarray | None:
    """For a bf16-compute graph: each compared step's bf16 floor, with the record's bound set to the noisiest
    step's derived bound (the bound check and the token rule read it); None for an f32 graph. CaseError for a
    graph in another reduced dtype, which no oracle here runs."""
    record, kind = case.record, case.kind
    record.compute = compute_dtype("\n".join(case.texts[name] for name in kind.emits))
    if record.compute == "f32":
        return None
    if not kind.strict:  # a block's or a batch's bound is f32's: nothing derives one for bf16 yet
        raise CaseError(f"the {kind.name} graph computes in {record.compute} (a dot_general's operands): archval derives "
                        f"a reduced-precision bound for the kinds with a strict bound only (docs/reduced-precision.md)")
    if case.fixture.oracle is not None:
        raise CaseError("the graph computes in bf16, and a --checkpoint run has no bf16 oracle to derive its bound from "
                        "(docs/reduced-precision.md): validate its bf16 compute on the fixtures (--dtype bf16)")
    if record.compute not in TORCH_DTYPE:
        raise CaseError(f"the {kind.name} graph computes in {record.compute} (a dot_general's operands): archval "
                        f"derives a bound for f32 and {', '.join(TORCH_DTYPE)} graphs only")
    with case.stage("oracle_bf16"):
        fp64 = kind.fp64(case, len(expected))
        low = kind.fp64(case, len(expected), TORCH_DTYPE[record.compute])
    for values, what in ((fp64, "fp64"), (low, TORCH_DTYPE[record.compute])):
        if not np.isfinite(values).all():
            raise CaseError(f"the oracle's {what} logits hold NaN/Inf values: no bound can be derived from them")
    step_floors = floors(expected, fp64, low)
    record.bound = BF16_FACTOR * float(step_floors.max())
    record.skipped.pop("strict_bound", None)  # the derived bound is the graph's only bound: always judged
    return step_floors
