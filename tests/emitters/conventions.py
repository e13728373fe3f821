"""A test emitter in a serving emitter's conventions, validated through a binding file (docs/binding.md).

usage: conventions.py [--stack-experts] [--fuse-qkv] [--split-gate-up] [--tokens] [--scale-emb]
                      --config C --graph KIND --out FILE [--debug-taps]

It runs the built-in emitter, then wraps its graph: the built-in @main becomes a private @inner, and a new
@main takes the arguments under its own names and layouts and calls it.
- names: weights are parameter paths (`params['layers'][0]['wq']`, `params['embed']`), inputs `ids`, `pos`
  and `n` (prefill), `pos`, `kcache`, `vcache` (decode): none of them the protocol's or the checkpoint's;
- --stack-experts: each routed layer's experts as one `[E, out, in]` argument per projection
  (`params['layers'][i]['moe_gate']`), sliced back into experts inside;
- --fuse-qkv: each layer's q, k and v projections as one fused `[q + k + v, hidden]` argument
  (`params['layers'][i]['wqkv']`), its rows sliced inside;
- --split-gate-up: a checkpoint's fused `mlp.gate_up_proj` (GLM-4, Phi-3) taken as two arguments,
  `params['layers'][i]['w_gate']` and `['w_up']`, joined inside (a binding slices the fused tensor's rows);
- --tokens: prefill and decode end in an on-device argmax and return the greedy token, i32[], not logits;
- --scale-emb: MiniCPM's embedding scale, the config's `scale_emb` (a field Llama's oracle never reads).
The math is the built-in emitter's, so a PASS proves the binding path and a planted binding mistake must FAIL.
"""
import json
import re
import subprocess
import sys
from pathlib import Path

from iree.compiler import ir

SHORT = {  # the checkpoint's per-layer names -> this emitter's parameter names
    "input_layernorm.weight": "in_ln", "post_attention_layernorm.weight": "post_ln",
    "self_attn.q_proj.weight": "wq", "self_attn.k_proj.weight": "wk", "self_attn.v_proj.weight": "wv",
    "self_attn.o_proj.weight": "wo", "self_attn.q_norm.weight": "q_norm", "self_attn.k_norm.weight": "k_norm",
    "mlp.gate_proj.weight": "w_gate", "mlp.up_proj.weight": "w_up", "mlp.down_proj.weight": "w_down",
    "mlp.gate.weight": "moe_router",
}
TOP = {"model.embed_tokens.weight": "params['embed']", "model.norm.weight": "params['final_norm']",
       "lm_head.weight": "params['lm_head']"}
INPUTS = {"prefill": {"tokens": "ids", "positions": "pos", "real_len": "n"},
          "decode": {"position": "pos", "k_cache": "kcache", "v_cache": "vcache"}}
GATE_UP = re.compile(r"model\.layers\.(\d+)\.mlp\.gate_up_proj\.weight")
EXPERT = re.compile(r"model\.layers\.(\d+)\.mlp\.experts\.(\d+)\.(gate|up|down)_proj\.weight")
QKV = re.compile(r"model\.layers\.(\d+)\.self_attn\.([qkv])_proj\.weight")
LAYER = re.compile(r"model\.layers\.(\d+)\.(.+)")


def own_name(name: str, graph: str) -> str:
    if name in TOP:
        return TOP[name]
    if name in INPUTS.get(graph, {}):
        return INPUTS[graph][name]
    m = LAYER.fullmatch(name)
    if m and m.group(2) in SHORT:  # the rest keep the checkpoint's names, as many emitters' do
        return f"params['layers'][{m.group(1)}]['{SHORT[m.group(2)]}']"
    return name


def signature(text: str):
    """@main's (argument names, argument types, result types) as MLIR writes the types."""
    with ir.Context():
        module = ir.Module.parse(text)
        main = next(op for op in module.body.operations if ir.StringAttr(op.attributes["sym_name"]).value == "main")
        block = main.regions[0].blocks[0]
        names = [str(a.location)[5:-2] for a in block.arguments]
        types = [str(a.type) for a in block.arguments]
        results = [str(t) for t in ir.FunctionType(ir.TypeAttr(main.attributes["function_type"]).value).results]
    return names, types, results


