"""A tiny config of any model type's own transformers config class, its features made to bite.

archval's own fixtures are written by hand, one per family it emits. To validate another emitter on a
family archval has no fixture for, the config is synthesised instead: the class's defaults
(`AutoConfig.for_model(model_type)`, or a published config.json) with every size made tiny and every
optional feature switched on, found by the field's name, not by a table per family:

- sizes: vocabulary, width, layers, heads, head_dim, MLP and expert widths, context;
- the layer schedule: every per-layer list (`layer_types`, `mlp_layer_types`, ...) keeps each kind it
  had, tiled over the tiny depth, and a class that has a sliding window gets sliding layers; a per-layer
  list of layer indices keeps those below the tiny depth; entries keyed by layer index fold onto it
  (index mod depth);
- windows and attention chunks shorter than the prompt plus the decode steps (WINDOW), so they bite;
- soft-caps set where the class has them and its default leaves them off, biases and QK-norms on,
  parallel blocks on, partial rotary at one half, MoE with TOP_K of EXPERTS and a shared expert, and
  is_decoder on (a class that can also run as an encoder runs causally);
- RoPE scaling kept as the class has it, its original context shortened so that it moves angles.

OVERRIDES holds the few values that introspection cannot know (constraints between fields that no
name says). A model type whose config class refuses the result is refused in one sentence.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass

VOCAB, HIDDEN, HEADS, KV_HEADS, HEAD_DIM, ROPE_HEAD_DIM = 128, 64, 4, 2, 16, 8
INTERMEDIATE, EXPERT_INTERMEDIATE, LORA_RANK = 128, 32, 16
EXPERTS, TOP_K, SHARED_EXPERTS, EXPERT_GROUPS = 8, 2, 1, 2
LAYERS = 4                  # two of each kind of a two-kind schedule
CONTEXT = 64                # above the prompt (13), its position gaps and 16 decode steps
ROPE_CONTEXT = 32           # llama3/YaRN original context: the scaling moves angles within 32 positions
WINDOW = 5                  # shorter than the prompt, so windows bite in prefill and decode; four window layers
                            # still reach the first prompt token from the last (4 x 4 >= 12)
ATTN_SOFTCAP, FINAL_SOFTCAP, OTHER_SOFTCAP = 20.0, 5.0, 5.0  # the gemma2 fixture's caps: they bite at archval's
                                                              # weight scale (oracles/hf.py MATRIX_GAIN)
PARTIAL_ROTARY = 0.5
TOKEN_ID_FIELDS = ("bos_token_id", "eos_token_id", "pad_token_id")  # a default outside the tiny vocabulary
# becomes its last id (some classes require an int); other special ids (image tokens) stay outside it, so that
# no prompt token is one

# (pattern on the field name, what a tiny value is given the default): the first match decides.
# Numbers are set only over numbers (a bool never), feature switches over bools, None only where
# None means "off" (windows, soft-caps) or "derived" (head_dim).
SIZE_RULES: tuple[tuple[str, object], ...] = (
    (r"^(?:.*_)?vocab_size(?:_per_layer_input)?$", VOCAB),
    (r"^(?:hidden_size|n_embd|n_embed|d_model|embed_dim|dim)$", HIDDEN),
    (r"^(?:hidden_size_per_layer_input)$", 8),
    (r"^(?:num_hidden_layers|n_layers?|num_layers|decoder_layers)$", LAYERS),
    (r"(?:key_value_heads|kv_heads|kv_n_heads)$", "kv"),
    (r"^(?:(?:.*_)?num_.*heads|n_heads?|.*_n_heads)$", HEADS),
    (r"rope_head_dim$", ROPE_HEAD_DIM),
    (r"head_dim$|^kv_channels$|^attention_head_dim$", HEAD_DIM),
    (r"lora_rank$", LORA_RANK),
    (r"(?:moe|expert).*(?:intermediate|ffn|hidden)_(?:size|dim)$|shared_intermediate_size$", EXPERT_INTERMEDIATE),
    (r"intermediate_size$|^ffn_dim$|^n_inner$|^ffn_hidden_size$", INTERMEDIATE),
    (r"^index_topk$", 2 * WINDOW),
    (r"(?:experts_per_tok(?:en)?|^moe_top_?k|^moe_k|^top_?k|^num_selected_experts)$", TOP_K),
    (r"(?:n_shared_experts|num_shared_experts|moe_num_shared_experts)$", "shared"),
    (r"(?:^num_experts|n_routed_experts|num_local_experts|moe_num_experts|^n_experts)$", EXPERTS),
    (r"^(?:n_group|num_expert_group)$", "groups"),
    (r"^topk_group$", "one"),
    (r"^(?:first_k_dense_replace|num_dense_layers)$", "one"),
    (r"^(?:max_position_embeddings|n_positions|n_ctx|max_seq_len|seq_length)$", CONTEXT),
    (r"^original_max_position_embeddings$", ROPE_CONTEXT),
    (r"window(?:_size)?$|^attention_chunk_size$", WINDOW),
    (r"_period$", 2),
    (r"_offset$", 1),
)
FEATURE_SWITCHES = (r"^is_decoder$", r"bias$", r"qk_norm$|qk_layernorm$|^use_qk_norm$", r"parallel", r"^use_sliding_window$")
OFF_SWITCHES = (r"^use_mamba_kernels$",)  # CUDA kernels: the oracle runs the reference path

# Constraints between fields that no field name says, per model type: {model type: {field: value}}.
OVERRIDES: dict[str, dict] = {
    "zaya": {"num_experts_per_tok": 1},  # its class takes top-1 routing only (still 1 of EXPERTS)
}


class SynthError(ValueError):
    """The model type cannot be synthesised: one sentence saying why."""


@dataclass(frozen=True)
class Synthesised:
    model_type: str
    config: dict              # the tiny config.json, in the class's own field names
    changes: tuple[str, ...]  # "field old -> new" for every field changed, readable


def default_config(model_type: str) -> dict:
    """The model type's config class with its defaults, as config.json would write it."""
    from transformers import AutoConfig
    try:
        return AutoConfig.for_model(model_type).to_dict()
    except Exception as e:  # noqa: BLE001 - a class that cannot build its own defaults is this type's refusal
        raise SynthError(f"its config class cannot be built with its own defaults: {sentence(e)}") from None


