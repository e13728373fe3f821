"""What a graph asks for and returns, read from the parsed module (not from regexes), and its arguments
bound by name.

Only @main's arguments are bound, so only they must be named (docs/emitter-protocol.md#arguments);
the module may hold other functions that @main calls (what frontends such as JAX emit), whose
arguments are the frontend's business."""
from __future__ import annotations

import difflib
from collections import Counter
from dataclasses import dataclass

import numpy as np

from .checkpoint_tensors import NARROW, GraphTensors, NarrowStorageError

TIED_HEAD = "lm_head.weight"  # what no tied checkpoint ships


class GraphError(ValueError):
    """The emitted text is not a graph the harness can bind."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class FunctionSignature:
    name: str
    args: tuple[TensorSpec, ...]
    results: tuple[TensorSpec, ...]
    ops: dict[str, int]  # histogram of the ops in the body

    def arg(self, name: str) -> TensorSpec:
        for a in self.args:
            if a.name == name:
                return a
        inputs = [a.name for a in self.args if a.dtype == "i32"]
        raise GraphError(f"@{self.name} has no argument named '{name}' (its integer arguments: "
                         f"{', '.join(inputs) or 'none'}); inputs named otherwise need a binding file's [inputs] "
                         "(--binding, docs/binding.md)")


@dataclass(frozen=True)
class GraphSignature:
    module_name: str
    functions: dict[str, FunctionSignature]


def _tensor(ir, t, name: str) -> TensorSpec:
    rt = ir.RankedTensorType(t)
    return TensorSpec(name, tuple(rt.shape), str(rt.element_type))


def _loc_name(location) -> str | None:
    """The name a plain loc("<name>") gives; None for any other location."""
    text = str(location)
    return text[5:-2] if text.startswith('loc("') and text.endswith('")') else None


def _main_args(ir, block) -> tuple[TensorSpec, ...]:
    """@main's arguments, each named by its loc; GraphError naming the first unnamed or twice-named one."""
    args = []
    for i, a in enumerate(block.arguments):
        name = _loc_name(a.location)
        if name is None:
            raise GraphError(f"@main's argument {i} ({a.type}) carries no name: its location is {a.location}, not "
                             f"loc(\"<name>\"); every @main argument is bound by name (a checkpoint tensor or an "
                             f"input: docs/emitter-protocol.md#arguments)")
        args.append(_tensor(ir, a.type, name))
    twice = [n for n, k in Counter(a.name for a in args).items() if k > 1]
    if twice:
        raise GraphError(f"@main names more than one argument '{twice[0]}'")
    return tuple(args)


def _op_histogram(ir, func_op) -> dict[str, int]:
    counts: Counter = Counter()

    def count(op):
        counts[op.name] += 1
        return ir.WalkResult.ADVANCE

    func_op.walk(count)  # the walk runs in C++; a Python-side recursion is ~50x slower
    del counts["func.func"]
    return dict(sorted(counts.items()))


def parse_signature(text: str) -> GraphSignature:
    from iree.compiler import ir
    with ir.Context():
        try:
            module = ir.Module.parse(text)
        except Exception as e:  # noqa: BLE001 - MLIR raises its own error types
            raise GraphError(f"the StableHLO text does not parse: {str(e).strip()[:1500]}") from None
        if not module.operation.verify():
            raise GraphError("the StableHLO module does not verify")
        attrs = module.operation.attributes
        module_name = ir.StringAttr(attrs["sym_name"]).value if "sym_name" in attrs else "module"
        functions = {}
        for op in module.body.operations:
            if op.operation.name != "func.func":
                continue
            name = ir.StringAttr(op.attributes["sym_name"]).value
            fn_type = ir.FunctionType(ir.TypeAttr(op.attributes["function_type"]).value)
            block = op.regions[0].blocks[0]
            args = _main_args(ir, block) if name == "main" else tuple(  # a helper's arguments: named or not
                _tensor(ir, a.type, _loc_name(a.location) or f"arg{i}") for i, a in enumerate(block.arguments))
            results = tuple(_tensor(ir, t, f"result{i}") for i, t in enumerate(fn_type.results))
            functions[name] = FunctionSignature(name, args, results, _op_histogram(ir, op.operation))
    return GraphSignature(module_name, functions)


def _origin(binding: str | None) -> str:
    return f"value {binding} binds to it" if binding else "checkpoint tensor"


HELD = {"f32": np.dtype("float32"), "i32": np.dtype("int32")} | {t: held for t, (_, held) in NARROW.items()}


def _weight(weights, spec: TensorSpec) -> np.ndarray | None:
    """The weight an argument takes: f32, or a narrow type's stored bits, which only a checkpoint stored in it
    (GraphTensors) holds; GraphError for one stored otherwise, or fed from f32 weights."""
    if spec.dtype not in NARROW or spec.name not in weights:
        return weights.get(spec.name)
    if not isinstance(weights, GraphTensors):
        raise GraphError(f"@main argument '{spec.name}' is {spec.dtype}: a {spec.dtype} weight argument is fed from "
                         f"a checkpoint stored in {spec.dtype} (--checkpoint), and these weights are f32")
    try:
        return weights.narrow(spec.name, spec.dtype)
    except NarrowStorageError as e:
        raise GraphError(str(e)) from None


def bind(fn: FunctionSignature, weights: dict[str, np.ndarray], inputs: dict[str, np.ndarray],
         binding: str | None = None) -> list[np.ndarray]:
    """Arguments in the graph's order, each found by its name: every input must be taken, every other argument
    must name a weight (a checkpoint tensor, or one the binding file made); shapes and dtypes must agree."""
    taken = {a.name for a in fn.args}
    missing = [name for name in inputs if name not in taken]
    if missing:
        raise GraphError(f"@{fn.name} takes no argument named '{missing[0]}': this graph's inputs are "
                         f"{', '.join(inputs)}, each an argument named loc(\"<input>\")")
    args = []
    for spec in fn.args:
        is_input = spec.name in inputs
        value = inputs[spec.name] if is_input else _weight(weights, spec)
        if value is None:
            near = difflib.get_close_matches(spec.name, [*inputs, *weights], n=1, cutoff=0.8)
            tied = " (a tied checkpoint has none: its head is model.embed_tokens.weight)" * (spec.name == TIED_HEAD)
            raise GraphError(f"@{fn.name} argument '{spec.name}' names neither an input of this graph "
                             f"({', '.join(inputs)}) nor a tensor of the checkpoint{tied}"
                             + (f", and matches no [weights] pattern of {binding}" if binding else "")
                             + (f"; did you mean '{near[0]}'?" if near and not tied else ""))
        if tuple(value.shape) != spec.shape or value.dtype != HELD.get(spec.dtype):
            raise GraphError(f"@{fn.name} argument '{spec.name}' is {spec.dtype}{list(spec.shape)} but the "
                             f"{'input' if is_input else _origin(binding)} is {value.dtype}{list(value.shape)}")
        args.append(value)
    return args
