"""The transformers model of any family, lowered to StableHLO in archval's ABI.

The math is transformers' own: the family's causal-LM class built from the config (eager
attention, fp32), traced by torch.export and lowered by torch-mlir. What this file adds is the
ABI around it:
  - the weights are graph arguments (torch.func.functional_call), named after the checkpoint's
    tensors: the model's parameters, a tied head once (as model.embed_tokens.weight);
  - the cache is explicit: one transformers StaticLayer per layer, filled from the graph's
    arguments, its length (the next slot) the graph's cache_len, so that transformers' own masks
    (causal, sliding) are built over archval's cache slots;
  - prefill returns every position's logits f32[Lp, V]; both graphs return per-layer caches
    f32[S, n_kv, D] in decode's argument order k_cache.0, v_cache.0, k_cache.1, ...
"""
import functools
import os
import re

import torch
from transformers import AutoConfig, AutoModelForCausalLM
from transformers.cache_utils import Cache, StaticLayer
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS, dynamic_rope_update

from taps import Taps


class Refused(Exception):
    """A config this emitter does not lower: exit 2 with the message."""


def build_model(config_dict):
    """The family's causal-LM class from the config, as the oracle builds it: eager attention, fp32."""
    try:
        config = AutoConfig.for_model(**config_dict)
    except ValueError as e:  # a model_type transformers does not know (archval's stand-in families: mimo)
        raise Refused(f"transformers has no model_type {config_dict.get('model_type')!r}: {str(e).split('.')[0]}")
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        # a config class's default id can lie outside a tiny vocabulary (Phi-3's pad 32000), where the
        # embedding refuses it as padding_idx: absent, as the oracle takes it (emitter-protocol.md)
        value = getattr(config, name, None)
        if isinstance(value, int) and value >= getattr(config, "vocab_size", value + 1):
            setattr(config, name, None)
    try:
        model = AutoModelForCausalLM.from_config(config, attn_implementation="eager", dtype=torch.float32,
                                                     trust_remote_code=False)
    except ValueError as e:  # the model type has no causal-LM class
        raise Refused(f"transformers has no causal-LM class for model_type {config_dict.get('model_type')!r}: {e}")
    return model.eval()


# The code of transformers' dynamic_rope_update wrapper, which every rotary module's forward is decorated with
DYNAMIC_ROPE_UPDATE = dynamic_rope_update(lambda *args: None).__code__


def rewrites_inv_freq(rope_type):
    """dynamic_rope_update's own test: these rope types rewrite inv_freq in the forward, by the positions' maximum."""
    return "dynamic" in rope_type or rope_type == "longrope"


def stateless_rope(model):
    """Each rotary module whose forward rewrites its inv_freq buffer (transformers' dynamic_rope_update: longrope,
    dynamic NTK), given a forward that computes the same inverse frequencies as data instead: both branches in
    the graph, torch.where on the positions' maximum chooses, and no buffer is written. transformers' undecorated
    forward then runs on them, its attention scaling untouched (neither update changes it)."""
    for module in model.modules():
        forward = type(module).forward
        if getattr(forward, "__code__", None) is not DYNAMIC_ROPE_UPDATE:
            continue
        types = module.rope_type.values() if isinstance(module.rope_type, dict) else [module.rope_type]
        if any(map(rewrites_inv_freq, types)):
            module.forward = functools.partial(rope_forward, module, forward.__wrapped__)


