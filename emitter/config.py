"""config.json (either dialect) -> one flat set of orthogonal flags for the decoder core."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import exact
from .config_input import ConfigError, check_input, field_error, printable, read_json_object
from .families import FULL, SLIDING, Family

ACTIVATIONS = {"silu": "silu", "gelu_pytorch_tanh": "gelu_tanh"}
ROPE_TYPES = ("default", "linear", "llama3", "yarn", "dynamic")  # every family's; some add theirs (Family.rope_types)
REQUIRED = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")


@dataclass(frozen=True)
class Rope:
    theta: float
    kind: str = "default"            # default | linear | llama3 | yarn | dynamic
    factor: float = 1.0              # linear, llama3, yarn, dynamic
    low_freq_factor: float = 1.0     # llama3
    high_freq_factor: float = 4.0    # llama3
    original_max_position: int = 8192  # llama3, yarn; dynamic: max_position_embeddings, where its rescaling starts
    attention_factor: float = 1.0    # yarn: HF multiplies cos and sin by it
    beta_fast: float = 32.0          # yarn
    beta_slow: float = 1.0           # yarn
    truncate: bool = True            # yarn: integer correction range
    short_factor: tuple[float, ...] = ()  # longrope: the per-frequency divisors inside the original context
    long_factor: tuple[float, ...] = ()   # longrope: those past it (the graph never reaches them: check_positions)


@dataclass(frozen=True)
class Moe:
    """A routed MLP: softmax over all experts, the top_k kept (optionally renormalised), each a
    SwiGLU of expert_size; Qwen2-MoE adds a sigmoid-gated shared expert to every token."""
    experts: int
    top_k: int
    expert_size: int
    renormalize: bool
    shared_expert_size: int | None
    routed_layers: tuple[bool, ...]  # False: that layer keeps the dense MLP of intermediate_size
    stacked: str | None = None  # the checkpoint stacks every expert: "out_in" (GraniteMoE: gate_up [E, 2I, H], down
    #                             [E, H, I]) or "in_out" (GPT-OSS: [E, H, 2I], [E, I, H]); None: one tensor per expert
    router_bias: bool = False           # GPT-OSS: the router adds its bias to the logits
    expert_bias: bool = False           # GPT-OSS: each expert adds gate_up_proj_bias and down_proj_bias
    gate_up_interleaved: bool = False   # GPT-OSS: gate_up's columns alternate gate, up; else gate half first
    swiglu_clamp: tuple[float, float] | None = None  # GPT-OSS (alpha, limit): (clamp(up) + 1) · g σ(alpha g),
    #                                                  g = min(gate, limit), up clamped to ±limit
    # DeepSeek-V3's router: sigmoid scores; the top-k chosen by score + e_score_correction_bias inside the
    # topk_groups groups (of `groups`) whose two best biased scores sum highest; weighted by the unbiased scores
    # (renormalised where `renormalize`), times routed_scaling
    scoring: str = "softmax"          # softmax | sigmoid
    groups: int = 1
    topk_groups: int = 1
    correction_bias: bool = False
    routed_scaling: float = 1.0
    shared_expert_gated: bool = True  # Qwen2-MoE's sigmoid gate; DeepSeek-V3's shared_experts have none


@dataclass(frozen=True)
class Mla:
    """DeepSeek-V3's multi-head latent attention: queries through a low-rank q_a_proj -> RMSNorm -> q_b_proj (or
    one q_proj where q_lora_rank is null); keys and values from one compressed latent (kv_a_proj_with_mqa's first
    kv_lora_rank outputs, RMSNorm'd) expanded per head by kv_b_proj, plus one rope key (its last qk_rope_head_dim
    outputs) shared by every head. The cache holds the normed latent and the rotated rope key."""
    q_lora_rank: int | None
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int


@dataclass(frozen=True)
class Config:
    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    tie_word_embeddings: bool
    embed_scale: bool
    norm_plus_one: bool
    norm_placement: str
    qk_norm: str | None
    qkv_bias: bool
    o_bias: bool
    mlp_activation: str
    score_scale: float
    attn_softcap: float | None
    final_softcap: float | None
    sliding_window: int | None
    layer_types: tuple[str, ...]
    rope_layers: tuple[bool, ...]
    rope_full: Rope
    rope_sliding: Rope
    moe: Moe | None = None
    mla: Mla | None = None           # DeepSeek-V3: multi-head latent attention (head_dim is its qk_rope_head_dim)
    clip_qkv: float | None = None    # OLMoE: q, k, v clamped to [-clip_qkv, clip_qkv]
    mlp_bias: bool = False
    # -- mechanisms beyond the Llama baseline (each default is the baseline) --
    norm_kind: str = "rms"             # the residual stream's norm: "rms"; "layernorm" (mean removed, w, + bias:
    #                                    nn.LayerNorm; Nemotron's LayerNorm1P with norm_plus_one); "layernorm_no_bias"
    #                                    (Cohere's)
    parallel_block: str | None = None  # attention and MLP both read the layer input: "shared_norm" (one norm feeds
    #                                    both: Phi, Cohere, StableLM), "two_norms" (GPT-NeoX's use_parallel_residual)
    rotary_dim: int | None = None      # partial rotary: the first rotary_dim of head_dim rotate (None: all)
    rope_pairs_interleaved: bool = False  # GLM-4, Cohere: rotate the pairs (x[2i], x[2i+1]), not the two halves
    qkv_fused: str | None = None       # one fused q/k/v tensor split in the graph: "blocks" (Phi-3's qkv_proj
    #                                    [q; k; v]) or "per_head" (GPT-NeoX's query_key_value, [q_h | k_h | v_h])
    mlp_gated: bool = True             # False: down(act(up(x))), no gate (Phi, GPT-NeoX, Nemotron, StarCoder2)
    mlp_fused_gate_up: bool = False    # GLM-4, Phi-3: one gate_up_proj tensor, gate rows first
    lm_head_bias: bool = False         # Phi: the head adds lm_head.bias
    weight_names: tuple[tuple[str, str], ...] = ()  # the family's checkpoint names (families.py)
    embedding_multiplier: float | None = None  # Granite: embeddings x m
    residual_multiplier: float | None = None   # Granite: x + f(x) * m around attention and MLP
    attention_multiplier: float | None = None  # Granite: the score scale itself, in place of score_scale
    logits_divisor: float | None = None        # Granite: logits / logits_scaling
    logits_multiplier: float | None = None     # Cohere: logits * logit_scale
    attention_sinks: bool = False              # GPT-OSS: each head's learned logit joins the softmax's denominator
    source: str = field(default="config.json", compare=False)

    @classmethod
    def from_json(cls, path: str | Path) -> "Config":
        return cls.from_dict(read_json_object(Path(path), ConfigError), source=str(path))

    @classmethod
    def from_dict(cls, raw: dict, source: str = "config.json") -> "Config":
        return _Parser(raw, source).parse()

    @property
    def rotary_width(self) -> int:
        """How many of each head's dimensions rotate (the first ones)."""
        return self.head_dim if self.rotary_dim is None else self.rotary_dim

    @property
    def attention_scale(self) -> float:
        """What the scores are multiplied by: Granite's attention_multiplier where given, else score_scale."""
        return self.score_scale if self.attention_multiplier is None else self.attention_multiplier

    def rope_for(self, layer: int) -> Rope | None:
        if not self.rope_layers[layer]:
            return None
        return self.rope_sliding if self.layer_types[layer] == SLIDING else self.rope_full

    def window_for(self, layer: int) -> int | None:
        return self.sliding_window if self.layer_types[layer] == SLIDING else None

    def checkpoint_name(self, name: str) -> str:
        """The checkpoint's name for a tensor the core calls by its Llama name."""
        for pattern, replacement in self.weight_names:
            name = re.sub(pattern, replacement, name)
        return name

    def check_positions(self, positions: int, graph: str) -> None:
        """Refuse a graph whose RoPE table would reach past where dynamic RoPE starts rescaling."""
        for rope in {self.rope_for(i) for i in range(self.num_layers)} - {None}:
            if rope.kind == "longrope" and positions > rope.original_max_position:
                raise field_error(
                    self.source, "original_max_position_embeddings", rope.original_max_position, "LongRoPE "
                    "switches to its long factors for longer sequences, which this emitter does not implement, and "
                    f"the {graph} graph holds {positions} positions")
            if rope.kind == "dynamic" and positions > rope.original_max_position:
                raise field_error(
                    self.source, "max_position_embeddings", rope.original_max_position, "dynamic RoPE recomputes its "
                    f"frequencies for longer sequences, which this emitter does not implement, and the {graph} graph "
                    f"holds {positions} positions")


