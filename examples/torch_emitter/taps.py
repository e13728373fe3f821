"""archval's debug taps (docs/emitter-protocol.md#taps) from forward hooks on transformers' modules.

Each decoder layer's attention block output (HF's `self_attn` output), MLP output (HF's `mlp` output)
and the layer's output, stacked over the layers: three results f32[L, Lp, hidden]."""
import torch

ATTENTION = ("self_attn", "attn", "attention", "self_attention")
MLP = ("mlp", "feed_forward", "block_sparse_moe", "ffn")


class NoTaps(Exception):
    """The model's layers do not name their attention and MLP blocks as transformers usually does."""


def decoder_layers(model, count):
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count:
            return list(module)
    raise NoTaps(f"no list of {count} decoder layers in {type(model).__name__}")


def child(layer, names):
    for name in names:
        if isinstance(getattr(layer, name, None), torch.nn.Module):
            return getattr(layer, name)
    raise NoTaps(f"{type(layer).__name__} has none of the blocks {', '.join(names)}")


def first(output):
    return output[0] if isinstance(output, tuple) else output


class Taps:
    """Hooks that keep each layer's attention, MLP and layer outputs of the last forward."""

    def __init__(self, model, layer_count):
        self.outputs = {"attention": [], "mlp": [], "layer": []}
        for layer in decoder_layers(model, layer_count):
            blocks = {"attention": child(layer, ATTENTION), "mlp": child(layer, MLP), "layer": layer}
            for tap, module in blocks.items():
                module.register_forward_hook(lambda _m, _in, out, tap=tap: self.outputs[tap].append(first(out)))

    def clear(self):
        for kept in self.outputs.values():
            kept.clear()

    def stacked(self):
        return [torch.stack([t.reshape(t.shape[-2], t.shape[-1]) for t in kept]) for kept in self.outputs.values()]