def synthesise(model_type: str | None = None, published: dict | None = None) -> Synthesised:
    """The tiny config of model_type (from its class's defaults) or of a published config.json."""
    source = dict(published) if published is not None else default_config(model_type)
    model_type = source.get("model_type") or model_type
    changes: list[str] = []
    config = _tiny(source, changes, "")
    config["model_type"] = model_type
    for name, value in OVERRIDES.get(model_type, {}).items():
        changes.append(f"{name} {source.get(name)!r} -> {value!r} (override)")
        config[name] = value
    config = _validated(config)
    return Synthesised(model_type, config, tuple(changes))


def _tiny(source: dict, changes: list[str], prefix: str) -> dict:
    """source with every field shrunk or switched on; nested configs (text_config, attn_config, ...) alike."""
    layers_before = _layer_count(source)
    layers_after = _schedule_depth(source, layers_before)
    config = {}
    for name, value in source.items():
        new = _field(name, value, source, layers_before, layers_after, changes, prefix)
        if new is not value and new != value and not isinstance(value, dict):
            changes.append(f"{prefix}{name} {_short(value)} -> {_short(new)}")
        config[name] = new
    _add_sliding_layers(config, changes, prefix)
    _consistent(config, changes)
    _mamba_heads(config, changes)
    return config