class _Parser:
    def __init__(self, raw: dict, source: str):
        self.raw, self.source = raw, source

    def fail(self, field: str, value, why: str):
        raise field_error(self.source, self.written_name(field), value, why)

    def written_name(self, name: str) -> str:
        """The name config.json uses for an HF attribute (EXAONE's num_layers for num_hidden_layers)."""
        family = getattr(self, "family", None)
        alias = family.aliases.get(name) if family else None
        return alias if alias and (alias in self.raw or name not in self.raw) else name

    def get(self, name: str, default=None):
        value = self.raw.get(name)
        if value is None:
            value = self.family.defaults.get(name, default)
        return value

    def present(self, name: str, fallback):
        """The field's value, or fallback where it is absent or null; 0 is a value (HF keeps it), not absent."""
        value = self.get(name)
        return fallback if value is None else value

    def int_field(self, name: str, value=None, minimum: int = 1) -> int:
        value = self.get(name) if value is None else value
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.fail(name, value, f"must be an integer >= {minimum}")
        return value

    def number(self, name: str) -> float | None:
        """A positive number (check_input has checked the type transformers declares), or None where absent."""
        value = self.get(name)
        if value is None:
            return None
        if value <= 0:
            self.fail(name, value, "must be a positive number")
        return float(value)

    def optional_number(self, name: str) -> float | None:
        """A feature a number switches on (a soft-cap, a clamp): an explicit null switches it off, as HF's
        config keeps it; only an absent field takes the class default."""
        if name in self.raw and self.raw[name] is None:
            return None
        return self.number(name)

    def flag(self, spec: str | bool) -> bool:
        return spec if isinstance(spec, bool) else bool(self.get(spec, False))

    def parse(self) -> Config:
        self.family: Family = check_input(self.raw, self.source)
        fam, model_type = self.family, self.raw["model_type"]
        self.raw = {**self.raw, **{attr: self.raw[name] for attr, name in fam.aliases.items() if name in self.raw}}
        for name in REQUIRED:
            if name not in self.raw:
                raise ConfigError(f"{printable(self.source)}: required field '{self.written_name(name)}' is missing.")

        hidden = self.int_field("hidden_size")
        heads = self.int_field("num_attention_heads")
        # GPT-NeoX's attention is MHA over hidden // heads whatever the config says: no kv-heads or head_dim field
        kv_heads = self.int_field("num_key_value_heads", self.present("num_key_value_heads", heads)) \
            if fam.reads_kv_heads_and_head_dim else heads
        if heads % kv_heads:
            self.fail("num_key_value_heads", kv_heads, f"must divide num_attention_heads ({heads})")
        if hidden % heads and fam.heads_divide_hidden:
            self.fail("num_attention_heads", heads,
                      f"must divide hidden_size ({hidden}), as transformers' {model_type} config requires")
        given_head_dim = self.get("head_dim") if fam.reads_kv_heads_and_head_dim else None
        if given_head_dim is None and hidden % heads:  # HF would silently take hidden // heads
            self.fail("num_attention_heads", heads, f"must divide hidden_size ({hidden}) when head_dim is not given")
        if fam.head_dim_from_hidden and given_head_dim not in (None, hidden // heads):
            self.fail("head_dim", given_head_dim, f"transformers' {model_type} attention takes hidden_size // "
                      f"num_attention_heads ({hidden // heads}) whatever head_dim says")
        head_dim = self.int_field("head_dim", hidden // heads if given_head_dim is None else given_head_dim)
        if head_dim % 2:
            self.fail("head_dim", head_dim, "must be even for rotary embeddings")
        layers = self.int_field("num_hidden_layers")
        mla = self.mla(heads, kv_heads) if fam.mla else None
        if mla is not None:  # transformers sets head_dim to qk_rope_head_dim, whatever config.json says
            head_dim = mla.qk_rope_head_dim

        act_name = self.get(fam.activation_field)
        if fam.legacy_gelu_is_tanh and act_name == "gelu":
            act_name = "gelu_pytorch_tanh"
        activations = {**ACTIVATIONS, **fam.activations}
        if act_name not in activations:
            self.fail(fam.activation_field, act_name, f"activation not implemented (supported: {', '.join(activations)})")
        if self.raw.get("use_bidirectional_attention"):
            self.fail("use_bidirectional_attention", True, "only causal attention is implemented")

        layer_types = self.layer_types(layers)
        window = self.sliding_window()
        if window is None:
            layer_types = [FULL] * layers  # HF builds a plain causal mask for every layer then
        rope_layers = fam.rope_layers(self.raw, layers) if fam.rope_layers else [True] * layers
        if len(rope_layers) != layers:
            self.fail("no_rope_layers", self.raw.get("no_rope_layers"), f"needs one entry per layer ({layers})")
        rotary_dim = self.rotary_dim(head_dim)
        self.rotary_width = head_dim if rotary_dim is None else rotary_dim  # LongRoPE's factors: one per pair
        rope_full, rope_sliding = self.ropes()
        qk_norm = fam.qk_norm if fam.qk_norm_field is None or self.flag(fam.qk_norm_field) else None
        if fam.qk_norm_field and qk_norm is None and self.flag(fam.qk_norm_field):  # Phi's qk_layernorm
            self.fail(fam.qk_norm_field, True, "per-head q/k LayerNorm is not implemented")
        scale_base = self.number(fam.score_scale_field) if fam.score_scale_field else None

        return Config(
            model_type=model_type,
            vocab_size=self.int_field("vocab_size"),
            hidden_size=hidden,
            intermediate_size=self.int_field("intermediate_size"),
            num_layers=layers,
            num_heads=heads,
            num_kv_heads=kv_heads,
            head_dim=head_dim,
            rms_norm_eps=self.number(fam.norm_eps_field),
            tie_word_embeddings=bool(self.get("tie_word_embeddings")),
            embed_scale=fam.embed_scale,
            norm_plus_one=fam.norm_plus_one,
            norm_placement=fam.norm_placement,
            qk_norm=qk_norm,
            qkv_bias=self.flag(fam.qkv_bias),
            o_bias=self.flag(fam.o_bias),
            mlp_activation=activations[act_name],
            score_scale=self.mla_score_scale(mla) if mla else exact.inverse_sqrt(scale_base or head_dim),
            attn_softcap=self.optional_number(fam.attn_softcap_field) if fam.attn_softcap_field else None,
            final_softcap=self.optional_number(fam.final_softcap_field) if fam.final_softcap_field else None,
            sliding_window=window,
            layer_types=tuple(layer_types),
            rope_layers=tuple(rope_layers),
            rope_full=rope_full,
            rope_sliding=rope_sliding,
            moe=self.moe(layers),
            mla=mla,
            clip_qkv=self.optional_number(fam.clip_qkv_field) if fam.clip_qkv_field else None,
            mlp_bias=self.flag(fam.mlp_bias_field or False),
            norm_kind=fam.norm_kind,
            parallel_block=self.parallel_block(),
            rotary_dim=rotary_dim,
            rope_pairs_interleaved=self.flag(fam.rope_pairs_interleaved),
            qkv_fused=fam.qkv_fused,
            mlp_gated=fam.mlp_gated,
            mlp_fused_gate_up=fam.mlp_fused_gate_up,
            lm_head_bias=fam.lm_head_bias,
            weight_names=fam.weight_names,
            embedding_multiplier=self.multiplier(fam.embedding_multiplier_field),
            residual_multiplier=self.multiplier(fam.residual_multiplier_field),
            attention_multiplier=self.multiplier(fam.attention_multiplier_field),
            logits_divisor=self.multiplier(fam.logits_divisor_field),
            logits_multiplier=self.multiplier(fam.logits_multiplier_field),
            attention_sinks=fam.attention_sinks,
            source=self.source,
        )

    def parallel_block(self) -> str | None:
        spec = self.family.parallel_block
        if isinstance(spec, tuple):  # (the config field that switches it, the kind)
            return spec[1] if self.flag(spec[0]) else None
        return spec

    def partial_rotary_factor(self) -> tuple[object, str]:
        """The rotating fraction of head_dim as transformers resolves it: rope_parameters (or rope_scaling) first,
        then the top-level legacy key (GPT-NeoX's rotary_pct), then the class default."""
        fam = self.family
        for where in ("rope_parameters", "rope_scaling"):
            spec = self.raw.get(where)
            if isinstance(spec, dict) and spec.get("partial_rotary_factor") is not None:
                return spec["partial_rotary_factor"], f"{where}.partial_rotary_factor"
        name = fam.partial_rotary_field
        value = self.raw.get(name)
        return (fam.defaults.get(name, 1.0), name) if value is None else (value, name)

    def rotary_dim(self, head_dim: int) -> int | None:
        """int(head_dim * partial_rotary_factor) as HF computes it; None where every dimension rotates."""
        factor, where = self.partial_rotary_factor()
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor <= 1:
            self.fail(where, factor, "must be a number in (0, 1]")
        if factor == 1:
            return None
        if not self.family.partial_rotary_field:
            self.fail(where, factor, "partial rotary is not used by this family")
        dim = int(head_dim * factor)
        if dim < 2 or dim % 2:
            self.fail(where, factor, f"rotates {dim} of head_dim {head_dim} dimensions, which must be even and >= 2")
        return None if dim == head_dim else dim

    def multiplier(self, name: str | None) -> float | None:
        """A scalar the family multiplies (or divides) by, from its config field; None where it has none."""
        return self.number(name) if name else None

    def mla(self, heads: int, kv_heads: int) -> Mla:
        """DeepSeek-V3's latent attention sizes; its eager attention repeats no key/value head, so there must be
        one per query head."""
        if kv_heads != heads:
            self.fail("num_key_value_heads", kv_heads, f"must equal num_attention_heads ({heads}): latent attention "
                      "expands keys and values for every head")
        q_rank = self.get("q_lora_rank")
        rope_dim = self.int_field("qk_rope_head_dim")
        if rope_dim % 2:
            self.fail("qk_rope_head_dim", rope_dim, "must be even for rotary embeddings")
        return Mla(q_lora_rank=None if q_rank is None else self.int_field("q_lora_rank"),
                   kv_lora_rank=self.int_field("kv_lora_rank"), qk_nope_head_dim=self.int_field("qk_nope_head_dim"),
                   qk_rope_head_dim=rope_dim, v_head_dim=self.int_field("v_head_dim"))

    def mla_score_scale(self, mla: Mla) -> float:
        """(qk_nope + qk_rope)^-0.5, times mscale^2 where RoPE is scaled with an mscale_all_dim (transformers'
        yarn_apply_mscale: the non-rotary dimensions scaled too, as DeepSeek's reference does)."""
        scale = exact.inverse_sqrt(mla.qk_nope_head_dim + mla.qk_rope_head_dim)
        spec = {**(self.raw.get("rope_parameters") or {}), **(self.raw.get("rope_scaling") or {})}
        all_dim, factor = spec.get("mscale_all_dim"), spec.get("factor")
        if spec.get("rope_type", spec.get("type", "default")) != "default" and all_dim:
            mscale = 1.0 if factor <= 1 else 0.1 * all_dim * exact.log(factor) + 1.0
            scale = scale * mscale * mscale
        return scale

    def moe(self, layers: int) -> Moe | None:
        fam = self.family
        if fam.experts_field is None:
            return None
        experts = self.int_field(fam.experts_field, minimum=0)
        step = self.int_field("decoder_sparse_step", self.get("decoder_sparse_step", 1))
        dense = self.get("mlp_only_layers", [])
        if not isinstance(dense, list) or not all(isinstance(i, int) and 0 <= i < layers for i in dense):
            self.fail("mlp_only_layers", dense, f"must list layer indices in [0, {layers})")
        routed = fam.routes({**self.raw, "decoder_sparse_step": step, "mlp_only_layers": dense}, layers)
        if experts == 0 or not any(routed):
            return None  # HF builds dense MLPs everywhere then
        top_k = self.int_field("num_experts_per_tok")
        if top_k > experts:
            self.fail("num_experts_per_tok", top_k, f"exceeds the number of experts ({fam.experts_field} = {experts})")
        size = self.int_field(fam.expert_size_field)
        shared = self.int_field(fam.shared_expert_field) if fam.shared_expert_field else None
        if fam.shared_experts_field:  # DeepSeek-V3: n_shared_experts ungated experts, one MLP of their total size
            shared = self.int_field(fam.shared_experts_field, minimum=0) * size or None
        moe = Moe(experts=experts, top_k=top_k, expert_size=size, renormalize=self.flag(fam.renormalize),
                  shared_expert_size=shared, routed_layers=tuple(routed), stacked=fam.experts_stacked,
                  shared_expert_gated=not fam.shared_experts_field, router_bias=fam.router_bias,
                  expert_bias=fam.expert_bias, gate_up_interleaved=fam.gate_up_interleaved,
                  swiglu_clamp=tuple(self.number(f) for f in fam.swiglu_clamp_fields) if fam.swiglu_clamp_fields
                  else None)
        return self.grouped_routing(moe) if fam.router_scoring == "sigmoid" else moe

    def grouped_routing(self, moe: Moe) -> Moe:
        """DeepSeek-V3's router: n_group groups of experts, the topk_group best chosen first (each scored by its
        two best biased scores), so every group holds at least two experts and the chosen ones at least top-k."""
        groups = self.int_field("n_group")
        if moe.experts % groups or moe.experts // groups < 2:
            self.fail("n_group", groups, f"must divide the {moe.experts} routed experts into groups of at least 2")
        chosen = self.int_field("topk_group")
        if chosen > groups or chosen * (moe.experts // groups) < moe.top_k:
            self.fail("topk_group", chosen, f"must be at most n_group ({groups}) and its groups must hold "
                      f"num_experts_per_tok ({moe.top_k}) experts")
        return replace(moe, scoring="sigmoid", groups=groups, topk_groups=chosen, correction_bias=True,
                       routed_scaling=self.number("routed_scaling_factor"))

    def layer_types(self, layers: int) -> list[str]:
        types = self.raw.get("layer_types")
        if types is None:
            derived = self.family.schedule(self.raw, layers)
            if derived is None:
                self.fail("layer_types", None, f"transformers' {self.raw['model_type']} config cannot derive them from "
                          "this sliding_window and sliding_window_pattern: list them")
            return derived
        if not isinstance(types, list) or len(types) != layers:
            self.fail("layer_types", types, f"must list one entry per layer ({layers})")
        for t in types:
            if t not in (FULL, SLIDING):
                self.fail("layer_types", t, f"unknown layer type (supported: {FULL}, {SLIDING})")
        return list(types)

    def sliding_window(self) -> int | None:
        gate = self.family.window_needs_flag
        if gate and not self.raw.get(gate, False):
            return None
        # an explicit null means no window (HF keeps it); only an absent field takes the class default
        window = self.raw["sliding_window"] if "sliding_window" in self.raw else self.get("sliding_window")
        return None if window is None else self.int_field("sliding_window", window)

    def ropes(self) -> tuple[Rope, Rope]:
        """(full-attention RoPE, sliding-attention RoPE), from either dialect."""
        fam, params = self.family, self.raw.get("rope_parameters")
        if params is None and self.raw.get("rope_scaling") is None:  # the class's own (GPT-OSS: YaRN)
            params = fam.defaults.get("rope_parameters")
        theta = self.get("rope_theta")
        if fam.legacy_theta_field:  # GPT-NeoX reads rotary_emb_base, and no top-level rope_theta at all
            theta = self.present(fam.legacy_theta_field, fam.defaults["rope_theta"])
        if isinstance(params, dict) and (FULL in params or SLIDING in params):
            if not fam.rope_per_layer_type:
                self.fail("rope_parameters", sorted(params), "per-layer-type RoPE is not used by this family")
            full = self.rope(self.nested_spec(params, FULL), f"rope_parameters.{FULL}", theta)
            local_default = self.local_theta()
            sliding = self.rope(self.nested_spec(params, SLIDING), f"rope_parameters.{SLIDING}", local_default)
            return full, sliding
        scaling = self.raw.get("rope_scaling")
        if fam.rope_per_layer_type:
            # Legacy form: rope_scaling applies to the global layers only.
            full = self.rope({**(params or {}), **(scaling or {})}, "rope_scaling", theta)
            local = self.local_theta()
            return full, Rope(theta=float(local))
        name = "rope_scaling" if scaling else "rope_parameters"
        rope = self.rope({**(params or {}), **(scaling or {})}, name, theta)
        return rope, rope

    def nested_spec(self, params: dict, layer_type: str) -> dict:
        """One layer type's RoPE object in rope_parameters; absent or null: the defaults."""
        spec = params.get(layer_type) or {}
        if not isinstance(spec, dict):
            self.fail(f"rope_parameters.{layer_type}", spec, "must be an object")
        return spec

    def local_theta(self) -> float:
        """The sliding layers' base where the config gives none of its own. Without a legacy field for it
        (OLMo 3), transformers hands the top-level rope_theta to the full layers only (Olmo3Config pops it
        once) and the sliding layers keep the class default."""
        fam = self.family
        return self.number(fam.local_theta_field) if fam.local_theta_field else fam.defaults["rope_theta"]

    def rope(self, spec: dict, where: str, default_theta) -> Rope:
        kind = spec.get("rope_type", spec.get("type", "default"))
        types = self.family.rope_types or {t: t for t in ROPE_TYPES}  # Phi-3 reads legacy "su" and "yarn" as longrope
        if not isinstance(kind, str) or kind not in types:
            self.fail(f"{where}.rope_type", kind,
                      f"RoPE type not implemented (supported: {', '.join(dict.fromkeys(types.values()))})")
        kind = types[kind]
        theta = spec.get("rope_theta", default_theta)
        if not isinstance(theta, (int, float)) or isinstance(theta, bool) or theta <= 0:
            self.fail(f"{where}.rope_theta", theta, "must be a positive number")
        if theta < 1:  # found by tests/test_fuzz.py: 6.6e-191 overflowed the frequencies (no checkpoint has a base < 1)
            self.fail(f"{where}.rope_theta", theta, "a RoPE base below 1 is not implemented")
        if kind == "longrope":
            return self.longrope(spec, where, float(theta), self.rotary_width)
        if kind == "default":
            return Rope(theta=float(theta))
        factor = spec.get("factor")
        if not isinstance(factor, (int, float)) or isinstance(factor, bool) or factor < 1:
            self.fail(f"{where}.factor", factor, f"{kind} RoPE needs a scaling factor >= 1")
        if kind == "linear":
            return Rope(theta=float(theta), kind=kind, factor=float(factor))
        if kind == "dynamic":  # HF rescales past max_position_embeddings (not original_max_position_embeddings)
            limit = self.int_field("max_position_embeddings")
            return Rope(theta=float(theta), kind=kind, factor=float(factor), original_max_position=limit)
        original = spec.get("original_max_position_embeddings", self.raw.get("max_position_embeddings"))
        if isinstance(original, bool) or not isinstance(original, int) or original < 1:
            self.fail(f"{where}.original_max_position_embeddings", original, f"{kind} RoPE needs a positive integer")
        if kind == "yarn":
            return self.yarn(spec, where, float(theta), float(factor), original)
        low, high = spec.get("low_freq_factor"), spec.get("high_freq_factor")
        for name, value in (("low_freq_factor", low), ("high_freq_factor", high)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                self.fail(f"{where}.{name}", value, "llama3 RoPE needs a positive number")
        if not math.isfinite(high - low) or high <= low:
            self.fail(f"{where}.high_freq_factor", high, f"must exceed low_freq_factor ({low})")
        return Rope(theta=float(theta), kind=kind, factor=float(factor), low_freq_factor=float(low),
                    high_freq_factor=float(high), original_max_position=original)

    def longrope(self, spec: dict, where: str, theta: float, rotary_dim: int) -> Rope:
        """LongRoPE as transformers' _compute_longrope_parameters reads it: the short factors (the graph's
        positions stay inside the original context, Config.check_positions), the attention factor given or
        sqrt(1 + ln(factor) / ln(original)), factor given or max_position_embeddings / original."""
        factors = {}
        for name in ("short_factor", "long_factor"):
            value = spec.get(name)
            if not (isinstance(value, list) and len(value) == rotary_dim // 2 and all(
                    isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in value)):
                self.fail(f"{where}.{name}", value,
                          f"LongRoPE needs a list of {rotary_dim // 2} positive numbers (rotary dimensions / 2)")
            factors[name] = tuple(float(x) for x in value)
        # Phi-3's class declares original_max_position_embeddings, and transformers then takes it over the RoPE object's
        original = (self.get("original_max_position_embeddings")
                    if "original_max_position_embeddings" in self.family.fields
                    else spec.get("original_max_position_embeddings", self.get("max_position_embeddings")))
        original = self.int_field("original_max_position_embeddings", original)
        factor, attention = spec.get("factor"), spec.get("attention_factor")
        for name, value in (("factor", factor), ("attention_factor", attention)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
                self.fail(f"{where}.{name}", value, "LongRoPE needs a positive number")
        if factor is None:
            factor = self.int_field("max_position_embeddings") / original
        if attention is None:
            attention = 1.0 if factor <= 1.0 else math.sqrt(1 + exact.log(factor) / exact.log(original))
        return Rope(theta=theta, kind="longrope", factor=float(factor), original_max_position=original,
                    attention_factor=float(attention), **factors)

    def yarn(self, spec: dict, where: str, theta: float, factor: float, original: int) -> Rope:
        """YaRN as transformers' _compute_yarn_parameters reads it, attention factor included."""
        for name in ("attention_factor", "mscale", "mscale_all_dim", "beta_fast", "beta_slow"):
            value = spec.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
                self.fail(f"{where}.{name}", value, "YaRN needs a positive number")

        def get_mscale(scale: float, mscale: float = 1.0) -> float:
            return 1.0 if scale <= 1 else 0.1 * mscale * exact.log(scale) + 1.0

        attention, mscale, mscale_all_dim = spec.get("attention_factor"), spec.get("mscale"), spec.get("mscale_all_dim")
        if attention is None:
            attention = (get_mscale(factor, mscale) / get_mscale(factor, mscale_all_dim)
                         if mscale and mscale_all_dim else get_mscale(factor))
        # HF reads `truncate` from the top level of rope_parameters: nested per layer type, it is always true
        truncate = True if self.family.rope_per_layer_type else spec.get("truncate", True)
        return Rope(theta=theta, kind="yarn", factor=factor, original_max_position=original,
                    attention_factor=float(attention), beta_fast=float(spec.get("beta_fast") or 32),
                    beta_slow=float(spec.get("beta_slow") or 1), truncate=bool(truncate))
