"""A small, typed StableHLO text builder.

Every op knows its result type, so the decoder code above it reads like the math.
Float constants are written as hex bit patterns (f32's, or bf16's rounded from them): exact, and
byte-stable in any process (no locale- or version-dependent float printing).

A Function's `compute` dtype is what its matmuls and activations run in: f32, or bf16 as accelerator
graphs compute (docs/reduced-precision.md). The decoder asks for `matmul` and `in_compute`; everything
else (norms, softmax, RoPE, the residual stream, the caches, the logits) stays f32 whatever it is.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Value:
    name: str
    shape: tuple[int, ...]
    dtype: str  # "f32", "bf16", "i32" or "i1"

    @property
    def type(self) -> str:
        return tensor_type(self.shape, self.dtype)


def tensor_type(shape: tuple[int, ...], dtype: str) -> str:
    dims = "".join(f"{d}x" for d in shape)
    return f"tensor<{dims}{dtype}>"


COMPUTE_DTYPES = ("f32", "bf16")
WEIGHT_DTYPES = ("f32", "bf16", "f16")  # a weight argument's type: the checkpoint's storage, upcast inside


def f32_hex(x: float) -> str:
    return "0x%08X" % int(np.array(x, dtype=np.float32).view(np.uint32))


def bf16_hex(x: float) -> str:
    """x rounded to f32, then to the nearest bf16 (ties to even): the top 16 bits of its f32 pattern."""
    bits = int(np.array(x, dtype=np.float32).view(np.uint32))
    return "0x%04X" % ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16)


def float_literal(x: float, dtype: str) -> str:
    return bf16_hex(x) if dtype == "bf16" else f32_hex(x)


def _ints(xs) -> str:
    return ", ".join(str(int(x)) for x in xs)


@dataclass
class Function:
    """One `func.func`: named arguments, a body of SSA lines, typed results."""

    name: str
    args: list[tuple[Value, str]] = field(default_factory=list)  # (value, loc name)
    inputs: list[tuple[Value, str]] = field(default_factory=list)  # listed after every argument
    lines: list[str] = field(default_factory=list)
    results: list[Value] = field(default_factory=list)
    compute: str = "f32"  # what matmuls and activations run in: one of COMPUTE_DTYPES
    weights: str = "f32"  # the weight arguments' type: one of WEIGHT_DTYPES
    _next_id: int = 0
    _float: str = "f32"  # the dtype scalar() writes floats in: compute's inside in_compute, else f32

    def __post_init__(self):
        if self.compute not in COMPUTE_DTYPES or self.weights not in WEIGHT_DTYPES:
            raise ValueError(f"compute dtype {self.compute!r} or weight dtype {self.weights!r} is not one of "
                             f"{', '.join(COMPUTE_DTYPES)} and {', '.join(WEIGHT_DTYPES)}")

    # -- arguments and results -------------------------------------------------
    def argument(self, ssa: str, loc: str, shape, dtype="f32") -> Value:
        value = Value(f"%{ssa}", tuple(shape), dtype)
        self.args.append((value, loc))
        return value

    def weight_argument(self, ssa: str, loc: str, shape) -> Value:
        """A weight: an argument of the weights' type, upcast to f32 at once where it is stored narrower (the
        checkpoint's bf16 or f16 fed as it is, half the bytes of an f32 copy)."""
        value = self.argument(ssa, loc, shape, self.weights)
        return value if self.weights == "f32" else self.convert(value, "f32")

    def input(self, name: str, shape, dtype: str) -> Value:
        """An argument that follows all `argument`s in the signature, whenever it is declared."""
        value = Value(f"%{name}", tuple(shape), dtype)
        self.inputs.append((value, name))
        return value

    def returns(self, *values: Value) -> None:
        self.results = list(values)

    def render(self) -> str:
        args = ",\n      ".join(f'{v.name}: {v.type} loc("{loc}")' for v, loc in self.args + self.inputs)
        types = ", ".join(v.type for v in self.results)
        body = "\n".join(self.lines)
        names = ", ".join(v.name for v in self.results)
        return (
            f"  func.func public @{self.name}(\n      {args})\n      -> ({types}) {{\n"
            f"{body}\n    return {names} : {types}\n  }}"
        )

    # -- plumbing ----------------------------------------------------------------
    def _op(self, expr: str, shape, dtype: str) -> Value:
        value = Value(f"%{self._next_id}", tuple(shape), dtype)
        self._next_id += 1
        self.lines.append(f"    {value.name} = {expr}")
        return value

    def _same_shape(self, a: Value, b: Value) -> tuple[Value, Value]:
        """Broadcast a rank-0 operand to the other's shape; otherwise shapes must match."""
        if a.shape == b.shape:
            return a, b
        if a.shape == ():
            return self.broadcast(a, b.shape, ()), b
        if b.shape == ():
            return a, self.broadcast(b, a.shape, ())
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")

    # -- constants -----------------------------------------------------------------
    def scalar(self, x: float | int, dtype: str | None = None) -> Value:
        dtype = dtype or self._float
        literal = float_literal(x, dtype) if dtype in COMPUTE_DTYPES else str(int(x))
        return self._op(f"stablehlo.constant dense<{literal}> : {tensor_type((), dtype)}", (), dtype)

    def dense(self, array: np.ndarray) -> Value:
        array = np.ascontiguousarray(array, dtype=np.float32)
        blob = array.astype("<f4").tobytes().hex().upper()
        shape = array.shape
        return self._op(f'stablehlo.constant dense<"0x{blob}"> : {tensor_type(shape, "f32")}', shape, "f32")

    def iota(self, shape, dim: int, dtype="i32") -> Value:
        return self._op(f"stablehlo.iota dim = {dim} : {tensor_type(shape, dtype)}", shape, dtype)

    # -- elementwise -----------------------------------------------------------------
    def _binary(self, op: str, a: Value, b: Value) -> Value:
        a, b = self._same_shape(a, b)
        return self._op(f"stablehlo.{op} {a.name}, {b.name} : {a.type}", a.shape, a.dtype)

    def add(self, a, b): return self._binary("add", a, b)
    def sub(self, a, b): return self._binary("subtract", a, b)
    def mul(self, a, b): return self._binary("multiply", a, b)
    def div(self, a, b): return self._binary("divide", a, b)
    def max(self, a, b): return self._binary("maximum", a, b)
    def and_(self, a, b): return self._binary("and", a, b)
    def or_(self, a, b): return self._binary("or", a, b)

    def _unary(self, op: str, a: Value) -> Value:
        return self._op(f"stablehlo.{op} {a.name} : {a.type}", a.shape, a.dtype)

    def exp(self, a): return self._unary("exponential", a)
    def tanh(self, a): return self._unary("tanh", a)
    def rsqrt(self, a): return self._unary("rsqrt", a)
    def logistic(self, a): return self._unary("logistic", a)

    def clamp(self, low: float, a: Value, high: float) -> Value:
        lo, hi = self.scalar(low), self.scalar(high)
        return self._op(f"stablehlo.clamp {lo.name}, {a.name}, {hi.name} : ({lo.type}, {a.type}, {hi.type}) -> {a.type}",
                        a.shape, a.dtype)

    def compare(self, direction: str, a: Value, b: Value) -> Value:
        a, b = self._same_shape(a, b)
        kind = "SIGNED" if a.dtype == "i32" else "FLOAT"
        out = tensor_type(a.shape, "i1")
        return self._op(
            f"stablehlo.compare {direction}, {a.name}, {b.name}, {kind} : ({a.type}, {b.type}) -> {out}",
            a.shape, "i1")

    def select(self, pred: Value, on_true: Value, on_false: Value) -> Value:
        on_true, on_false = (v if v.shape == pred.shape else self.broadcast(v, pred.shape, ())
                             for v in (on_true, on_false))
        return self._op(
            f"stablehlo.select {pred.name}, {on_true.name}, {on_false.name} : "
            f"({pred.type}, {on_true.type}, {on_false.type}) -> {on_true.type}",
            on_true.shape, on_true.dtype)

    def convert(self, a: Value, dtype: str) -> Value:
        out = tensor_type(a.shape, dtype)
        return self._op(f"stablehlo.convert {a.name} : ({a.type}) -> {out}", a.shape, dtype)

    # -- shape -----------------------------------------------------------------------
    def reshape(self, a: Value, shape) -> Value:
        shape = tuple(shape)
        if int(np.prod(shape)) != int(np.prod(a.shape)):
            raise ValueError(f"cannot reshape {a.shape} to {shape}")
        return self._op(f"stablehlo.reshape {a.name} : ({a.type}) -> {tensor_type(shape, a.dtype)}",
                        shape, a.dtype)

    def transpose(self, a: Value, perm) -> Value:
        shape = tuple(a.shape[p] for p in perm)
        return self._op(f"stablehlo.transpose {a.name}, dims = [{_ints(perm)}] : "
                        f"({a.type}) -> {tensor_type(shape, a.dtype)}", shape, a.dtype)

    def broadcast(self, a: Value, shape, dims) -> Value:
        """broadcast_in_dim: operand dimension k lands on result dimension dims[k]."""
        shape = tuple(shape)
        return self._op(f"stablehlo.broadcast_in_dim {a.name}, dims = [{_ints(dims)}] : "
                        f"({a.type}) -> {tensor_type(shape, a.dtype)}", shape, a.dtype)

    def slice(self, a: Value, starts, limits) -> Value:
        shape = tuple(hi - lo for lo, hi in zip(starts, limits))
        ranges = ", ".join(f"{lo}:{hi}" for lo, hi in zip(starts, limits))
        return self._op(f"stablehlo.slice {a.name} [{ranges}] : ({a.type}) -> {tensor_type(shape, a.dtype)}",
                        shape, a.dtype)

    def concatenate(self, values: list[Value], dim: int) -> Value:
        shape = list(values[0].shape)
        shape[dim] = sum(v.shape[dim] for v in values)
        operands = ", ".join(v.name for v in values)
        types = ", ".join(v.type for v in values)
        out = tensor_type(shape, values[0].dtype)
        return self._op(f"stablehlo.concatenate {operands}, dim = {dim} : ({types}) -> {out}",
                        shape, values[0].dtype)

    def dynamic_slice(self, a: Value, starts: list[Value], sizes) -> Value:
        shape = tuple(sizes)
        idx = ", ".join(s.name for s in starts)
        types = ", ".join([a.type] + [s.type for s in starts])
        return self._op(f"stablehlo.dynamic_slice {a.name}, {idx}, sizes = [{_ints(sizes)}] : "
                        f"({types}) -> {tensor_type(shape, a.dtype)}", shape, a.dtype)

    def dynamic_update_slice(self, a: Value, update: Value, starts: list[Value]) -> Value:
        """a with `update` written at `starts` (clamped to stay inside a)."""
        idx = ", ".join(s.name for s in starts)
        types = ", ".join([a.type, update.type] + [s.type for s in starts])
        return self._op(f"stablehlo.dynamic_update_slice {a.name}, {update.name}, {idx} : ({types}) -> {a.type}",
                        a.shape, a.dtype)

    def take_rows(self, table: Value, indices: Value) -> Value:
        """table[indices] for a 2-D table and 1-D i32 indices (out of range clamps)."""
        (n,), width = indices.shape, table.shape[1]
        shape = (n, width)
        idx = self.reshape(indices, (n, 1))
        dnums = ("#stablehlo.gather<offset_dims = [1], collapsed_slice_dims = [0], "
                 "start_index_map = [0], index_vector_dim = 1>")
        return self._op(
            f'"stablehlo.gather"({table.name}, {idx.name}) <{{dimension_numbers = {dnums}, '
            f"indices_are_sorted = false, slice_sizes = array<i64: 1, {width}>}}> : "
            f"({table.type}, {idx.type}) -> {tensor_type(shape, table.dtype)}", shape, table.dtype)

    # -- contractions and reductions ----------------------------------------------
    def dot_general(self, a: Value, b: Value, contract: tuple[int, int], batch: bool = False,
                    result: str | None = None) -> Value:
        """Contract a[contract[0]] with b[contract[1]]; with batch, dimension 0 of both is a batch. result: the
        product's dtype (the operands' by default; f32 from bf16 operands accumulates in f32)."""
        ca, cb = contract
        batch_dims = [0] if batch else []
        free_a = [d for d in range(len(a.shape)) if d != ca and d not in batch_dims]
        free_b = [d for d in range(len(b.shape)) if d != cb and d not in batch_dims]
        shape = tuple([a.shape[0]] * batch + [a.shape[d] for d in free_a] + [b.shape[d] for d in free_b])
        batching = "batching_dims = [0] x [0], " if batch else ""
        return self._op(
            f"stablehlo.dot_general {a.name}, {b.name}, {batching}contracting_dims = [{ca}] x [{cb}] : "
            f"({a.type}, {b.type}) -> {tensor_type(shape, result or a.dtype)}", shape, result or a.dtype)

    def matmul(self, a: Value, b: Value, contract: tuple[int, int], batch: bool = False) -> Value:
        """dot_general in the compute dtype. bf16: both operands rounded to bf16, the product accumulated in f32
        and rounded to bf16, as an accelerator's bf16 matmul returns it; carried on as the f32 of that value."""
        if self.compute == "f32":
            return self.dot_general(a, b, contract, batch)
        low = self.compute
        product = self.dot_general(self.convert(a, low), self.convert(b, low), contract, batch, result="f32")
        return self.convert(self.convert(product, low), "f32")

    def in_compute(self, fn, *values: Value) -> Value:
        """fn(*values) computed in the compute dtype, its float constants too (an activation); returned as f32."""
        if self.compute == "f32":
            return fn(*values)
        self._float = self.compute
        try:
            out = fn(*(self.convert(v, self.compute) for v in values))
        finally:
            self._float = "f32"
        return self.convert(out, "f32")

    def reduce(self, a: Value, init: Value, op: str, dims) -> Value:
        shape = tuple(s for d, s in enumerate(a.shape) if d not in dims)
        return self._op(
            f"stablehlo.reduce({a.name} init: {init.name}) applies stablehlo.{op} across dimensions = "
            f"[{_ints(dims)}] : ({a.type}, {init.type}) -> {tensor_type(shape, a.dtype)}", shape, a.dtype)


def module(name: str, functions: list[Function]) -> str:
    body = "\n".join(f.render() for f in functions)
    return f"module @{name} {{\n{body}\n}}\n"