def _field(name, value, source, layers_before, layers_after, changes, prefix):
    if name.startswith("_") or name in ("id2label", "label2id", "architectures", "auto_map"):
        return value
    if name in TOKEN_ID_FIELDS:
        return value if not isinstance(value, int) or value < VOCAB else VOCAB - 1
    if isinstance(value, dict) and name == "rope_parameters":
        return _rope(value)
    if isinstance(value, dict) and value and all(str(k).isdigit() for k in value) and layers_before:
        return _per_layer_entries(value, layers_after)
    if isinstance(value, dict) and (name.endswith("config") or "model_type" in value):
        return _tiny(value, changes, f"{prefix}{name}.")
    if isinstance(value, list) and layers_before and len(value) == layers_before:
        return _per_layer(value, layers_after)
    if name in ("num_hidden_layers", "n_layer", "n_layers", "num_layers", "decoder_layers") and isinstance(value, int):
        return layers_after
    if re.search(r"dropout$|pdrop$", name) and isinstance(value, float):
        return 0.0
    if re.search(r"softcap", name) and (value is None or isinstance(value, (int, float)) and not isinstance(value, bool)):
        return value or (ATTN_SOFTCAP if "attn" in name else FINAL_SOFTCAP if "final" in name else OTHER_SOFTCAP)
    if re.search(r"partial_rotary_factor$|rotary_pct$", name) and isinstance(value, float):
        return min(value, PARTIAL_ROTARY)
    if name == "rotary_dim" and isinstance(value, int):
        return int(HEAD_DIM * PARTIAL_ROTARY)
    if isinstance(value, bool):
        if any(re.search(p, name) for p in OFF_SWITCHES):
            return False
        return True if any(re.search(p, name) for p in FEATURE_SWITCHES) else value
    for pattern, tiny in SIZE_RULES:
        if re.search(pattern, name):
            return _size(tiny, value, source, name)
    return value


def _size(tiny, value, source: dict, name: str):
    """The tiny value a size rule gives, where the default is a number (or None, for what None turns off)."""
    if not (isinstance(value, int) and not isinstance(value, bool)) and not (
            value is None and re.search(r"window|head_dim$|chunk|experts_per_tok|top_?k$", name)):
        return value
    if tiny == "kv":  # keep the default's kind of attention: MHA, MQA or GQA
        heads = next((source[k] for k in ("num_attention_heads", "n_head", "num_heads") if k in source), None)
        return None if value is None else HEADS if value == heads else 1 if value == 1 else KV_HEADS
    if tiny == "shared":
        return SHARED_EXPERTS if value else value
    if tiny == "groups":
        return EXPERT_GROUPS if value and value > 1 else value
    if tiny == "one":
        return 1 if value else value
    return tiny


def _rope(rope: dict) -> dict:
    """RoPE's parameters with their scaling kept; its original context shortened (per layer type too)."""
    out = {}
    for name, value in rope.items():
        if isinstance(value, dict):
            out[name] = _rope(value)
        elif name == "original_max_position_embeddings" and isinstance(value, int):
            out[name] = ROPE_CONTEXT
        elif name == "partial_rotary_factor" and isinstance(value, float):
            out[name] = min(value, PARTIAL_ROTARY)
        else:
            out[name] = value
    return out


def _layer_count(config: dict) -> int | None:
    return next((config[k] for k in ("num_hidden_layers", "n_layer", "n_layers", "num_layers")
                 if isinstance(config.get(k), int) and not isinstance(config.get(k), bool)), None)


def _schedule_depth(config: dict, layers: int | None) -> int:
    """LAYERS, or two layers of each kind where a per-layer list has more than two kinds."""
    kinds = max((len(_kinds(v)) for v in config.values()
                 if isinstance(v, list) and layers and len(v) == layers and not _index_list(v)), default=1)
    return max(LAYERS, 2 * kinds)


def _kinds(values: list) -> list:
    seen = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return seen


def _per_layer(values: list, depth: int) -> list:
    """A per-layer list at depth: an index list (strictly increasing ints) keeps its indices below depth; any other
    keeps each kind it had, tiled (kind 1, kind 2, ..., kind 1, ...), so that every kind is present."""
    if _index_list(values):
        return [v for v in values if v < depth]
    kinds = _kinds(values)
    return [kinds[i % len(kinds)] for i in range(depth)]


def _per_layer_entries(entries: dict, depth: int) -> dict:
    """Entries keyed by layer index (Gemma 4's per_layer_config): entry i at layer i mod depth, the first kept, as a
    periodic schedule folds onto a shorter one; each entry's own sizes shrunk as any config's."""
    folded: dict = {}
    for key in sorted(entries, key=int):
        index = type(key)(int(key) % depth)
        if index not in folded:
            value = entries[key]
            folded[index] = _tiny(value, [], "") if isinstance(value, dict) else value
    return folded