def rope_forward(module, undecorated, x, position_ids, layer_type=None):
    """dynamic_rope_update's longrope_frequency_update and dynamic_frequency_update (modeling_rope_utils.py), the
    choice a torch.where, then the undecorated forward on the inverse frequencies chosen. Dynamic NTK's is a fresh
    module's update (its cached length max_position_embeddings, never grown here), which is transformers' for
    positions that only grow (a prompt, then its decode steps); its attention scaling is 1 either way."""
    rope_type, prefix, kwargs, parameters = module.rope_type, "", {}, module.config.rope_parameters
    if layer_type is not None:
        rope_type, prefix, kwargs = rope_type[layer_type], f"{layer_type}_", {"layer_type": layer_type}
        parameters = parameters[layer_type]
    if not rewrites_inv_freq(rope_type):
        return undecorated(module, x, position_ids, **kwargs)
    seq_len = torch.max(position_ids) + 1
    short = getattr(module, f"{prefix}original_inv_freq")
    if rope_type == "longrope":  # the long factors past the original context, the short ones within it
        bound = parameters["original_max_position_embeddings"]
        longer, _ = ROPE_INIT_FUNCTIONS[rope_type](module.config, x.device, seq_len=bound + 1, **kwargs)
    else:  # dynamic NTK: the base rescaled for this length past the cached one
        bound = getattr(module, f"{prefix}max_seq_len_cached", module.max_seq_len_cached)
        longer, _ = ROPE_INIT_FUNCTIONS[rope_type](module.config, x.device, seq_len=seq_len, **kwargs)
    if BUG == "rope_short":  # planted: the short branch only, as a graph traced within the original context
        longer = short
    buffers, name = module._buffers, f"{prefix}inv_freq"
    kept, buffers[name] = buffers[name], torch.where(seq_len > bound, longer, short)
    try:  # the buffer's slot lent for this call (as torch.func.functional_call does), then given back
        return undecorated(module, x, position_ids, **kwargs)
    finally:
        buffers[name] = kept


def checkpoint_tensors(model):
    """{module path: tensor} of what the checkpoint holds: the parameters (a tied head's alias once, as the
    checkpoint holds it once) and the persistent buffers (Apertus's xIELU act_fn.beta and act_fn.eps)."""
    persistent = set(model.state_dict())
    tensors = dict(model.named_parameters())
    tensors.update((name, b) for name, b in model.named_buffers() if name in persistent)
    # torch-mlir finds no state for non-persistent buffers (RoPE's inv_freq): persistent, they become constants
    for module in model.modules():
        module._non_persistent_buffers_set.clear()
    return tensors


def checkpoint_names(model, tensors):
    """The checkpoint's name of each of `tensors`, in their order.

    The names
    are those save_pretrained writes: transformers' own revert_weight_conversion, where a model type renames
    tensors on load (EXAONE 3's transformer.h.N...). A conversion that fuses tensors (the MoE families'
    experts) would have to be undone in the graph, which this example does not write: refused.
    """
    from transformers.core_model_loading import revert_weight_conversion

    saved = revert_weight_conversion(model, dict(tensors))
    checkpoint_name = {id(tensor): name for name, tensor in saved.items()}
    fused = sorted(set(saved) - {checkpoint_name.get(id(t)) for t in tensors.values()})
    if fused:
        raise Refused(f"transformers converts this checkpoint's tensors on load ({', '.join(fused[:2])}, ...), "
                      "a conversion this example does not write into the graph")
    return [checkpoint_name[id(t)] for t in tensors.values()]


def cache_shapes(model):
    """[(n_kv, k_head_dim, v_head_dim)] per layer, read from a short eager forward through transformers' cache."""
    with torch.no_grad():
        out = model(input_ids=torch.zeros(1, 2, dtype=torch.long), use_cache=True)
    cache = out.past_key_values
    if not isinstance(cache, Cache) or not cache.layers:
        raise Refused(f"{type(model).__name__} returns no transformers Cache to make explicit")
    shapes = []
    for i, layer in enumerate(cache.layers):
        keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
        if not isinstance(keys, torch.Tensor) or not isinstance(values, torch.Tensor) or keys.ndim != 4:
            raise Refused(f"layer {i}'s cache is a {type(layer).__name__}, not attention keys and values")
        if keys.shape[:2] != values.shape[:2]:
            raise Refused(f"layer {i} caches keys {list(keys.shape)} and values {list(values.shape)} of other heads")
        shapes.append((keys.shape[1], keys.shape[3], values.shape[3]))
    return shapes


