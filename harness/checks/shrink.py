"""A published config.json shrunk to a tiny synthetic model that keeps every architectural choice.

Works on the raw dict, in either dialect (transformers 5 `rope_parameters`/`layer_types`,
or legacy `rope_theta`/`rope_scaling`/`sliding_window_pattern`/...): sizes become tiny,
every other field is kept as written. What "architectural choice" means is
`architecture(Config)`: everything the emitter's parsed flags say except sizes, plus the
layer schedule's pattern; `shrink` checks that the shrunk config parses to the same, which
is the proof that nothing but sizes changed.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

from ...emitter.config import Config
from ...emitter.families import FAMILIES, FULL, SLIDING
from .kept import architecture, attention_kind, describe, layer_schedule, period, schedule_kept
from ..core import config_fields

VOCAB = 96
HEAD_DIM = 16                 # hidden = heads × HEAD_DIM when the original has head_dim·heads = hidden
HEAD_DIM_UNEVEN = 24          # ... and head_dim 24 when it has head_dim·heads ≠ hidden
INTERMEDIATE = 128
EXPERT_SIZE, SHARED_EXPERT_SIZE = 32, 48
MAX_EXPERTS = 8               # or 2·top-k, so that top-k still leaves experts out
WINDOW = 7                    # shorter than the prompt (13), so it bites in prefill and decode; two sliding
                              # layers still reach the first prompt token from the last (2 × 6 ≥ 12)
ROPE_CONTEXT = 32             # llama3/YaRN original context: the scaling moves angles within 32 positions
DYNAMIC_CONTEXT = 64          # dynamic RoPE equals the default inside max_position_embeddings >= decode capacity
ATTN_SOFTCAP, FINAL_SOFTCAP = 20.0, 5.0  # the gemma2 fixture's caps: they bite at the synthetic weight scale
CLIP_QKV = 2.5                # the olmoe fixture's clip: it bites at the synthetic weight scale
MAX_LAYERS = 12               # a schedule with no shorter period is cut to one layer per run
MLA = {"q_lora_rank": 24, "kv_lora_rank": 16, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16}


class ShrinkError(ValueError):
    """The config cannot be shrunk without changing an architectural choice; one sentence saying which."""


@dataclass(frozen=True)
class Shrunk:
    config: dict
    changes: tuple[tuple[str, object, object], ...]  # (field, old, new), in the config's own field names
    kept: tuple[str, ...]                            # the architectural choices, readable
    layers: tuple[int, ...]                          # the original layer each shrunk layer stands for


class _Writer:
    """Edits a copy of the raw dict under the config's own field names, recording each change."""

    def __init__(self, raw: dict):
        self.raw, self.changes = copy.deepcopy(raw), []
        self.family = FAMILIES[raw["model_type"]]

    def name(self, attr: str) -> str:
        alias = self.family.aliases.get(attr)
        return alias if alias and alias in self.raw else attr

    def set(self, attr: str, value, path: tuple[str, ...] = ()) -> None:
        where = self.raw
        for key in path:
            where = where[key]
        key = attr if path else self.name(attr)
        old = where.get(key, "(absent)")
        if old != value:
            where[key] = value
            self.changes.append((".".join((*path, key)), old, value))


def _layer_choice(schedule: list) -> list[int]:
    """The original layers the shrunk model keeps: whole periods (at least two layers), or one per run."""
    every, n = period(schedule), len(schedule)
    if every < n or n <= MAX_LAYERS:
        return list(range(min(n, every * math.ceil(2 / every))))
    starts = [i for i in range(n) if i == 0 or schedule[i - 1] != schedule[i]]
    if len(starts) > MAX_LAYERS:
        raise ShrinkError(f"its {n}-layer schedule has no period and {len(starts)} runs, more than {MAX_LAYERS}")
    return starts


def _shrink_rope(w: _Writer, cfg: Config) -> None:
    """Make llama3/YaRN scaling bite within the fixture's positions; dynamic stays inside its context."""
    mpe = w.raw.get("max_position_embeddings")
    specs = []
    for key in ("rope_scaling", "rope_parameters"):
        value = w.raw.get(key)
        if isinstance(value, dict):
            nested = [(key, t) for t in (FULL, SLIDING) if isinstance(value.get(t), dict)]
            specs += nested or [(key,)]
    for path in specs:
        spec = w.raw
        for k in path:
            spec = spec[k]
        kind = spec.get("rope_type", spec.get("type"))
        if kind in ("llama3", "yarn"):
            original = spec.get("original_max_position_embeddings", mpe)
            if "original_max_position_embeddings" in spec:
                w.set("original_max_position_embeddings", ROPE_CONTEXT, path)
                mirror = w.family.original_context_mirror
                if mirror and w.raw.get(mirror) == original:  # kept equal, as the class's reading needs
                    w.set(mirror, ROPE_CONTEXT)
                if kind == "yarn" and isinstance(mpe, int) and isinstance(original, int) and mpe >= original:
                    # YaRN's context ratio as published (HF derives the factor from it when none is given)
                    w.set("max_position_embeddings", ROPE_CONTEXT * max(1, round(mpe / original)))
            else:
                w.set("max_position_embeddings", ROPE_CONTEXT)
        elif kind == "dynamic":
            w.set("max_position_embeddings", DYNAMIC_CONTEXT)