def _index_list(values: list) -> bool:
    """Layer indices (Llama 4's moe_layers), not one value per layer."""
    return len(values) > 1 and all(isinstance(v, int) and not isinstance(v, bool) for v in values) \
        and values == sorted(set(values))


def _consistent(config: dict, changes: list[str]) -> None:
    """Fields that other fields determine, made to agree again: MLA's query head is its no-RoPE part and its
    RoPE part (DeepSeek's qk_head_dim), and its head_dim is the RoPE part."""
    if isinstance(config.get("qk_nope_head_dim"), int) and isinstance(config.get("qk_rope_head_dim"), int):
        for name, value in (("qk_head_dim", config["qk_nope_head_dim"] + config["qk_rope_head_dim"]),
                            ("head_dim", config["qk_rope_head_dim"])):
            if name in config and config[name] != value:
                changes.append(f"{name} {config[name]!r} -> {value!r} (MLA)")
                config[name] = value


def _mamba_heads(config: dict, changes: list[str]) -> None:
    """A Mamba-2 mixer's heads times their width is its expanded width (expand x hidden): the head width follows."""
    heads, expand, hidden = (config.get(k) for k in ("mamba_n_heads", "mamba_expand", "hidden_size"))
    if all(isinstance(v, int) for v in (heads, expand, hidden)) and "mamba_d_head" in config:
        width = expand * hidden // heads
        if config["mamba_d_head"] != width:
            changes.append(f"mamba_d_head {config['mamba_d_head']!r} -> {width} (expand x hidden / heads)")
            config["mamba_d_head"] = width


def _add_sliding_layers(config: dict, changes: list[str], prefix: str) -> None:
    """A class with a sliding window and a layer schedule of full layers only gets sliding layers too (the
    window otherwise never bites: Qwen2's default, or a schedule cut to its first kind)."""
    types = config.get("layer_types")
    if not isinstance(types, list) or not any("window" in k for k in config) or set(types) != {"full_attention"}:
        return  # a schedule of other kinds (linear attention beside full) is the class's own: kept
    config["layer_types"] = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(len(types))]
    changes.append(f"{prefix}layer_types: sliding_attention added")


def _validated(config: dict) -> dict:
    """The config as its class takes it: SynthError in one sentence where the class refuses it."""
    from transformers import AutoConfig
    try:
        AutoConfig.for_model(**config)
    except Exception as e:  # noqa: BLE001 - the class's own refusal is this type's reason
        raise SynthError(f"its config class refuses the tiny config: {sentence(e)}") from None
    return config


def sentence(e: BaseException) -> str:
    """An exception as one line of at most 200 characters: its type and the first line of its message."""
    text = " ".join(str(e).split("\n")[:2]).strip()
    text = re.sub(r"\s+", " ", text)
    return f"{type(e).__name__}: {text[:200]}" if text else type(e).__name__


def _short(value) -> str:
    if isinstance(value, list):
        return f"[{len(value)} layers: {', '.join(map(str, _kinds(value)))}]" if len(value) > 4 else repr(value)
    return repr(value)


def moe_shape(config) -> tuple[int | None, int | None]:
    """(experts, top-k) of a built config object, (None, None) for a dense one: by the names classes use."""
    text = getattr(config, "text_config", None) or config
    ffn = getattr(text, "ffn_config", None)  # DBRX keeps them apart
    found = lambda names: next((getattr(c, k) for c in (text, ffn) if c is not None for k in names
                                if isinstance(getattr(c, k, None), int) and not isinstance(getattr(c, k), bool)), None)
    return (found(("num_experts", "n_routed_experts", "num_local_experts", "moe_num_experts")),
            found(("num_experts_per_tok", "moe_topk", "num_experts_per_token", "moe_top_k", "top_k", "moe_k")))


