"""RoPE inverse frequencies and cos/sin tables, computed on the host.

The inverse frequencies follow transformers' f32 arithmetic step for step; the angles are f32
products as in HF. Every transcendental step (the power, cos and sin, YaRN's logarithms) is
correctly rounded by `exact`, so the tables are the same bits on every CPU and OS; HF's own,
from torch's SIMD kernels, lie within an ulp or two of them. The tables are constants, not
in-graph sine/cosine, which IREE cannot evaluate to f32 accuracy at large angles.
"""
from __future__ import annotations

import math

import numpy as np

from . import exact
from .config import Rope

f32 = np.float32


def inverse_frequencies(rope: Rope, head_dim: int) -> np.ndarray:
    """The inverse frequencies over head_dim rotating dimensions (Config.rotary_width: partial rotary's first ones)."""
    exponents = np.arange(0, head_dim, 2, dtype=np.int64).astype(f32) / f32(head_dim)
    if rope.kind == "longrope":  # HF: 1 / (short_factor * base ** (2i / dim)), in f32
        divisor = (np.array(rope.short_factor, f32) * exact.power_f32(f32(rope.theta), exponents)).astype(f32)
        return (f32(1.0) / divisor).astype(f32)
    inv_freq = (f32(1.0) / exact.power_f32(f32(rope.theta), exponents)).astype(f32)
    if rope.kind == "linear":
        return (inv_freq / f32(rope.factor)).astype(f32)
    if rope.kind == "llama3":
        old_len = f32(rope.original_max_position)
        low_wavelen = f32(old_len / f32(rope.low_freq_factor))
        high_wavelen = f32(old_len / f32(rope.high_freq_factor))
        wavelen = f32(2 * np.pi) / inv_freq
        scaled = np.where(wavelen > low_wavelen, inv_freq / f32(rope.factor), inv_freq).astype(f32)
        smooth = (old_len / wavelen - f32(rope.low_freq_factor)) / f32(rope.high_freq_factor - rope.low_freq_factor)
        smoothed = (f32(1) - smooth) * scaled / f32(rope.factor) + smooth * scaled
        medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
        return np.where(medium, smoothed, scaled).astype(f32)
    if rope.kind == "yarn":
        return yarn_inverse_frequencies(rope, head_dim, inv_freq)
    return inv_freq  # default, and dynamic within max_position_embeddings (Config.check_positions)


def yarn_inverse_frequencies(rope: Rope, dim: int, extrapolation: np.ndarray) -> np.ndarray:
    """HF's _compute_yarn_parameters: a linear ramp over the dimensions between the correction range
    blends the original frequencies (fast, extrapolated) with the ones divided by factor (slow)."""
    def correction_dim(rotations: float) -> float:
        return dim * exact.log(rope.original_max_position / (rotations * 2 * math.pi)) / (2 * exact.log(rope.theta))

    low, high = correction_dim(rope.beta_fast), correction_dim(rope.beta_slow)
    if rope.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # HF's guard against a zero-width ramp
    pos_freqs = exact.power_f32(f32(rope.theta), np.arange(0, dim, 2, dtype=np.int64).astype(f32) / f32(dim))
    interpolation = (f32(1.0) / (f32(rope.factor) * pos_freqs)).astype(f32)
    ramp = np.clip((np.arange(dim // 2, dtype=f32) - f32(low)) / f32(high - low), f32(0), f32(1)).astype(f32)
    extrapolation_factor = (f32(1) - ramp).astype(f32)
    return (interpolation * (f32(1) - extrapolation_factor) + extrapolation * extrapolation_factor).astype(f32)


def cos_sin_tables(rope: Rope, head_dim: int, positions: int) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of shape [positions, rotary dimensions / 2] for positions 0 .. positions-1, times the
    attention factor (YaRN's, LongRoPE's; 1 otherwise) in f32 as HF multiplies them."""
    angles = (np.arange(positions, dtype=f32)[:, None] * inverse_frequencies(rope, head_dim)[None, :]).astype(f32)
    cos, sin = exact.cos_sin_f32(angles)
    scale = f32(rope.attention_factor)
    return (cos * scale).astype(f32), (sin * scale).astype(f32)