def explicit_cache(keys, values, length):
    """transformers' cache over given tensors [1, n_kv, S, D]: the next token goes to slot `length`."""
    layers = []
    for k, v in zip(keys, values):
        layer = StaticLayer(max_cache_len=k.shape[2])
        layer.keys, layer.values = k.clone(), v.clone()  # update() writes in place: never into an argument
        layer.device = k.device
        layer.batch_size, layer.num_heads = k.shape[:2]
        layer.k_head_dim, layer.v_head_dim = k.shape[3], v.shape[3]
        layer.cumulative_length = length.clone()  # update() adds to it in place: one per layer
        layer.is_initialized = True
        layers.append(layer)
    return Cache(layers=layers)


def per_layer(cache):
    """The cache's tensors as archval's per-layer results: [S, n_kv, D], k and v of each layer in turn."""
    return [t[0].transpose(0, 1) for layer in cache.layers for t in (layer.keys, layer.values)]


class Graph(torch.nn.Module):
    """One graph: weights, then the graph's inputs, in; the logits and the caches (and the taps) out."""

    def __init__(self, model, module_paths, shapes, kind, slots, taps):
        super().__init__()
        self.model, self.module_paths, self.shapes = model, module_paths, shapes
        self.kind, self.slots, self.taps = kind, slots, taps

    def forward(self, weights, *inputs):
        if self.kind == "prefill":
            tokens, positions, real_len = inputs
            # the padding at position 0, so that a positions' maximum (longrope's, dynamic NTK's) is the prompt's,
            # as the oracle's; padding rows and slots are never read
            positions = torch.where(torch.arange(positions.shape[0]) < real_len, positions, 0)
            keys = [torch.zeros(1, n, self.slots, dk) for n, dk, _ in self.shapes]
            values = [torch.zeros(1, n, self.slots, dv) for n, _, dv in self.shapes]
            length = torch.zeros((), dtype=torch.int64)
        else:
            token, position, cache_len, *caches = inputs
            tokens, positions = token.reshape(1), position.reshape(1)
            keys = [c.transpose(0, 1)[None] for c in caches[0::2]]
            values = [c.transpose(0, 1)[None] for c in caches[1::2]]
            length = cache_len.to(torch.int64)
            if BUG == "slot":  # planted: this token's key and value one slot late
                length = length + 1
        if BUG == "position":  # planted: RoPE by the cache slots, archval's positions ignored
            positions = (torch.arange(tokens.shape[0]) + length).to(positions.dtype)
        cache = explicit_cache(keys, values, length)
        if self.taps:
            self.taps.clear()
        out = torch.func.functional_call(
            self.model, dict(zip(self.module_paths, weights)), (),
            dict(input_ids=tokens[None].to(torch.int64), position_ids=positions[None].to(torch.int64),
                 cache=cache, use_cache=True))
        logits = out.logits[0] if self.kind == "prefill" else out.logits[0, 0]
        results = [logits, *per_layer(cache)]
        return tuple(results + (self.taps.stacked() if self.taps else []))


def example_inputs(kind, shapes, bucket, capacity):
    i32 = torch.int32
    if kind == "prefill":
        return [("tokens", torch.zeros(bucket, dtype=i32)), ("positions", torch.arange(bucket, dtype=i32)),
                ("real_len", torch.tensor(bucket, dtype=i32))]
    inputs = [("token", torch.tensor(0, dtype=i32)), ("position", torch.tensor(0, dtype=i32)),
              ("cache_len", torch.tensor(0, dtype=i32))]
    for i, (n, dk, dv) in enumerate(shapes):
        inputs += [(f"k_cache.{i}", torch.zeros(capacity, n, dk)), (f"v_cache.{i}", torch.zeros(capacity, n, dv))]
    return inputs


