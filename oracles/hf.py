"""The Hugging Face oracle: the family's in-tree model, eager attention, fp32, seeded weights.

Weights are drawn per tensor from numpy with a seed derived from (fixture seed, tensor
name), so they do not depend on torch's RNG, on parameter order or on the process.
Scale: matrices at gain/sqrt(fan_in) so attention is peaked and logits have real
margins (at HF's 0.02 a wrong RoPE or mask hides inside the bound); embeddings at
std 1 after the family's own embedding scale (Gemma's sqrt(hidden) would otherwise let
each token's embedding swamp the residual stream, and greedy decode just repeats it);
every 1-D parameter is randomised too, so norms and biases are exercised.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
import transformers
from transformers import AutoConfig
from transformers.models.auto import modeling_auto

transformers.logging.set_verbosity_error()  # legacy-config notices are expected on fixtures
torch.set_num_threads(1)  # one summation order on every machine and worker layout: the same metrics

MATRIX_GAIN = 2.5
TOKEN_ID_FIELDS = ("bos_token_id", "eos_token_id", "pad_token_id")


@dataclass(frozen=True)
class Binding:
    """How a family's model_type reaches its oracle: the class that computes its forward."""
    class_name: str
    note: str = ""


def binding(model_type: str) -> Binding:
    name = modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(model_type)
    if name is None:
        raise ValueError(f"no transformers causal-LM class serves model_type '{model_type}'")
    return Binding(name)


def tensor_rng(seed: int, name: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def synthetic_value(seed: int, name: str, shape: tuple[int, ...], embed_scale: float = 1.0) -> np.ndarray:
    rng = tensor_rng(seed, name)
    if len(shape) >= 2:  # matrices, and stacked expert matrices [E, out, in]
        std = 1.0 / embed_scale if "embed_tokens" in name else MATRIX_GAIN / np.sqrt(shape[-1])
        return (rng.standard_normal(shape) * std).astype(np.float32)
    if "norm" in name:
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    return (rng.standard_normal(shape) * 0.5).astype(np.float32)


class Oracle:
    def __init__(self, config: dict, seed: int, dtype: torch.dtype = torch.float32):
        self.binding = binding(config["model_type"])
        cfg = AutoConfig.for_model(**self._in_vocab_ids(config))
        cls = getattr(transformers, self.binding.class_name)
        torch.manual_seed(seed)  # only buffers HF initialises itself; every parameter is overwritten
        # eager attention and, for MoE, the per-expert reference loop (not grouped_mm)
        self.model = cls._from_config(cfg, attn_implementation="eager", experts_implementation="eager",
                                      dtype=dtype).eval()
        embed_scale = float(getattr(self.model.get_input_embeddings(), "embed_scale", 1.0))
        with torch.no_grad():
            for name, p in sorted(self.model.named_parameters()):
                p.copy_(torch.from_numpy(synthetic_value(seed, name, tuple(p.shape), embed_scale)))

    @staticmethod
    def _in_vocab_ids(config: dict) -> dict:
        """Default bos/eos/pad ids can fall outside a tiny vocabulary; drop those."""
        config = dict(config)
        for field in TOKEN_ID_FIELDS:
            value = config.get(field)
            if value is None or (isinstance(value, int) and value >= config["vocab_size"]):
                config[field] = None
        return config

    def state_dict(self) -> dict[str, np.ndarray]:
        """Every named tensor, tied ones included (lm_head.weight shares the embedding)."""
        return {k: v.detach().to(torch.float32).numpy() for k, v in self.model.state_dict().items()}

    @torch.no_grad()
    def greedy(self, prompt: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
        """Greedy continuation with HF's own KV cache: the logits f32[steps + 1, V] (the prompt's last
        token, then each decode step fed the previous choice) and the steps + 1 tokens they choose."""
        ids = torch.from_numpy(np.asarray(prompt, dtype=np.int64))[None, :]
        out = self.model(input_ids=ids, use_cache=True)
        logits = [out.logits[0, -1].to(torch.float32).numpy()]
        for _ in range(steps):
            chosen = torch.tensor([[int(logits[-1].argmax())]])
            out = self.model(input_ids=chosen, cache=out.cache, use_cache=True)
            logits.append(out.logits[0, -1].to(torch.float32).numpy())
        logits = np.stack(logits)
        return logits, logits.argmax(axis=1).astype(np.int32)