def dims(type_text: str) -> list[int]:
    return [int(d) for d in type_text[len("tensor<"):-1].split("x")[:-1]]


def tensor(shape, element="f32") -> str:
    return f"tensor<{'x'.join(map(str, shape))}{'x' if shape else ''}{element}>"


class Outer:
    """The new @main's body, written op by op."""

    def __init__(self):
        self.args, self.lines, self.count = [], [], 0

    def arg(self, name: str, type_text: str) -> str:
        value = f"%a{len(self.args)}"
        self.args.append(f"{value}: {type_text} loc(\"{name}\")")
        return value

    def op(self, text: str) -> str:
        value = f"%v{self.count}"
        self.count += 1
        self.lines.append(f"    {value} = {text}")
        return value

    def rows(self, source: str, source_shape, start: int, stop: int, leading: int | None = None) -> str:
        """Rows [start, stop) of a 2-D source; with leading: expert `leading` of a 3-D one, as 2-D."""
        if leading is None:
            starts, limits, shape = [start, 0], [stop, source_shape[1]], [stop - start, source_shape[1]]
        else:
            starts, limits, shape = [leading, 0, 0], [leading + 1, *source_shape[1:]], [1, *source_shape[1:]]
        sliced = self.op(f'"stablehlo.slice"({source}) {{start_indices = array<i64: {", ".join(map(str, starts))}>, '
                         f'limit_indices = array<i64: {", ".join(map(str, limits))}>, strides = array<i64: '
                         f'{", ".join("1" * len(shape))}>}} : ({tensor(source_shape)}) -> {tensor(shape)}')
        if leading is None:
            return sliced
        return self.op(f"stablehlo.reshape {sliced} : ({tensor(shape)}) -> {tensor(shape[1:])}")

    def argmax(self, logits: str, vocab: int) -> str:
        """The greedy token of f32[V]: the largest logit, the lowest index among equals."""
        index = self.op(f"stablehlo.iota dim = 0 : {tensor([vocab], 'i32')}")
        lowest = self.op("stablehlo.constant dense<0xFF800000> : tensor<f32>")
        zero = self.op("stablehlo.constant dense<0> : tensor<i32>")
        value = f"%v{self.count}"
        self.count += 1
        self.lines += [
            f'    {value}:2 = "stablehlo.reduce"({logits}, {index}, {lowest}, {zero}) ({{',
            "    ^bb0(%x: tensor<f32>, %i: tensor<i32>, %y: tensor<f32>, %j: tensor<i32>):",
            '      %gt = "stablehlo.compare"(%x, %y) {comparison_direction = #stablehlo<comparison_direction GT>} : '
            "(tensor<f32>, tensor<f32>) -> tensor<i1>",
            '      %eq = "stablehlo.compare"(%x, %y) {comparison_direction = #stablehlo<comparison_direction EQ>} : '
            "(tensor<f32>, tensor<f32>) -> tensor<i1>",
            '      %lt = "stablehlo.compare"(%i, %j) {comparison_direction = #stablehlo<comparison_direction LT>} : '
            "(tensor<i32>, tensor<i32>) -> tensor<i1>",
            '      %tie = "stablehlo.and"(%eq, %lt) : (tensor<i1>, tensor<i1>) -> tensor<i1>',
            '      %first = "stablehlo.or"(%gt, %tie) : (tensor<i1>, tensor<i1>) -> tensor<i1>',
            '      %m = "stablehlo.select"(%first, %x, %y) : (tensor<i1>, tensor<f32>, tensor<f32>) -> tensor<f32>',
            '      %k = "stablehlo.select"(%first, %i, %j) : (tensor<i1>, tensor<i32>, tensor<i32>) -> tensor<i32>',
            '      "stablehlo.return"(%m, %k) : (tensor<f32>, tensor<i32>) -> ()',
            f"    }}) {{dimensions = array<i64: 0>}} : ({tensor([vocab])}, {tensor([vocab], 'i32')}, tensor<f32>, "
            f"tensor<i32>) -> (tensor<f32>, tensor<i32>)"]
        return f"{value}#1"


