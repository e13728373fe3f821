"""What a shrunk config keeps of its original (checks/shrink.py): the architecture its parsed flags choose, sizes
left out, compared before and after shrinking, and the same choices in words for the console's "kept" line.
"""
from __future__ import annotations

from dataclasses import MISSING, asdict, fields

from ...emitter.config import Config, Mla, Moe, Rope
from ...emitter.families import SLIDING


def attention_kind(cfg: Config) -> str:
    if cfg.num_kv_heads == cfg.num_heads:
        return "MHA"
    return "MQA" if cfg.num_kv_heads == 1 else "GQA"


def layer_schedule(cfg: Config) -> list[tuple]:
    """Per layer: (attention type, rotated, routed to experts)."""
    routed = cfg.moe.routed_layers if cfg.moe else (False,) * cfg.num_layers
    return list(zip(cfg.layer_types, cfg.rope_layers, routed))


def _runs(seq: list) -> list:
    return [x for i, x in enumerate(seq) if i == 0 or seq[i - 1] != x]


def period(seq: list) -> int:
    """The smallest p with seq[i] == seq[i + p] for every i: the length less its longest border (a proper prefix
    that is also a suffix), which Knuth-Morris-Pratt's failure function finds in linear time; seq is a layer
    schedule, never empty."""
    border = [0] * len(seq)
    for i in range(1, len(seq)):
        k = border[i - 1]
        while k and seq[i] != seq[k]:
            k = border[k - 1]
        border[i] = k + (seq[i] == seq[k])
    return len(seq) - border[-1]


def schedule_kept(original: list, shrunk: list) -> bool:
    """The original schedule is the shrunk one repeated, or the shrunk one with each layer's run stretched."""
    tiled = all(x == shrunk[i % len(shrunk)] for i, x in enumerate(original))
    return tiled or _runs(original) == shrunk


# Config's and Moe's fields that are sizes (or the layer schedule, compared by schedule_kept), left out of
# architecture(); those whose value shrinking changes on purpose are compared as present or absent.
SIZES = {"vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads", "head_dim",
         "layer_types", "rope_layers", "source", "score_scale", "experts", "expert_size", "routed_layers"}
PRESENCE = {"sliding_window", "attn_softcap", "final_softcap", "clip_qkv", "rotary_dim", "shared_expert_size"}


def _flag(name: str, value):
    """A flag as architecture() compares it."""
    if name in PRESENCE:
        return value is not None
    if isinstance(value, Rope):
        return {k: v for k, v in asdict(value).items() if k != "original_max_position"}
    if isinstance(value, Mla):  # its ranks and widths are sizes
        return {"q_lora": value.q_lora_rank is not None}
    if isinstance(value, Moe):
        return {"top_k_below_experts": value.top_k < value.experts} | {
            f.name: _flag(f.name, getattr(value, f.name)) for f in fields(Moe) if f.name not in SIZES}
    return value


def scaled_over(cfg: Config) -> int:
    """What the score scale is over: head_dim, or latent attention's qk_nope + qk_rope (its head_dim is qk_rope)."""
    return cfg.mla.qk_nope_head_dim + cfg.mla.qk_rope_head_dim if cfg.mla else cfg.head_dim


def architecture(cfg: Config) -> dict:
    """Every choice the parsed flags make, sizes left out (the layer schedule is compared by schedule_kept):
    every field of Config and of its Moe that is no size, and three choices that sizes express."""
    return {"attention": attention_kind(cfg),
            "head_dim_x_heads_is_hidden": cfg.head_dim * cfg.num_heads == cfg.hidden_size,
            "score_scale_over_head_dim": round(cfg.score_scale ** -2 / scaled_over(cfg), 6),
            **{f.name: _flag(f.name, getattr(cfg, f.name)) for f in fields(Config) if f.name not in SIZES}}


