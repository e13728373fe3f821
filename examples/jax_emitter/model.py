"""The decoder math in JAX, for Llama, Qwen3 and Gemma 2, as transformers computes it (fp32).

Weights arrive as a dict keyed by checkpoint tensor name; `weight_names(spec)` is the
list the graph takes, in order. `prefill` and `decode` are archval's two graphs, in the ABI
variants the built-in emitter does not use: per-layer caches (`k_cache.{i}`, `v_cache.{i}`,
each [S, K, D], interleaved by layer) and prefill logits at every position.
Shapes: T tokens, H query heads, K kv heads, D head_dim, L layers, S cache slots.
"""
import os

import jax
import jax.numpy as jnp
import numpy as np

# Deliberate bugs for checking that archval catches them: ARCHVAL_JAX_BUG=eps|rope|slot.
BUG = os.environ.get("ARCHVAL_JAX_BUG", "")


def cache_names(spec):
    """The per-layer cache arguments, in the order decode takes and returns them (prefill returns them so too)."""
    return [f"{kv}_cache.{i}" for i in range(spec.layers) for kv in "kv"]


def weight_names(spec):
    names = ["model.embed_tokens.weight"]
    for i in range(spec.layers):
        p = f"model.layers.{i}."
        names += [p + "input_layernorm.weight"]
        names += [p + f"self_attn.{x}_proj.weight" for x in "qkv"]
        if spec.qk_norm:
            names += [p + "self_attn.q_norm.weight", p + "self_attn.k_norm.weight"]
        names += [p + "self_attn.o_proj.weight", p + "post_attention_layernorm.weight"]
        if spec.sandwich_norm:
            names += [p + "pre_feedforward_layernorm.weight"]
        names += [p + f"mlp.{x}_proj.weight" for x in ("gate", "up", "down")]
        if spec.sandwich_norm:
            names += [p + "post_feedforward_layernorm.weight"]
    names += ["model.norm.weight"]
    if not spec.tied_head:
        names += ["lm_head.weight"]
    return names


def weight_shapes(spec):
    E, I, V = spec.hidden, spec.intermediate, spec.vocab
    Q, KV, D = spec.heads * spec.head_dim, spec.kv_heads * spec.head_dim, spec.head_dim
    shape = {"embed_tokens": (V, E), "lm_head": (V, E), "q_proj": (Q, E), "k_proj": (KV, E),
             "v_proj": (KV, E), "o_proj": (E, Q), "q_norm": (D,), "k_norm": (D,),
             "gate_proj": (I, E), "up_proj": (I, E), "down_proj": (E, I)}
    return [shape.get(n.split(".")[-2], (E,)) for n in weight_names(spec)]


# ---------------------------------------------------------------- building blocks

def rms_norm(x, w, spec):
    eps = spec.eps * 10 if BUG == "eps" else spec.eps
    x = x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + eps)
    return x * (1.0 + w) if spec.plus_one_norm else x * w


