"""DeepSeek-V3's multi-head latent attention (Config.mla), as transformers' DeepseekV3Attention computes it.

Queries: q_a_proj -> q_a_layernorm -> q_b_proj (or one q_proj without q_lora_rank), each head split into
qk_nope_head_dim dimensions that never rotate and qk_rope_head_dim that do. Keys and values: kv_a_proj_with_mqa
gives a latent of kv_lora_rank, RMSNorm'd by kv_a_layernorm, and one rope key of qk_rope_head_dim shared by every
head; kv_b_proj expands the latent into each head's unrotated key and its value. A score is
q_nope · k_nope + q_rope · k_rope, times Config.score_scale (YaRN's mscale folded in).

The cache is the mechanism's own: the normed latent [C, kv_lora_rank] and the rotated rope key [C, qk_rope_head_dim]
per layer (decode's kv_latent and k_rope), what HF's cache holds too; kv_b_proj runs on the whole cache each step.
Caching after the norm keeps decode from renorming every cached row, and matches what HF stores.
"""
from __future__ import annotations

from .stablehlo import Value

LORA_NORM_EPS = 1e-6  # q_a_layernorm and kv_a_layernorm: DeepseekV3RMSNorm's default, not rms_norm_eps


class LatentAttention:
    """The Decoder's latent attention; its other building blocks (linear, rms_norm, rotate, softmax, the cache)
    are the core's own."""

    def latent_attention(self, x: Value, i: int, rope: tuple[Value, Value] | None, mask: Value) -> Value:
        cfg, g, mla = self.cfg, self.g, self.cfg.mla
        p = f"model.layers.{i}.self_attn"
        t, heads, nope, v_dim = x.shape[0], cfg.num_heads, mla.qk_nope_head_dim, mla.v_head_dim
        q_nope, q_rope = self.latent_queries(x, p)                            # [T, H, nope], [T, H, rope]
        latent, k_rope = self.latent_keys(x, p)                               # [T, rank], [T, 1, rope]
        if rope is not None:
            q_rope, k_rope = self.rotate(q_rope, *rope), self.rotate(k_rope, *rope)
        latent, k_rope = self.attended_kv(i, latent, g.reshape(k_rope, (t, k_rope.shape[2])))
        tk = latent.shape[0]
        kv = g.reshape(self.linear(latent, f"{p}.kv_b_proj", heads * (nope + v_dim)), (tk, heads, nope + v_dim))
        k_nope = g.transpose(g.slice(kv, (0, 0, 0), (tk, heads, nope)), [1, 0, 2])          # [H, Tk, nope]
        v = g.transpose(g.slice(kv, (0, 0, nope), (tk, heads, nope + v_dim)), [1, 0, 2])     # [H, Tk, v]
        scores = g.dot_general(g.transpose(q_nope, [1, 0, 2]), k_nope, contract=(2, 2), batch=True)  # [H, T, Tk]
        shared = g.dot_general(g.transpose(q_rope, [1, 0, 2]), k_rope, contract=(2, 1))           # [H, T, Tk]
        scores = g.mul(g.add(scores, shared), g.scalar(cfg.attention_scale))
        probs = self.softmax(g.add(scores, g.broadcast(mask, scores.shape, [1, 2])))
        out = g.dot_general(probs, v, contract=(2, 1), batch=True)                                 # [H, T, v]
        out = g.reshape(g.transpose(out, [1, 0, 2]), (t, heads * v_dim))
        return self.linear(out, f"{p}.o_proj", cfg.hidden_size, cfg.o_bias)

    def latent_queries(self, x: Value, p: str) -> tuple[Value, Value]:
        """Each head's query, split: (the dimensions that never rotate, those that do)."""
        cfg, g, mla = self.cfg, self.g, self.cfg.mla
        t, heads, nope, rope = x.shape[0], cfg.num_heads, mla.qk_nope_head_dim, mla.qk_rope_head_dim
        width = heads * (nope + rope)
        if mla.q_lora_rank is None:
            q = self.linear(x, f"{p}.q_proj", width)
        else:
            low = self.rms_norm(self.linear(x, f"{p}.q_a_proj", mla.q_lora_rank, cfg.qkv_bias), f"{p}.q_a_layernorm",
                                LORA_NORM_EPS)
            q = self.linear(low, f"{p}.q_b_proj", width)
        q = g.reshape(q, (t, heads, nope + rope))
        return g.slice(q, (0, 0, 0), (t, heads, nope)), g.slice(q, (0, 0, nope), (t, heads, nope + rope))

    def latent_keys(self, x: Value, p: str) -> tuple[Value, Value]:
        """(the normed latent [T, kv_lora_rank], the rope key [T, 1, qk_rope_head_dim] before rotation)."""
        cfg, g, mla = self.cfg, self.g, self.cfg.mla
        t, rank, rope = x.shape[0], mla.kv_lora_rank, mla.qk_rope_head_dim
        compressed = self.linear(x, f"{p}.kv_a_proj_with_mqa", rank + rope, cfg.qkv_bias)
        latent = self.rms_norm(g.slice(compressed, (0, 0), (t, rank)), f"{p}.kv_a_layernorm", LORA_NORM_EPS)
        return latent, g.reshape(g.slice(compressed, (0, rank), (t, rank + rope)), (t, 1, rope))
