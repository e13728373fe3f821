"""Deliberate emitter bugs: realistic misreadings of a family's config, and decode-time slips.

A config mutant rewrites the parsed config before emission; a core mutant is a decoder
subclass with one method wrong. Either way the graph is wrong while the oracle stays
right. A fixture lists the mutants that its family's deltas must kill (fixture.json
"mutants"); a check with teeth reports FAIL for every one of them, on the graph kind the
mutant breaks. Each mutant also says where it applies (`applies`, a predicate on the
parsed Config's flags, never on a family name, so families added later are covered);
checks/self_test.py runs every applicable one per family and reports the kill rate.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from ...emitter import Config, Decoder, Rope, emit, exact
from ...emitter.batched import BatchedDecoder, PagedDecoder
from ...emitter.decoder import MASKED
from ...emitter.families import FAMILIES, FULL, SLIDING
from ...emitter.stablehlo import Value
from ..core.kinds import KINDS

Applies = Callable[[Config], bool]


@dataclass(frozen=True)
class Mutant:
    description: str
    config: Callable[[Config], Config] = lambda c: c
    core: type[Decoder] = Decoder
    graph: str = "prefill"  # the graph kind whose check must kill it
    applies: Applies | None = None  # None: only where a fixture lists it
    # the same slip on the oracle's config.json, where HF can express it: its exact effect in fp64
    # says whether any fp32 check could see it at all (checks/self_test.py)
    oracle_config: Callable[[dict], dict] | None = None
    # a slip that no number can show, because a correct harness refuses the graph before it runs: the ERROR's
    # message must say this (a FAIL kills it too)
    refused_as: str | None = None

    def texts(self, config_path: Path, dtype: str = "f32") -> dict[str, str]:
        """The mutant emitter's graphs: every graph a case of its kind compiles (decode's prefill too) carries
        the slip, as a real emitter's would (dtype: computing in it, as --dtype asks)."""
        config = self.config(Config.from_json(config_path))
        return {graph: emit(config, graph, core=self.core, dtype=dtype) for graph in KINDS[self.graph].emits}


class CacheSlotOffByOne(Decoder):
    def write_slot(self, cache_len):
        return self.g.add(cache_len, self.g.scalar(1, "i32"))


class CacheSlotOneEarly(Decoder):
    """Decode writes the new key and value over the previous token's."""
    def write_slot(self, cache_len):
        return self.g.sub(cache_len, self.g.scalar(1, "i32"))


class RopeBySlot(Decoder):
    """RoPE rotates by the cache slot (prefill's token index, decode's cache_len): the positions input ignored."""
    def hidden_states(self, tokens, positions, q_slot, k_slot, capacity):
        return super().hidden_states(tokens, q_slot, q_slot, k_slot, capacity)


class DecodeRopeByCacheLen(Decoder):
    """Decode alone rotates by cache_len instead of its position input; prefill is right."""
    def hidden_states(self, tokens, positions, q_slot, k_slot, capacity):
        return super().hidden_states(tokens, q_slot if self.cache is not None else positions, q_slot, k_slot,
                                     capacity)


class RowReadsNeighbour(BatchedDecoder):
    """A serving graph's row b attends to row b + 1's cache (its own mask and query)."""
    def read_row(self, b):
        return (b + 1) % self.rows[2].shape[0]


class BlockTableOffByOne(PagedDecoder):
    """A paged graph reads and writes the block after the one its block table names."""
    def physical(self, block):
        return self.g.add(block, self.g.scalar(1, "i32"))


class TiedHeadAlias(Decoder):
    """A tied head read from lm_head.weight, a tensor a tied checkpoint does not hold."""
    def head_name(self):
        return "lm_head.weight"