# the flags describe() phrases by hand; every other flag is named as it is where it differs from the baseline
PHRASED = {"attention", "head_dim_x_heads_is_hidden", "model_type", "norm_placement", "norm_plus_one", "qk_norm",
           "mlp_activation", "tie_word_embeddings", "qkv_bias", "o_bias", "mlp_bias", "embed_scale", "rope_full",
           "rope_sliding", "sliding_window", "attn_softcap", "final_softcap", "clip_qkv", "weight_names",
           "top_k", "top_k_below_experts", "renormalize", "shared_expert_size", "mla"}


def _named(flags: dict, baseline: dict) -> list[str]:
    """`name` for a flag switched on, `name value` for any other, where it differs from the baseline's value."""
    return [name if value is True else f"{name} {value}" for name, value in flags.items()
            if name not in PHRASED and (name not in baseline or value != baseline[name])]


def _baseline(cls) -> dict:
    return {f.name: _flag(f.name, f.default) for f in fields(cls) if f.default is not MISSING}


def describe(cfg: Config) -> tuple[str, ...]:
    """The kept choices, one short phrase each: the common ones in words, every other flag by its name."""
    def rope(r):
        extra = {"linear": f" ×{r.factor:g}", "dynamic": f" ×{r.factor:g}",
                 "llama3": f" ×{r.factor:g} low {r.low_freq_factor:g} high {r.high_freq_factor:g}",
                 "yarn": f" ×{r.factor:g} attention factor {r.attention_factor:.4g} beta {r.beta_fast:g}/{r.beta_slow:g}"}
        return f"{r.kind}{extra.get(r.kind, '')} base {r.theta:g}"
    sched = layer_schedule(cfg)
    unit = sched[:period(sched)]
    names = [("sliding" if t == SLIDING else "full") + ("" if rot else "/NoPE") + ("/moe" if moe else "")
             for t, rot, moe in unit]
    kept = [f"{attention_kind(cfg)} attention",
            "head_dim·heads " + ("=" if cfg.head_dim * cfg.num_heads == cfg.hidden_size else "≠") + " hidden",
            f"layer pattern ({', '.join(names)})" + (" repeated" if len(unit) < len(sched) else ""),
            f"{cfg.norm_placement}-norm" + (" (1 + w)" if cfg.norm_plus_one else "") +
            (f", q/k norm per {cfg.qk_norm}" if cfg.qk_norm else ""),
            f"{cfg.mlp_activation} MLP", "tied head" if cfg.tie_word_embeddings else "untied head"]
    biases = [n for n, on in (("q/k/v", cfg.qkv_bias), ("o", cfg.o_bias), ("MLP", cfg.mlp_bias)) if on]
    kept.append(f"{'/'.join(biases)} biases" if biases else "no biases")
    if cfg.embed_scale:
        kept.append("embeddings × √hidden")
    kept.append(f"RoPE {rope(cfg.rope_full)}" + ("" if cfg.rope_sliding == cfg.rope_full
                                                  else f", sliding layers {rope(cfg.rope_sliding)}"))
    if cfg.sliding_window is not None:
        kept.append("sliding window shorter than the prompt")
    kept += [f"{name} soft-cap" for name, cap in (("attention", cfg.attn_softcap), ("final", cfg.final_softcap)) if cap]
    if cfg.clip_qkv is not None:
        kept.append("clip_qkv")
    if cfg.moe:
        kept.append(f"top-{cfg.moe.top_k} of {'more' if cfg.moe.top_k < cfg.moe.experts else 'all'} experts, "
                    f"{'renormalised' if cfg.moe.renormalize else 'not renormalised'}"
                    + (", shared expert" if cfg.moe.shared_expert_size else ""))
        kept += _named(_flag("moe", cfg.moe), _baseline(Moe))
    if cfg.mla:
        kept.append("latent attention" + (" with q LoRA" if cfg.mla.q_lora_rank else "")
                    + (", interleaved RoPE" if cfg.rope_pairs_interleaved else ""))
    if cfg.weight_names:
        kept.append("checkpoint tensor names")
    flags = architecture(cfg)
    baseline = _baseline(Config) | {"score_scale_over_head_dim": 1.0}
    return tuple(kept + _named({k: v for k, v in flags.items() if k != "moe"}, baseline))
