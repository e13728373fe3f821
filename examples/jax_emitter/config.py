"""config.json -> Spec: every number and switch the model math needs, nothing else.

Defaults are those of the transformers config classes (LlamaConfig, Qwen3Config,
Gemma2Config) for the fields a config.json may leave out. Anything this example does
not implement is refused with Refused(one sentence), which emit.py turns into exit 2.
"""
from dataclasses import dataclass


class Refused(Exception):
    """A config this emitter will not emit; the message is one sentence."""


@dataclass(frozen=True)
class Spec:
    family: str              # model_type
    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    eps: float               # RMSNorm epsilon
    rope_theta: float
    act: str                 # "silu" or "gelu_pytorch_tanh"
    tied_head: bool          # lm_head is embed_tokens
    qk_norm: bool            # Qwen3: RMSNorm over head_dim on q and k, before RoPE
    plus_one_norm: bool      # Gemma: norms scale by (1 + w)
    sandwich_norm: bool      # Gemma 2: post-attention, pre- and post-feedforward norms
    embed_scale: float       # Gemma: sqrt(hidden); else 1
    score_scale: float       # 1/sqrt(head_dim), Gemma 2: 1/sqrt(query_pre_attn_scalar)
    attn_softcap: float | None
    final_softcap: float | None
    windows: tuple           # per layer: sliding window (int) or None for full attention


# model_type -> the config class defaults this emitter reads
DEFAULTS = {
    "llama":  {"rms_norm_eps": 1e-6, "tie_word_embeddings": False, "hidden_act": "silu"},
    "qwen3":  {"rms_norm_eps": 1e-6, "tie_word_embeddings": False, "hidden_act": "silu", "head_dim": 128},
    "gemma2": {"rms_norm_eps": 1e-6, "tie_word_embeddings": True, "hidden_activation": "gelu_pytorch_tanh",
               "head_dim": 256, "query_pre_attn_scalar": 256, "sliding_window": 4096,
               "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0},
}
ACTIVATIONS = ("silu", "gelu_pytorch_tanh")


def rope_theta(cfg, name):
    """Both dialects: legacy top-level rope_theta/rope_scaling, transformers 5 rope_parameters."""
    params = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    kind = params.get("rope_type", params.get("type", "default"))
    if kind != "default":
        raise Refused(f"{name}: RoPE type {kind!r} is not implemented by this example (default RoPE only).")
    return float(params.get("rope_theta", cfg.get("rope_theta", 10000.0)))


def parse(cfg, name="config.json"):
    family = cfg.get("model_type")
    if family not in DEFAULTS:
        raise Refused(f"{name}: model_type {family!r} is not supported by this example emitter "
                      f"(only {', '.join(DEFAULTS)}).")
    # null means "class default", except for Gemma 2's soft-caps, where null switches the cap off
    d = {**DEFAULTS[family], **{k: v for k, v in cfg.items() if v is not None or k.endswith("softcapping")}}
    for field in ("attention_bias", "mlp_bias", "use_sliding_window"):
        if d.get(field):
            raise Refused(f"{name}: {field} = true is not implemented by this example.")
    heads = d["num_attention_heads"]
    head_dim = d.get("head_dim") or d["hidden_size"] // heads
    act = d.get("hidden_activation") or d.get("hidden_act")
    if act not in ACTIVATIONS:
        raise Refused(f"{name}: activation {act!r} is not implemented by this example.")
    gemma = family == "gemma2"
    layers = d["num_hidden_layers"]
    if gemma:
        types = d.get("layer_types") or ["sliding_attention" if (i + 1) % 2 else "full_attention"
                                         for i in range(layers)]
        windows = tuple(d["sliding_window"] if t == "sliding_attention" else None for t in types)
    else:
        windows = (None,) * layers
    return Spec(
        family=family,
        vocab=d["vocab_size"], hidden=d["hidden_size"], intermediate=d["intermediate_size"],
        layers=layers, heads=heads, kv_heads=d.get("num_key_value_heads") or heads, head_dim=head_dim,
        eps=float(d["rms_norm_eps"]), rope_theta=rope_theta(d, name), act=act,
        tied_head=bool(d["tie_word_embeddings"]),
        qk_norm=family == "qwen3",
        plus_one_norm=gemma, sandwich_norm=gemma,
        embed_scale=d["hidden_size"] ** 0.5 if gemma else 1.0,
        score_scale=(d["query_pre_attn_scalar"] if gemma else head_dim) ** -0.5,
        attn_softcap=d.get("attn_logit_softcapping") if gemma else None,
        final_softcap=d.get("final_logit_softcapping") if gemma else None,
        windows=windows,
    )