class GqaHeadsInterleaved(Decoder):
    """Query head h attends with kv head h % n_kv (heads dealt round-robin) instead of h // group."""
    def group_queries(self, q):
        g, (t, nq, d), nkv = self.g, q.shape, self.cfg.num_kv_heads
        return g.reshape(g.transpose(g.reshape(q, (t, nq // nkv, nkv, d)), [2, 1, 0, 3]), (nkv, nq // nkv * t, d))

    def ungroup_heads(self, out, t):
        g, (nkv, _, d) = self.g, out.shape
        group = self.cfg.num_heads // nkv
        return g.reshape(g.transpose(g.reshape(out, (nkv, group, t, d)), [2, 1, 0, 3]), (t, nkv * group * d))


class TopKLeastLikely(Decoder):
    def top_k(self, probs, k):
        return super().top_k(self.g.sub(self.g.scalar(0.0), probs), k)


class SharedExpertUngated(Decoder):
    def shared_expert(self, x, p):
        return self.gated_mlp(x, f"{p}.shared_expert", self.cfg.moe.shared_expert_size)


class WindowByPosition(Decoder):
    """Sliding windows measured from the query's position (RoPE's) instead of its cache slot, as transformers
    measures them: keys by their positions too in prefill, by their slots in decode (the only measure a cache
    gives). Causality stays over slots. Windows narrow by the positions' gap (harness/core/fixtures.py)."""
    def hidden_states(self, tokens, positions, q_slot, k_slot, capacity):
        self.window_positions = positions, (k_slot if self.cache is not None else positions)
        return super().hidden_states(tokens, positions, q_slot, k_slot, capacity)

    def mask(self, q_slot, k_slot, window):
        if window is None:
            return super().mask(q_slot, k_slot, window)
        g, shape, (q_position, k_position) = self.g, (q_slot.shape[0], k_slot.shape[0]), self.window_positions
        causal = g.compare("LE", g.broadcast(k_slot, shape, [1]), g.broadcast(q_slot, shape, [0]))
        inside = g.compare("GT", g.broadcast(k_position, shape, [1]),
                           g.sub(g.broadcast(q_position, shape, [0]), g.scalar(window, "i32")))
        return g.select(g.and_(causal, inside), g.scalar(0.0), g.scalar(MASKED))


class DecodeIgnoresWindow(Decoder):
    def mask(self, q_slot, k_slot, window):
        return super().mask(q_slot, k_slot, None if q_slot.shape[0] == 1 else window)


class MaskIncludesNext(Decoder):
    """The causal mask lets each query see the next slot too."""
    def mask(self, q_slot, k_slot, window):
        return super().mask(self.g.add(q_slot, self.g.broadcast(self.g.scalar(1, "i32"), q_slot.shape, ())),
                            k_slot, None if window is None else window + 1)


class ChunkOffsetIgnored(Decoder):
    """A chunk that continues the cache taken for the prompt's start: its keys and values written from slot 0, its
    queries at slots 0.. (cache_len ignored)."""
    def write_slot(self, cache_len):
        return self.g.scalar(0, "i32")

    def mask(self, q_slot, k_slot, window):
        return super().mask(self.g.iota(q_slot.shape, 0), k_slot, window)


class VerifyMaskSeesNext(MaskIncludesNext):
    """The graph that continues the cache lets draft token k see draft token k + 1; prefill is right."""
    def mask(self, q_slot, k_slot, window):
        return (super() if self.cache is not None else super(MaskIncludesNext, self)).mask(q_slot, k_slot, window)


class EmbeddingsScaledTwice(Decoder):
    """inputs_embeds scaled again as if they were the table's rows: Gemma's sqrt(hidden) (already in them, the
    embedding module's) applied in the graph, and Granite's embedding_multiplier twice."""
    def from_embeddings(self, x):
        if self.cfg.embed_scale:
            x = self.g.mul(x, self.g.scalar(self.cfg.hidden_size ** 0.5))
        return super().from_embeddings(self.scaled(x, self.cfg.embedding_multiplier))


class RopeInterleaved(Decoder):
    """RoPE pairs the other way: GPT-J's interleaved pairs (x[2i], x[2i+1]) where the family rotates the halves
    (x[i], x[i + D/2]), the halves where it interleaves (GLM-4, Cohere)."""
    def rotate(self, x, cos, sin):
        return self.rotate_halves(x, cos, sin) if self.cfg.rope_pairs_interleaved else self.rotate_pairs(x, cos, sin)


class GateUpSwapped(Decoder):
    """The MLP's gate and up projections bound to each other's checkpoint tensors (a fused gate_up_proj read
    up half first)."""
    SWAP = {"gate_proj.weight": "up_proj.weight", "up_proj.weight": "gate_proj.weight"}

    def weight(self, name, shape):
        stem, _, leaf = name.rpartition(".mlp.")
        return super().weight(f"{stem}.mlp.{self.SWAP.get(leaf, leaf)}" if stem else name, shape)

    def gate_up_halves(self, fused, size):
        return tuple(reversed(super().gate_up_halves(fused, size)))


class StackedGateUpSwapped(Decoder):
    """GraniteMoE's stacked experts' gate_up tensor [E, 2I, H] read with its halves swapped (up rows taken for the
    gate)."""
    def weight(self, name, shape):
        w = super().weight(name, shape)
        if not name.endswith(".experts.gate_up_proj"):
            return w
        g, (e, two, h) = self.g, shape
        return g.concatenate([g.slice(w, (0, two // 2, 0), (e, two, h)), g.slice(w, (0, 0, 0), (e, two // 2, h))], dim=1)


class LayerNormUncentred(Decoder):
    """LayerNorm read as RMSNorm: the mean is not removed (weight, and bias where there is one, still applied)."""
    def layer_norm(self, x, name):
        g, last = self.g, len(x.shape) - 1
        mean_sq = g.div(g.reduce(g.mul(x, x), g.scalar(0.0), "add", [last]), g.scalar(float(x.shape[-1])))
        inv = g.rsqrt(g.add(mean_sq, g.scalar(self.cfg.rms_norm_eps)))
        return self.scale_and_shift(g.mul(x, g.broadcast(inv, x.shape, list(range(last)))), name)


class LayerNormBiasIgnored(Decoder):
    """The LayerNorms' bias taken as an argument but never added."""
    def scale_and_shift(self, y, name):
        g, last = self.g, len(y.shape) - 1
        w = self.weight(f"{name}.weight", (y.shape[-1],))
        self.weight(f"{name}.bias", (y.shape[-1],))
        if self.cfg.norm_plus_one:
            w = g.add(g.scalar(1.0), w)
        return g.mul(y, g.broadcast(w, y.shape, [last]))


class ParallelBlockSequential(Decoder):
    """A parallel block run as a sequential one: the MLP reads the layer input plus the attention output."""
    def parallel_layer(self, x, i, rope, mask):
        p, g = f"model.layers.{i}", self.g
        x = g.add(x, self.attention(self.norm(x, f"{p}.input_layernorm"), i, rope, mask))
        second = "input_layernorm" if self.cfg.parallel_block == "shared_norm" else "post_attention_layernorm"
        return g.add(x, self.mlp(self.norm(x, f"{p}.{second}"), i))


class ParallelBlockOneNorm(Decoder):
    """GPT-NeoX's parallel block with Phi's one norm: the MLP reads input_layernorm's output too (its own
    post_attention_layernorm taken but unused)."""
    def parallel_layer(self, x, i, rope, mask):
        p, g = f"model.layers.{i}", self.g
        h = self.norm(x, f"{p}.input_layernorm")
        self.norm(x, f"{p}.post_attention_layernorm")
        return g.add(g.add(self.attention(h, i, rope, mask), self.mlp(h, i)), x)


class QkvFusedBlockwise(Decoder):
    """GPT-NeoX's fused query_key_value read as three blocks [q | k | v] (Phi-3's layout), not per head."""
    def split_qkv_per_head(self, qkv):
        return self.split_qkv_blocks(qkv)


class QkvFusedKvSwapped(Decoder):
    """A fused qkv_proj [q | k | v] sliced q, v, k: the key and value rows bound to each other."""
    def split_qkv_blocks(self, qkv):
        q, k, v = super().split_qkv_blocks(qkv)
        return q, v, k


class PlainRelu(Decoder):
    """ReLU where the family squares it (Nemotron's relu2)."""
    def activation(self, x):
        return self.g.max(x, self.g.scalar(0.0)) if self.cfg.mlp_activation == "relu2" else super().activation(x)


class SandwichNormsSwapped(Decoder):
    """Sandwich norms: the attention's post-norm and the MLP's pre-norm bound to each other's tensors (GLM-4
    calls the MLP's pre-norm post_attention_layernorm)."""
    SWAP = {"post_attention_layernorm": "pre_feedforward_layernorm",
            "pre_feedforward_layernorm": "post_attention_layernorm"}

    def norm(self, x, name):
        stem, _, leaf = name.rpartition(".")
        return super().norm(x, f"{stem}.{self.SWAP.get(leaf, leaf)}" if stem else name)


class QkNormWrongAxis(Decoder):
    """q/k RMSNorm over the other axis: the whole projection where the family norms each head,
    each head where it norms the whole projection (the weight is applied as the family's)."""
    def rms_norm(self, x, name, eps=None):
        if not name.endswith(("q_norm", "k_norm")):
            return super().rms_norm(x, name, eps)
        g, shape, d = self.g, x.shape, self.cfg.head_dim
        other = (shape[0], shape[1] * shape[2]) if len(shape) == 3 else (shape[0], shape[1] // d, d)
        y = g.reshape(self._normalise(g.reshape(x, other)), shape)
        w = self.weight(f"{name}.weight", (shape[-1],))
        if self.cfg.norm_plus_one:
            w = g.add(g.scalar(1.0), w)
        return g.mul(y, g.broadcast(w, shape, [len(shape) - 1]))

    def _normalise(self, x: Value) -> Value:
        g, last = self.g, len(x.shape) - 1
        mean_sq = g.div(g.reduce(g.mul(x, x), g.scalar(0.0), "add", [last]), g.scalar(float(x.shape[-1])))
        inv_rms = g.rsqrt(g.add(mean_sq, g.scalar(self.cfg.rms_norm_eps)))
        return g.mul(x, g.broadcast(inv_rms, x.shape, list(range(last))))


class CorrectionBiasIgnored(Decoder):
    """DeepSeek-V3's e_score_correction_bias taken but left out of the expert choice."""
    def choice_scores(self, scores, p):
        super().choice_scores(scores, p)
        return scores


class CorrectionBiasInWeights(Decoder):
    """The correction bias in the routing weights too, not only in the choice."""
    def grouped_weights(self, scores, p):
        choice = self.choice_scores(scores, p)
        return self.g.mul(choice, self.grouped_top_k(choice, self.cfg.moe.top_k))


class SharedExpertsDropped(Decoder):
    """The shared experts computed but never added."""
    def shared_expert(self, x, p):
        return self.g.mul(super().shared_expert(x, p), self.g.scalar(0.0))


class QLoraNormSkipped(Decoder):
    """Latent attention's q_a_layernorm taken but not applied: q_b_proj reads q_a_proj's output."""
    def rms_norm(self, x, name, eps=None):
        y = super().rms_norm(x, name, eps)
        return x if name.endswith(".q_a_layernorm") else y


class LatentCachedBeforeNorm(Decoder):
    """The latent cached before kv_a_layernorm and read back as if normed: prefill attends to its own normed
    latents, every cached row decode reads is unnormed."""
    def rms_norm(self, x, name, eps=None):
        if name.endswith(".kv_a_layernorm"):
            self.unnormed = x
        return super().rms_norm(x, name, eps)

    def attended_kv(self, i, k, v):
        if self.cfg.mla is None:
            return super().attended_kv(i, k, v)
        if self.cache is None:
            self.new_kv.append((self.unnormed, v))
            return k, v
        return super().attended_kv(i, self.unnormed, v)


def _eps_key(raw: dict) -> str:
    """The key a family's config.json writes its norms' epsilon under (Phi's layer_norm_eps, Nemotron's norm_eps)."""
    family = FAMILIES[raw["model_type"]]
    return family.aliases.get(family.norm_eps_field, family.norm_eps_field)
def _scores_scaled(c: Config, factor: float) -> Config:
    """The scores scaled by factor more than the family's scale (Granite's attention_multiplier, else score_scale)."""
    if c.attention_multiplier is not None:
        return replace(c, attention_multiplier=c.attention_multiplier * factor)
    return replace(c, score_scale=c.score_scale * factor)


def _unscaled_rope(rope: Rope, theta: float) -> Rope:
    """The default RoPE at theta, on the same rotary dimensions."""
    return Rope(theta)


def _mla_plain_scale(c: Config) -> float:
    """Latent attention's score scale without YaRN's mscale: (qk_nope + qk_rope)^-0.5."""
    return exact.inverse_sqrt(c.mla.qk_nope_head_dim + c.mla.qk_rope_head_dim)


def _first_full_layer_slides(c: Config) -> Config:
    types = list(c.layer_types)
    types[types.index(FULL)] = SLIDING
    return replace(c, layer_types=tuple(types))


def _rotates(c: Config) -> bool:
    return any(c.rope_for(i) is not None for i in range(c.num_layers))


def _slides(c: Config) -> bool:
    return SLIDING in c.layer_types


def _continues_a_cache(c: Config) -> bool:
    """The built-in emitter writes the serving graphs that continue a cache for every family but latent attention."""
    return c.mla is None


def _scaled_rope(c: Config) -> bool:
    # dynamic RoPE inside its original context (all the emitter accepts) is the default RoPE
    unscaled = ("default", "dynamic")
    return _rotates(c) and (c.rope_full.kind not in unscaled or (_slides(c) and c.rope_sliding.kind not in unscaled))


_APPLIES: dict[str, Applies] = {
    "rope_theta_default": lambda c: _rotates(c) and {c.rope_full.theta, c.rope_sliding.theta} != {10000.0},
    "no_rope_scaling": _scaled_rope,
    "local_rope_is_global": lambda c: _slides(c) and c.rope_sliding != c.rope_full,
    "nope_layer_rotated": lambda c: not all(c.rope_layers),
    "no_qkv_bias": lambda c: c.qkv_bias,
    "no_qk_norm": lambda c: c.qk_norm is not None,
    "no_plus_one_norm": lambda c: c.norm_plus_one,
    "no_embed_scale": lambda c: c.embed_scale,
    "silu_for_gelu": lambda c: c.mlp_activation != "silu",
    "no_attn_softcap": lambda c: c.attn_softcap is not None,
    "no_final_softcap": lambda c: c.final_softcap is not None,
    "head_dim_score_scale": lambda c: abs(c.score_scale - c.head_dim ** -0.5) > 1e-9,
    "window_off_by_one": _slides,
    "no_sliding_window": _slides,
    "global_layer_slides": lambda c: _slides(c) and FULL in c.layer_types,
    "no_o_bias": lambda c: c.o_bias,
    "no_mlp_bias": lambda c: c.mlp_bias,
    "no_yarn_attention_factor": lambda c: _rotates(c) and "yarn" in {c.rope_full.kind, c.rope_sliding.kind},
    "no_topk_renorm": lambda c: c.moe is not None and c.moe.renormalize,
    "renormalize_topk": lambda c: c.moe is not None and not c.moe.renormalize,
    "no_clip_qkv": lambda c: c.clip_qkv is not None,
    "rotary_full_width": lambda c: _rotates(c) and c.rotary_width < c.head_dim,
    "no_lm_head_bias": lambda c: c.lm_head_bias,
    "gelu_tanh_for_erf": lambda c: c.mlp_activation == "gelu_erf",
    "no_embedding_multiplier": lambda c: c.embedding_multiplier not in (None, 1.0),
    "no_residual_multiplier": lambda c: c.residual_multiplier not in (None, 1.0),
    "no_attention_multiplier": lambda c: c.attention_multiplier not in (None, c.score_scale),
    "no_logits_scaling": lambda c: c.logits_divisor not in (None, 1.0),
    "no_logit_scale": lambda c: c.logits_multiplier not in (None, 1.0),
    "no_longrope_attention_factor": lambda c: _rotates(c) and c.rope_full.kind == "longrope"
    and c.rope_full.attention_factor != 1.0,
    "longrope_long_factor": lambda c: _rotates(c) and c.rope_full.kind == "longrope"
    and c.rope_full.short_factor != c.rope_full.long_factor,
    "yarn_truncated": lambda c: _rotates(c) and any(r.kind == "yarn" and not r.truncate
                                                    for r in (c.rope_full, c.rope_sliding)),
    "no_attention_sinks": lambda c: c.attention_sinks,
    "no_router_bias": lambda c: c.moe is not None and c.moe.router_bias,
    "no_expert_bias": lambda c: c.moe is not None and c.moe.expert_bias,
    "gate_up_halves": lambda c: c.moe is not None and c.moe.gate_up_interleaved,
    "no_swiglu_clamp": lambda c: c.moe is not None and c.moe.swiglu_clamp is not None,
    "group_limit_ignored": lambda c: c.moe is not None and c.moe.topk_groups < c.moe.groups,
    "no_routed_scaling": lambda c: c.moe is not None and c.moe.routed_scaling != 1.0,
    "mla_rope_not_rotated": lambda c: c.mla is not None and _rotates(c),
    "no_mla_mscale": lambda c: c.mla is not None and c.score_scale != _mla_plain_scale(c),
}


def _moe(c: Config, **changes) -> Config:
    return replace(c, moe=replace(c.moe, **changes))

_CONFIG_MUTANTS: dict[str, tuple[str, Callable[[Config], Config]]] = {
    "rope_theta_default": ("RoPE base 10000 instead of the config's rope_theta",
                           lambda c: replace(c, rope_full=_unscaled_rope(c.rope_full, 10000.0),
                                             rope_sliding=_unscaled_rope(c.rope_sliding, 10000.0))),
    "no_rope_scaling": ("RoPE scaling (linear/llama3/yarn/longrope) ignored",
                        lambda c: replace(c, rope_full=_unscaled_rope(c.rope_full, c.rope_full.theta),
                                          rope_sliding=_unscaled_rope(c.rope_sliding, c.rope_sliding.theta))),
    "local_rope_is_global": ("sliding layers rotate with the global RoPE", lambda c: replace(c, rope_sliding=c.rope_full)),
    "nope_layer_rotated": ("NoPE layers rotated anyway", lambda c: replace(c, rope_layers=(True,) * c.num_layers)),
    "no_qkv_bias": ("q/k/v biases dropped", lambda c: replace(c, qkv_bias=False)),
    "no_o_bias": ("o_proj bias dropped", lambda c: replace(c, o_bias=False)),
    "no_mlp_bias": ("gate/up/down biases dropped", lambda c: replace(c, mlp_bias=False)),
    "no_yarn_attention_factor": ("YaRN's attention factor left out of cos and sin",
                                 lambda c: replace(c, rope_full=replace(c.rope_full, attention_factor=1.0),
                                                   rope_sliding=replace(c.rope_sliding, attention_factor=1.0))),
    "no_qk_norm": ("q/k norm dropped", lambda c: replace(c, qk_norm=None)),
    "no_plus_one_norm": ("RMSNorm scales by w instead of (1 + w)", lambda c: replace(c, norm_plus_one=False)),
    "no_embed_scale": ("embeddings not scaled by sqrt(hidden)", lambda c: replace(c, embed_scale=False)),
    "silu_for_gelu": ("SiLU where the family has another activation (GELU, relu2)",
                      lambda c: replace(c, mlp_activation="silu")),
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
    "rotary_full_width": ("partial rotary ignored: every dimension of the head rotates",
                          lambda c: replace(c, rotary_dim=None)),
    "no_lm_head_bias": ("the head's bias dropped", lambda c: replace(c, lm_head_bias=False)),
    "gelu_tanh_for_erf": ("tanh-approximate GELU where the family uses erf's",
                          lambda c: replace(c, mlp_activation="gelu_tanh")),
    "no_embedding_multiplier": ("embeddings not multiplied by embedding_multiplier",
                                lambda c: replace(c, embedding_multiplier=None)),
    "no_residual_multiplier": ("attention and MLP outputs added to the residual without residual_multiplier",
                               lambda c: replace(c, residual_multiplier=None)),
    "no_attention_multiplier": ("scores scaled by head_dim^-0.5, not attention_multiplier",
                                lambda c: replace(c, attention_multiplier=None)),
    "no_logits_scaling": ("logits not divided by logits_scaling", lambda c: replace(c, logits_divisor=None)),
    "no_logit_scale": ("logits not multiplied by logit_scale", lambda c: replace(c, logits_multiplier=None)),
    "no_longrope_attention_factor": ("LongRoPE's attention factor left out of cos and sin",
                                     lambda c: replace(c, rope_full=replace(c.rope_full, attention_factor=1.0),
                                                       rope_sliding=replace(c.rope_sliding, attention_factor=1.0))),
    "longrope_long_factor": ("LongRoPE's long factors inside the original context, where HF takes the short ones",
                             lambda c: replace(c, rope_full=replace(c.rope_full, short_factor=c.rope_full.long_factor),
                                               rope_sliding=replace(c.rope_sliding,
                                                                    short_factor=c.rope_sliding.long_factor))),
    "yarn_truncated": ("YaRN's correction range rounded to integers although truncate is false",
                       lambda c: replace(c, rope_full=replace(c.rope_full, truncate=True),
                                         rope_sliding=replace(c.rope_sliding, truncate=True))),
    "no_attention_sinks": ("the attention sinks left out of the softmax", lambda c: replace(c, attention_sinks=False)),
    "no_router_bias": ("the router's bias dropped", lambda c: _moe(c, router_bias=False)),
    "no_expert_bias": ("the experts' gate_up and down biases dropped", lambda c: _moe(c, expert_bias=False)),
    "gate_up_halves": ("the experts' interleaved gate_up columns read as a gate half and an up half",
                       lambda c: _moe(c, gate_up_interleaved=False)),
    "no_swiglu_clamp": ("the clamped SwiGLU's clamps dropped (limit infinite)",
                        lambda c: _moe(c, swiglu_clamp=(c.moe.swiglu_clamp[0], float("inf")))),
    "group_limit_ignored": ("DeepSeek-V3's group limit ignored: the top-k over every group",
                            lambda c: replace(c, moe=replace(c.moe, topk_groups=c.moe.groups))),
    "no_routed_scaling": ("routing weights not multiplied by routed_scaling_factor",
                          lambda c: replace(c, moe=replace(c.moe, routed_scaling=1.0))),
    "mla_rope_not_rotated": ("latent attention's rope part (queries' and the shared key's) left unrotated",
                             lambda c: replace(c, rope_layers=(False,) * c.num_layers)),
    "no_mla_mscale": ("latent attention's scores scaled without YaRN's mscale^2 (mscale_all_dim)",
                      lambda c: replace(c, score_scale=_mla_plain_scale(c))),
    "honour_inert_window": ("sliding_window applied although use_sliding_window is false",
                            lambda c: replace(c, sliding_window=4, layer_types=(FULL,) + (SLIDING,) * (c.num_layers - 1))),
}

MUTANTS: dict[str, Mutant] = {
    **{name: Mutant(description, config, applies=_APPLIES.get(name))
       for name, (description, config) in _CONFIG_MUTANTS.items()},
    "cache_slot_off_by_one": Mutant("decode writes the new key/value one slot past the cache's end",
                                    core=CacheSlotOffByOne, graph="decode", applies=lambda c: True),
    "decode_ignores_window": Mutant("decode attends to the whole cache on sliding layers",
                                    core=DecodeIgnoresWindow, graph="decode", applies=_slides),
    "row_reads_neighbour": Mutant("a serving graph's row attends to its neighbour's cache", core=RowReadsNeighbour,
                                  graph="decode_batched", applies=_continues_a_cache),
    "block_table_off_by_one": Mutant("a paged graph's block-table entries read one block off", core=BlockTableOffByOne,
                                     graph="decode_paged", applies=_continues_a_cache),
    "window_by_position": Mutant("sliding windows measured in positions instead of cache slots",
                                 core=WindowByPosition, graph="decode", applies=_slides),
    # Subtle slips: some stay inside the fixed 1e-2 bound; the strict bound (core/noise.py) catches them.
    "cache_slot_one_early": Mutant("decode writes the new key/value over the previous token's",
                                   core=CacheSlotOneEarly, graph="decode", applies=lambda c: True),
    # Positions apart from slots (harness/core/fixtures.py) are what tell these from a correct graph.
    "rope_by_slot": Mutant("RoPE rotates by the cache slot, not the positions input", core=RopeBySlot,
                           applies=_rotates),
    "position_input_ignored": Mutant("neither graph reads its position input: RoPE by slot in prefill, by "
                                     "cache_len in decode", core=RopeBySlot, graph="decode", applies=_rotates),
    "decode_rope_by_cache_len": Mutant("decode rotates by cache_len instead of its position", core=DecodeRopeByCacheLen,
                                       graph="decode", applies=_rotates),
    # A tied checkpoint holds no lm_head.weight, so the oracle offers none (issue 19): binding refuses the graph
    # (core/graph.py bind), and the self-test counts the refusal as caught.
    "tied_head_alias": Mutant("a tied head read from lm_head.weight", core=TiedHeadAlias,
                              applies=lambda c: c.tie_word_embeddings,
                              refused_as="argument 'lm_head.weight' names neither an input of this graph"),
    "gqa_heads_interleaved": Mutant("query head h attends with kv head h % n_kv, not h // group",
                                    core=GqaHeadsInterleaved,
                                    applies=lambda c: 1 < c.num_kv_heads < c.num_heads),
    # Epsilon read as the other common default (1e-5 <-> 1e-6), either way: the quiet tokens make it visible.
    "eps_10x": Mutant("RMSNorm epsilon 10x the config's", lambda c: replace(c, rms_norm_eps=c.rms_norm_eps * 10),
                      applies=lambda c: True,
                      oracle_config=lambda raw: {**raw, _eps_key(raw): Config.from_dict(raw).rms_norm_eps * 10}),
    "eps_tenth": Mutant("RMSNorm epsilon a tenth of the config's",
                        lambda c: replace(c, rms_norm_eps=c.rms_norm_eps / 10), applies=lambda c: True,
                        oracle_config=lambda raw: {**raw, _eps_key(raw): Config.from_dict(raw).rms_norm_eps / 10}),
    "attn_scale_1pct": Mutant("attention scores scaled 1% too much", lambda c: _scores_scaled(c, 1.01),
                              applies=lambda c: True),
    # a tenth of that stays inside the fixed 1e-2 bound: the strict bound's reason to exist
    "attn_scale_permille": Mutant("attention scores scaled 0.1% too much", lambda c: _scores_scaled(c, 1.001),
                                  applies=lambda c: True),
    "mask_includes_next": Mutant("the causal mask lets each query see the next slot", core=MaskIncludesNext,
                                 applies=lambda c: True),
    "rope_interleaved": Mutant("RoPE pairs the other way (interleaved for halves, halves for interleaved)",
                               core=RopeInterleaved,
                               applies=_rotates),
    "gate_up_swapped": Mutant("the MLP's gate and up projections swapped", core=GateUpSwapped,
                              applies=lambda c: c.mlp_gated and (c.moe is None or not all(c.moe.routed_layers))),
    "stacked_gate_up_swapped": Mutant("stacked experts' gate_up halves swapped", core=StackedGateUpSwapped,
                                      applies=lambda c: c.moe is not None and c.moe.stacked == "out_in"),
    "layernorm_uncentred": Mutant("LayerNorm without removing the mean (RMSNorm, with the bias where there is one)",
                                  core=LayerNormUncentred, applies=lambda c: c.norm_kind != "rms"),
    "layernorm_bias_ignored": Mutant("the LayerNorms' bias never added", core=LayerNormBiasIgnored,
                                     applies=lambda c: c.norm_kind == "layernorm"),
    "parallel_block_sequential": Mutant("attention and MLP run one after the other instead of in parallel",
                                        core=ParallelBlockSequential, applies=lambda c: c.parallel_block is not None),
    "parallel_block_one_norm": Mutant("the parallel MLP reads the attention's norm instead of its own",
                                      core=ParallelBlockOneNorm, applies=lambda c: c.parallel_block == "two_norms"),
    "qkv_fused_blockwise": Mutant("the per-head fused query_key_value split as [q | k | v] blocks",
                                  core=QkvFusedBlockwise, applies=lambda c: c.qkv_fused == "per_head"),
    "qkv_fused_kv_swapped": Mutant("a fused qkv_proj [q | k | v] sliced q, v, k", core=QkvFusedKvSwapped,
                                   applies=lambda c: c.qkv_fused == "blocks"),
    "relu_for_relu2": Mutant("ReLU where the family squares it", core=PlainRelu,
                             applies=lambda c: c.mlp_activation == "relu2"),
    "sandwich_norms_swapped": Mutant("the attention's post-norm and the MLP's pre-norm swapped",
                                     core=SandwichNormsSwapped, applies=lambda c: c.norm_placement == "sandwich"),
    "topk_least_likely": Mutant("routing keeps the k least likely experts", core=TopKLeastLikely,
                                applies=lambda c: c.moe is not None),
    "shared_expert_ungated": Mutant("the shared expert is added without its sigmoid gate", core=SharedExpertUngated,
                                    applies=lambda c: c.moe is not None and bool(c.moe.shared_expert_size)
                                    and c.moe.shared_expert_gated),
    "no_shared_experts": Mutant("the shared experts computed but never added", core=SharedExpertsDropped,
                                applies=lambda c: c.moe is not None and bool(c.moe.shared_expert_size)),
    "no_correction_bias": Mutant("e_score_correction_bias left out of the expert choice", core=CorrectionBiasIgnored,
                                 applies=lambda c: c.moe is not None and c.moe.correction_bias),
    "correction_bias_in_weights": Mutant("e_score_correction_bias added to the routing weights too",
                                         core=CorrectionBiasInWeights,
                                         applies=lambda c: c.moe is not None and c.moe.correction_bias),
    "no_q_lora_norm": Mutant("latent attention's q_a_layernorm not applied", core=QLoraNormSkipped,
                             applies=lambda c: c.mla is not None and c.mla.q_lora_rank is not None),
    "latent_cached_before_norm": Mutant("the latent cached before kv_a_layernorm, read back as if normed",
                                        core=LatentCachedBeforeNorm, graph="decode",
                                        applies=lambda c: c.mla is not None),
    # The serving kinds (core/continued.py), validated on request: each of their mutants on its own kind.
    "chunk_offset_ignored": Mutant("a prefill chunk written and masked from slot 0, its cache_len ignored",
                                   core=ChunkOffsetIgnored, graph="prefill_chunked", applies=_continues_a_cache),
    "verify_mask_sees_next": Mutant("decode_verify's mask lets draft token k see token k + 1", core=VerifyMaskSeesNext,
                                    graph="decode_verify", applies=_continues_a_cache),
    "embeddings_scaled_twice": Mutant("inputs_embeds scaled by the family's embedding scale or multiplier again",
                                      core=EmbeddingsScaledTwice, graph="prefill_embeddings",
                                      applies=lambda c: c.embed_scale or c.embedding_multiplier not in (None, 1.0)),
    "qk_norm_wrong_axis": Mutant("q/k RMSNorm over the other axis (projection vs head)", core=QkNormWrongAxis,
                                 applies=lambda c: c.qk_norm in ("head", "projection")),
}


def applicable(name: str, config: Config, listed: tuple[str, ...] = ()) -> bool:
    """A mutant applies to a family when its predicate holds on the config, or the fixture lists it."""
    bug = MUTANTS[name]
    return name in listed or (bug.applies is not None and bug.applies(config))
