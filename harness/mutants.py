"""Deliberate emitter bugs, each a realistic misreading of a family's config.

A mutant rewrites the parsed config before emission, so the graph is wrong while the
oracle stays right. A fixture lists the mutants that its family's deltas must kill
(fixture.json "mutants"); a check with teeth reports FAIL for every one of them.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

from emitter import Config, Rope
from emitter.families import FULL, SLIDING


def _first_full_layer_slides(c: Config) -> Config:
    types = list(c.layer_types)
    types[types.index(FULL)] = SLIDING
    return replace(c, layer_types=tuple(types))


MUTANTS: dict[str, tuple[str, Callable[[Config], Config]]] = {
    "rope_theta_default": ("RoPE base 10000 instead of the config's rope_theta",
                           lambda c: replace(c, rope_full=Rope(10000.0), rope_sliding=Rope(10000.0))),
    "no_rope_scaling": ("RoPE scaling (linear/llama3) ignored",
                        lambda c: replace(c, rope_full=Rope(c.rope_full.theta), rope_sliding=Rope(c.rope_sliding.theta))),
    "local_rope_is_global": ("sliding layers rotate with the global RoPE", lambda c: replace(c, rope_sliding=c.rope_full)),
    "nope_layer_rotated": ("NoPE layers rotated anyway", lambda c: replace(c, rope_layers=(True,) * c.num_layers)),
    "no_qkv_bias": ("q/k/v biases dropped", lambda c: replace(c, qkv_bias=False)),
    "no_qk_norm": ("q/k RMSNorm dropped", lambda c: replace(c, qk_norm=None)),
    "no_plus_one_norm": ("RMSNorm scales by w instead of (1 + w)", lambda c: replace(c, norm_plus_one=False)),
    "no_embed_scale": ("embeddings not scaled by sqrt(hidden)", lambda c: replace(c, embed_scale=False)),
    "silu_for_gelu": ("SiLU where the family gates with tanh-GELU", lambda c: replace(c, mlp_activation="silu")),
    "no_attn_softcap": ("attention logit soft-cap dropped", lambda c: replace(c, attn_softcap=None)),
    "no_final_softcap": ("final logit soft-cap dropped", lambda c: replace(c, final_softcap=None)),
    "head_dim_score_scale": ("scores scaled by head_dim^-0.5, not query_pre_attn_scalar^-0.5",
                             lambda c: replace(c, score_scale=c.head_dim ** -0.5)),
    "window_off_by_one": ("sliding window one token wider", lambda c: replace(c, sliding_window=c.sliding_window + 1)),
    "no_sliding_window": ("every layer attends globally",
                          lambda c: replace(c, layer_types=(FULL,) * c.num_layers)),
    "global_layer_slides": ("the first global layer slides too", _first_full_layer_slides),
    "honour_inert_window": ("sliding_window applied although use_sliding_window is false",
                            lambda c: replace(c, sliding_window=4, layer_types=(FULL,) + (SLIDING,) * (c.num_layers - 1))),
}


def apply(name: str, cfg: Config) -> Config:
    return MUTANTS[name][1](cfg)
