"""The emitter's transcendental host numerics are correctly rounded: the same bits on every machine."""
import decimal
import math
from decimal import Decimal

import numpy as np
import pytest

from archval.emitter import exact

RNG = np.random.default_rng(20261129)
# RoPE angles: small ones, and the large ones long contexts reach (position x fastest frequency)
ANGLES = np.concatenate([RNG.random(400) * 7, RNG.random(400) * 2e5, -RNG.random(100) * 50,
                         [0.0, 1.0, np.pi / 2, np.pi, 131071.0]]).astype(np.float32)
EXPONENTS = np.arange(0, 256, 2).astype(np.float32) / np.float32(256)


def decimal_only(monkeypatch):
    """Sends every value down the software path, the one the fast path defers to near a rounding edge."""
    monkeypatch.setattr(exact, "ERROR_ULPS", 2.0 ** 60)


def test_cos_and_sin_fast_path_equal_the_software_path(monkeypatch):
    fast = exact.cos_sin_f32(ANGLES)
    decimal_only(monkeypatch)
    assert all(np.array_equal(f, s) for f, s in zip(fast, exact.cos_sin_f32(ANGLES)))


@pytest.mark.parametrize("theta", [10000.0, 500000.0, 1000000.0, 1.5])
def test_power_fast_path_equals_the_software_path(monkeypatch, theta):
    fast = exact.power_f32(np.float32(theta), EXPONENTS)
    decimal_only(monkeypatch)
    assert np.array_equal(fast, exact.power_f32(np.float32(theta), EXPONENTS))


def test_results_are_the_nearest_f32_to_an_f64_evaluation():
    """Against libm in f64 (within an ulp of exact): the f32 rounding may differ only where the
    exact value lies within a few f64 ulps of an f32 midpoint, which none of these do."""
    cos, sin = exact.cos_sin_f32(ANGLES)
    assert np.array_equal(cos, np.float32([math.cos(float(a)) for a in ANGLES]))
    assert np.array_equal(sin, np.float32([math.sin(float(a)) for a in ANGLES]))
    assert np.array_equal(exact.power_f32(np.float32(500000.0), EXPONENTS),
                          np.float32([math.pow(500000.0, float(e)) for e in EXPONENTS]))


def test_rounding_to_f32_is_to_nearest_with_ties_to_even():
    one, next_up = Decimal(1), Decimal(float(np.nextafter(np.float32(1), np.float32(2))))
    tie = (one + next_up) / 2  # 1 + 2^-24: halfway, so to the even neighbour, 1.0
    assert exact._round_to_f32(tie) == np.float32(1)
    with decimal.localcontext(decimal.Context(prec=60)):
        above_tie = tie + Decimal("1e-40")
        below_minus_tie = -above_tie
    assert exact._round_to_f32(above_tie) == np.float32(next_up)
    assert exact._round_to_f32(below_minus_tie) == -np.float32(next_up)
    for value in RNG.standard_normal(200):
        assert exact._round_to_f32(Decimal(float(value))) == np.float32(value)


def test_f64_functions_are_correctly_rounded():
    assert exact.log(8.0) == 3 * exact.log(2.0) or abs(exact.log(8.0) - 3 * exact.log(2.0)) <= math.ulp(2.08)
    assert exact.log(math.e) == 1.0
    assert exact.inverse_sqrt(64) == 0.125 and exact.inverse_sqrt(256) == 0.0625
    for x in (24.0, 96.0, 168.0, 3.0):
        assert abs(exact.inverse_sqrt(x) - x ** -0.5) <= math.ulp(x ** -0.5)