def rope(x, positions, spec):
    """x: [T, heads, D] rotated by angle position * inv_freq (HF's rotate-half pairing)."""
    D = spec.head_dim
    inv_freq = 1.0 / (np.float32(spec.rope_theta) ** (np.arange(0, D, 2, dtype=np.float32) / np.float32(D)))
    angles = positions.astype(jnp.float32)[:, None] * inv_freq[None, :]      # [T, D/2]
    cos, sin = jnp.cos(angles)[:, None, :], jnp.sin(angles)[:, None, :]      # [T, 1, D/2]
    if BUG == "rope":  # GPT-J pairing: (x0, x1), (x2, x3), ...
        x1, x2 = x[..., 0::2], x[..., 1::2]
        return jnp.stack([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).reshape(x.shape)
    x1, x2 = x[..., : D // 2], x[..., D // 2:]
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def softcap(x, cap):
    return x if cap is None else jnp.tanh(x / cap) * cap


def linear(x, w):
    return x @ w.T  # checkpoint matrices are [out, in]


def mlp(x, w, p, spec):
    gate = linear(x, w[p + "mlp.gate_proj.weight"])
    act = jax.nn.silu(gate) if spec.act == "silu" else jax.nn.gelu(gate, approximate=True)
    return linear(act * linear(x, w[p + "mlp.up_proj.weight"]), w[p + "mlp.down_proj.weight"])


def qkv(x, positions, w, p, spec):
    """Project, split heads, q/k norm (Qwen3), RoPE. Returns q [T,H,D], k and v [T,K,D]."""
    T, D = x.shape[0], spec.head_dim
    q = linear(x, w[p + "self_attn.q_proj.weight"]).reshape(T, spec.heads, D)
    k = linear(x, w[p + "self_attn.k_proj.weight"]).reshape(T, spec.kv_heads, D)
    v = linear(x, w[p + "self_attn.v_proj.weight"]).reshape(T, spec.kv_heads, D)
    if spec.qk_norm:
        q = rms_norm(q, w[p + "self_attn.q_norm.weight"], spec)
        k = rms_norm(k, w[p + "self_attn.k_norm.weight"], spec)
    return rope(q, positions, spec), rope(k, positions, spec), v


def attend(q, k, v, allowed, spec):
    """q [T,H,D] over keys/values [S,K,D]; allowed [T,S] bool. Returns [T, H*D]."""
    group = spec.heads // spec.kv_heads                       # GQA: query head h reads kv head h // group
    k, v = jnp.repeat(k, group, axis=1), jnp.repeat(v, group, axis=1)
    scores = jnp.einsum("thd,shd->hts", q, k) * spec.score_scale
    scores = softcap(scores, spec.attn_softcap)
    scores = jnp.where(allowed[None], scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1)
    return jnp.einsum("hts,shd->thd", probs, v).reshape(q.shape[0], -1)


def mask(query_slots, key_slots, window):
    """Causal over cache slots; a sliding layer sees only the last `window` slots."""
    q, k = query_slots[:, None], key_slots[None, :]
    allowed = k <= q
    return allowed if window is None else allowed & (k > q - window)


def layer(x, attention, w, p, spec, taps):
    """One decoder layer around an attention callback h -> attention output [T, H*D]. taps: a dict of lists
    that collects archval's debug taps (the attention and MLP outputs before any post-norm and residual
    add, and the layer's output)."""
    h = rms_norm(x, w[p + "input_layernorm.weight"], spec)
    a = linear(attention(h), w[p + "self_attn.o_proj.weight"])
    taps["attention"].append(a)
    if spec.sandwich_norm:
        x = x + rms_norm(a, w[p + "post_attention_layernorm.weight"], spec)
        m = mlp(rms_norm(x, w[p + "pre_feedforward_layernorm.weight"], spec), w, p, spec)
        x = x + rms_norm(m, w[p + "post_feedforward_layernorm.weight"], spec)
    else:
        x = x + a
        m = mlp(rms_norm(x, w[p + "post_attention_layernorm.weight"], spec), w, p, spec)
        x = x + m
    taps["mlp"].append(m)
    taps["layer"].append(x)
    return x


def embed(tokens, w, spec):
    return w["model.embed_tokens.weight"][tokens] * jnp.float32(spec.embed_scale)


def head(x, w, spec):
    x = rms_norm(x, w["model.norm.weight"], spec)
    logits = linear(x, w["model.embed_tokens.weight" if spec.tied_head else "lm_head.weight"])
    return softcap(logits, spec.final_softcap)


# ---------------------------------------------------------------- the two graphs

TAP_POINTS = ("attention", "mlp", "layer")  # archval's tap protocol: results in this order, each [L, T, hidden]


def prefill(spec, weights, tokens, positions, real_len, debug_taps=False):
    """tokens, positions i32[T] (padded), real_len i32[] (unused: every position's logits are returned) ->
    logits f32[T, V], then k_cache.0, v_cache.0, k_cache.1, ... f32[T, K, D]; with debug_taps, then the
    taps f32[L, T, hidden] in TAP_POINTS order."""
    w = dict(zip(weight_names(spec), weights))
    slots = jnp.arange(tokens.shape[0])
    x = embed(tokens, w, spec)
    caches, taps = [], {point: [] for point in TAP_POINTS}
    for i in range(spec.layers):
        def attention(h, i=i):
            q, k, v = qkv(h, positions, w, f"model.layers.{i}.", spec)
            caches.extend((k, v))
            return attend(q, k, v, mask(slots, slots, spec.windows[i]), spec)
        x = layer(x, attention, w, f"model.layers.{i}.", spec, taps)
    tapped = [jnp.stack(taps[point]) for point in TAP_POINTS] if debug_taps else []
    return head(x, w, spec), *caches, *tapped


def decode(spec, weights, token, position, cache_len, *caches):
    """One token at `position`, written to cache slot `cache_len` of each layer's caches (f32[S, K, D], in
    cache_names order) -> logits f32[V], then the caches in the same order."""
    w = dict(zip(weight_names(spec), weights))
    slot = cache_len + 1 if BUG == "slot" else cache_len
    caches = list(caches)
    slots = jnp.arange(caches[0].shape[0])
    x = embed(token[None], w, spec)
    for i in range(spec.layers):
        def attention(h, i=i):
            q, k, v = qkv(h, position[None], w, f"model.layers.{i}.", spec)
            # the new key and value go to slot cache_len, which the token then attends to with the slots before it.
            # A select rather than dynamic_update_slice: under jax.vmap (decode_batched) that becomes a batched
            # scatter, which IREE 3.13's iree_linalg_ext.scatter refuses ("expected indices to be equal to batch rank")
            at = (slots == slot)[:, None, None]  # k, v: [1, K, D], broadcast over the slots
            caches[2 * i] = jnp.where(at, k, caches[2 * i])
            caches[2 * i + 1] = jnp.where(at, v, caches[2 * i + 1])
            return attend(q, caches[2 * i], caches[2 * i + 1], mask(cache_len[None], slots, spec.windows[i]), spec)
        x = layer(x, attention, w, f"model.layers.{i}.", spec, {point: [] for point in TAP_POINTS})
    return head(x[0], w, spec), *caches
