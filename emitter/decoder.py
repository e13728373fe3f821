"""The shared decoder core. Every family is this forward with different flags."""
from __future__ import annotations

import math

from . import rope as rope_tables
from .config import Config, ConfigError, Rope
from .mla import LatentAttention
from .stablehlo import Function, Value, module

MASKED = -3.4028234663852886e38  # f32 lowest, the value HF adds to masked scores
NEG_INF = float("-inf")


class Decoder(LatentAttention):
    """Emits one forward pass into a Function; weights become named arguments on first use.

    cache: decode's (k_cache, v_cache, cache_len), caches f32[L, C, n_kv, D] whose first
    cache_len slots hold the earlier tokens (latent attention's: kv_latent f32[L, C, rank] and
    k_rope f32[L, C, rope]); None for prefill, which attends to its own keys.
    """

    def __init__(self, cfg: Config, fn: Function, cache: tuple[Value, Value, Value] | None = None):
        self.cfg, self.g = cfg, fn
        self.weights: dict[str, Value] = {}
        self.cache = cache
        self.new_kv: list[tuple[Value, Value]] = []  # prefill: each layer's keys/values, returned as the cache

    def weight(self, name: str, shape) -> Value:
        """The weight the core calls `name` (Llama's naming), an argument named as the family's checkpoint names it."""
        if name not in self.weights:
            self.weights[name] = self.g.weight_argument(f"w{len(self.weights)}", self.cfg.checkpoint_name(name), shape)
        return self.weights[name]

    # -- building blocks ---------------------------------------------------------
    def linear(self, x: Value, name: str, out_dim: int, bias: bool = False, f32: bool = False) -> Value:
        """x · wᵀ (+ b) in the graph's compute dtype; f32: in f32 whatever it is (a router's choice)."""
        w = self.weight(f"{name}.weight", (out_dim, x.shape[-1]))
        y = (self.g.dot_general if f32 else self.g.matmul)(x, w, contract=(len(x.shape) - 1, 1))
        if bias:
            b = self.weight(f"{name}.bias", (out_dim,))
            y = self.g.add(y, self.g.broadcast(b, y.shape, [len(y.shape) - 1]))
        return y

    def rms_norm(self, x: Value, name: str, eps: float | None = None) -> Value:
        """x * rsqrt(mean(x^2) + eps) * w  (or * (1 + w)), over the last axis; eps: the config's unless given."""
        g, last = self.g, len(x.shape) - 1
        width = x.shape[-1]
        mean_sq = g.div(g.reduce(g.mul(x, x), g.scalar(0.0), "add", [last]), g.scalar(float(width)))
        inv_rms = g.rsqrt(g.add(mean_sq, g.scalar(self.cfg.rms_norm_eps if eps is None else eps)))
        y = g.mul(x, g.broadcast(inv_rms, x.shape, list(range(last))))
        w = self.weight(f"{name}.weight", (width,))
        if self.cfg.norm_plus_one:
            w = g.add(g.scalar(1.0), w)
        return g.mul(y, g.broadcast(w, x.shape, [last]))

    def layer_norm(self, x: Value, name: str) -> Value:
        """(x - mean) * rsqrt(var + eps) * w + b over the last axis: nn.LayerNorm (w as 1 + w for Nemotron's
        LayerNorm1P; no b for Cohere's, norm_kind layernorm_no_bias)."""
        g, last = self.g, len(x.shape) - 1
        width, keep = x.shape[-1], list(range(last))
        mean = g.div(g.reduce(x, g.scalar(0.0), "add", [last]), g.scalar(float(width)))
        centred = g.sub(x, g.broadcast(mean, x.shape, keep))
        var = g.div(g.reduce(g.mul(centred, centred), g.scalar(0.0), "add", [last]), g.scalar(float(width)))
        y = g.mul(centred, g.broadcast(g.rsqrt(g.add(var, g.scalar(self.cfg.rms_norm_eps))), x.shape, keep))
        return self.scale_and_shift(y, name)

    def scale_and_shift(self, y: Value, name: str) -> Value:
        g, width, last = self.g, y.shape[-1], len(y.shape) - 1
        w = self.weight(f"{name}.weight", (width,))
        if self.cfg.norm_plus_one:
            w = g.add(g.scalar(1.0), w)
        y = g.mul(y, g.broadcast(w, y.shape, [last]))
        if self.cfg.norm_kind == "layernorm_no_bias":
            return y
        return g.add(y, g.broadcast(self.weight(f"{name}.bias", (width,)), y.shape, [last]))

    def head_layer_norm(self, x: Value, p: str, which: str) -> Value:
        """Cohere's and StableLM's q/k norm on x[T, heads, D]: LayerNorm over each head's D, no bias, a weight per
        head: Cohere's one `{q,k}_norm.weight` [heads, D], StableLM's `{q,k}_layernorm.norms.{h}.weight` [D]."""
        g, (t, h, d) = self.g, x.shape
        if self.cfg.qk_norm == "head_layernorm":
            w = self.weight(f"{p}.{which}_norm.weight", (h, d))
        else:
            w = g.concatenate([g.reshape(self.weight(f"{p}.{which}_layernorm.norms.{j}.weight", (d,)), (1, d))
                               for j in range(h)], dim=0)
        mean = g.div(g.reduce(x, g.scalar(0.0), "add", [2]), g.scalar(float(d)))
        centred = g.sub(x, g.broadcast(mean, x.shape, [0, 1]))
        var = g.div(g.reduce(g.mul(centred, centred), g.scalar(0.0), "add", [2]), g.scalar(float(d)))
        y = g.mul(centred, g.broadcast(g.rsqrt(g.add(var, g.scalar(self.cfg.rms_norm_eps))), x.shape, [0, 1]))
        return g.mul(y, g.broadcast(w, x.shape, [1, 2]))

    def norm(self, x: Value, name: str) -> Value:
        """The residual stream's norm: RMSNorm, or the family's LayerNorm (with or without bias)."""
        return self.rms_norm(x, name) if self.cfg.norm_kind == "rms" else self.layer_norm(x, name)

    def scaled(self, x: Value, factor: float | None) -> Value:
        """x * factor, for a family's multiplier (Granite's); nothing where it has none."""
        return x if factor is None else self.g.mul(x, self.g.scalar(factor))

    def softcap(self, x: Value, cap: float | None) -> Value:
        if cap is None:
            return x
        c = self.g.scalar(cap)
        return self.g.mul(self.g.tanh(self.g.div(x, c)), c)

    def activation(self, x: Value) -> Value:
        """The MLP's activation, in the compute dtype."""
        return self.g.in_compute(self.activation_of, x)

    def activation_of(self, x: Value) -> Value:
        g = self.g
        if self.cfg.mlp_activation == "silu":
            return g.mul(x, g.logistic(x))
        if self.cfg.mlp_activation == "relu2":  # Nemotron: relu(x)^2
            r = g.max(x, g.scalar(0.0))
            return g.mul(r, r)
        if self.cfg.mlp_activation == "gelu_erf":  # 0.5 x (1 + erf(x / sqrt 2))
            return g.mul(g.mul(g.scalar(0.5), x), g.add(g.scalar(1.0), self.erf(g.mul(x, g.scalar(math.sqrt(0.5))))))
        # tanh-approximate GELU: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        inner = g.mul(g.scalar(math.sqrt(2 / math.pi)), g.add(x, g.mul(g.scalar(0.044715), g.mul(x, g.mul(x, x)))))
        return g.mul(g.mul(g.scalar(0.5), x), g.add(g.scalar(1.0), g.tanh(inner)))

    # erf(x) in f32 as x P(x^2) / Q(x^2) on [-4, 4] (Eigen's and XLA's expansion; within 5e-7 of erf)
    ERF_P = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
             -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02)
    ERF_Q = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
             -1.42647390514189e-02)

    def erf(self, x: Value) -> Value:
        g = self.g
        x = g.clamp(-4.0, x, 4.0)
        x2 = g.mul(x, x)

        def polynomial(coefficients):
            acc = g.broadcast(g.scalar(coefficients[0]), x.shape, ())
            for c in coefficients[1:]:
                acc = g.add(g.mul(acc, x2), g.scalar(c))
            return acc
        return g.div(g.mul(x, polynomial(self.ERF_P)), polynomial(self.ERF_Q))

    def apply_rope(self, x: Value, cos: Value, sin: Value) -> Value:
        """RoPE on x[T, heads, D]: the first rotary_width dimensions rotate, the rest pass through."""
        g, (t, h, d), width = self.g, x.shape, self.cfg.rotary_width
        if width == d:
            return self.rotate(x, cos, sin)
        rotated = self.rotate(g.slice(x, (0, 0, 0), (t, h, width)), cos, sin)
        return g.concatenate([rotated, g.slice(x, (0, 0, width), (t, h, d))], dim=2)

    def rotate(self, x: Value, cos: Value, sin: Value) -> Value:
        """The family's pairing: the two halves, or GLM-4's and Cohere's interleaved pairs."""
        return self.rotate_pairs(x, cos, sin) if self.cfg.rope_pairs_interleaved else self.rotate_halves(x, cos, sin)

    def rotate_pairs(self, x: Value, cos: Value, sin: Value) -> Value:
        """Interleaved RoPE on x[T, heads, D]: (x[2i], x[2i+1]) -> (x[2i] c - x[2i+1] s, x[2i+1] c + x[2i] s), c, s of i."""
        g = self.g
        t, h, d = x.shape
        pairs = g.reshape(x, (t, h, d // 2, 2))
        even = g.reshape(g.slice(pairs, (0, 0, 0, 0), (t, h, d // 2, 1)), (t, h, d // 2))
        odd = g.reshape(g.slice(pairs, (0, 0, 0, 1), (t, h, d // 2, 2)), (t, h, d // 2))
        c, s = g.broadcast(cos, even.shape, [0, 2]), g.broadcast(sin, even.shape, [0, 2])
        rotated = [g.sub(g.mul(even, c), g.mul(odd, s)), g.add(g.mul(odd, c), g.mul(even, s))]
        return g.reshape(g.concatenate([g.reshape(r, (t, h, d // 2, 1)) for r in rotated], dim=3), (t, h, d))

    def rotate_halves(self, x: Value, cos: Value, sin: Value) -> Value:
        """Half-split RoPE on x[T, heads, D]: (x1, x2) -> (x1 c - x2 s, x2 c + x1 s)."""
        g = self.g
        t, h, d = x.shape
        x1 = g.slice(x, (0, 0, 0), (t, h, d // 2))
        x2 = g.slice(x, (0, 0, d // 2), (t, h, d))
        c = g.broadcast(cos, x1.shape, [0, 2])
        s = g.broadcast(sin, x1.shape, [0, 2])
        return g.concatenate([g.sub(g.mul(x1, c), g.mul(x2, s)), g.add(g.mul(x2, c), g.mul(x1, s))], dim=2)

    def softmax(self, x: Value) -> Value:
        g, last = self.g, len(x.shape) - 1
        keep = list(range(last))
        peak = g.broadcast(g.reduce(x, g.scalar(NEG_INF), "maximum", [last]), x.shape, keep)
        e = g.exp(g.sub(x, peak))
        return g.div(e, g.broadcast(g.reduce(e, g.scalar(0.0), "add", [last]), x.shape, keep))

    # -- attention ---------------------------------------------------------------
    def mask(self, q_slot: Value, k_slot: Value, window: int | None) -> Value:
        """Additive mask [Tq, Tk] over cache slots (HF's cache_position): a key is visible iff it is
        not in the future and inside the window. Slots past the query (padding, stale cache) never are."""
        g = self.g
        shape = (q_slot.shape[0], k_slot.shape[0])
        q = g.broadcast(q_slot, shape, [0])
        k = g.broadcast(k_slot, shape, [1])
        visible = g.compare("LE", k, q)
        if window is not None:
            visible = g.and_(visible, g.compare("GT", k, g.sub(q, g.scalar(window, "i32"))))
        return g.select(visible, g.scalar(0.0), g.scalar(MASKED))

    def attention(self, x: Value, i: int, rope: tuple[Value, Value] | None, mask: Value) -> Value:
        cfg, g = self.cfg, self.g
        if cfg.mla is not None:
            return self.latent_attention(x, i, rope, mask)
        p = f"model.layers.{i}.self_attn"
        t, nq, nkv, d = x.shape[0], cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        q, k, v = self.project_qkv(x, p)
        if cfg.qk_norm == "projection":
            q, k = self.rms_norm(q, f"{p}.q_norm"), self.rms_norm(k, f"{p}.k_norm")
        if cfg.clip_qkv is not None:
            q, k, v = (g.clamp(-cfg.clip_qkv, t, cfg.clip_qkv) for t in (q, k, v))
        q, k, v = g.reshape(q, (t, nq, d)), g.reshape(k, (t, nkv, d)), g.reshape(v, (t, nkv, d))
        if cfg.qk_norm == "head":
            q, k = self.rms_norm(q, f"{p}.q_norm"), self.rms_norm(k, f"{p}.k_norm")
        if cfg.qk_norm in ("head_layernorm", "per_head_layernorm"):
            q, k = self.head_layer_norm(q, p, "q"), self.head_layer_norm(k, p, "k")
        if rope is not None:
            q, k = self.apply_rope(q, *rope), self.apply_rope(k, *rope)
        return self.linear(self.attend_layer(i, q, k, v, mask), f"{p}.o_proj", cfg.hidden_size, cfg.o_bias)

    def attend_layer(self, i: int, q: Value, k: Value, v: Value, mask: Value) -> Value:
        """Layer i's attention before o_proj, [T, heads * D]: the queries q [T, heads, D] over the keys and values
        the layer attends to (the new k, v [T, n_kv, D] kept or written into the cache: attended_kv)."""
        k, v = self.attended_kv(i, k, v)
        return self.attend(i, q, k, v, mask)

    def attend(self, i: int, q: Value, k: Value, v: Value, mask: Value) -> Value:
        """Layer i's softmax(q kᵀ · scale + mask) v for q [T, heads, D], k and v [Tk, n_kv, D], mask [T, Tk]:
        [T, heads * D]."""
        cfg, g = self.cfg, self.g
        t, tk, nkv = q.shape[0], k.shape[0], k.shape[1]
        group = cfg.num_heads // nkv
        q = self.group_queries(q)
        k, v = g.transpose(k, [1, 0, 2]), g.transpose(v, [1, 0, 2])
        scores = g.mul(g.matmul(q, k, contract=(2, 2), batch=True), g.scalar(cfg.attention_scale))
        scores = self.softcap(scores, cfg.attn_softcap)
        scores = g.reshape(scores, (nkv, group, t, tk))
        probs = self.attention_probs(g.add(scores, g.broadcast(mask, scores.shape, [2, 3])), i)
        probs = g.reshape(probs, (nkv, group * t, tk))
        out = g.matmul(probs, v, contract=(2, 1), batch=True)            # [kv, group*T, D]
        return self.ungroup_heads(out, t)

    def attention_probs(self, scores: Value, i: int) -> Value:
        """Layer i's softmax over the keys of scores [nkv, group, T, Tk]. With attention sinks (GPT-OSS) each query
        head's learned logit `sinks` [heads] is one more column of the softmax, dropped after it: it only adds to the
        denominator."""
        if not self.cfg.attention_sinks:
            return self.softmax(scores)
        g, (nkv, group, t, tk) = self.g, scores.shape
        sinks = self.weight(f"model.layers.{i}.self_attn.sinks", (self.cfg.num_heads,))
        sinks = g.reshape(sinks, (nkv, group))  # head kv * group + j
        probs = self.softmax(g.concatenate([scores, g.broadcast(sinks, (nkv, group, t, 1), [0, 1])], dim=3))
        return g.slice(probs, (0, 0, 0, 0), (nkv, group, t, tk))

    def project_qkv(self, x: Value, p: str) -> tuple[Value, Value, Value]:
        """q [T, nq*D], k and v [T, nkv*D]: three projections, or one fused tensor split in the graph (qkv_fused:
        Phi-3's blocks [q; k; v], GPT-NeoX's [q_h | k_h | v_h] per head)."""
        cfg = self.cfg
        nq, nkv, d = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        if cfg.qkv_fused is not None:
            fused = self.linear(x, f"{p}.qkv_proj", (nq + 2 * nkv) * d, cfg.qkv_bias)
            return self.split_qkv_per_head(fused) if cfg.qkv_fused == "per_head" else self.split_qkv_blocks(fused)
        return (self.linear(x, f"{p}.q_proj", nq * d, cfg.qkv_bias),
                self.linear(x, f"{p}.k_proj", nkv * d, cfg.qkv_bias),
                self.linear(x, f"{p}.v_proj", nkv * d, cfg.qkv_bias))

    def split_qkv_blocks(self, qkv: Value) -> tuple[Value, Value, Value]:
        """[T, (nq + 2 nkv) D] laid out [q | k | v] (Phi-3's qkv_proj)."""
        g, t, q_width, kv_width = self.g, qkv.shape[0], self.cfg.num_heads * self.cfg.head_dim, \
            self.cfg.num_kv_heads * self.cfg.head_dim
        ends = (q_width, q_width + kv_width, q_width + 2 * kv_width)
        return tuple(g.slice(qkv, (0, lo), (t, hi)) for lo, hi in zip((0,) + ends[:2], ends))

    def split_qkv_per_head(self, qkv: Value) -> tuple[Value, Value, Value]:
        """[T, nh*3D] laid out [q_h | k_h | v_h] for each head h (GPT-NeoX's view(T, nh, 3D).chunk(3), MHA)."""
        g, t, nh, d = self.g, qkv.shape[0], self.cfg.num_heads, self.cfg.head_dim
        heads = g.reshape(qkv, (t, nh, 3 * d))
        return tuple(g.reshape(g.slice(heads, (0, 0, j * d), (t, nh, (j + 1) * d)), (t, nh * d)) for j in range(3))

    def group_queries(self, q: Value) -> Value:
        """GQA without repeating K/V: q [T, nq, D] -> [nkv, group*T, D], query head h = kv * group + j
        batched with kv head kv."""
        g, (t, nq, d), nkv = self.g, q.shape, self.cfg.num_kv_heads
        return g.reshape(g.transpose(g.reshape(q, (t, nkv, nq // nkv, d)), [1, 2, 0, 3]), (nkv, nq // nkv * t, d))

    def ungroup_heads(self, out: Value, t: int) -> Value:
        """group_queries' inverse on the attention output: [nkv, group*T, D] -> [T, nq*D] in head order."""
        g, (nkv, _, d) = self.g, out.shape
        group = self.cfg.num_heads // nkv
        return g.reshape(g.transpose(g.reshape(out, (nkv, group, t, d)), [2, 0, 1, 3]), (t, nkv * group * d))

    # -- the KV cache ---------------------------------------------------------------
    def write_slot(self, cache_len: Value) -> Value:
        """Decode writes the new token's key and value into the first free slot."""
        return cache_len

    def attended_kv(self, i: int, k: Value, v: Value) -> tuple[Value, Value]:
        """The keys and values [Tk, n_kv, D] that layer i attends to (latent attention's latent [Tk, rank] and
        rope key [Tk, rope]). Prefill: its own, kept to be returned as the cache. Decode: the cache with this
        token's written in."""
        if self.cache is None:
            self.new_kv.append((k, v))
            return k, v
        g = self.g
        k_cache, v_cache, cache_len = self.cache
        zero = g.scalar(0, "i32")
        starts = [g.scalar(i, "i32"), self.write_slot(cache_len)]
        at = lambda c: starts + [zero] * (len(c.shape) - 2)
        k_cache = g.dynamic_update_slice(k_cache, g.reshape(k, (1, *k.shape)), at(k_cache))
        v_cache = g.dynamic_update_slice(v_cache, g.reshape(v, (1, *v.shape)), at(v_cache))
        self.cache = (k_cache, v_cache, cache_len)
        layer = lambda c: g.reshape(g.slice(c, (i,) + (0,) * (len(c.shape) - 1), (i + 1, *c.shape[1:])), c.shape[1:])
        return layer(k_cache), layer(v_cache)

    def stacked_new_kv(self) -> tuple[Value, Value]:
        """Prefill's cache: every layer's keys and values, f32[L, T, n_kv, D]."""
        g = self.g
        stack = lambda xs: g.concatenate([g.reshape(x, (1, *x.shape)) for x in xs], dim=0)
        return stack([k for k, _ in self.new_kv]), stack([v for _, v in self.new_kv])

    # -- MLP and mixture of experts ------------------------------------------------
    def mlp(self, x: Value, i: int) -> Value:
        moe = self.cfg.moe
        if moe is not None and moe.routed_layers[i]:
            return self.routed_mlp(x, f"model.layers.{i}.mlp")
        if not self.cfg.mlp_gated:
            return self.plain_mlp(x, f"model.layers.{i}.mlp", self.cfg.intermediate_size, self.cfg.mlp_bias)
        return self.gated_mlp(x, f"model.layers.{i}.mlp", self.cfg.intermediate_size, self.cfg.mlp_bias)

    def gated_mlp(self, x: Value, p: str, size: int, bias: bool = False) -> Value:
        if self.cfg.mlp_fused_gate_up:
            gate, up = self.gate_up_halves(self.linear(x, f"{p}.gate_up_proj", 2 * size, bias), size)
            gate = self.activation(gate)
        else:
            gate = self.activation(self.linear(x, f"{p}.gate_proj", size, bias))
            up = self.linear(x, f"{p}.up_proj", size, bias)
        return self.linear(self.g.mul(gate, up), f"{p}.down_proj", self.cfg.hidden_size, bias)

    def gate_up_halves(self, fused: Value, size: int) -> tuple[Value, Value]:
        """A fused gate_up_proj's output [T, 2I] (GLM-4's, Phi-3's): the gate first, then up (their chunk(2))."""
        t = fused.shape[0]
        return self.g.slice(fused, (0, 0), (t, size)), self.g.slice(fused, (0, size), (t, 2 * size))

    def plain_mlp(self, x: Value, p: str, size: int, bias: bool = False) -> Value:
        """down(act(up(x))) without a gate: Phi's fc1/fc2, GPT-NeoX's dense_h_to_4h/4h_to_h, Nemotron's up/down,
        StarCoder2's c_fc/c_proj."""
        h = self.activation(self.linear(x, f"{p}.up_proj", size, bias))
        return self.linear(h, f"{p}.down_proj", self.cfg.hidden_size, bias)

    def top_k(self, probs: Value, k: int) -> Value:
        """1.0 where an expert is among a token's k most probable, else 0.0; probs [T, E].
        An expert's rank counts the experts ahead of it; exact ties go to the lower index."""
        g = self.g
        t, e = probs.shape
        mine, other = g.broadcast(probs, (t, e, e), [0, 1]), g.broadcast(probs, (t, e, e), [0, 2])
        ahead = g.or_(g.compare("GT", other, mine),
                      g.and_(g.compare("EQ", other, mine),
                             g.compare("LT", g.iota((t, e, e), 2), g.iota((t, e, e), 1))))
        rank = g.reduce(g.convert(ahead, "i32"), g.scalar(0, "i32"), "add", [2])
        return g.select(g.compare("LT", rank, g.scalar(k, "i32")), g.scalar(1.0), g.scalar(0.0))

    def routed_mlp(self, x: Value, p: str) -> Value:
        """Each token's output mixes its top-k experts, weighted by the router's softmax over all
        experts. Every expert runs on every token: exact, and cheap at test scale."""
        cfg, g, moe = self.cfg, self.g, self.cfg.moe
        h, e, size = cfg.hidden_size, moe.experts, moe.expert_size
        weights = self.routing_weights(x, p)                                      # [T, E], 0 where unchosen
        if moe.stacked == "in_out":  # GPT-OSS's checkpoint: x @ gate_up [E, H, 2I], then @ down [E, I, H]
            fused = g.matmul(x, self.weight(f"{p}.experts.gate_up_proj", (e, h, 2 * size)), contract=(1, 1))
            down, down_in = self.weight(f"{p}.experts.down_proj", (e, size, h)), 1
        else:
            if moe.stacked == "out_in":  # GraniteMoE's checkpoint holds them stacked: taken as they are
                gate_up = self.weight(f"{p}.experts.gate_up_proj", (e, 2 * size, h))
                down = self.weight(f"{p}.experts.down_proj", (e, h, size))
            else:
                gate_up = g.concatenate([self.experts(p, "gate_proj", (size, h)),
                                         self.experts(p, "up_proj", (size, h))], dim=1)  # [E, 2I, H], gate rows first
                down = self.experts(p, "down_proj", (h, size))                    # [E, H, I]
            fused, down_in = g.matmul(x, gate_up, contract=(1, 2)), 2        # [T, E, 2I]
        if moe.expert_bias:
            fused = g.add(fused, g.broadcast(self.weight(f"{p}.experts.gate_up_proj_bias", (e, 2 * size)),
                                             fused.shape, [1, 2]))
        act = g.transpose(g.in_compute(self.expert_activation, *self.expert_gate_up(fused, size)), [1, 0, 2])  # [E, T, I]
        each = g.transpose(g.matmul(act, down, contract=(2, down_in), batch=True), [1, 0, 2])  # [T, E, H]
        if moe.expert_bias:
            each = g.add(each, g.broadcast(self.weight(f"{p}.experts.down_proj_bias", (e, h)), each.shape, [1, 2]))
        out = g.dot_general(weights, each, contract=(1, 1), batch=True)          # [T, H]
        if moe.shared_expert_size:
            out = g.add(out, self.shared_expert(x, p))
        return out

    def expert_gate_up(self, fused: Value, size: int) -> tuple[Value, Value]:
        """The experts' gate and up [T, E, I] from fused [T, E, 2I]: the two halves, or GPT-OSS's alternate
        columns (gate_up[..., ::2], gate_up[..., 1::2])."""
        g, (t, e, _) = self.g, fused.shape
        if not self.cfg.moe.gate_up_interleaved:
            return g.slice(fused, (0, 0, 0), (t, e, size)), g.slice(fused, (0, 0, size), (t, e, 2 * size))
        pairs = g.reshape(fused, (t, e, size, 2))
        return tuple(g.reshape(g.slice(pairs, (0, 0, 0, j), (t, e, size, j + 1)), (t, e, size)) for j in (0, 1))

    def expert_activation(self, gate: Value, up: Value) -> Value:
        """act(gate) · up; GPT-OSS's clamped SwiGLU: (clamp(up, ±limit) + 1) · g σ(alpha g), g = min(gate,
        limit)."""
        g, clamp = self.g, self.cfg.moe.swiglu_clamp
        if clamp is None:
            return g.mul(self.activation_of(gate), up)
        alpha, limit = clamp
        gate, up = g.clamp(NEG_INF, gate, limit), g.clamp(-limit, up, limit)
        glu = g.mul(gate, g.logistic(g.mul(gate, g.scalar(alpha))))
        return g.mul(g.add(up, g.scalar(1.0)), glu)

    def routing_weights(self, x: Value, p: str) -> Value:
        """Each token's weight on each expert [T, E], zero outside its top-k: the router's softmax over all experts
        (renormalised over the top-k where the family does), or DeepSeek-V3's grouped sigmoid router."""
        g, moe = self.g, self.cfg.moe
        t, e = x.shape[0], moe.experts
        logits = self.linear(x, f"{p}.gate", e, moe.router_bias, f32=True)  # routed in f32
        if moe.scoring == "sigmoid":
            weights = self.grouped_weights(g.logistic(logits), p)
        else:
            probs = self.softmax(logits)
            weights = g.mul(probs, self.top_k(probs, moe.top_k))
        if moe.renormalize:
            total = g.reduce(weights, g.scalar(0.0), "add", [1])
            if moe.scoring == "sigmoid":  # DeepSeek-V3 guards its denominator
                total = g.add(total, g.scalar(1e-20))
            weights = g.div(weights, g.broadcast(total, (t, e), [0]))
        return self.scaled(weights, None if moe.routed_scaling == 1.0 else moe.routed_scaling)

    def grouped_weights(self, scores: Value, p: str) -> Value:
        """DeepSeek-V3: the sigmoid scores [T, E] of the experts chosen by the biased scores, 0 elsewhere."""
        return self.g.mul(scores, self.grouped_top_k(self.choice_scores(scores, p), self.cfg.moe.top_k))

    def choice_scores(self, scores: Value, p: str) -> Value:
        """What DeepSeek-V3's router chooses by: the scores plus e_score_correction_bias (the weights stay unbiased)."""
        bias = self.weight(f"{p}.gate.e_score_correction_bias", (self.cfg.moe.experts,))
        return self.g.add(scores, self.g.broadcast(bias, scores.shape, [1]))

    def grouped_top_k(self, choice: Value, k: int) -> Value:
        """1.0 where an expert is among a token's k best by choice [T, E], counting only the topk_groups groups
        whose two best choice scores sum highest (HF's masked_fill of the others with -inf), else 0.0."""
        g, moe = self.g, self.cfg.moe
        t, e = choice.shape
        groups, size = moe.groups, e // moe.groups
        grouped = g.reshape(choice, (t * groups, size))
        best_two = g.reduce(g.mul(grouped, self.top_k(grouped, 2)), g.scalar(0.0), "add", [1])
        kept = g.reshape(self.top_k(g.reshape(best_two, (t, groups)), moe.topk_groups), (t, groups))
        kept = g.reshape(g.broadcast(kept, (t, groups, size), [0, 1]), (t, e))
        visible = g.select(g.compare("GT", kept, g.scalar(0.0)), choice, g.broadcast(g.scalar(NEG_INF), (t, e), ()))
        return self.top_k(visible, k)

    def experts(self, p: str, projection: str, shape: tuple[int, int]) -> Value:
        """Every expert's matrix of one projection, stacked [E, out, in]: checkpoints hold one 2-D tensor
        per expert (`{p}.experts.{j}.{projection}.weight`), the graph runs them as one batched dot."""
        g = self.g
        return g.concatenate([g.reshape(self.weight(f"{p}.experts.{j}.{projection}.weight", shape), (1, *shape))
                              for j in range(self.cfg.moe.experts)], dim=0)

    def shared_expert(self, x: Value, p: str) -> Value:
        """Qwen2-MoE: sigmoid(x · w_gate) × a dense SwiGLU, for every token; DeepSeek-V3's shared experts ungated."""
        g, t, size = self.g, x.shape[0], self.cfg.moe.shared_expert_size
        if not self.cfg.moe.shared_expert_gated:
            return self.gated_mlp(x, f"{p}.shared_expert", size)
        gate = g.logistic(g.reshape(self.linear(x, f"{p}.shared_expert_gate", 1), (t,)))
        shared = self.gated_mlp(x, f"{p}.shared_expert", size)
        return g.mul(g.broadcast(gate, shared.shape, [0]), shared)

    def layer(self, x: Value, i: int, rope, mask) -> Value:
        """Residual block; which norms wrap attention and MLP is the family's norm placement."""
        p, g = f"model.layers.{i}", self.g
        if self.cfg.parallel_block:
            return self.parallel_layer(x, i, rope, mask)
        names = {
            "pre": ("input_layernorm", None, "post_attention_layernorm", None),
            "sandwich": ("input_layernorm", "post_attention_layernorm",
                         "pre_feedforward_layernorm", "post_feedforward_layernorm"),
            "post": (None, "post_attention_layernorm", None, "post_feedforward_layernorm"),
        }[self.cfg.norm_placement]
        attn_in, attn_out, mlp_in, mlp_out = (n and f"{p}.{n}" for n in names)

        residual = lambda h: self.scaled(h, self.cfg.residual_multiplier)  # Granite's residual_multiplier

        h = self.norm(x, attn_in) if attn_in else x
        h = self.attention(h, i, rope, mask)
        x = g.add(x, residual(self.norm(h, attn_out) if attn_out else h))
        h = self.norm(x, mlp_in) if mlp_in else x
        h = self.mlp(h, i)
        return g.add(x, residual(self.norm(h, mlp_out) if mlp_out else h))

    def parallel_layer(self, x: Value, i: int, rope, mask) -> Value:
        """x + attention(norm(x)) + mlp(norm'(x)): both read the layer's input. One norm feeds both (norm' = norm,
        "shared_norm": Phi, Cohere, StableLM's use_parallel_residual); GPT-NeoX's MLP has its own
        (post_attention_layernorm, "two_norms")."""
        p, g = f"model.layers.{i}", self.g
        h = self.norm(x, f"{p}.input_layernorm")
        attn = self.attention(h, i, rope, mask)
        m = h if self.cfg.parallel_block == "shared_norm" else self.norm(x, f"{p}.post_attention_layernorm")
        return g.add(g.add(attn, self.mlp(m, i)), x)

    # -- the forward -----------------------------------------------------------------
    def rope_at(self, rope: Rope, positions: Value, capacity: int) -> tuple[Value, Value]:
        cos, sin = rope_tables.cos_sin_tables(rope, self.cfg.rotary_width, capacity)
        return (self.g.take_rows(self.g.dense(cos), positions), self.g.take_rows(self.g.dense(sin), positions))

    def hidden_states(self, tokens: Value, positions: Value, q_slot: Value, k_slot: Value, capacity: int) -> Value:
        """Embed tokens and run every layer; returns the final hidden states before the last norm.
        positions feed RoPE (a table of `capacity` rows); slots feed the masks."""
        return self.layers(self.embed(tokens), positions, q_slot, k_slot, capacity)

    def embed(self, tokens: Value) -> Value:
        """The embedding module's rows (HF's inputs_embeds: Gemma's scaled by sqrt(hidden) inside the module),
        then what the forward applies to inputs_embeds."""
        cfg, g = self.cfg, self.g
        x = g.take_rows(self.weight("model.embed_tokens.weight", (cfg.vocab_size, cfg.hidden_size)), tokens)
        if cfg.embed_scale:
            x = g.mul(x, g.scalar(math.sqrt(cfg.hidden_size)))
        return self.from_embeddings(x)

    def from_embeddings(self, x: Value) -> Value:
        """HF's inputs_embeds as the forward takes them: Granite's embedding_multiplier applied (Gemma's sqrt(hidden)
        is the embedding module's, already in them)."""
        return self.scaled(x, self.cfg.embedding_multiplier)

    def layers(self, x: Value, positions: Value, q_slot: Value, k_slot: Value, capacity: int) -> Value:
        """Every layer on the embedded tokens x [T, H]; positions feed RoPE, slots the masks."""
        cfg = self.cfg
        masks = {w: self.mask(q_slot, k_slot, w)
                 for w in sorted({cfg.window_for(i) for i in range(cfg.num_layers)}, key=lambda w: w or 0)}
        ropes: dict[Rope, tuple[Value, Value]] = {}
        for i in range(cfg.num_layers):
            rope = cfg.rope_for(i)
            if rope is not None and rope not in ropes:
                ropes[rope] = self.rope_at(rope, positions, capacity)
            x = self.layer(x, i, ropes.get(rope), masks[cfg.window_for(i)])
        return x

    def logits(self, h: Value) -> Value:
        cfg, g = self.cfg, self.g
        h = self.norm(h, "model.norm")
        logits = g.matmul(h, self.weight(self.head_name(), (cfg.vocab_size, cfg.hidden_size)), contract=(1, 1))
        if cfg.lm_head_bias:
            bias = self.weight("lm_head.bias", (cfg.vocab_size,))
            logits = g.add(logits, g.broadcast(bias, logits.shape, [1]) if h.shape[0] > 1 else
                           g.reshape(bias, (1, cfg.vocab_size)))
        if h.shape[0] == 1:  # one token's logits, f32[V]; more tokens keep a row each
            logits = g.reshape(logits, (cfg.vocab_size,))
        if cfg.logits_divisor is not None:  # Granite: logits / logits_scaling
            logits = g.div(logits, g.scalar(cfg.logits_divisor))
        logits = self.scaled(logits, cfg.logits_multiplier)  # Cohere: logits * logit_scale
        return self.softcap(logits, cfg.final_softcap)

    def head_name(self) -> str:
        """The tensor the LM head multiplies by: a tied head is the embedding itself."""
        return "model.embed_tokens.weight" if self.cfg.tie_word_embeddings else "lm_head.weight"


TAP_POINTS = ("attention", "mlp", "layer")


def tapped(core: type[Decoder]) -> type[Decoder]:
    """The core with debug taps: every layer's attention output, MLP output (both before any
    post-norm and the residual add) and layer output, each [T, hidden], kept in order."""
    class Tapped(core):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.taps: dict[str, list[Value]] = {point: [] for point in TAP_POINTS}

        def attention(self, x, i, rope, mask):
            return self._tap("attention", super().attention(x, i, rope, mask))

        def mlp(self, x, i):
            return self._tap("mlp", super().mlp(x, i))

        def layer(self, x, i, rope, mask):
            return self._tap("layer", super().layer(x, i, rope, mask))

        def _tap(self, point: str, value: Value) -> Value:
            self.taps[point].append(value)
            return value

        def stacked_taps(self) -> list[Value]:
            g = self.g
            return [g.concatenate([g.reshape(v, (1, *v.shape)) for v in self.taps[p]], dim=0) for p in TAP_POINTS]

    return Tapped


def prefill(cfg: Config, bucket: int, core: type[Decoder] = Decoder, taps: bool = False, dtype: str = "f32",
            weights: str = "f32") -> str:
    """tokens i32[Lp], positions i32[Lp], real_len i32[] -> logits f32[V] of the last real token and
    the K/V caches f32[L, Lp, n_kv, D]. Padding after real_len is causally invisible to real tokens.
    core: the decoder core (mutation tests pass a deliberately broken subclass).
    taps: also return f32[L, Lp, hidden] per TAP_POINTS (per-layer localisation of a divergence).
    dtype: what matmuls and activations compute in; weights: the weight arguments' type (stablehlo.Function)."""
    g = Function("main", compute=dtype, weights=weights)
    dec = (tapped(core) if taps else core)(cfg, g)
    tokens = g.input("tokens", (bucket,), "i32")
    positions = g.input("positions", (bucket,), "i32")
    real_len = g.input("real_len", (), "i32")
    slots = g.iota((bucket,), 0)
    h = dec.hidden_states(tokens, positions, slots, slots, capacity=bucket)
    last = g.dynamic_slice(h, [g.sub(real_len, g.scalar(1, "i32")), g.scalar(0, "i32")], (1, cfg.hidden_size))
    g.returns(dec.logits(last), *dec.stacked_new_kv(), *(dec.stacked_taps() if taps else ()))
    return module(f"{cfg.model_type}_prefill", [g])


def decode(cfg: Config, capacity: int, core: type[Decoder] = Decoder, dtype: str = "f32", weights: str = "f32") -> str:
    """token i32[], position i32[], cache_len i32[], k_cache and v_cache f32[L, C, n_kv, D] ->
    logits f32[V] and the caches with this token written at slot cache_len (C = capacity)."""
    g = Function("main", compute=dtype, weights=weights)
    token = g.input("token", (), "i32")
    position = g.input("position", (), "i32")
    cache_len = g.input("cache_len", (), "i32")
    if cfg.mla is None:
        cache_shape = (cfg.num_layers, capacity, cfg.num_kv_heads, cfg.head_dim)
        k_cache, v_cache = g.input("k_cache", cache_shape, "f32"), g.input("v_cache", cache_shape, "f32")
    else:  # latent attention's cache (emitter/mla.py)
        k_cache = g.input("kv_latent", (cfg.num_layers, capacity, cfg.mla.kv_lora_rank), "f32")
        v_cache = g.input("k_rope", (cfg.num_layers, capacity, cfg.mla.qk_rope_head_dim), "f32")
    dec = core(cfg, g, cache=(k_cache, v_cache, cache_len))
    one = lambda x: g.reshape(x, (1,))
    h = dec.hidden_states(one(token), one(position), one(cache_len), g.iota((capacity,), 0), capacity=capacity)
    g.returns(dec.logits(h), *dec.cache[:2])
    return module(f"{cfg.model_type}_decode", [g])


def moe_block(cfg: Config, tokens: int, core: type[Decoder] = Decoder, dtype: str = "f32",
              weights: str = "f32") -> str:
    """hidden f32[T, H] -> the first routed layer's MLP on it, f32[T, H]: the block-level check."""
    routed = [i for i, r in enumerate(cfg.moe.routed_layers) if r] if cfg.moe else []
    if not routed:
        raise ConfigError(f"{cfg.model_type}: no layer routes to experts, so there is no MoE block to emit.")
    g = Function("main", compute=dtype, weights=weights)
    hidden = g.input("hidden", (tokens, cfg.hidden_size), "f32")
    g.returns(core(cfg, g).mlp(hidden, routed[0]))
    return module(f"{cfg.model_type}_moe_block", [g])
