"""Deliberate emitter bugs: realistic misreadings of a family's config, and decode-time slips.

A config mutant rewrites the parsed config before emission; a core mutant is a decoder
subclass with one method wrong. Either way the graph is wrong while the oracle stays
right. A fixture lists the mutants that its family's deltas must kill (fixture.json
"mutants"); a check with teeth reports FAIL for every one of them, on the graph kind the
mutant breaks.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from emitter import Config, Decoder, Rope, emit
from emitter.families import FULL, SLIDING


@dataclass(frozen=True)
class Mutant:
    description: str
    config: Callable[[Config], Config] = lambda c: c
    core: type[Decoder] = Decoder
    graph: str = "prefill"  # the graph kind whose check must kill it

    def emit(self, config_path: Path) -> str:
        return emit(self.config(Config.from_json(config_path)), self.graph, core=self.core)


class CacheSlotOffByOne(Decoder):
    def write_slot(self, cache_len):
        return self.g.add(cache_len, self.g.scalar(1, "i32"))


class TopKLeastLikely(Decoder):
    def top_k(self, probs, k):
        return super().top_k(self.g.sub(self.g.scalar(0.0), probs), k)


class SharedExpertUngated(Decoder):
    def shared_expert(self, x, p):
        return self.gated_mlp(x, f"{p}.shared_expert", self.cfg.moe.shared_expert_size)


class DecodeIgnoresWindow(Decoder):
    def mask(self, q_slot, k_slot, window):
        return super().mask(q_slot, k_slot, None if q_slot.shape[0] == 1 else window)


def _first_full_layer_slides(c: Config) -> Config:
    types = list(c.layer_types)
    types[types.index(FULL)] = SLIDING
    return replace(c, layer_types=tuple(types))


def _gate_up_swapped(c: Config) -> Config:
    swap = {".mlp.c_fc_0.": ".mlp.c_fc_1.", ".mlp.c_fc_1.": ".mlp.c_fc_0."}
    return replace(c, weight_names=tuple((pattern, swap.get(name, name)) for pattern, name in c.weight_names))


_CONFIG_MUTANTS: dict[str, tuple[str, Callable[[Config], Config]]] = {
    "rope_theta_default": ("RoPE base 10000 instead of the config's rope_theta",
                           lambda c: replace(c, rope_full=Rope(10000.0), rope_sliding=Rope(10000.0))),
    "no_rope_scaling": ("RoPE scaling (linear/llama3/yarn) ignored",
                        lambda c: replace(c, rope_full=Rope(c.rope_full.theta), rope_sliding=Rope(c.rope_sliding.theta))),
    "local_rope_is_global": ("sliding layers rotate with the global RoPE", lambda c: replace(c, rope_sliding=c.rope_full)),
    "nope_layer_rotated": ("NoPE layers rotated anyway", lambda c: replace(c, rope_layers=(True,) * c.num_layers)),
    "no_qkv_bias": ("q/k/v biases dropped", lambda c: replace(c, qkv_bias=False)),
    "no_o_bias": ("o_proj bias dropped", lambda c: replace(c, o_bias=False)),
    "no_mlp_bias": ("gate/up/down biases dropped", lambda c: replace(c, mlp_bias=False)),
    "no_yarn_attention_factor": ("YaRN's attention factor left out of cos and sin",
                                 lambda c: replace(c, rope_full=replace(c.rope_full, attention_factor=1.0),
                                                   rope_sliding=replace(c.rope_sliding, attention_factor=1.0))),
    "gate_up_swapped": ("checkpoint names with gate and up swapped (EXAONE's c_fc_0 read as up, c_fc_1 as gate)",
                        _gate_up_swapped),
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
    "no_topk_renorm": ("top-k routing weights not renormalised", lambda c: replace(c, moe=replace(c.moe, renormalize=False))),
    "renormalize_topk": ("top-k routing weights renormalised although norm_topk_prob is false",
                         lambda c: replace(c, moe=replace(c.moe, renormalize=True))),
    "no_clip_qkv": ("q, k, v not clamped to clip_qkv", lambda c: replace(c, clip_qkv=None)),
    "honour_inert_window": ("sliding_window applied although use_sliding_window is false",
                            lambda c: replace(c, sliding_window=4, layer_types=(FULL,) + (SLIDING,) * (c.num_layers - 1))),
}

MUTANTS: dict[str, Mutant] = {
    **{name: Mutant(description, config) for name, (description, config) in _CONFIG_MUTANTS.items()},
    "cache_slot_off_by_one": Mutant("decode writes the new key/value one slot past the cache's end",
                                    core=CacheSlotOffByOne, graph="decode"),
    "topk_least_likely": Mutant("routing keeps the k least likely experts", core=TopKLeastLikely),
    "shared_expert_ungated": Mutant("the shared expert is added without its sigmoid gate", core=SharedExpertUngated),
    "decode_ignores_window": Mutant("decode attends to the whole cache on sliding layers",
                                    core=DecodeIgnoresWindow, graph="decode"),
}
