"""Property-based fuzzing of every family's config space (hypothesis).

Valid configs, built raw like fixtures/*/config.json and tiny (hidden <= 64, layers <= 4, vocab 96),
must PASS against the oracle end to end (emit, compile, run, compare); configs that break one
constraint (a value of the wrong type or a non-finite number among them) must be refused by the
emitter with one sentence naming the field; any value of any field, and any bytes as a file, are
taken or refused, never a traceback, and what is taken transformers' config class takes too.

Budgets: CI runs a couple of derandomized examples per family (deterministic), decode for the families whose
decode differs from their prefill (sliding windows, MoE), prefill for the others; `ARCHVAL_FUZZ=long`
runs many random ones on every family and graph kind (ARCHVAL_FUZZ_EXAMPLES, default 25 each).
A failing example is shrunk, saved as reports/fuzz/<sha>.json and replayed with
`.venv/bin/python tests/test_fuzz.py reports/fuzz/<sha>.json`.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script for replay

from archval.emitter import DEFAULT_CAPACITY, GRAPHS, Config, ConfigError, emit  # noqa: E402
from archval.emitter.config_input import PRETRAINED_FIELDS, accepts, read_json_object  # noqa: E402
from archval.emitter.families import FAMILIES  # noqa: E402
from archval.harness.checks.shrink import ShrinkError, shrink  # noqa: E402
from archval.harness.core.case import run_case  # noqa: E402
from archval.harness.core.fixtures import DECODE_GAP, DEFAULT_BOUND, DEFAULT_DECODE_STEPS, POSITION_GAP, Fixture  # noqa: E402

LONG = os.environ.get("ARCHVAL_FUZZ") == "long"
FAILURES_DIR = ROOT / "reports" / "fuzz"
VOCAB = 96
settings.register_profile("ci", max_examples=2, derandomize=True, database=None, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
settings.register_profile("long", max_examples=int(os.environ.get("ARCHVAL_FUZZ_EXAMPLES", 25)), deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
PROFILE = settings.get_profile("long" if LONG else "ci")
# Enough families in CI to cover every axis once (windows, schedules, soft-caps, per-layer RoPE, NoPE, MoE)
CI_FAMILIES = ("llama", "gemma2", "gemma3_text", "smollm3", "qwen2_moe")
# ... and those whose decode differs from their prefill (sliding windows over a growing cache, routing per
# step) run decode in CI too: a decode case runs the prefill graph and then every step.
CI_DECODE = ("gemma2", "gemma3_text", "smollm3", "qwen2_moe")


# -- valid configs, by construction --------------------------------------------------------------------

def pick(draw, *values):
    return draw(st.sampled_from(values))


@st.composite
def rope_spec(draw, theta=None):
    """One rope_parameters object: every RoPE type the emitter implements, at factors checkpoints use."""
    theta = theta or pick(draw, 10_000.0, 500_000.0, 1_000_000.0)
    kind = pick(draw, "default", "linear", "llama3", "yarn", "dynamic")
    spec = {"rope_type": kind, "rope_theta": theta}
    if kind != "default":
        spec["factor"] = pick(draw, 2.0, 4.0, 8.0)
    if kind in ("llama3", "yarn"):
        spec["original_max_position_embeddings"] = pick(draw, 8, 16, 32)
    if kind == "llama3":
        spec.update(low_freq_factor=1.0, high_freq_factor=4.0)
    return spec


@st.composite
def dense_base(draw, model_type, head_dim_free=True):
    """Shapes every family shares: heads and GQA ratio, head_dim, hidden, layers, MLP width, eps, tie."""
    hidden = pick(draw, 16, 32, 48, 64)
    # hidden // heads >= 8 where it is the head_dim: HF's dynamic RoPE divides by head_dim - 2
    heads = draw(st.sampled_from([h for h in (1, 2, 4, 8) if head_dim_free or hidden // h >= 8]))
    kv = draw(st.sampled_from([d for d in (1, 2, 4, 8) if heads % d == 0]))
    head_dim = pick(draw, 8, 16, 24, 32) if head_dim_free else None
    raw = {"model_type": model_type, "vocab_size": VOCAB, "hidden_size": hidden,
           "intermediate_size": pick(draw, 16, 32, 64, 96, 128),
           "num_hidden_layers": draw(st.integers(1, 4)), "num_attention_heads": heads,
           "num_key_value_heads": kv, "max_position_embeddings": 64,
           "rms_norm_eps": pick(draw, 1e-6, 1e-5), "tie_word_embeddings": draw(st.booleans())}
    if head_dim is not None:  # otherwise hidden // heads, always even here
        raw["head_dim"] = head_dim
    return raw


def window(draw) -> int:
    return draw(st.integers(2, 8))


def layer_types(draw, layers: int) -> list[str]:
    return draw(st.lists(st.sampled_from(["sliding_attention", "full_attention"]), min_size=layers, max_size=layers))


@st.composite
def llama(draw):
    raw = draw(dense_base("llama"))
    raw.update(attention_bias=draw(st.booleans()), mlp_bias=draw(st.booleans()),
               rope_parameters=draw(rope_spec()))
    return raw


@st.composite
def qwen(draw, model_type):
    """Qwen2 (fixed q/k/v biases) and Qwen3 (per-head q/k norm): the window from max_window_layers on."""
    raw = draw(dense_base(model_type, head_dim_free=model_type == "qwen3"))
    layers = raw["num_hidden_layers"]
    raw.update(rope_parameters=draw(rope_spec()), use_sliding_window=draw(st.booleans()),
               sliding_window=window(draw), max_window_layers=draw(st.integers(0, layers)))
    return raw


@st.composite
def gemma(draw):
    raw = draw(dense_base("gemma"))
    raw.update(hidden_act=pick(draw, "gelu_pytorch_tanh", "gelu"), rope_theta=pick(draw, 10_000.0, 1_000_000.0))
    return raw


@st.composite
def gemma2(draw):
    raw = draw(dense_base("gemma2"))
    raw.update(hidden_activation="gelu_pytorch_tanh", query_pre_attn_scalar=pick(draw, 8, 16, 24, 64),
               sliding_window=window(draw), rope_theta=10_000.0,
               attn_logit_softcapping=pick(draw, None, 5.0, 20.0, 50.0),
               final_logit_softcapping=pick(draw, None, 5.0, 30.0))
    if draw(st.booleans()):
        raw["layer_types"] = layer_types(draw, raw["num_hidden_layers"])
    return raw


@st.composite
def gemma3(draw):
    raw = draw(dense_base("gemma3_text"))
    local = {"rope_type": "default", "rope_theta": pick(draw, 10_000.0, 20_000.0)}
    raw.update(hidden_activation="gelu_pytorch_tanh", query_pre_attn_scalar=pick(draw, 8, 16, 64),
               sliding_window=window(draw), final_logit_softcapping=pick(draw, None, 5.0),
               rope_parameters={"sliding_attention": local, "full_attention": draw(rope_spec(theta=1_000_000.0))})
    if draw(st.booleans()):
        raw["layer_types"] = layer_types(draw, raw["num_hidden_layers"])
    else:
        raw["sliding_window_pattern"] = pick(draw, 2, 3, 6)
    return raw


@st.composite
def olmo(draw, model_type):
    raw = draw(dense_base(model_type))
    raw["rope_theta"] = pick(draw, 10_000.0, 500_000.0)
    if model_type == "olmo3":
        raw["sliding_window"] = window(draw)
        if draw(st.booleans()):
            raw["layer_types"] = layer_types(draw, raw["num_hidden_layers"])
        if draw(st.booleans()):  # the published Olmo 3 form: YaRN on the global layers, legacy dialect
            raw["rope_scaling"] = {"rope_type": "yarn", "factor": pick(draw, 2.0, 8.0),
                                   "original_max_position_embeddings": pick(draw, 16, 32)}
    return raw


@st.composite
def smollm3(draw):
    raw = draw(dense_base("smollm3"))
    layers = raw["num_hidden_layers"]
    raw.update(rope_theta=2_000_000.0, use_sliding_window=draw(st.booleans()), sliding_window=window(draw))
    if draw(st.booleans()):
        raw["no_rope_layers"] = draw(st.lists(st.sampled_from([0, 1]), min_size=layers, max_size=layers))
    else:
        raw["no_rope_layer_interval"] = pick(draw, 2, 3, 4)
    return raw


@st.composite
def mistral(draw):
    raw = draw(dense_base("mistral"))
    raw.update(rope_theta=1_000_000.0, sliding_window=draw(st.one_of(st.none(), st.integers(2, 8))))
    return raw


@st.composite
def seed_oss(draw):
    raw = draw(dense_base("seed_oss"))
    raw.update(attention_bias=draw(st.booleans()), attention_out_bias=draw(st.booleans()),
               rope_parameters=draw(rope_spec()))
    return raw


@st.composite
def experts(draw, raw, count_field, size_field):
    count = draw(st.integers(2, 8))
    raw.update({count_field: count, "num_experts_per_tok": draw(st.integers(1, min(count, 4))),
                size_field: pick(draw, 16, 24, 32)})
    return raw


@st.composite
def mixtral(draw):
    raw = draw(dense_base("mixtral"))
    raw.update(rope_theta=1_000_000.0, sliding_window=draw(st.one_of(st.none(), st.integers(2, 8))))
    return draw(experts(raw, "num_local_experts", "intermediate_size"))


@st.composite
def qwen_moe(draw, model_type):
    raw = draw(dense_base(model_type, head_dim_free=model_type == "qwen3_moe"))
    layers = raw["num_hidden_layers"]
    raw.update(rope_theta=1_000_000.0, use_sliding_window=False, norm_topk_prob=draw(st.booleans()),
               decoder_sparse_step=pick(draw, 1, 2),
               mlp_only_layers=sorted(draw(st.sets(st.integers(0, layers - 1), max_size=layers - 1))))
    if model_type == "qwen2_moe":
        raw.update(qkv_bias=draw(st.booleans()), shared_expert_intermediate_size=pick(draw, 16, 48))
    return draw(experts(raw, "num_experts", "moe_intermediate_size"))


@st.composite
def olmoe(draw):
    raw = draw(dense_base("olmoe", head_dim_free=False))  # its q_norm spans hidden_size: heads x head_dim = hidden
    raw.update(rope_theta=10_000.0, norm_topk_prob=draw(st.booleans()), clip_qkv=pick(draw, None, 2.5, 8.0))
    return draw(experts(raw, "num_experts", "intermediate_size"))


def partial_factor(draw, head_dim: int) -> float:
    """A rotating fraction transformers and the emitter both take: an even number of dimensions, at least 2."""
    return pick(draw, *[f for f in (0.25, 0.5, 1.0) if int(head_dim * f) >= 2 and int(head_dim * f) % 2 == 0])


def layernorm_eps(raw: dict, field: str) -> dict:
    """The norms' epsilon under the key the family's class names it (Family.norm_eps_field: StarCoder2's
    norm_epsilon, Phi's layer_norm_eps, ...)."""
    raw[field] = raw.pop("rms_norm_eps")
    return raw


@st.composite
def granite(draw, model_type="granite"):
    raw = draw(dense_base(model_type))
    head_dim = raw.get("head_dim", raw["hidden_size"] // raw["num_attention_heads"])
    # the published scale: 1 / head_dim (Granite 3) or about head_dim^-0.5; 1.0 at head_dim 32 makes attention
    # so sharp that fp32 rounding alone moves the logits past the bound
    raw.update(rope_parameters=draw(rope_spec()), embedding_multiplier=pick(draw, 0.25, 1.0, 12.0),
               residual_multiplier=pick(draw, 0.22, 1.0, 2.0),
               attention_multiplier=pick(draw, 1 / head_dim, 0.5 / head_dim ** 0.5), logits_scaling=pick(draw, 1.0, 3.0, 8.0))
    return draw(experts(raw, "num_local_experts", "intermediate_size")) if model_type == "granitemoe" else raw


@st.composite
def starcoder2(draw):
    raw = layernorm_eps(draw(dense_base("starcoder2")), "norm_epsilon")
    raw.update(rope_parameters=draw(rope_spec()), use_bias=draw(st.booleans()),
               hidden_act=pick(draw, "gelu_pytorch_tanh", "silu"), sliding_window=draw(st.one_of(st.none(),
                                                                                           st.integers(2, 8))))
    return raw


@st.composite
def phi(draw):
    raw = layernorm_eps(draw(dense_base("phi", head_dim_free=False)), "layer_norm_eps")
    raw.update(hidden_act="gelu_new", rope_theta=pick(draw, 10_000.0, 500_000.0),
               partial_rotary_factor=partial_factor(draw, raw["hidden_size"] // raw["num_attention_heads"]))
    return raw


@st.composite
def stablelm(draw):
    raw = layernorm_eps(draw(dense_base("stablelm", head_dim_free=False)), "layer_norm_eps")
    raw.update(rope_theta=pick(draw, 10_000.0, 500_000.0), use_qkv_bias=draw(st.booleans()),
               use_parallel_residual=draw(st.booleans()), qk_layernorm=draw(st.booleans()),
               partial_rotary_factor=partial_factor(draw, raw["hidden_size"] // raw["num_attention_heads"]))
    return raw


@st.composite
def gpt_neox(draw):
    raw = layernorm_eps(draw(dense_base("gpt_neox", head_dim_free=False)), "layer_norm_eps")
    del raw["num_key_value_heads"]
    raw.update(hidden_act=pick(draw, "gelu", "gelu_new"), use_parallel_residual=draw(st.booleans()),
               attention_bias=draw(st.booleans()))
    factor = partial_factor(draw, raw["hidden_size"] // raw["num_attention_heads"])
    if draw(st.booleans()):  # the legacy dialect of the Pythia checkpoints
        raw.update(rotary_pct=factor, rotary_emb_base=pick(draw, 10_000, 500.0))
    else:
        raw["rope_parameters"] = {"rope_type": "default", "rope_theta": 10_000.0, "partial_rotary_factor": factor}
    return raw


@st.composite
def cohere(draw, model_type="cohere"):
    raw = layernorm_eps(draw(dense_base(model_type, head_dim_free=model_type == "cohere")), "layer_norm_eps")
    raw.update(rope_theta=pick(draw, 10_000.0, 8_000_000.0), logit_scale=pick(draw, 0.0625, 0.25, 1.0),
               attention_bias=draw(st.booleans()))
    if model_type == "cohere":
        raw["use_qk_norm"] = draw(st.booleans())
    else:
        raw.update(sliding_window=draw(st.integers(2, 8)))  # transformers' Cohere2 cannot run without a window
        if draw(st.booleans()):
            raw["layer_types"] = layer_types(draw, raw["num_hidden_layers"])
        else:
            raw["sliding_window_pattern"] = pick(draw, 2, 4)
    return raw


@st.composite
def nemotron(draw):
    raw = layernorm_eps(draw(dense_base("nemotron")), "norm_eps")
    raw.update(hidden_act="relu2", rope_theta=10_000.0, attention_bias=draw(st.booleans()),
               mlp_bias=draw(st.booleans()), partial_rotary_factor=partial_factor(draw, raw["head_dim"]))
    return raw


@st.composite
def exaone4(draw):
    raw = draw(dense_base("exaone4"))
    raw.update(rope_theta=pick(draw, 10_000.0, 1_000_000.0), sliding_window=window(draw),
               sliding_window_pattern=pick(draw, 2, 3, 4))
    if draw(st.booleans()):
        raw["layer_types"] = layer_types(draw, raw["num_hidden_layers"])
    return raw


@st.composite
def glm4(draw):
    raw = draw(dense_base("glm4"))
    raw.update(rope_theta=10_000.0, attention_bias=draw(st.booleans()),
               partial_rotary_factor=partial_factor(draw, raw["head_dim"]))
    return raw


@st.composite
def phi3(draw):
    raw = draw(dense_base("phi3"))
    rotary = int(raw.get("head_dim", raw["hidden_size"] // raw["num_attention_heads"]) * 1.0)
    raw.update(sliding_window=draw(st.one_of(st.none(), st.integers(2, 8))), rope_theta=10_000.0)
    if draw(st.booleans()):
        factors = lambda: draw(st.lists(st.sampled_from([1.0, 1.5, 4.0, 12.0]), min_size=rotary // 2,
                                        max_size=rotary // 2))
        raw.update(original_max_position_embeddings=pick(draw, 32, 64), max_position_embeddings=pick(draw, 64, 256),
                   rope_scaling={"type": pick(draw, "longrope", "su"), "short_factor": factors(),
                                 "long_factor": factors()})
    return raw


@st.composite
def gpt_oss(draw):
    raw = draw(dense_base("gpt_oss"))
    raw.update(attention_bias=draw(st.booleans()), sliding_window=window(draw), swiglu_alpha=pick(draw, 1.0, 1.702),
               swiglu_limit=pick(draw, 2.0, 7.0))
    if draw(st.booleans()):
        raw["layer_types"] = layer_types(draw, raw["num_hidden_layers"])
    if draw(st.booleans()):  # else the class's own YaRN
        raw["rope_parameters"] = draw(rope_spec(theta=150_000.0))
    return draw(experts(raw, "num_local_experts", "intermediate_size"))


VALID = {
    "llama": llama(), "qwen2": qwen("qwen2"), "qwen3": qwen("qwen3"), "gemma": gemma(), "gemma2": gemma2(),
    "gemma3_text": gemma3(), "olmo2": olmo("olmo2"), "olmo3": olmo("olmo3"), "smollm3": smollm3(),
    "mistral": mistral(), "seed_oss": seed_oss(), "mixtral": mixtral(), "qwen2_moe": qwen_moe("qwen2_moe"),
    "qwen3_moe": qwen_moe("qwen3_moe"), "olmoe": olmoe(),
    "phi": phi(), "gpt_neox": gpt_neox(), "nemotron": nemotron(), "exaone4": exaone4(), "glm4": glm4(),
    "granite": granite(), "granitemoe": granite("granitemoe"), "starcoder2": starcoder2(), "stablelm": stablelm(),
    "cohere": cohere(), "cohere2": cohere("cohere2"), "phi3": phi3(), "gpt_oss": gpt_oss(),
}
MOE = ("mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "granitemoe", "gpt_oss")


# -- one example end to end ---------------------------------------------------------------------------

def fuzz_fixture(raw: dict, seed: int, prompt_len: int, directory: Path) -> Fixture:
    path = directory / "config.json"
    path.write_text(json.dumps(raw, indent=1))
    return Fixture(name=f"fuzz-{raw['model_type']}", config_path=path, config=raw, seed=seed, prompt_len=prompt_len,
                   bound=DEFAULT_BOUND, bound_reason=None, purpose="fuzz", mutants=())


def router_margin(fixture: Fixture) -> float:
    """The smallest gap between the k-th and (k+1)-th router probability over the prompt: below 1e-4 fp32
    noise may pick another expert than torch does, which no emitter can match (docs/adding-a-family.md, Mixture of experts)."""
    import numpy as np
    import torch
    from archval.harness.core import oracle_cache as oracles
    oracle, logits = oracles.model(fixture), []
    gates = [oracle.router(i) for i in oracle.routed_layers()]  # mlp.gate, GraniteMoE's block_sparse_moe.router
    if not gates:
        return 1.0
    hooks = [g.register_forward_hook(lambda m, i, out: logits.append(out[0] if isinstance(out, tuple) else out))
             for g in gates]
    with torch.no_grad():
        oracle.model(input_ids=torch.from_numpy(fixture.prompt().astype(np.int64))[None], use_cache=False)
    for h in hooks:
        h.remove()
    k = fixture.config["num_experts_per_tok"]
    probs = np.sort(torch.softmax(torch.cat([x.reshape(-1, x.shape[-1]) for x in logits]).float(), -1).numpy(), 1)
    probs = probs[:, ::-1]
    return float((probs[:, k - 1] - probs[:, k]).min()) if probs.shape[1] > k else 1.0


def check_case(case: dict, skip_router_ties: bool = True) -> dict:
    """Run one fuzz case {config, seed, prompt_len, graph}; returns the record."""
    with tempfile.TemporaryDirectory(prefix="archval-fuzz-") as tmp:
        fixture = fuzz_fixture(case["config"], case["seed"], case["prompt_len"], Path(tmp))
        if skip_router_ties and case["config"]["model_type"] in MOE:
            assume(router_margin(fixture) > 1e-4)
        return run_case(fixture, case["graph"])


def save_failure(case: dict) -> Path:
    text = json.dumps(case, indent=1, sort_keys=True) + "\n"
    path = FAILURES_DIR / f"{hashlib.sha256(text.encode()).hexdigest()[:12]}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@st.composite
def cases(draw, family):
    # the longest prompt whose positions (Fixture.prompt_positions, decode_positions) fit the built-in emitter's
    # graphs: POSITION_GAP + DECODE_GAP past the slots, 16 decode steps, a 32-slot cache
    longest = DEFAULT_CAPACITY - DEFAULT_DECODE_STEPS - POSITION_GAP - DECODE_GAP
    return {"config": draw(VALID[family]), "seed": draw(st.integers(0, 2**16)),
            "prompt_len": draw(st.integers(4, longest)),
            "graph": "decode" if LONG or family in CI_DECODE else "prefill"}


@pytest.mark.parametrize("family", sorted(VALID) if LONG else CI_FAMILIES)
def test_valid_config_passes_end_to_end(family):
    @PROFILE
    @given(case=cases(family))
    def check(case):
        note(f"config: {json.dumps(case['config'], sort_keys=True)}")
        record = check_case(case)
        if record.verdict != "PASS":
            path = save_failure(case)
            pytest.fail(f"{record.verdict}: {record.message}\n  case: {json.dumps(case, sort_keys=True)}\n"
                        f"  replay: .venv/bin/python tests/test_fuzz.py {path.relative_to(ROOT)}")
    check()


# -- invalid configs: one constraint broken -------------------------------------------------------------

def break_kv_heads(draw, raw):
    if not FAMILIES[raw["model_type"]].reads_kv_heads_and_head_dim:
        assume(False)  # GPT-NeoX: MHA whatever the config says
    heads = raw["num_attention_heads"]
    raw["num_key_value_heads"] = draw(st.integers(1, 16).filter(lambda kv: heads % kv))
    return "num_key_value_heads"


def break_head_dim(draw, raw):
    if not FAMILIES[raw["model_type"]].reads_kv_heads_and_head_dim:
        assume(False)
    raw["head_dim"] = pick(draw, 7, 15, 0, -8)
    return "head_dim"


def break_size(draw, raw):
    field = pick(draw, "hidden_size", "vocab_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
    raw[field] = pick(draw, 0, -4, "64", True, 16.5)
    return field


def break_eps(draw, raw):
    field = FAMILIES[raw["model_type"]].norm_eps_field
    raw[field] = pick(draw, 0, -1e-6, "1e-6")
    return field


def break_activation(draw, raw):
    field = {"gemma2": "hidden_activation", "gemma3_text": "hidden_activation"}.get(raw["model_type"], "hidden_act")
    taken = FAMILIES[raw["model_type"]].activations  # Phi and GPT-NeoX take gelu_new
    raw[field] = pick(draw, *[a for a in ("relu", "gelu_new", "swish") if a not in taken])
    return field


def break_rope(draw, raw):
    if raw["model_type"] != "llama":
        assume(False)
    spec = raw["rope_parameters"]
    how = pick(draw, "type", "factor", "theta", "partial")
    if how == "type":
        spec["rope_type"] = pick(draw, "longrope", "su", "ntk")
        return "rope_parameters.rope_type"
    if how == "factor":
        spec.update(rope_type=pick(draw, "linear", "yarn", "llama3", "dynamic"), factor=pick(draw, 0.5, -2.0, None),
                    original_max_position_embeddings=16)
        return "rope_parameters.factor"
    if how == "theta":
        spec["rope_theta"] = pick(draw, 0, -10_000.0, "1e4")
        return "rope_parameters.rope_theta"
    spec["partial_rotary_factor"] = 0.5
    return "rope_parameters.partial_rotary_factor"


def break_layer_types(draw, raw):
    if "sliding_window" not in raw:
        assume(False)
    layers = raw["num_hidden_layers"]
    if draw(st.booleans()):
        raw["layer_types"] = ["full_attention"] * (layers + draw(st.integers(1, 2)))
    else:
        raw["layer_types"] = ["full_attention"] * (layers - 1) + [pick(draw, "local", "chunked_attention")]
    return "layer_types"


def break_window(draw, raw):
    if raw["model_type"] not in ("mistral", "mixtral", "gemma2", "olmo3", "gpt_oss"):
        assume(False)
    raw["sliding_window"] = pick(draw, 0, -4, "4")
    return "sliding_window"


def break_top_k(draw, raw):
    if raw["model_type"] not in MOE:
        assume(False)
    count = next(raw[f] for f in ("num_local_experts", "num_experts") if f in raw)
    if "decoder_sparse_step" in raw:  # a layer must route for top-k to matter (HF builds no router otherwise)
        raw.update(decoder_sparse_step=1, mlp_only_layers=[])
    raw["num_experts_per_tok"] = count + draw(st.integers(1, 4))
    return "num_experts_per_tok"


def break_model_type(draw, raw):
    raw["model_type"] = pick(draw, "gpt2", "llama4", "", None)
    return "model_type"


def drop_required(draw, raw):
    field = pick(draw, "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
    del raw[field]
    return field


NON_FINITE = (math.nan, math.inf, -math.inf)
# JSON values of every kind, and the edges of each: a type-confused field gets one of these
CONFUSERS = (None, True, False, 0, -1, 7, 2**40, 1.5, 1e9, "", "x", "silu", [], [1], [True], ["x"], [[1]], {},
             {"a": 1}, {"0": "x"}, {"rope_type": "linear"}) + NON_FINITE


def declared_fields(raw: dict) -> dict:
    return {**PRETRAINED_FIELDS, **FAMILIES[raw["model_type"]].fields}


def break_type(draw, raw):
    """A field of the family's transformers config class, given a value of a type that class does not declare."""
    declared = declared_fields(raw)
    field = draw(st.sampled_from(sorted(declared)))
    raw[field] = draw(st.sampled_from([v for v in CONFUSERS if not accepts(declared[field], v)]))
    return field


def break_finite(draw, raw):
    """A float in the config (eps, a RoPE base or factor, a soft-cap), at the top level or nested, made NaN or
    infinite (an integer field given one is a type confusion, break_type's)."""
    paths = [(k,) for k, v in raw.items() if isinstance(v, float)]
    for key, value in raw.items():
        if isinstance(value, dict):
            paths += [(key, k) for k, v in value.items() if isinstance(v, float)]
    path = draw(st.sampled_from(sorted(paths)))
    parent = raw[path[0]] if len(path) == 2 else raw
    parent[path[-1]] = draw(st.sampled_from(NON_FINITE))
    return ".".join(path)


BREAKERS = [break_kv_heads, break_head_dim, break_size, break_eps, break_activation, break_rope,
            break_layer_types, break_window, break_top_k, break_model_type, drop_required, break_type, break_finite]


@st.composite
def invalid_configs(draw):
    raw = draw(st.sampled_from(sorted(VALID)).flatmap(lambda family: VALID[family]))
    return raw, draw(st.sampled_from(BREAKERS))(draw, raw)


@settings(PROFILE, max_examples=1000 if LONG else 150)
@given(invalid_configs())
def test_invalid_config_is_refused_naming_the_field(broken):
    raw, field = broken
    note(f"config: {json.dumps(raw, sort_keys=True)}")
    with pytest.raises(ConfigError) as refusal:
        config = Config.from_dict(raw, source="fuzz.json")
        for graph in GRAPHS:
            emit(config, graph)
    message = str(refusal.value)
    assert message.startswith("fuzz.json: ") and message.endswith(".") and "\n" not in message, message
    assert f"field '{field}'" in message, message


def json_values():
    return st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                  max_size=4), max_leaves=8)


@st.composite
def confused_configs(draw):
    """A valid config with any field (declared, legacy, or unknown) or a nested RoPE entry set to any JSON value."""
    raw = draw(st.sampled_from(sorted(VALID)).flatmap(lambda family: VALID[family]))
    field = draw(st.sampled_from(sorted(declared_fields(raw)) + ["rope_theta", "rope_scaling", "sliding_window_pattern",
                                                                  "no_rope_layer_interval", "torch_dtype", "num_labels",
                                                                  "cls", "to_dict", "unknown_field"]) | st.text())
    value = draw(st.sampled_from(CONFUSERS) | json_values())
    if isinstance(raw.get("rope_parameters"), dict) and draw(st.booleans()):
        raw["rope_parameters"][draw(st.sampled_from(["factor", "rope_theta", "rope_type", "full_attention"]))] = value
    else:
        raw[field] = value
    return raw


def hf_config(raw: dict):
    from transformers import AutoConfig
    from archval.oracles.hf import binding
    return AutoConfig.for_model(**binding(raw["model_type"]).config(raw))


@settings(PROFILE, max_examples=1000 if LONG else 150)
@given(confused_configs())
def test_any_value_of_any_field_is_taken_or_refused_never_a_traceback(raw):
    """Refused: one sentence. Taken: the emitter emits and shrinking works, and transformers' config class takes it."""
    note(f"config: {json.dumps(raw, sort_keys=True)}")
    try:
        config = Config.from_dict(raw, source="fuzz.json")
        for graph in GRAPHS:
            emit(config, graph)
        shrink(raw, source="fuzz.json")
    except (ConfigError, ShrinkError) as refusal:
        message = str(refusal)
        assert message.startswith("fuzz.json") and message.endswith(".") and "\n" not in message, message
        return
    hf_config(raw)


@settings(PROFILE, max_examples=400 if LONG else 100)
@given(st.binary(max_size=64) | json_values().map(lambda v: json.dumps(v).encode()))
def test_any_bytes_as_a_file_are_read_or_refused_never_a_traceback(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("read") / "config.json"
    path.write_bytes(content)
    try:
        assert isinstance(read_json_object(path, ConfigError), dict)
    except ConfigError as refusal:
        assert str(refusal).startswith(f"{path}: ") and "\n" not in str(refusal), refusal


def test_valid_configs_are_accepted_by_the_emitter():
    """Cheap and wide: every valid example of every family emits both graphs (no compile)."""
    @settings(PROFILE, max_examples=400 if LONG else 60)
    @given(st.sampled_from(sorted(VALID)).flatmap(lambda family: VALID[family]))
    def check(raw):
        config = Config.from_dict(raw, source="fuzz.json")
        for graph in GRAPHS:
            assert emit(config, graph).startswith(f"module @{raw['model_type']}_{graph}")
    check()


if __name__ == "__main__":  # replay: tests/test_fuzz.py reports/fuzz/<sha>.json [prefill|decode]
    replayed = json.loads(Path(sys.argv[1]).read_text())
    if len(sys.argv) > 2:
        replayed["graph"] = sys.argv[2]
    record = check_case(replayed, skip_router_ties=False)
    print(json.dumps({"graph": record.graph, "verdict": record.verdict, "max_abs_diff": record.max_abs_diff,
                      "argmax_match": record.logits and record.logits.argmax_match, "message": record.message}))
    sys.exit(record.verdict != "PASS")