def lower(config_dict, kind, bucket, capacity, debug_taps=False):
    """The graph's StableHLO text, every @main argument named."""
    from torch_mlir import fx  # imported late: a refusal needs no compiler

    model = build_model(config_dict)
    stateless_rope(model)
    tensors = checkpoint_tensors(model)
    names = checkpoint_names(model, tensors)
    if BUG == "names":  # planted: the first two weights of one shape bound to each other's tensors
        names = swap_first_pair_of_one_shape(names, [t.shape for t in tensors.values()])
    shapes = cache_shapes(model)
    taps = Taps(model, len(shapes)) if debug_taps else None
    slots = bucket if kind == "prefill" else capacity
    graph = Graph(model, list(tensors), shapes, kind, slots, taps)
    weights = [t.detach() for t in tensors.values()]
    inputs = example_inputs(kind, shapes, bucket, capacity)
    with torch.no_grad():
        program = torch.export.export(graph, (weights, *[t for _, t in inputs]), strict=False)
    try:
        module = fx.export_and_import(program, output_type="stablehlo", func_name="main")
    except Exception as e:  # its diagnostics went to stderr above; its message's last line says how to dump IR
        raise RuntimeError(f"torch-mlir could not lower the {kind} graph (its diagnostics: stderr)") from e
    text = name_arguments(stablehlo_only(str(module)), names + [n for n, _ in inputs])
    results = text[text.index(") -> (", text.index("func.func @main(")):].split("{", 1)[0].count("tensor<")
    if results != 1 + 2 * len(shapes) + (3 if debug_taps else 0):
        # torch-mlir returns a buffer the forward rewrites before the results: traced at one input, the graph
        # would keep that input's branch (the rotary updates are made stateless above; any other is refused)
        raise Refused("the model rewrites a buffer in its forward (a branch on its inputs' values), which a "
                      "graph traced at one input would fix to that input's branch")
    return text


# Planted bugs, to see the harness fail this emitter's graphs (README.md): slot, position, names, rope_short.
BUG = os.environ.get("ARCHVAL_TORCH_BUG")


def swap_first_pair_of_one_shape(names, shapes):
    first = {}
    for i, shape in enumerate(shapes):
        if shape in first:
            j = first[shape]
            names = list(names)
            names[i], names[j] = names[j], names[i]
            return names
        first[shape] = i
    return names


RESOURCE = re.compile(r'^\s*([\w.]+): "0x([0-9A-F]+)"', re.M)


def stablehlo_only(text):
    """torch-mlir's text in the protocol's terms: stablehlo constants, no dialect resources.

    torch-mlir writes f64/i64 scalars as arith.constant (same syntax as stablehlo.constant) and
    buffers (inv_freq) as dense_resource blobs; both become plain stablehlo dense constants.
    """
    text = text.replace("arith.constant", "stablehlo.constant")
    head, _, resources = text.partition("{-#")
    for key, blob in RESOURCE.findall(resources):
        # a blob is its alignment (a little-endian u32, 8 hex digits), then the raw elements
        head = head.replace(f"dense_resource<{key}>", f'dense<"0x{blob[8:]}">')
    if "dense_resource<" in head:
        raise RuntimeError("torch-mlir wrote a dense_resource this emitter could not inline")
    return head.rstrip() + "\n"


def name_arguments(text, names):
    """loc("<name>") on each of @main's arguments, in order (archval binds them by name)."""
    start = text.index("func.func @main(")
    end = text.index(") -> ", start)
    signature = text[start:end]
    arguments = re.findall(r"%arg(\d+): (tensor<[^>]*>)", signature)
    if [int(i) for i, _ in arguments] != list(range(len(names))):
        raise RuntimeError(f"@main takes {len(arguments)} arguments where {len(names)} were traced")
    named = re.sub(r"%arg(\d+): (tensor<[^>]*>)",
                   lambda m: f'{m.group(0)} loc("{names[int(m.group(1))]}")', signature)
    return text[:start] + named + text[end:]
