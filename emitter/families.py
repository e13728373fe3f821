"""Every family as a delta of flags on the Llama baseline: the one place a family's facts live.

`defaults` mirror the defaults of the family's transformers config class (what HF
assumes when a config.json omits the field); `schedule` mirrors how that class fills
`layer_types` when the config.json has none; `fields` mirror the types that class
declares for its fields (config_input.py checks a config.json against them).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

Schedule = Callable[[dict, int], list[str] | None]  # None: the config must list layer_types

FULL, SLIDING = "full_attention", "sliding_attention"


def all_full(cfg: dict, n: int) -> list[str]:
    return [FULL] * n


def all_sliding(cfg: dict, n: int) -> list[str]:
    """Mistral, Mixtral, Qwen3-MoE: one sliding_window for every layer (none when the window is null)."""
    return [SLIDING] * n


def every_nth_full(default_period: int, period_field: str | None = None) -> Schedule:
    """Layer i is global when (i + 1) is a multiple of the period, sliding otherwise."""
    def schedule(cfg: dict, n: int) -> list[str]:
        period = cfg.get(period_field, default_period) if period_field else default_period
        return [FULL if (i + 1) % period == 0 else SLIDING for i in range(n)]
    return schedule


def qwen_schedule(cfg: dict, n: int) -> list[str]:
    """Qwen2/Qwen3: with use_sliding_window, layers from max_window_layers on slide."""
    if not cfg.get("use_sliding_window", False):
        return [FULL] * n
    first = cfg.get("max_window_layers", 28)
    return [SLIDING if i >= first else FULL for i in range(n)]


def smollm3_schedule(cfg: dict, n: int) -> list[str]:
    """SmolLM3: with use_sliding_window, the NoPE layers slide."""
    rope = smollm3_rope_layers(cfg, n)
    slide = cfg.get("use_sliding_window", False) and cfg.get("sliding_window") is not None
    return [SLIDING if slide and not rope[i] else FULL for i in range(n)]


def qwen2_moe_schedule(cfg: dict, n: int) -> list[str]:
    """Qwen2-MoE: with use_sliding_window, the even-numbered layers below max_window_layers slide."""
    if not cfg.get("use_sliding_window", False):
        return [FULL] * n
    first_full = cfg.get("max_window_layers", 28)
    return [SLIDING if (i + 1) % 2 and i < first_full else FULL for i in range(n)]


def exaone4_schedule(cfg: dict, n: int) -> list[str] | None:
    """EXAONE 4: every sliding_window_pattern-th layer global, the others sliding. None where transformers cannot
    derive layer_types (no window sets the pattern to 0; a pattern written as letters, "LLLG"): the config must
    list them then."""
    period = cfg.get("sliding_window_pattern", 4)
    if cfg.get("sliding_window", 4096) is None or isinstance(period, bool) or not isinstance(period, int) or period < 1:
        return None
    return [FULL if (i + 1) % period == 0 else SLIDING for i in range(n)]


def exaone4_rope_layers(cfg: dict, n: int) -> list[bool]:
    """EXAONE 4 rotates its sliding layers only (global NoPE), and every layer where there is no window."""
    if cfg.get("sliding_window", 4096) is None:
        return [True] * n
    types = cfg.get("layer_types") or exaone4_schedule(cfg, n) or [FULL] * n
    return [t == SLIDING for t in types]


def every_layer_routes(cfg: dict, n: int) -> list[bool]:
    return [True] * n


def sparse_step_routes(cfg: dict, n: int) -> list[bool]:
    """Qwen2/3-MoE: layer i routes when (i + 1) is a multiple of decoder_sparse_step and it is not
    in mlp_only_layers; the others keep a dense MLP of intermediate_size."""
    step, dense = cfg.get("decoder_sparse_step", 1), set(cfg.get("mlp_only_layers") or [])
    return [(i + 1) % step == 0 and i not in dense for i in range(n)]


def first_k_dense_routes(cfg: dict, n: int) -> list[bool]:
    """DeepSeek-V3: the first first_k_dense_replace layers keep a dense MLP, the others route."""
    dense = cfg.get("first_k_dense_replace")
    return [i >= (3 if dense is None else dense) for i in range(n)]


def smollm3_rope_layers(cfg: dict, n: int) -> list[bool]:
    if cfg.get("no_rope_layers") is not None:
        return [bool(x) for x in cfg["no_rope_layers"]]
    interval = cfg.get("no_rope_layer_interval", 4)
    return [(i + 1) % interval != 0 for i in range(n)]


def cohere2_rope_layers(cfg: dict, n: int) -> list[bool]:
    """Cohere2: only the sliding layers rotate (the global ones are NoPE); with no window, no layer does."""
    window = cfg["sliding_window"] if "sliding_window" in cfg else 4096
    types = cfg.get("layer_types") or every_nth_full(4, "sliding_window_pattern")(cfg, n)
    return [window is not None and t == SLIDING for t in types]


@dataclass(frozen=True)
class Family:
    embed_scale: bool = False            # embeddings × sqrt(hidden)
    norm_plus_one: bool = False          # RMSNorm scales by (1 + w)
    norm_placement: str = "pre"          # pre | sandwich (Gemma 2/3) | post (OLMo 2/3)
    qk_norm: str | None = None           # None | "head" (per head, over head_dim) | "projection"
    #   | "head_layernorm" (Cohere: LayerNorm per head, weights [heads, head_dim])
    #   | "per_head_layernorm" (StableLM: one LayerNorm module per head)
    qk_norm_field: str | None = None     # the config field that switches qk_norm on (None: always on); where the
    #                                      family has no qk_norm the emitter implements, on is refused (Phi's)
    qkv_bias: str | bool = "attention_bias"  # a config field name, or fixed
    o_bias: str | bool = "attention_bias"
    mlp_bias_field: str | None = "mlp_bias"  # gate/up/down biases when this field is true
    activation_field: str = "hidden_act"
    legacy_gelu_is_tanh: bool = False    # Gemma 1 configs say "gelu" and mean the tanh approximation
    score_scale_field: str | None = None  # scores × field^-0.5 instead of head_dim^-0.5
    attn_softcap_field: str | None = None
    final_softcap_field: str | None = None
    rope_per_layer_type: bool = False    # separate RoPE for sliding and full layers (Gemma 3, OLMo 3)
    local_theta_field: str | None = None  # legacy field of the sliding layers' base
    window_needs_flag: str | None = None  # HF drops sliding_window unless this flag is set
    schedule: Schedule = all_full
    rope_layers: Callable[[dict, int], list[bool]] | None = None  # NoPE: False where no rotation
    defaults: dict = field(default_factory=dict)
    # Mixture of experts: router softmax over all experts, top-k, optional renormalisation.
    experts_field: str | None = None     # the expert count's field; None: a dense family
    expert_size_field: str = "moe_intermediate_size"
    renormalize: str | bool = "norm_topk_prob"  # renormalise the top-k weights (a field, or fixed)
    shared_expert_field: str | None = None  # Qwen2-MoE: a sigmoid-gated dense expert of this size
    routes: Callable[[dict, int], list[bool]] = every_layer_routes  # which layers are MoE
    router_scoring: str = "softmax"      # "sigmoid": DeepSeek-V3's grouped router (n_group, topk_group,
    #                                      e_score_correction_bias, routed_scaling_factor)
    shared_experts_field: str | None = None  # DeepSeek-V3: this many ungated shared experts of the expert size
    mla: bool = False                    # DeepSeek-V3's multi-head latent attention (config.Mla)
    clip_qkv_field: str | None = None    # OLMoE: clamp q, k, v to ±clip_qkv
    aliases: dict = field(default_factory=dict)  # HF attribute -> the name this family's config.json uses
    # The transformers config class's own dataclass fields and their annotated types (beyond PreTrainedConfig's),
    # and the legacy keys, no fields, that its __post_init__ still reads (with the type it uses them as)
    fields: dict = field(default_factory=dict)
    legacy_fields: dict = field(default_factory=dict)
    heads_divide_hidden: bool = False    # the class's validate_architecture wants it even where head_dim is given
    # (regex, replacement) from the core's names (Llama's; an expert's `mlp.experts.{j}.gate_proj`) to the checkpoint's
    weight_names: tuple[tuple[str, str], ...] = ()
    # -- mechanisms beyond the Llama baseline (Config's flags of the same names) --
    norm_kind: str = "rms"               # rms | layernorm (nn.LayerNorm, with bias; Nemotron's LayerNorm1P with
    #                                      norm_plus_one) | layernorm_no_bias (Cohere's)
    parallel_block: str | tuple[str, str] | None = None  # "shared_norm" | "two_norms", or (the config flag, kind)
    partial_rotary_field: str | None = None  # the legacy key of the rotating fraction; None: partial rotary refused
    legacy_theta_field: str | None = None  # GPT-NeoX's rotary_emb_base, read before rope_theta
    rope_pairs_interleaved: bool | str = False  # rotate the pairs (x[2i], x[2i+1]) (GLM-4, Cohere; a field: DeepSeek)
    qkv_fused: str | None = None         # "blocks": qkv_proj [q; k; v] (Phi-3); "per_head": query_key_value
    #                                      [q_h | k_h | v_h] per head (GPT-NeoX)
    mlp_gated: bool = True               # False: down(act(up(x)))
    mlp_fused_gate_up: bool = False      # gate_up_proj [gate; up] (GLM-4, Phi-3)
    lm_head_bias: bool = False           # Phi's biased head
    # activations beyond silu and gelu_pytorch_tanh, transformers' ACT2FN name -> the core's: gelu_new is the tanh
    # approximation, gelu is erf's, relu2 is relu(x)^2
    activations: dict = field(default_factory=dict)
    unbounded: tuple[str, ...] = ()      # fields config_input's AT_LEAST does not hold this family to
    reads_kv_heads_and_head_dim: bool = True  # False: MHA over hidden // heads, those keys unread (GPT-NeoX)
    norm_eps_field: str = "rms_norm_eps"  # the norms' epsilon (Phi's and GPT-NeoX's layer_norm_eps, Nemotron's norm_eps)
    rope_types: dict | None = None       # the RoPE types the class accepts -> the one each means; None: ROPE_TYPES
    head_dim_from_hidden: bool = False   # the attention takes hidden // heads whatever head_dim says
    embedding_multiplier_field: str | None = None  # Granite's multipliers, Cohere's logit scale: config fields
    residual_multiplier_field: str | None = None
    attention_multiplier_field: str | None = None  # the score scale itself
    logits_divisor_field: str | None = None
    logits_multiplier_field: str | None = None
    experts_stacked: str | None = None   # the checkpoint stacks the experts' tensors: "out_in" (GraniteMoE's
    #                                      input/output_linear, [E, 2I, H], [E, H, I]), "in_out" (GPT-OSS: [E, H, 2I],
    #                                      [E, I, H])
    # -- GPT-OSS --
    attention_sinks: bool = False        # a learned logit per head in the attention softmax's denominator
    router_bias: bool = False            # the router is a biased linear
    expert_bias: bool = False            # the stacked experts add gate_up_proj_bias and down_proj_bias
    gate_up_interleaved: bool = False    # the experts' gate_up columns alternate gate, up (gate_up[..., ::2])
    swiglu_clamp_fields: tuple[str, str] | None = None  # (alpha, limit): the experts' clamped SwiGLU
    original_context_mirror: str | None = None  # a key repeating YaRN's original context (GPT-OSS's
    #                                             initial_context_length, from OpenAI's code): shrunk with it


_BASE = {"rms_norm_eps": 1e-6, "tie_word_embeddings": False, "rope_theta": 10000.0,
         "num_key_value_heads": None, "head_dim": None, "hidden_act": "silu"}


def _defaults(**overrides) -> dict:
    return {**_BASE, **overrides}


# The fields every family's transformers config class declares alike (JSON's view: RopeParameters is an object).
_DECODER_FIELDS = {
    "vocab_size": "int", "hidden_size": "int", "intermediate_size": "int", "num_hidden_layers": "int",
    "num_attention_heads": "int", "max_position_embeddings": "int", "initializer_range": "float",
    "rms_norm_eps": "float", "use_cache": "bool", "pad_token_id": "int | None", "bos_token_id": "int | None",
    "eos_token_id": "int | list[int] | None", "tie_word_embeddings": "bool", "rope_parameters": "dict | None",
}


def _fields(**declared) -> dict:
    return {**_DECODER_FIELDS, **declared}


_WINDOW_FIELDS = {"sliding_window": "int | None", "layer_types": "list[str] | None"}
_QWEN_WINDOW_FIELDS = {**_WINDOW_FIELDS, "use_sliding_window": "bool", "max_window_layers": "int"}
_GEMMA_FIELDS = _fields(num_key_value_heads="int", head_dim="int", hidden_activation="str", attention_bias="bool",
                        attention_dropout="int | float | None", query_pre_attn_scalar="int",
                        final_logit_softcapping="float | None", attn_logit_softcapping="float | None",
                        use_bidirectional_attention="bool | None", **_WINDOW_FIELDS)
_ROUTER_FIELDS = {"num_experts_per_tok": "int", "output_router_logits": "bool", "router_aux_loss_coef": "float"}
_QWEN2_FIELDS = _fields(num_key_value_heads="int | None", hidden_act="str", attention_dropout="float | int",
                        **_QWEN_WINDOW_FIELDS)
_OLMO_FIELDS = _fields(num_key_value_heads="int | None", hidden_act="str", attention_bias="bool",
                       attention_dropout="float | int")
_LAYERNORM_FIELDS = {k: v for k, v in _DECODER_FIELDS.items() if k != "rms_norm_eps"}
_LLAMA_STAND_IN_FIELDS = _fields(num_key_value_heads="int | None", hidden_act="str", attention_bias="bool",
                                 attention_dropout="int | float | None", mlp_bias="bool", head_dim="int | None")


FAMILIES: dict[str, Family] = {
    "llama": Family(heads_divide_hidden=True, defaults=_defaults(),
                    fields={**_LLAMA_STAND_IN_FIELDS, "pretraining_tp": "int | None"}),
    "qwen2": Family(qkv_bias=True, o_bias=False, mlp_bias_field=None,
                    window_needs_flag="use_sliding_window", schedule=qwen_schedule,
                    defaults=_defaults(num_key_value_heads=32, sliding_window=4096), fields=_QWEN2_FIELDS),
    "qwen3": Family(qk_norm="head", mlp_bias_field=None,
                    window_needs_flag="use_sliding_window", schedule=qwen_schedule,
                    defaults=_defaults(num_key_value_heads=32, head_dim=128, sliding_window=4096),
                    fields={**_QWEN2_FIELDS, "head_dim": "int", "attention_bias": "bool"}),
    "gemma": Family(embed_scale=True, norm_plus_one=True, mlp_bias_field=None,
                    legacy_gelu_is_tanh=True,
                    defaults=_defaults(num_key_value_heads=16, head_dim=256, tie_word_embeddings=True,
                                       hidden_act="gelu_pytorch_tanh"),
                    fields=_fields(num_key_value_heads="int", head_dim="int", hidden_act="str", attention_bias="bool",
                                   attention_dropout="float | int", use_bidirectional_attention="bool | None")),
    "gemma2": Family(heads_divide_hidden=True, embed_scale=True, norm_plus_one=True, norm_placement="sandwich",
                     mlp_bias_field=None, activation_field="hidden_activation",
                     score_scale_field="query_pre_attn_scalar", attn_softcap_field="attn_logit_softcapping",
                     final_softcap_field="final_logit_softcapping", schedule=every_nth_full(2),
                     defaults=_defaults(num_key_value_heads=4, head_dim=256, tie_word_embeddings=True,
                                        hidden_activation="gelu_pytorch_tanh", query_pre_attn_scalar=256,
                                        sliding_window=4096, attn_logit_softcapping=50.0,
                                        final_logit_softcapping=30.0),
                     fields=_GEMMA_FIELDS),
    # Gemma 3 keeps attn_logit_softcapping in its config but its attention never applies it.
    "gemma3_text": Family(heads_divide_hidden=True, embed_scale=True, norm_plus_one=True,
                          norm_placement="sandwich", qk_norm="head", mlp_bias_field=None,
                          activation_field="hidden_activation", score_scale_field="query_pre_attn_scalar",
                          final_softcap_field="final_logit_softcapping", rope_per_layer_type=True,
                          local_theta_field="rope_local_base_freq",
                          schedule=every_nth_full(6, "sliding_window_pattern"),
                          defaults=_defaults(num_key_value_heads=4, head_dim=256, tie_word_embeddings=True,
                                             hidden_activation="gelu_pytorch_tanh", query_pre_attn_scalar=256,
                                             sliding_window=4096, final_logit_softcapping=None,
                                             rope_theta=1_000_000.0, rope_local_base_freq=10_000.0),
                          fields=_GEMMA_FIELDS,
                          legacy_fields={"sliding_window_pattern": "int", "rope_local_base_freq": "int | float"}),
    "smollm3": Family(schedule=smollm3_schedule, rope_layers=smollm3_rope_layers,
                      defaults=_defaults(num_key_value_heads=4, rope_theta=2_000_000.0,
                                         tie_word_embeddings=True, sliding_window=None),
                      fields=_fields(num_key_value_heads="int | None", hidden_act="str", use_sliding_window="bool",
                                     no_rope_layers="list[int] | None", no_rope_layer_interval="int",
                                     attention_bias="bool", attention_dropout="float | int", mlp_bias="bool",
                                     **_WINDOW_FIELDS)),
    "olmo2": Family(norm_placement="post", qk_norm="projection", mlp_bias_field=None,
                    defaults=_defaults(rms_norm_eps=1e-5), fields=_OLMO_FIELDS),
    "olmo3": Family(norm_placement="post", qk_norm="projection", mlp_bias_field=None,
                    rope_per_layer_type=True, schedule=every_nth_full(4),
                    defaults=_defaults(rms_norm_eps=1e-5, rope_theta=500_000.0, sliding_window=4096),
                    fields={**_OLMO_FIELDS, **_WINDOW_FIELDS}),
    "mixtral": Family(experts_field="num_local_experts", aliases={"num_local_experts": "num_experts"},
                      expert_size_field="intermediate_size", renormalize=True, mlp_bias_field=None,
                      schedule=all_sliding,
                      # the checkpoint's names (transformers' conversion_mapping["mixtral"] reverted)
                      weight_names=((r"\.mlp\.", ".block_sparse_moe."),
                                    (r"\.experts\.(\d+)\.gate_proj\.", r".experts.\1.w1."),
                                    (r"\.experts\.(\d+)\.down_proj\.", r".experts.\1.w2."),
                                    (r"\.experts\.(\d+)\.up_proj\.", r".experts.\1.w3.")),
                      defaults=_defaults(num_key_value_heads=8, rms_norm_eps=1e-5, rope_theta=1_000_000.0,
                                         sliding_window=None, num_local_experts=8, num_experts_per_tok=2),
                      fields=_fields(num_key_value_heads="int", head_dim="int | None", hidden_act="str",
                                     sliding_window="int | None", attention_dropout="float | int",
                                     num_local_experts="int", router_jitter_noise="float", **_ROUTER_FIELDS)),
    "qwen2_moe": Family(experts_field="num_experts", qkv_bias="qkv_bias", o_bias=False, mlp_bias_field=None,
                        shared_expert_field="shared_expert_intermediate_size", routes=sparse_step_routes,
                        window_needs_flag="use_sliding_window", schedule=qwen2_moe_schedule,
                        defaults=_defaults(num_key_value_heads=16, qkv_bias=True, sliding_window=4096,
                                           num_experts=60, num_experts_per_tok=4, moe_intermediate_size=1408,
                                           shared_expert_intermediate_size=5632, norm_topk_prob=False),
                        fields=_fields(num_key_value_heads="int | None", hidden_act="str",
                                       attention_dropout="float | int", decoder_sparse_step="int", moe_intermediate_size="int",
                                       shared_expert_intermediate_size="int", num_experts="int", norm_topk_prob="bool",
                                       mlp_only_layers="list[int] | None", qkv_bias="bool", **_QWEN_WINDOW_FIELDS,
                                       **_ROUTER_FIELDS)),
    "qwen3_moe": Family(experts_field="num_local_experts", aliases={"num_local_experts": "num_experts"},
                        qk_norm="head", mlp_bias_field=None, routes=sparse_step_routes,
                        window_needs_flag="use_sliding_window", schedule=all_sliding,
                        defaults=_defaults(num_key_value_heads=4, sliding_window=4096, num_local_experts=128,
                                           num_experts_per_tok=8, moe_intermediate_size=768, norm_topk_prob=False),
                        fields=_fields(num_key_value_heads="int", hidden_act="str", attention_bias="bool",
                                       use_sliding_window="bool", sliding_window="int | None",
                                       attention_dropout="float | int", decoder_sparse_step="int",
                                       moe_intermediate_size="int", num_experts="int", norm_topk_prob="bool",
                                       mlp_only_layers="list[int] | None", **_ROUTER_FIELDS)),
    "olmoe": Family(experts_field="num_experts", aliases={"num_experts": "num_local_experts"},
                    expert_size_field="intermediate_size", qk_norm="projection",
                    mlp_bias_field=None, clip_qkv_field="clip_qkv",
                    defaults=_defaults(rms_norm_eps=1e-5, num_experts=64, num_experts_per_tok=8,
                                       norm_topk_prob=False),
                    fields={**_OLMO_FIELDS, "clip_qkv": "float | None", "num_experts": "int", "norm_topk_prob": "bool",
                            **_ROUTER_FIELDS}),
    # -- Seed-OSS, Mistral, and three families transformers serves through another class (oracles/hf.py) --
    "seed_oss": Family(qkv_bias="attention_bias", o_bias="attention_out_bias",
                       defaults=_defaults(num_key_value_heads=8, head_dim=128, attention_bias=True,
                                          attention_out_bias=False),
                       fields=_fields(num_key_value_heads="int | None", hidden_act="str", pretraining_tp="int",
                                      attention_bias="bool", attention_out_bias="bool", attention_dropout="float | int",
                                      residual_dropout="float | int", mlp_bias="bool", head_dim="int | None")),
    "mistral": Family(qkv_bias=False, o_bias=False, mlp_bias_field=None, schedule=all_sliding,
                      defaults=_defaults(num_key_value_heads=8, sliding_window=4096),
                      fields=_fields(num_key_value_heads="int", head_dim="int | None", hidden_act="str",
                                     sliding_window="int | None", attention_dropout="float | int")),
    # MiMo is Qwen2 plus multi-token-prediction layers (model.mtp_layers.*) that the causal LM never runs.
    "mimo": Family(qkv_bias=True, o_bias=False, mlp_bias_field=None,
                   window_needs_flag="use_sliding_window", schedule=qwen_schedule,
                   defaults=_defaults(num_key_value_heads=32, sliding_window=4096), fields=_QWEN2_FIELDS),
    # InternLM3: q/k/v biases follow config.json's qkv_bias, o_proj and the MLP its bias; transformers reads
    # them as attention_bias and mlp_bias and requires them equal, so its Llama forward agrees.
    "internlm3": Family(heads_divide_hidden=True,
                        qkv_bias="attention_bias", o_bias="mlp_bias", mlp_bias_field="mlp_bias",
                        aliases={"attention_bias": "qkv_bias", "mlp_bias": "bias"},
                        defaults=_defaults(num_key_value_heads=2, head_dim=128, rms_norm_eps=1e-5,
                                           max_position_embeddings=32768),
                        fields={**_LLAMA_STAND_IN_FIELDS, "attention_dropout": "float | int"}),
    # EXAONE 3.x: Llama's forward under GPT-2-style names (transformers' conversion_mapping["exaone"]).
    "exaone": Family(heads_divide_hidden=True,
                     defaults=_defaults(num_key_value_heads=8, rms_norm_eps=1e-5, rope_theta=500_000.0),
                     fields=_LLAMA_STAND_IN_FIELDS,
                     aliases={"num_hidden_layers": "num_layers", "rms_norm_eps": "layer_norm_epsilon",
                              "hidden_act": "activation_function"},
                     weight_names=((r"^model\.embed_tokens\.", "transformer.wte."),
                                   (r"^model\.norm\.", "transformer.ln_f."),
                                   (r"^model\.layers\.", "transformer.h."),
                                   (r"\.self_attn\.o_proj\.", ".attn.attention.out_proj."),
                                   (r"\.self_attn\.", ".attn.attention."),
                                   (r"\.input_layernorm\.", ".ln_1."),
                                   (r"\.post_attention_layernorm\.", ".ln_2."),
                                   (r"\.mlp\.gate_proj\.", ".mlp.c_fc_0."),
                                   (r"\.mlp\.up_proj\.", ".mlp.c_fc_1."),
                                   (r"\.mlp\.down_proj\.", ".mlp.c_proj."))),
    # -- Phi, GPT-NeoX, Nemotron, EXAONE 4, GLM-4: new mechanisms as flags (config.py, decoder.py) --
    # Phi: one LayerNorm (with bias) feeds attention and MLP in parallel; biased q/k/v/dense, fc1/fc2 and head;
    # partial rotary (partial_rotary_factor, 0.5 by default); tanh-GELU (gelu_new).
    "phi": Family(norm_kind="layernorm", parallel_block="shared_norm", qkv_bias=True, o_bias=True,
                  mlp_bias_field=True, mlp_gated=False, lm_head_bias=True, partial_rotary_field="partial_rotary_factor",
                  activations={"gelu_new": "gelu_tanh"},
                  qk_norm_field="qk_layernorm", norm_eps_field="layer_norm_eps",
                  defaults=_defaults(layer_norm_eps=1e-5, hidden_act="gelu_new", partial_rotary_factor=0.5),
                  fields={**_LAYERNORM_FIELDS, "num_key_value_heads": "int | None", "resid_pdrop": "float | int",
                          "embd_pdrop": "float | int", "attention_dropout": "float | int | None", "hidden_act": "str",
                          "layer_norm_eps": "float", "qk_layernorm": "bool"},
                  weight_names=((r"^model\.norm\.", "model.final_layernorm."),
                                (r"\.self_attn\.o_proj\.", ".self_attn.dense."),
                                (r"\.mlp\.up_proj\.", ".mlp.fc1."), (r"\.mlp\.down_proj\.", ".mlp.fc2."))),
    # GPT-NeoX (Pythia): query_key_value fused per head, parallel residual with two LayerNorms where
    # use_parallel_residual (sequential pre-norm otherwise), rotary_pct of each head (0.25), exact-erf GELU,
    # checkpoint names under gpt_neox. with the head as embed_out (transformers renames it lm_head on load).
    "gpt_neox": Family(norm_kind="layernorm", parallel_block=("use_parallel_residual", "two_norms"),
                       qkv_fused="per_head", mlp_bias_field=True, mlp_gated=False, heads_divide_hidden=True,
                       reads_kv_heads_and_head_dim=False,
                       activations={"gelu": "gelu_erf", "gelu_new": "gelu_tanh"},
                       partial_rotary_field="rotary_pct", legacy_theta_field="rotary_emb_base",
                       norm_eps_field="layer_norm_eps",
                       defaults=_defaults(layer_norm_eps=1e-5, hidden_act="gelu", attention_bias=True,
                                          use_parallel_residual=True, rotary_pct=0.25),
                       fields={**_LAYERNORM_FIELDS, "hidden_act": "str", "attention_dropout": "float | int",
                               "hidden_dropout": "float | int", "classifier_dropout": "float | int",
                               "layer_norm_eps": "float", "use_parallel_residual": "bool", "attention_bias": "bool",
                               "is_decoder": "bool"},
                       legacy_fields={"rotary_pct": "int | float", "rotary_emb_base": "int | float"},
                       weight_names=((r"^lm_head\.", "embed_out."),
                                     (r"^model\.embed_tokens\.", "gpt_neox.embed_in."),
                                     (r"^model\.norm\.", "gpt_neox.final_layer_norm."),
                                     (r"^model\.layers\.", "gpt_neox.layers."),
                                     (r"\.self_attn\.qkv_proj\.", ".attention.query_key_value."),
                                     (r"\.self_attn\.o_proj\.", ".attention.dense."),
                                     (r"\.mlp\.up_proj\.", ".mlp.dense_h_to_4h."),
                                     (r"\.mlp\.down_proj\.", ".mlp.dense_4h_to_h."))),
    # Nemotron: LayerNorm1P (LayerNorm scaling by 1 + w, with bias), squared-ReLU MLP without gate, partial rotary.
    "nemotron": Family(norm_kind="layernorm", norm_plus_one=True, mlp_gated=False, activations={"relu2": "relu2"},
                       partial_rotary_field="partial_rotary_factor", norm_eps_field="norm_eps",
                       defaults=_defaults(norm_eps=1e-5, hidden_act="relu2", partial_rotary_factor=0.5),
                       fields={**_LAYERNORM_FIELDS, "head_dim": "int | None", "num_key_value_heads": "int | None",
                               "hidden_act": "str", "norm_eps": "float", "attention_bias": "bool",
                               "attention_dropout": "float | int", "mlp_bias": "bool"}),
    # EXAONE 4: OLMo 2's post-norm with Qwen 3's per-head q/k norm; 3 sliding : 1 global layers, the global ones
    # without RoPE (NoPE), every layer rotating where there is no window.
    "exaone4": Family(norm_placement="post", qk_norm="head", qkv_bias=False, o_bias=False, mlp_bias_field=None,
                      schedule=exaone4_schedule, rope_layers=exaone4_rope_layers,
                      unbounded=("sliding_window_pattern",),  # transformers itself writes 0 where there is no window
                      defaults=_defaults(num_key_value_heads=32, rms_norm_eps=1e-5, sliding_window=4096,
                                         sliding_window_pattern=4),
                      fields=_fields(num_key_value_heads="int", hidden_act="str", attention_dropout="float | int",
                                     sliding_window_pattern="str | int | None", **_WINDOW_FIELDS)),
    # GLM-4: Gemma 2's sandwich of four norms under GLM's names, fused gate_up_proj, q/k/v biases
    # (attention_bias) without an o_proj bias, half of each head rotating in interleaved pairs.
    "glm4": Family(norm_placement="sandwich", qkv_bias="attention_bias", o_bias=False, mlp_bias_field=None,
                   mlp_fused_gate_up=True, rope_pairs_interleaved=True, partial_rotary_field="partial_rotary_factor",
                   defaults=_defaults(num_key_value_heads=2, head_dim=128, rms_norm_eps=1.5625e-07,
                                      attention_bias=True, partial_rotary_factor=0.5),
                   fields=_fields(num_key_value_heads="int", head_dim="int", hidden_act="str",
                                  attention_dropout="float | int", attention_bias="bool"),
                   # the core's sandwich names -> GLM's: its post_attention_layernorm is the MLP's pre-norm
                   weight_names=((r"\.post_attention_layernorm\.", ".post_self_attn_layernorm."),
                                 (r"\.pre_feedforward_layernorm\.", ".post_attention_layernorm."),
                                 (r"\.post_feedforward_layernorm\.", ".post_mlp_layernorm."))),
    # -- the serving set: Granite, StarCoder2, StableLM, Cohere, Cohere2, Phi-3 --
    "granite": Family(embedding_multiplier_field="embedding_multiplier", residual_multiplier_field="residual_multiplier",
                      attention_multiplier_field="attention_multiplier", logits_divisor_field="logits_scaling",
                      defaults=_defaults(embedding_multiplier=1.0, residual_multiplier=1.0, attention_multiplier=1.0,
                                         logits_scaling=1.0),
                      fields=_fields(num_key_value_heads="int | None", hidden_act="str", attention_bias="bool",
                                     attention_dropout="float | int", mlp_bias="bool", embedding_multiplier="float | int",
                                     logits_scaling="float | int", residual_multiplier="float | int",
                                     attention_multiplier="float | int")),
    "starcoder2": Family(norm_kind="layernorm", mlp_gated=False, qkv_bias="use_bias", o_bias="use_bias",
                         mlp_bias_field="use_bias", schedule=all_sliding, norm_eps_field="norm_epsilon",
                         weight_names=((r"\.mlp\.up_proj\.", ".mlp.c_fc."), (r"\.mlp\.down_proj\.", ".mlp.c_proj.")),
                         defaults=_defaults(num_key_value_heads=2, hidden_act="gelu_pytorch_tanh", norm_epsilon=1e-5,
                                            tie_word_embeddings=True, sliding_window=None, use_bias=True),
                         fields={**_LAYERNORM_FIELDS, "norm_epsilon": "float", "num_key_value_heads": "int",
                                 "hidden_act": "str", "sliding_window": "int | None",
                                 "attention_dropout": "float | int", "residual_dropout": "float | int",
                                 "embedding_dropout": "float | int", "use_bias": "bool"}),
    "stablelm": Family(heads_divide_hidden=True, head_dim_from_hidden=True, norm_kind="layernorm",
                       parallel_block=("use_parallel_residual", "shared_norm"), qkv_bias="use_qkv_bias", o_bias=False,
                       mlp_bias_field=None, partial_rotary_field="partial_rotary_factor", qk_norm="per_head_layernorm",
                       qk_norm_field="qk_layernorm", norm_eps_field="layer_norm_eps",
                       defaults=_defaults(num_key_value_heads=32, layer_norm_eps=1e-5, partial_rotary_factor=0.25),
                       fields={**_LAYERNORM_FIELDS, "layer_norm_eps": "float", "num_key_value_heads": "int",
                               "hidden_act": "str", "use_qkv_bias": "bool", "qk_layernorm": "bool",
                               "use_parallel_residual": "bool", "hidden_dropout": "float | int",
                               "attention_dropout": "float | int"}),
    "cohere": Family(norm_kind="layernorm_no_bias", parallel_block="shared_norm", mlp_bias_field=None,
                     rope_pairs_interleaved=True, logits_multiplier_field="logit_scale", qk_norm="head_layernorm",
                     qk_norm_field="use_qk_norm", norm_eps_field="layer_norm_eps",
                     defaults=_defaults(layer_norm_eps=1e-5, rope_theta=500_000.0, tie_word_embeddings=True,
                                        logit_scale=0.0625),
                     fields={**_LAYERNORM_FIELDS, "layer_norm_eps": "float | None", "logit_scale": "float | None",
                             "num_key_value_heads": "int | None", "hidden_act": "str", "attention_bias": "bool",
                             "attention_dropout": "float | int | None", "use_qk_norm": "bool | None"}),
    "cohere2": Family(head_dim_from_hidden=True, norm_kind="layernorm_no_bias", parallel_block="shared_norm",
                      mlp_bias_field=None, rope_pairs_interleaved=True, logits_multiplier_field="logit_scale",
                      schedule=every_nth_full(4, "sliding_window_pattern"), rope_layers=cohere2_rope_layers,
                      norm_eps_field="layer_norm_eps",
                      defaults=_defaults(layer_norm_eps=1e-5, tie_word_embeddings=True, logit_scale=0.0625,
                                         sliding_window=4096),
                      fields={**_LAYERNORM_FIELDS, "layer_norm_eps": "float", "logit_scale": "float",
                              "num_key_value_heads": "int | None", "hidden_act": "str", "attention_bias": "bool",
                              "attention_dropout": "float | int", **_WINDOW_FIELDS},
                      legacy_fields={"sliding_window_pattern": "int"}),
    # Phi-3: the checkpoint stores qkv_proj and gate_up_proj fused; the graph takes them so and slices them.
    "phi3": Family(qkv_fused="blocks", mlp_fused_gate_up=True, qkv_bias=False, o_bias=False, mlp_bias_field=None,
                   partial_rotary_field="partial_rotary_factor", schedule=all_sliding,
                   rope_types={"default": "default", "longrope": "longrope", "su": "longrope", "yarn": "longrope"},
                   defaults=_defaults(rms_norm_eps=1e-5, sliding_window=None, max_position_embeddings=4096,
                                      original_max_position_embeddings=4096),
                   fields=_fields(num_key_value_heads="int | None", resid_pdrop="float | int", embd_pdrop="float | int",
                                  attention_dropout="float | int", hidden_act="str",
                                  original_max_position_embeddings="int", sliding_window="int | None")),
    # GraniteMoE: Granite's multipliers around Mixtral's routing (top-k logits softmaxed: renormalised), its
    # experts stacked in the checkpoint as input_linear [E, 2I, H] (gate rows first) and output_linear [E, H, I].
    "granitemoe": Family(experts_field="num_local_experts", expert_size_field="intermediate_size", renormalize=True,
                         experts_stacked="out_in", mlp_bias_field=None,
                         embedding_multiplier_field="embedding_multiplier",
                         residual_multiplier_field="residual_multiplier",
                         attention_multiplier_field="attention_multiplier", logits_divisor_field="logits_scaling",
                         weight_names=((r"\.mlp\.gate\.weight$", ".block_sparse_moe.router.layer.weight"),
                                       (r"\.mlp\.experts\.gate_up_proj$", ".block_sparse_moe.input_linear.weight"),
                                       (r"\.mlp\.experts\.down_proj$", ".block_sparse_moe.output_linear.weight")),
                         defaults=_defaults(embedding_multiplier=1.0, residual_multiplier=1.0,
                                            attention_multiplier=1.0, logits_scaling=1.0, num_local_experts=8,
                                            num_experts_per_tok=2),
                         fields=_fields(num_key_value_heads="int | None", hidden_act="str", attention_bias="bool",
                                        attention_dropout="float | int | None",
                                        embedding_multiplier="float | int | None", logits_scaling="float | int | None",
                                        residual_multiplier="float | int | None",
                                        attention_multiplier="float | int | None", num_local_experts="int | None",
                                        num_experts_per_tok="int | None", output_router_logits="bool | None",
                                        router_aux_loss_coef="float | None")),
    # GPT-OSS: attention sinks, sliding and full layers alternating, q/k/v/o biases; a biased router whose top-k
    # logits are softmaxed (the renormalised top-k) over experts stacked as the checkpoint holds them ([E, H, 2I]
    # with gate and up in alternate columns, biased) through a clamped SwiGLU; YaRN by default.
    "gpt_oss": Family(experts_field="num_local_experts", aliases={"num_local_experts": "num_experts"},
                      expert_size_field="intermediate_size", renormalize=True, mlp_bias_field=None,
                      schedule=every_nth_full(2), attention_sinks=True, router_bias=True, expert_bias=True,
                      experts_stacked="in_out", gate_up_interleaved=True,
                      swiglu_clamp_fields=("swiglu_alpha", "swiglu_limit"),
                      original_context_mirror="initial_context_length",
                      weight_names=((r"\.mlp\.gate\.", ".mlp.router."),),
                      defaults=_defaults(num_key_value_heads=8, head_dim=64, rms_norm_eps=1e-5, rope_theta=150000.0,
                                         sliding_window=128, attention_bias=True, num_local_experts=128,
                                         num_experts_per_tok=4, swiglu_alpha=1.702, swiglu_limit=7.0,
                                         rope_parameters={"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0,
                                                          "beta_slow": 1.0, "truncate": False,
                                                          "original_max_position_embeddings": 4096}),
                      fields=_fields(num_local_experts="int", head_dim="int", num_key_value_heads="int",
                                     hidden_act="str", attention_dropout="float | int", swiglu_alpha="float",
                                     swiglu_limit="float", attention_bias="bool", **_WINDOW_FIELDS, **_ROUTER_FIELDS)),
    # DeepSeek-V3: latent attention (config.Mla), decoupled RoPE on interleaved pairs (rope_interleave), dense MLPs
    # on the first first_k_dense_replace layers, then experts behind a sigmoid router limited to topk_group groups,
    # and ungated shared experts (mlp.shared_experts).
    "deepseek_v3": Family(mla=True, rope_pairs_interleaved="rope_interleave", mlp_bias_field=None,
                          experts_field="n_routed_experts", routes=first_k_dense_routes, router_scoring="sigmoid",
                          shared_experts_field="n_shared_experts",
                          weight_names=((r"\.mlp\.shared_expert\.", ".mlp.shared_experts."),),
                          defaults=_defaults(num_key_value_heads=128, n_routed_experts=256, num_experts_per_tok=8,
                                             moe_intermediate_size=2048, n_shared_experts=1, n_group=8, topk_group=4,
                                             routed_scaling_factor=2.5, norm_topk_prob=True, first_k_dense_replace=3,
                                             kv_lora_rank=512, q_lora_rank=1536, qk_rope_head_dim=64, v_head_dim=128,
                                             qk_nope_head_dim=128, rope_interleave=True, max_position_embeddings=4096),
                          fields=_fields(moe_intermediate_size="int", num_key_value_heads="int | None",
                                         n_shared_experts="int", n_routed_experts="int", output_router_logits="bool",
                                         routed_scaling_factor="float", kv_lora_rank="int", q_lora_rank="int | None",
                                         qk_rope_head_dim="int", v_head_dim="int | None", qk_nope_head_dim="int",
                                         n_group="int | None", topk_group="int | None",
                                         num_experts_per_tok="int | None", first_k_dense_replace="int | None",
                                         norm_topk_prob="bool | None", hidden_act="str", pretraining_tp="int | None",
                                         rope_interleave="bool | None", attention_bias="bool",
                                         attention_dropout="float | int | None", num_mtp_layers="int")),
}
