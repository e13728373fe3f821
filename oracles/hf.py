"""The Hugging Face oracle: the family's in-tree model, eager attention, fp32, seeded weights.

Weights are drawn per tensor from numpy with a seed derived from (fixture seed, tensor
name), so they do not depend on torch's RNG, on parameter order or on the process.
Scale: matrices at gain/sqrt(fan_in) so attention is peaked and logits have real
margins (at HF's 0.02 a wrong RoPE or mask hides inside the bound); embeddings at
std 1 after the family's own embedding scale (Gemma's sqrt(hidden) would otherwise let
each token's embedding swamp the residual stream, and greedy decode just repeats it);
every 1-D parameter is randomised too, so norms and biases are exercised, and so is every buffer a
checkpoint holds (DeepSeek-V3's e_score_correction_bias, which only selection reads). The quiet tokens'
embedding rows are scaled to RMS sqrt(epsilon) of the model's own RMSNorm, so that the first norm
they meet has mean(x^2) comparable to epsilon and epsilon shows in the logits (harness/core/fixtures.py).

Checkpoint names: transformers 5 renames some checkpoints' tensors on load and fuses others
(its conversion_mapping: Mixtral's `block_sparse_moe.experts.E.w1/w2/w3`, and every MoE family's
per-expert `mlp.experts.E.gate_proj/up_proj/down_proj`, become stacked `mlp.experts.gate_up_proj`
and `down_proj`; EXAONE's GPT-2-style names become Llama's). Weights are always drawn by the
class's own parameter names, and state_dict() hands them out as save_pretrained writes them:
transformers' own conversion reverted, for every model type that has one, and a tied head left
out (no tied checkpoint ships `lm_head.weight`). The graph's arguments carry these names.

A family that transformers serves through another family's class (EXAONE 3.x and InternLM3
through LlamaForCausalLM, MiMo through Qwen2ForCausalLM) has a stand-in Binding: the class and
the config it is built from.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import transformers
from transformers import AutoConfig
from transformers.conversion_mapping import get_checkpoint_conversion_mapping
from transformers.core_model_loading import revert_weight_conversion
from transformers.models.auto import modeling_auto

transformers.logging.set_verbosity_error()  # legacy-config notices are expected on fixtures
transformers.logging.disable_progress_bar()  # a checkpoint's loading bar is no part of the run's output

MATRIX_GAIN = 2.5
# each tap point's module in a transformers decoder layer, by the names the families give it (GPT-NeoX's
# attention is `attention`, GraniteMoE's MLP `block_sparse_moe`); None: the layer itself
TAP_MODULES = {"attention": ("self_attn", "attention"), "mlp": ("mlp", "block_sparse_moe"), "layer": None}
TOKEN_ID_FIELDS = ("bos_token_id", "eos_token_id", "pad_token_id")


@dataclass(frozen=True)
class Binding:
    """How a family's model_type reaches its oracle: the class that computes its forward, the config
    it is built from, and how the family's checkpoint names map onto the class's parameter names."""
    class_name: str
    mapping: str = "identity"  # in words, for the page; state_dict() applies it
    config: Callable[[dict], dict] = field(default=lambda c: c)  # config.json -> the stand-in's config


def conversion_mapping(model_type: str) -> str:
    """transformers' own checkpoint -> class renamings and fusions for model_type, readable; "identity"
    where it has none."""
    plain = lambda patterns: "+".join(p.lstrip("^").replace("\\.", ".") for p in patterns)
    renames = [f"{plain(r.source_patterns)}->{plain(r.target_patterns)}"
               for r in get_checkpoint_conversion_mapping(model_type) or ()]
    return f"transformers conversion_mapping['{model_type}']: " + ", ".join(renames) if renames else "identity"


def _mimo_as_qwen2(config: dict) -> dict:
    """MiMo's config is Qwen2's plus its multi-token-prediction layers, which the causal LM never runs, and
    attention_bias, which Qwen2 never reads: its q/k/v always carry biases, so only `true` is Qwen2's forward
    (a `false` stays, for oracles/fields.py to name as unread)."""
    dropped = ("num_nextn_predict_layers", "architectures", "auto_map") + (
        ("attention_bias",) if config.get("attention_bias") is True else ())
    return {k: v for k, v in config.items() if k not in dropped} | {"model_type": "qwen2"}


STAND_INS: dict[str, Binding] = {
    "mimo": Binding("Qwen2ForCausalLM", "identity (MiMo's names are Qwen2's; model.mtp_layers.* unused)",
                    config=_mimo_as_qwen2),
    "internlm3": Binding("LlamaForCausalLM", "identity (InternLM3Config; qkv_bias->attention_bias, bias->mlp_bias)"),
    "exaone": Binding("LlamaForCausalLM", conversion_mapping("exaone")),
}


def binding(model_type: str) -> Binding:
    if model_type in STAND_INS:
        return STAND_INS[model_type]
    name = modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(model_type)
    if name is None:
        raise ValueError(f"no transformers causal-LM class serves model_type '{model_type}'")
    return Binding(name, conversion_mapping(model_type))


def _auto_config(config: dict):
    return AutoConfig.for_model(**Oracle._in_vocab_ids(config))


def checkpoint_tensors(config: dict) -> dict[str, tuple[int, ...]]:
    """The tensors a save_pretrained of config's model writes, by name and shape: transformers' conversion
    mapping reverted (per-expert tensors for the MoE families), no lm_head.weight for a tied head. Built on
    the meta device: no memory, no weights."""
    b = binding(config["model_type"])
    cfg = _auto_config(b.config(config))
    with torch.device("meta"):
        model = getattr(transformers, b.class_name)._from_config(cfg)
    tied = set(getattr(model, "_tied_weights_keys", None) or ()) if cfg.tie_word_embeddings else set()
    return {k: tuple(v.shape) for k, v in revert_weight_conversion(model, model.state_dict()).items()
            if k not in tied}


def tensor_rng(seed: int, name: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def synthetic_value(seed: int, name: str, shape: tuple[int, ...], embed_scale: float = 1.0) -> np.ndarray:
    rng = tensor_rng(seed, name)
    if len(shape) >= 2:  # matrices, and stacked expert matrices [E, out, in]
        std = 1.0 / embed_scale if "embed_tokens" in name else MATRIX_GAIN / np.sqrt(shape[-1])
        return (rng.standard_normal(shape) * std).astype(np.float32)
    if "norm" in name and not name.endswith(".bias"):  # a norm's scale; a LayerNorm's bias is drawn as any bias
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    return (rng.standard_normal(shape) * 0.5).astype(np.float32)


def norm_epsilon(model: torch.nn.Module) -> float | None:
    """The epsilon of the model's RMSNorms, or LayerNorms (every norm of a family reads the same config field);
    None for a model with neither (a synthesised family: oracles/synth.py), whose quiet rows are left as drawn."""
    for module in model.modules():
        # nn.LayerNorm and its subclasses (Nemotron's LayerNorm1P), and Cohere's own CohereLayerNorm
        if type(module).__name__.endswith(("RMSNorm", "LayerNorm")) or isinstance(module, torch.nn.LayerNorm):
            return float(getattr(module, "variance_epsilon", getattr(module, "eps", None)))
    return None


def one_thread() -> None:
    """One summation order on every machine and worker layout, the same metrics: set where an oracle is made."""
    torch.set_num_threads(1)


def as_numpy(values: torch.Tensor) -> np.ndarray:
    """The tensor as numpy, in its dtype; a bf16 one (numpy has none) as f32, which holds every bf16 exactly."""
    return (values.to(torch.float32) if values.dtype == torch.bfloat16 else values).numpy()


class Oracle:
    def __init__(self, config: dict, seed: int, dtype: torch.dtype | str = torch.float32,
                 quiet_tokens: tuple[int, ...] = ()):
        one_thread()
        dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        self.binding = binding(config["model_type"])
        cfg = _auto_config(self.binding.config(config))
        cls = getattr(transformers, self.binding.class_name)
        torch.manual_seed(seed)  # only buffers HF initialises itself; every parameter is overwritten
        # eager attention and, for MoE, the per-expert reference loop (not grouped_mm)
        self.model = cls._from_config(cfg, attn_implementation="eager", experts_implementation="eager",
                                      dtype=dtype).eval()
        embed_scale = float(getattr(self.model.get_input_embeddings(), "embed_scale", 1.0))
        with torch.no_grad():
            checkpoint = set(self.model.state_dict())  # persistent buffers too: DeepSeek-V3's e_score_correction_bias
            drawn = [*self.model.named_parameters(), *((n, b) for n, b in self.model.named_buffers() if n in checkpoint)]
            for name, p in sorted(drawn, key=lambda item: item[0]):
                p.copy_(torch.from_numpy(synthetic_value(seed, name, tuple(p.shape), embed_scale)))
            # rows drawn at RMS 1 after the embedding scale, brought to RMS sqrt(eps) after it
            epsilon = norm_epsilon(self.model) if quiet_tokens else None
            self.quiet_tokens = tuple(quiet_tokens) if epsilon is not None else ()  # the rows made quiet
            if epsilon is not None:
                self.model.get_input_embeddings().weight[list(quiet_tokens)] *= float(np.sqrt(epsilon))

    @classmethod
    def from_checkpoint(cls, directory, config: dict, held: str = "f32") -> Oracle:
        """The checkpoint in DIR loaded by transformers from its own files (never downloaded, never its code: the
        in-tree class, the config archval read), computing in f32 whatever its storage, its layers held in
        `held` (the storage's own dtype where the f32 model would not fit: compute_by_layer); ValueError where a
        parameter is missing or of another shape."""
        one_thread()
        held = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[held]
        self = cls.__new__(cls)
        self.binding = binding(config["model_type"])
        model_class = getattr(transformers, self.binding.class_name)
        self.model, info = model_class.from_pretrained(
            directory, config=_auto_config(self.binding.config(config)), dtype=held,
            attn_implementation="eager", experts_implementation="eager", local_files_only=True,
            trust_remote_code=False, output_loading_info=True)
        self.model.eval()
        wrong = sorted(info["missing_keys"]) + sorted(k for k, *_ in info["mismatched_keys"])
        if wrong:  # transformers would initialise them at random and run on
            raise ValueError(f"transformers could not load {len(wrong)} parameters from {directory} (first: {wrong[0]})")
        if held != torch.float32:
            self.compute_by_layer(torch.float32)
        return self

    @staticmethod
    def _in_vocab_ids(config: dict) -> dict:
        """Default bos/eos/pad ids can fall outside a tiny vocabulary; drop those."""
        config = dict(config)
        for name in TOKEN_ID_FIELDS:
            value = config.get(name)
            if value is None or (isinstance(value, int) and value >= config.get("vocab_size", value + 1)):
                config[name] = None
        return config

    def state_dict(self) -> dict[str, np.ndarray]:
        """The tensors a published checkpoint of this config holds, under its names and in its layouts
        (per-expert matrices [out, in]): what save_pretrained writes, without a tied head."""
        tied = self.model.all_tied_weights_keys  # {the tied name: the tensor it shares}
        tensors = {k: v for k, v in self.model.state_dict().items() if k not in tied}
        tensors = revert_weight_conversion(self.model, tensors)
        return {k: v.detach().to(torch.float32).contiguous().numpy() for k, v in tensors.items()}

    def forward(self, tokens, positions, cache=None):
        """One forward with HF's KV cache. position_ids feed RoPE; the masks (causal, sliding windows) are
        built from the cache's length, i.e. over cache slots, whatever the positions."""
        as_ids = lambda xs: torch.tensor([[int(x) for x in xs]])
        return self.model(input_ids=as_ids(tokens), position_ids=as_ids(positions), cache=cache, use_cache=True)

    @torch.no_grad()
    def greedy(self, prompt: np.ndarray, positions: np.ndarray, steps: np.ndarray,
               on_step: Callable[[int], None] = lambda s: None) -> tuple[np.ndarray, np.ndarray]:
        """Greedy continuation with HF's own KV cache, the prompt at positions and decode step s at steps[s - 1]:
        the logits f32[len(steps) + 1, V] (the prompt's last token, then each decode step fed the previous
        choice) and the tokens they choose. on_step(s) before each step s (0: the prompt), for progress."""
        on_step(0)
        out = self.forward(prompt, positions)
        logits = [out.logits[0, -1].to(torch.float32).numpy()]
        for s, position in enumerate(steps, 1):
            on_step(s)
            out = self.forward([int(logits[-1].argmax())], [position], out.cache)
            logits.append(out.logits[0, -1].to(torch.float32).numpy())
        logits = np.stack(logits)
        return logits, logits.argmax(axis=1).astype(np.int32)

    @torch.no_grad()
    def prompt_logits(self, prompt: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """The logits [len(prompt), V] at every prompt position (the prompt at positions), in the model's dtype."""
        return as_numpy(self.forward(prompt, positions).logits[0])

    @torch.no_grad()
    def chunked_logits(self, prompt: np.ndarray, positions: np.ndarray, starts: list[int]) -> np.ndarray:
        """The logits [len(prompt), V] at every prompt position, the prompt fed in chunks beginning at starts (the
        first 0) through the model's own cache: a chunk sees the earlier chunks' keys in the cache."""
        out, logits = None, []
        for start, end in zip(starts, [*starts[1:], len(prompt)]):
            out = self.forward(prompt[start:end], positions[start:end], out.cache if out is not None else None)
            logits.append(out.logits[0])
        return torch.cat(logits).numpy()

    @torch.no_grad()
    def embedded_logits(self, prompt: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
        """(the prompt's inputs_embeds: the input embedding module's output, f32[len(prompt), H]; the logits
        [len(prompt), V] of the model fed them as inputs_embeds at positions; the checkpoint name of the
        embedding table, which a graph fed embeddings need not take)."""
        table = self.model.get_input_embeddings()
        embeddings = table(torch.tensor([[int(t) for t in prompt]]))
        out = self.model(inputs_embeds=embeddings, position_ids=torch.tensor([[int(p) for p in positions]]))
        weight = table.weight.detach().to(torch.float32).numpy()
        name = next(k for k, v in self.state_dict().items() if v.shape == weight.shape and np.array_equal(v, weight))
        return embeddings[0].to(torch.float32).numpy(), out.logits[0].numpy(), name

    @torch.no_grad()
    def teacher_forced(self, prompt: np.ndarray, positions: np.ndarray, steps: np.ndarray,
                       tokens: np.ndarray) -> np.ndarray:
        """The logits [len(tokens), V] in the model's dtype: the prompt's last token, then each step fed
        tokens[s - 1] (another run's choices, so that both runs see the same inputs) at steps[s - 1]."""
        out = self.forward(prompt, positions)
        logits = [out.logits[0, -1]]
        for token, position in zip(tokens[:-1], steps):
            out = self.forward([token], [position], out.cache)
            logits.append(out.logits[0, -1])
        return as_numpy(torch.stack(logits))

    def to_float64(self) -> None:
        """The model computing in f64 for a checkpoint's strict bound, one decoder layer at a time."""
        self.compute_by_layer(torch.float64)

    def compute_by_layer(self, compute: torch.dtype) -> None:
        """The model computing in `compute` while its decoder layers stay as they are held (f32, or the
        checkpoint's own bf16/f16 where the f32 model would not fit): what lies outside the layers converted in
        place, and each layer converted on entering its forward, each of its tensors back to its own dtype on
        leaving it (both exact: a held value is the wider dtype's too), so that the only copy in `compute`
        beside the model is one layer's. The logits are those of the model converted whole, bit for bit
        (tests/test_checkpoint.py)."""
        base = self.model.base_model
        if not isinstance(getattr(base, "layers", None), torch.nn.ModuleList):  # GPT-2's h: the model converted whole
            self.model.to(compute)
            return
        layers, base.layers = base.layers, torch.nn.ModuleList()
        self.model.to(compute)
        base.layers = layers
        tensors = lambda layer: (*layer.named_parameters(), *layer.named_buffers())
        held = {(id(layer), name): t.dtype for layer in layers for name, t in tensors(layer)}

        def widen(module, _args):
            module.to(compute)  # a hook's returned value would replace the layer's inputs

        def narrow(module, _args, _out):
            for name, t in tensors(module):
                t.data = t.data.to(held[id(module), name])

        for hook in getattr(self, "_layer_hooks", ()):
            hook.remove()
        self._layer_hooks = [hook for layer in layers
                             for hook in (layer.register_forward_pre_hook(widen), layer.register_forward_hook(narrow))]

    @torch.no_grad()
    def taps(self, prompt: np.ndarray, positions: np.ndarray) -> dict[str, np.ndarray]:
        """{point: [layers, len(prompt), hidden]} in f64, hooked out of one prefill by forward hooks on each decoder
        layer's attention, MLP and the layer itself (TAP_MODULES)."""
        layers = self.model.base_model.layers  # GPT-NeoX's gpt_neox.layers, every other family's model.layers
        found = {p: [None] * len(layers) for p in TAP_MODULES}
        handles = []
        for i, layer in enumerate(layers):
            for point, names in TAP_MODULES.items():
                def hook(_module, _args, out, point=point, i=i):
                    out = out[0] if isinstance(out, tuple) else out
                    found[point][i] = out[0].detach().to(torch.float64).numpy()
                module = next(getattr(layer, n) for n in names if hasattr(layer, n)) if names else layer
                handles.append(module.register_forward_hook(hook))
        try:
            self.forward(prompt, positions)
        finally:
            for h in handles:
                h.remove()
        return {p: np.stack(v) for p, v in found.items()}

    @torch.no_grad()
    def router_margin(self, ids: np.ndarray, hidden: np.ndarray) -> float | None:
        """Smallest gap between a token's k-th and (k+1)-th router logit over the sequence ids (no cache) in every
        routed layer, and over hidden [tokens, width] in the first one's block; None for a dense model."""
        layers = self.routed_layers()
        if not layers:
            return None
        logits, inputs = [], []  # each routed layer's router logits, and what it was fed

        def keep(layer: int):
            def hook(module, args, out) -> None:
                logits.append(out[0])
                inputs.append((layer, args[0]))
            return hook
        hooks = [self.router(i).register_forward_hook(keep(i)) for i in layers]
        try:
            self.model(input_ids=torch.from_numpy(ids.astype(np.int64))[None], use_cache=False)
            self.router(layers[0])(torch.from_numpy(hidden))
        finally:
            for h in hooks:
                h.remove()
        if self.grouped_choice(layers[0], torch.from_numpy(hidden)) is not None:  # DeepSeek-V3's: its two choices
            return min(self.grouped_margin(layer, x.reshape(-1, x.shape[-1])) for layer, x in inputs)
        k = self.router(layers[0]).top_k
        ranked = -np.sort(-torch.cat([x.reshape(-1, x.shape[-1]) for x in logits]).double().numpy(), axis=1)
        return float((ranked[:, k - 1] - ranked[:, k]).min())

    @torch.no_grad()
    def sequence_logits(self, prompt: np.ndarray, positions: np.ndarray, steps: np.ndarray,
                        tokens: np.ndarray, every: bool = False) -> np.ndarray:
        """teacher_forced's logits in one forward over the whole sequence (the prompt, then tokens[:-1]) with no
        cache: every layer runs once on all of it, not once per step. Only where the slots are the positions,
        contiguous from 0 (a checkpoint run's): the causal mask (and any sliding window) over the sequence is
        then, row by row, the mask the cache's slots give each step."""
        sequence = [*map(int, prompt), *map(int, tokens[:-1])]
        where = [*map(int, positions), *map(int, steps[: len(tokens) - 1])]
        if where != list(range(len(sequence))):
            raise ValueError("sequence_logits needs the positions to be the slots 0, 1, ...; use teacher_forced")
        as_ids = lambda xs: torch.tensor([xs])
        out = self.model(input_ids=as_ids(sequence), position_ids=as_ids(where), use_cache=False)
        return out.logits[0, 0 if every else len(prompt) - 1:].numpy()  # every: the prompt's rows too

    def unread_fields(self, config: dict) -> list[str]:
        """The config's fields this oracle never reads (oracles/fields.py)."""
        from .fields import unread
        return unread(config, self.binding.class_name, self.binding.config(config))

    @staticmethod
    def _mlp(layer):
        """A layer's MLP or MoE block (GraniteMoE keeps its block_sparse_moe); None where it has neither name."""
        return getattr(layer, "mlp", None) or getattr(layer, "block_sparse_moe", None)

    def router(self, layer: int) -> torch.nn.Module:
        """Layer's router, whose forward's first result is the router logits: `mlp.gate`, GraniteMoE's
        `block_sparse_moe.router`."""
        block = self._mlp(self.model.base_model.layers[layer])
        return block.gate if hasattr(block, "gate") else block.router

    def routed_layers(self) -> list[int]:
        """Indices of the layers whose MLP routes to experts through a router this oracle can hook (`gate` or
        `router`); none for a model whose layers it cannot find by these names (a synthesised family's)."""
        layers = getattr(self.model.base_model, "layers", None) or ()
        return [i for i, layer in enumerate(layers) if hasattr(self._mlp(layer), "experts")
                and (hasattr(self._mlp(layer), "gate") or hasattr(self._mlp(layer), "router"))]

    @torch.no_grad()
    def moe_block(self, layer: int, hidden: np.ndarray) -> tuple[np.ndarray, float, int]:
        """Layer's MoE block on hidden [tokens, width]: (its output, the smallest gap between a token's k-th
        and (k+1)-th router probability (a grouped router's: grouped_margin), the number of distinct expert sets
        chosen)."""
        block, router = self._mlp(self.model.base_model.layers[layer]), self.router(layer)
        x = torch.from_numpy(hidden)
        out = block(x[None])
        out = (out[0] if isinstance(out, tuple) else out)[0].numpy()  # GPT-OSS's block returns (out, router scores)
        k, grouped = router.top_k, self.grouped_choice(layer, x)
        choice = router(x)[0].numpy() if grouped is None else grouped[0]
        chosen = {tuple(sorted(row)) for row in np.argsort(-choice, axis=1)[:, :k]}
        if grouped is not None:
            return out, self.grouped_margin(layer, x), len(chosen)
        probs = np.sort(torch.softmax(torch.from_numpy(choice).float(), -1).numpy(), axis=1)[:, ::-1]
        return out, float((probs[:, k - 1] - probs[:, k]).min()), len(chosen)

    @torch.no_grad()
    def grouped_choice(self, layer: int, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray] | None:
        """A grouped router's decisions on x [tokens, width] (DeepSeek-V3's, the router with an
        e_score_correction_bias), as its forward takes them: (the biased sigmoid scores it takes its top-k of, -inf
        in the groups it drops; the group scores it takes its topk_group of); None for any other router."""
        router = self.router(layer)
        if not hasattr(router, "e_score_correction_bias"):
            return None
        scores = torch.sigmoid(torch.nn.functional.linear(x.float(), router.weight.float()))
        choice = scores + router.e_score_correction_bias
        size = router.num_experts // router.num_group
        groups = choice.view(-1, router.num_group, size).topk(2, dim=-1)[0].sum(dim=-1)
        kept = torch.zeros_like(groups).scatter_(1, torch.topk(groups, k=router.topk_group, dim=-1)[1], 1)
        dropped = ~kept.bool().unsqueeze(-1).expand(-1, router.num_group, size).reshape(-1, router.num_experts)
        return choice.masked_fill(dropped, float("-inf")).numpy(), groups.numpy()

    def grouped_margin(self, layer: int, x: torch.Tensor) -> float:
        """The smallest gap, over x's tokens, between the topk_group-th and the next group score and between the
        k-th and (k+1)-th biased score inside the kept groups: how far fp32 noise is from another choice."""
        choice, groups = self.grouped_choice(layer, x)
        router = self.router(layer)
        gaps = [(choice, router.top_k)] + [(groups, router.topk_group)] * (router.topk_group < router.num_group)
        return float(min((ranked[:, k - 1] - ranked[:, k]).min() for ranked, k in
                         ((-np.sort(-scores, axis=1), k) for scores, k in gaps)))
