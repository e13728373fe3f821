"""Host numerics that are the same on every machine: transcendental functions correctly rounded.

IEEE 754 fixes the result of +, -, *, / and sqrt, so numpy gives the same bits for them on every
CPU. It fixes nothing for cos, sin, pow or log: numpy picks a SIMD kernel at run time from the
CPU's features (its AVX-512 kernels round differently from the AVX2 and baseline ones) and each
OS's libm has its own. Every transcendental value the emitter writes into a graph therefore goes
through here, and is the exact value rounded once: a function of its arguments alone.

f32 results take a fast path that is still exact: evaluate in f64 with whatever kernel the
machine has (every numpy and libm kernel is within 4 f64 ulp; we allow ERROR_ULPS), and keep the
f32 rounding only when every f64 value within ERROR_ULPS of it rounds to the same f32, so the
exact value does too. The rare rest (about 1 value in 10^7) and every f64 result are computed
in software decimal arithmetic at DIGITS significant digits, which no CPU or OS changes.
"""
from __future__ import annotations

import decimal
from decimal import Decimal
from functools import lru_cache

import numpy as np

ERROR_ULPS = 16  # the f64 error the fast path tolerates: 4x the worst documented kernel
DIGITS = 60      # working precision of the decimal path: far beyond f64's 17 digits


def _context() -> decimal.Context:
    return decimal.Context(prec=DIGITS, rounding=decimal.ROUND_HALF_EVEN)


@lru_cache(maxsize=1)
def _pi() -> Decimal:
    """pi to DIGITS digits by Machin's formula: 16 atan(1/5) - 4 atan(1/239)."""
    with decimal.localcontext(_context()) as ctx:
        ctx.prec += 5

        def atan_inverse(n: int) -> Decimal:
            x, term, total, k = Decimal(1) / n, Decimal(1) / n, Decimal(1) / n, 1
            while True:
                term *= -x * x
                k += 2
                if abs(term / k) < Decimal(10) ** -(ctx.prec + 2):
                    return total
                total += term / k

        return +(16 * atan_inverse(5) - 4 * atan_inverse(239))


def _cos_sin_decimal(angle: float) -> tuple[Decimal, Decimal]:
    """cos and sin of an exact binary angle: reduced into [-pi, pi], then Taylor series."""
    with decimal.localcontext(_context()) as ctx:
        ctx.prec += 10  # reducing angles up to ~10^5 costs 5 digits, the series' cancellation 2
        pi = _pi()
        x = Decimal(angle) % (2 * pi)  # the sign of the angle, magnitude below 2 pi
        x = x - 2 * pi if x > pi else x + 2 * pi if x < -pi else x
        cos_term, sin_term, cos, sin, n = Decimal(1), x, Decimal(1), x, 1
        while abs(cos_term) + abs(sin_term) > Decimal(10) ** -(ctx.prec + 2):
            cos_term *= -x * x / ((2 * n - 1) * (2 * n))
            sin_term *= -x * x / ((2 * n) * (2 * n + 1))
            cos, sin, n = cos + cos_term, sin + sin_term, n + 1
        return +cos, +sin


def _round_to_f32(value: Decimal) -> np.float32:
    """The f32 nearest to a decimal value (ties to even), by comparing against exact midpoints."""
    guess = np.float32(float(value))
    with decimal.localcontext(decimal.Context(prec=200)):  # f32 midpoints are exact at 200 digits
        return _nearest_of_neighbours(value, guess)


def _nearest_of_neighbours(value: Decimal, guess: np.float32) -> np.float32:
    below, above = np.nextafter(guess, np.float32(-np.inf)), np.nextafter(guess, np.float32(np.inf))
    for other in (below, above):
        midpoint = (Decimal(float(guess)) + Decimal(float(other))) / 2
        if (other < guess and value < midpoint) or (other > guess and value > midpoint):
            return other
        if value == midpoint and int(np.array(other).view(np.uint32)) % 2 == 0:
            return other
    return guess


def _round_f64_to_f32(values: np.ndarray, exact_f32) -> np.ndarray:
    """f32 roundings of f64 approximations; where ERROR_ULPS could change the rounding, exact_f32(i)."""
    values = np.asarray(values, np.float64)
    ulp = np.spacing(np.abs(values))
    low = (values - ERROR_ULPS * ulp).astype(np.float32)
    high = (values + ERROR_ULPS * ulp).astype(np.float32)
    out = values.astype(np.float32)
    for index in zip(*np.nonzero(low != high)):
        out[index] = exact_f32(index)
    return out


def cos_sin_f32(angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of each f32 angle, each correctly rounded to f32."""
    angles = np.asarray(angles, np.float32)
    wide = angles.astype(np.float64)
    cos = _round_f64_to_f32(np.cos(wide), lambda i: _round_to_f32(_cos_sin_decimal(float(wide[i]))[0]))
    sin = _round_f64_to_f32(np.sin(wide), lambda i: _round_to_f32(_cos_sin_decimal(float(wide[i]))[1]))
    return cos, sin


def power_f32(base: np.float32, exponents: np.ndarray) -> np.ndarray:
    """base ** exponent for an f32 base and f32 exponents, each correctly rounded to f32."""
    base, exponents = np.float32(base), np.asarray(exponents, np.float32)
    wide = exponents.astype(np.float64)

    def exact(i) -> np.float32:
        with decimal.localcontext(_context()):
            return _round_to_f32(Decimal(float(base)) ** Decimal(float(wide[i])))

    return _round_f64_to_f32(np.power(np.float64(base), wide), exact)


def log(x: float) -> float:
    """The natural logarithm, correctly rounded to f64 on every machine (x > 0)."""
    with decimal.localcontext(_context()):
        return float(Decimal(x).ln())


def inverse_sqrt(x: float) -> float:
    """x ** -0.5, correctly rounded to f64 on every machine (x > 0)."""
    with decimal.localcontext(_context()):
        return float(1 / Decimal(x).sqrt())