def features(config, model) -> list[str]:
    """What the built model has that an emitter must get right, in words, from its config object and modules:
    the layer kinds, windows, MoE, partial rotary and RoPE scaling, soft-caps, QK-norms, biases, parallel blocks."""
    text = getattr(config, "text_config", None) or config
    found = []
    types = list(getattr(text, "layer_types", None) or ())
    for kind in _kinds(types):
        if kind != "full_attention":
            found.append(f"{kind.replace('_attention', '')} {types.count(kind)}/{len(types)} layers")
    window = getattr(text, "sliding_window", None) or getattr(text, "attention_chunk_size", None)
    if window:
        found.append(f"window {window}")
    experts, top_k = moe_shape(config)
    if experts:
        shared = next((getattr(text, k) for k in ("n_shared_experts", "num_shared_experts") if getattr(text, k, 0)), 0)
        found.append(f"MoE {experts} top-{top_k}" + (f" +{shared} shared" if shared else ""))
    rope = getattr(text, "rope_parameters", None) or {}
    flat = [rope] if "rope_type" in rope else [v for v in rope.values() if isinstance(v, dict)]
    kinds = sorted({r.get("rope_type") for r in flat} - {"default", None})
    if kinds:
        found.append(f"RoPE {'/'.join(kinds)}")
    partial = next((r["partial_rotary_factor"] for r in flat if r.get("partial_rotary_factor", 1) < 1),
                   getattr(text, "partial_rotary_factor", 1) or 1)
    if partial < 1:
        found.append(f"partial rotary {partial:g}")
    caps = [f"{k} {v:g}" for k, v in text.to_dict().items() if "softcap" in k and isinstance(v, (int, float)) and v]
    found += caps
    names = [n for n, _ in model.named_modules()]
    if any(re.search(r"\.(q_norm|q_layernorm|query_norm)$", n) for n in names):
        found.append("qk-norm")
    if any(n.endswith(".bias") and ".layers." in n and "norm" not in n for n, _ in model.named_parameters()):
        found.append("biases")
    if any(v is True and "parallel" in k for k, v in text.to_dict().items()):
        found.append("parallel block")
    if getattr(text, "kv_lora_rank", None):
        found.append("MLA")
    if getattr(text, "tie_word_embeddings", False):
        found.append("tied embeddings")
    return found


@contextmanager
def routing(model, experts: int | None, top_k: int | None):
    """The experts each router of model chooses while the block runs: {router's module name: experts chosen}. A
    router is a module whose class is a Router, Gating or Gate; its choices are the integer indices [..., top_k] it
    returns, else the top_k of the logits [..., experts] it returns (a group-limited router, DeepSeek's, may choose
    a little otherwise); a router that returns neither is not counted."""
    import torch
    chosen: dict[str, set[int]] = {}

    def recorder(name):
        def record(module, inputs, output):
            tensors = [output] if isinstance(output, torch.Tensor) else [
                t for t in output if isinstance(t, torch.Tensor)]
            indices = [t for t in tensors if not t.is_floating_point() and t.dim() and t.shape[-1] == top_k
                       and int(t.max()) < experts]  # LongCat's returns other indices beside (zero experts)
            logits = [t for t in tensors if t.is_floating_point() and t.dim() and t.shape[-1] == experts]
            if indices:
                chosen.setdefault(name, set()).update(indices[0].flatten().tolist())
            elif logits:
                chosen.setdefault(name, set()).update(logits[0].topk(top_k, -1).indices.flatten().tolist())
        return record
    hooks = [m.register_forward_hook(recorder(n)) for n, m in model.named_modules()
             if re.search(r"(Router|Gating|Gate)$", type(m).__name__)]
    try:
        yield chosen
    finally:
        for hook in hooks:
            hook.remove()


def experts_reached(chosen: dict[str, set[int]], experts: int) -> str | None:
    """'experts reached 8/8 per router', or the fewest-most range, in words; None where nothing routed."""
    if not chosen:
        return None
    counts = sorted(len(c) for c in chosen.values())
    span = f"{counts[0]}" if counts[0] == counts[-1] else f"{counts[0]}-{counts[-1]}"
    return f"experts reached {span}/{experts} per router"