def wrap(text: str, graph: str, stack_experts: bool, fuse_qkv: bool, split_gate_up: bool, tokens: bool,
         scale_emb: float | None) -> str:
    names, types, results = signature(text)
    outer, values = Outer(), {}
    for name, type_text in zip(names, types):
        if scale_emb is not None and name == "model.embed_tokens.weight":  # every use of it: Llama's head is untied
            weight = outer.arg(own_name(name, graph), type_text)
            scale = outer.op(f"stablehlo.constant dense<{float(scale_emb)!r}> : {type_text}")
            values[name] = outer.op(f"stablehlo.multiply {weight}, {scale} : {type_text}")
            continue
        expert, qkv, gate_up = EXPERT.fullmatch(name), QKV.fullmatch(name), GATE_UP.fullmatch(name)
        if split_gate_up and gate_up:
            rows, width = dims(type_text)
            half = [rows // 2, width]
            parts = [outer.arg(f"params['layers'][{gate_up.group(1)}]['{p}']", tensor(half)) for p in ("w_gate", "w_up")]
            values[name] = outer.op(f"stablehlo.concatenate {parts[0]}, {parts[1]}, dim = 0 : ({tensor(half)}, "
                                    f"{tensor(half)}) -> {type_text}")
        elif stack_experts and expert:
            layer, projection = expert.group(1), expert.group(3)
            stacked = [n for n in names if (m := EXPERT.fullmatch(n)) and m.group(1, 3) == (layer, projection)]
            if name == stacked[0]:  # the stacked argument comes where its first expert was
                shape = [len(stacked), *dims(type_text)]
                source = outer.arg(f"params['layers'][{layer}]['moe_{projection}']", tensor(shape))
                for e, n in enumerate(stacked):
                    values[n] = outer.rows(source, shape, 0, 0, leading=e)
        elif fuse_qkv and qkv:
            layer = qkv.group(1)
            parts = [f"model.layers.{layer}.self_attn.{p}_proj.weight" for p in "qkv"]
            if name == parts[0]:
                heights = [dims(types[names.index(p)])[0] for p in parts]
                shape = [sum(heights), dims(type_text)[1]]
                source = outer.arg(f"params['layers'][{layer}]['wqkv']", tensor(shape))
                for p, start, height in zip(parts, (0, heights[0], heights[0] + heights[1]), heights):
                    values[p] = outer.rows(source, shape, start, start + height)
        else:
            values[name] = outer.arg(own_name(name, graph), type_text)
    call = f"%r{len(results)}"
    outer.lines.append(f"    {call}:{len(results)} = func.call @inner({', '.join(values[n] for n in names)}) : "
                       f"({', '.join(types)}) -> ({', '.join(results)})")
    returned = [f"{call}#{i}" for i in range(len(results))]
    result_types = list(results)
    if tokens and graph in ("prefill", "decode") and len(dims(results[0])) == 1:
        returned[0], result_types[0] = outer.argmax(returned[0], dims(results[0])[0]), "tensor<i32>"
    main = (f"  func.func public @main({', '.join(outer.args)}) -> ({', '.join(result_types)}) {{\n"
            + "\n".join(outer.lines) + f"\n    return {', '.join(returned)} : {', '.join(result_types)}\n  }}\n")
    inner = text.replace("func.func public @main(", "func.func private @inner(", 1)
    return inner[: inner.rstrip().rfind("}")] + main + "}\n"


def main(argv: list[str]) -> int:
    flags = {f: f in argv for f in ("--stack-experts", "--fuse-qkv", "--split-gate-up", "--tokens", "--scale-emb")}
    argv = [a for a in argv if a not in flags]
    scale_emb = json.loads(Path(argv[argv.index("--config") + 1]).read_text())["scale_emb"] \
        if flags.pop("--scale-emb") else None
    code = subprocess.call([sys.executable, "-m", "archval.emitter", *argv])
    if code:
        return code
    out = Path(argv[argv.index("--out") + 1])
    graph = argv[argv.index("--graph") + 1]
    out.write_text(wrap(out.read_text(), graph, *flags.values(), scale_emb))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
