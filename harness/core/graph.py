"""What a graph asks for and returns, read from the parsed module (not from regexes), and its arguments
bound by name."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

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
        raise GraphError(f"@{self.name} has no argument named '{name}'")


@dataclass(frozen=True)
class GraphSignature:
    module_name: str
    functions: dict[str, FunctionSignature]


def _tensor(ir, t, name: str) -> TensorSpec:
    rt = ir.RankedTensorType(t)
    return TensorSpec(name, tuple(rt.shape), str(rt.element_type))


def _loc_name(location) -> str:
    text = str(location)
    if not (text.startswith('loc("') and text.endswith('")')):
        raise GraphError(f"argument location {text} is not a plain loc(\"<tensor name>\")")
    return text[5:-2]


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
            args = tuple(_tensor(ir, a.type, _loc_name(a.location)) for a in block.arguments)
            results = tuple(_tensor(ir, t, f"result{i}") for i, t in enumerate(fn_type.results))
            functions[name] = FunctionSignature(name, args, results, _op_histogram(ir, op.operation))
    return GraphSignature(module_name, functions)


def bind(fn: FunctionSignature, weights: dict[str, np.ndarray], inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Arguments in the graph's order, each found by its name; shapes and dtypes must agree."""
    args = []
    for spec in fn.args:
        value = inputs.get(spec.name, weights.get(spec.name))
        if value is None:
            tied = " (a tied checkpoint has none: its head is model.embed_tokens.weight)" * (spec.name == TIED_HEAD)
            raise GraphError(f"graph argument '{spec.name}' names no tensor of the checkpoint{tied}")
        if tuple(value.shape) != spec.shape or str(value.dtype) != {"f32": "float32", "i32": "int32"}.get(spec.dtype):
            raise GraphError(f"graph argument '{spec.name}' is {spec.dtype}{list(spec.shape)} but the oracle's "
                             f"tensor is {value.dtype}{list(value.shape)}")
        args.append(value)
    return args