def as_given(raw: dict, source: str = "config.json") -> Shrunk:
    """The config unchanged (--as-is, --graphs): an emitter team's own tiny fixture, validated at its own dimensions;
    ConfigError for a config the built-in emitter refuses, or, of a model type it does not implement, that
    transformers' own config class would refuse (harness/core/config_fields.py)."""
    if raw.get("model_type") not in FAMILIES:
        klass = config_fields.check(raw, source)
        layers = config_fields.value(raw, klass, "num_hidden_layers")
        return Shrunk(config=raw, changes=(), kept=(f"as given, typed by transformers' {klass.name}",),
                      layers=tuple(range(layers if isinstance(layers, int) else 0)))
    cfg = Config.from_dict(raw, source)
    return Shrunk(config=raw, changes=(), kept=describe(cfg), layers=tuple(range(cfg.num_layers)))


def shrink(raw: dict, source: str = "config.json") -> Shrunk:
    """The tiny config; raises ConfigError for a config the emitter refuses, ShrinkError if a choice would change."""
    cfg = Config.from_dict(raw, source)
    fam = FAMILIES[cfg.model_type]
    w = _Writer(raw)

    schedule = layer_schedule(cfg)
    layers = _layer_choice(schedule)
    w.set("num_hidden_layers", len(layers))
    for attr in ("layer_types", "no_rope_layers"):
        if isinstance(raw.get(attr), list) and len(raw[attr]) == cfg.num_layers:
            w.set(attr, [raw[attr][i] for i in layers])
    if isinstance(raw.get("mlp_only_layers"), list):
        w.set("mlp_only_layers", [j for j, i in enumerate(layers) if i in set(raw["mlp_only_layers"])])
    dense_first = raw.get("first_k_dense_replace", fam.defaults.get("first_k_dense_replace"))
    if isinstance(dense_first, int):  # DeepSeek-V3's dense layers first
        w.set("first_k_dense_replace", sum(i < dense_first for i in layers))
    if isinstance(raw.get("max_window_layers"), int):
        w.set("max_window_layers", sum(i < raw["max_window_layers"] for i in layers))

    kind = attention_kind(cfg)
    heads, kv_heads = {"MHA": (4, 4), "MQA": (4, 1)}.get(kind, (2 * min(cfg.num_heads // cfg.num_kv_heads, 4), 2))
    even = cfg.head_dim * cfg.num_heads == cfg.hidden_size
    head_dim = HEAD_DIM if even else HEAD_DIM_UNEVEN
    w.set("hidden_size", heads * HEAD_DIM)
    w.set("num_attention_heads", heads)
    if "num_key_value_heads" in raw or fam.defaults.get("num_key_value_heads") is not None or kv_heads != heads:
        w.set("num_key_value_heads", kv_heads)
    if cfg.mla:  # transformers reads no head_dim for latent attention: its sizes are these
        for attr, size in MLA.items():
            if attr != "q_lora_rank" or cfg.mla.q_lora_rank is not None:
                w.set(attr, size)
    elif "head_dim" in raw or fam.defaults.get("head_dim") is not None or not even:
        w.set("head_dim", head_dim)
    if fam.score_scale_field:
        scalar = cfg.score_scale ** -2 * head_dim / cfg.head_dim
        if abs(scalar - round(scalar)) >= 1e-9:  # transformers declares the field int
            raise ShrinkError(f"{source}: keeping {fam.score_scale_field} / head_dim at head_dim {head_dim} would need "
                              f"{fam.score_scale_field} = {scalar:g}, not an integer.")
        w.set(fam.score_scale_field, round(scalar))
    w.set("vocab_size", VOCAB)
    if not (cfg.moe and fam.expert_size_field == "intermediate_size"):  # Mixtral, OLMoE: it is the expert size
        w.set("intermediate_size", INTERMEDIATE)

    if isinstance(raw.get("sliding_window"), int) or cfg.sliding_window is not None:
        w.set("sliding_window", WINDOW)  # an inert window too: an emitter that honours it then fails
    if cfg.attn_softcap is not None:
        w.set(fam.attn_softcap_field, ATTN_SOFTCAP)
    if cfg.final_softcap is not None:
        w.set(fam.final_softcap_field, FINAL_SOFTCAP)
    if cfg.clip_qkv is not None:
        w.set(fam.clip_qkv_field, CLIP_QKV)
    _shrink_rope(w, cfg)

    if cfg.moe:
        experts = min(cfg.moe.experts, max(MAX_EXPERTS, 2 * cfg.moe.top_k, 2 * cfg.moe.groups))
        w.set(fam.experts_field, experts + -experts % cfg.moe.groups)  # whole groups (DeepSeek-V3's n_group)
        w.set(fam.expert_size_field, EXPERT_SIZE)
        if fam.shared_expert_field:
            w.set(fam.shared_expert_field, SHARED_EXPERT_SIZE)

    tiny = Config.from_dict(w.raw, source)
    if layer_schedule(tiny) != [schedule[i] for i in layers] or not schedule_kept(schedule, layer_schedule(tiny)):
        raise ShrinkError(f"{source}: shrinking to layers {layers} would change the layer schedule.")
    before, after = architecture(cfg), architecture(tiny)
    changed = [k for k in before if before[k] != after[k]]
    if changed:
        raise ShrinkError(f"{source}: shrinking would change '{changed[0]}' from {before[changed[0]]} "
                          f"to {after[changed[0]]}.")
    return Shrunk(config=w.raw, changes=tuple(w.changes), kept=describe(cfg), layers=tuple(layers))
