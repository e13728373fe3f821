"""A declared binding (`--binding FILE`, docs/binding.md): how a graph's own argument names map onto the
checkpoint's tensors and the protocol's inputs, for emitters that do not use archval's names.

Without a file every argument is bound by its own name (IDENTITY: a checkpoint tensor or a protocol input,
docs/emitter-protocol.md#arguments). A binding file is TOML, versioned (`version = 1`):

    [inputs]                                   # the graph's name = the protocol's, in every graph
    kcache = "k_cache"
    [inputs.decode]                            # in one graph kind's graph only
    pos = "position"
    [weights]                                  # the graph's argument pattern = where its value comes from
    "params['embed']" = "model.embed_tokens.weight"
    "params['layers'][{i}]['wq']" = "model.layers.{i}.self_attn.q_proj.weight"
    "params['layers'][{i}]['moe_gate']" = { stack = "model.layers.{i}.mlp.experts.{e}.gate_proj.weight" }
    "params['layers'][{i}]['wk']" = { tensor = "model.layers.{i}.self_attn.qkv_proj.weight",
                                      rows = ["heads * head_dim", "(heads + kv_heads) * head_dim"] }

A `{name}` in an argument pattern matches a decimal number and is substituted into the source's pattern.
A source is a tensor name, or a table: `tensor` (one tensor), `stack` (every tensor the pattern names as
`{e}` counts up from 0, stacked on a new first axis), or `concat` (a list of patterns, joined along `axis`);
then, in this order, `rows`/`cols` ([start, stop): integers or arithmetic over the config's sizes) and
`transpose`. The record's checks judge the graph as if it had taken the protocol's names, and every checkpoint
tensor still has to be taken by some argument.
"""
from __future__ import annotations

import ast
import operator
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from .emitter_protocol import EmitterRefused
from .graph import FunctionSignature, GraphError, GraphSignature, TensorSpec
from .inputs import PROTOCOL_INPUT

VERSION = 1
SCHEMA = "docs/binding.schema.json"
_PLACEHOLDER = re.compile(r"\{([A-Za-z_]\w*)\}")
_MAX_STACK = 1 << 16  # no checkpoint has more experts; a pattern that matches forever is a mistake


class BindingError(ValueError):
    """A binding file that cannot be used: one sentence naming the file, the entry and the value."""


# The names a slice bound may use, besides any integer field of the config.
def _sizes(read: Callable[[str], object]) -> dict[str, int]:
    def attribute(name):
        try:
            return read(name)
        except KeyError:  # absent from the config.json: its class's default, which no slice here relies on
            return None
    heads, hidden = attribute("num_attention_heads"), attribute("hidden_size")
    head_dim = attribute("head_dim") or (hidden // heads if heads else None)
    kv_heads = attribute("num_key_value_heads") or heads
    experts = next((n for n in (attribute("num_experts"), attribute("num_local_experts")) if n), None)
    sizes = {"hidden": hidden, "heads": heads, "kv_heads": kv_heads, "head_dim": head_dim,
             "intermediate": attribute("intermediate_size"), "layers": attribute("num_hidden_layers"),
             "vocab": attribute("vocab_size"), "experts": experts,
             "expert_intermediate": attribute("moe_intermediate_size")}
    return {k: v for k, v in sizes.items() if isinstance(v, int)}


_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv}


def _evaluate(text: str, names: Mapping[str, int], where: str) -> int:
    """An integer expression over names: + - * // and parentheses, nothing else (no call, no attribute)."""
    def value(node):
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in names:
                raise GraphError(f"{where}: '{node.id}' in {text!r} is no size of this config (known: "
                                   f"{', '.join(sorted(names))})")
            return names[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        raise GraphError(f"{where}: {text!r} is not integer arithmetic over the config's sizes (+ - * // only)")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise GraphError(f"{where}: {text!r} is not an arithmetic expression") from None
    return value(tree.body)


def pattern_regex(pattern: str) -> re.Pattern:
    """An argument pattern as a regex: literal text, each {name} a decimal number captured under its name."""
    parts, last = [], 0
    for m in _PLACEHOLDER.finditer(pattern):
        parts += [re.escape(pattern[last:m.start()]), f"(?P<{m.group(1)}>0|[1-9][0-9]*)"]
        last = m.end()
    return re.compile("".join(parts) + re.escape(pattern[last:]))


@dataclass(frozen=True)
class Source:
    """Where one weight argument's value comes from: the checkpoint tensors, then the transforms."""
    entry: str  # the binding file's key, as the user wrote it (errors name it)
    kind: str  # tensor, stack or concat
    patterns: tuple[str, ...]  # checkpoint tensor names, with the argument's {placeholders} (and stack's {e})
    over: str = "e"  # stack: the counting placeholder
    axis: int = 0  # concat: the axis joined along
    rows: tuple[object, object] | None = None
    cols: tuple[object, object] | None = None
    transpose: bool = False

    def tensors(self, captured: dict[str, str], checkpoint: Mapping[str, object]) -> list[str]:
        """The checkpoint tensors this source reads for an argument whose placeholders took `captured`."""
        fill = lambda p, extra={}: _PLACEHOLDER.sub(lambda m: {**captured, **extra}.get(m.group(1), m.group(0)), p)
        if self.kind == "stack":
            names = []
            while len(names) < _MAX_STACK and fill(self.patterns[0], {self.over: str(len(names))}) in checkpoint:
                names.append(fill(self.patterns[0], {self.over: str(len(names))}))
            return names
        return [fill(p) for p in self.patterns]

    def value(self, names: list[str], checkpoint: Mapping[str, np.ndarray], sizes: dict[str, int],
              where: str) -> np.ndarray:
        if self.kind == "stack":
            value = np.stack([np.asarray(checkpoint[n]) for n in names])
        elif self.kind == "concat":
            parts = [np.asarray(checkpoint[n]) for n in names]
            try:
                value = np.concatenate(parts, axis=self.axis)
            except ValueError:
                raise GraphError(f"{where}: the tensors {', '.join(f'{n} {list(p.shape)}' for n, p in zip(names, parts))}"
                                 f" do not join along axis {self.axis}") from None
        else:
            value = np.asarray(checkpoint[names[0]])
        for axis, bounds in ((0, self.rows), (1, self.cols)):
            if bounds is not None:
                start, stop = (_evaluate(b, sizes, where) if isinstance(b, str) else b for b in bounds)
                if value.ndim <= axis or not 0 <= start < stop <= value.shape[axis]:
                    raise GraphError(f"{where}: {'rows' if axis == 0 else 'cols'} [{start}, {stop}) lie outside "
                                     f"{names[0] if len(names) == 1 else 'the joined tensor'} {list(value.shape)}")
                value = value[(slice(None),) * axis + (slice(start, stop),)]
        if self.transpose:
            if value.ndim != 2:
                raise GraphError(f"{where}: transpose takes a 2-D tensor, not {list(value.shape)}")
            value = value.T
        return np.ascontiguousarray(value)


@dataclass(frozen=True)
class Binding:
    """A graph's names -> the protocol's inputs and the checkpoint's tensors. IDENTITY binds each by its own name."""
    path: str | None = None  # the file, as given (None: the identity binding)
    inputs: dict[str, dict[str, str]] = field(default_factory=dict)  # graph kind ("": every one) -> graph input
    # pattern -> protocol input pattern
    weights: tuple[tuple[str, re.Pattern, Source], ...] = ()
    graphs: dict[str, str] = field(default_factory=dict)  # graph kind -> file name, for --graphs DIR

    def file_of(self, kind: str) -> str:
        return self.graphs.get(kind, f"{kind}.mlir")

    def protocol_names(self, signature: GraphSignature, kind: str) -> GraphSignature:
        """The signature with @main's inputs under the protocol's names (`pos` -> `position`): what the kinds read."""
        main = signature.functions.get("main")
        aliases = {**self.inputs.get("", {}), **self.inputs.get(kind, {})}
        if main is None or not aliases:
            return signature
        args, taken = [], {}
        for spec in main.args:
            name = _input_name(spec.name, aliases)
            if name in taken:
                raise GraphError(f"@main's arguments '{taken[name]}' and '{spec.name}' are both bound to the input "
                                 f"'{name}' by {self.path} [inputs]")
            if name != spec.name:
                taken[name] = spec.name
            args.append(TensorSpec(name, spec.shape, spec.dtype))
        renamed = FunctionSignature(main.name, tuple(args), main.results, main.ops)
        return GraphSignature(signature.module_name, {**signature.functions, "main": renamed})

    def graph_weights(self, main: FunctionSignature, checkpoint: Mapping[str, np.ndarray],
                      attribute: Callable[[str], object]) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
        """(each weight argument's value under its graph name, the checkpoint tensors it reads), for every
        @main argument that is not a protocol input (main under protocol_names). An argument no [weights] pattern
        matches is bound by its own name (left to core/graph.py's bind, which says what is wrong with it)."""
        if not self.weights:  # by name: the checkpoint itself (a --checkpoint's reads its files lazily)
            return checkpoint, {a.name: [a.name] for a in main.args if a.name in checkpoint}
        values, read = {}, {}
        sizes = None
        for spec in main.args:
            if PROTOCOL_INPUT.fullmatch(spec.name):
                continue
            matches = [(entry, m, source) for entry, regex, source in self.weights if (m := regex.fullmatch(spec.name))]
            if len(matches) > 1:
                raise GraphError(f"@main argument '{spec.name}' matches {len(matches)} [weights] patterns of "
                                 f"{self.path}: {', '.join(repr(e) for e, _, _ in matches)}")
            if not matches:
                if spec.name in checkpoint:
                    values[spec.name], read[spec.name] = checkpoint[spec.name], [spec.name]
                continue
            entry, m, source = matches[0]
            where = f"{self.path} [weights] {entry!r} for @main argument '{spec.name}'"
            names = source.tensors(m.groupdict(), checkpoint)
            missing = [n for n in names if n not in checkpoint]
            if missing or not names:
                raise GraphError(f"{where}: the checkpoint has no tensor '{missing[0] if missing else source.patterns[0]}'"
                                 + (f" (stacking over {{{source.over}}} found none from 0)" if source.kind == "stack"
                                    else ""))
            sizes = sizes if sizes is not None else _sizes(attribute)
            values[spec.name], read[spec.name] = source.value(names, checkpoint, sizes, where), names
        return values, read


IDENTITY = Binding()
MAX_GRAPH_BYTES = 256 << 20  # as an emitter's output file (core/contained_process.py)


def graph_texts(folder: Path, binding: Binding, kinds) -> dict:
    """A --graphs family folder's pre-emitted graphs by kind: each kind's file (binding.file_of), read as UTF-8
    text; a kind without its file is refused as an emitter would refuse it (UNSUPPORTED: that kind was not given)."""
    texts = {}
    for kind in kinds:
        path = folder / binding.file_of(kind)
        if not path.is_file():
            texts[kind] = EmitterRefused(f"{folder} holds no {path.name}: no {kind} graph was given")
        elif path.stat().st_size > MAX_GRAPH_BYTES:
            texts[kind] = GraphError(f"{path} is larger than {MAX_GRAPH_BYTES >> 20} MiB, the limit on a graph")
        else:
            try:
                texts[kind] = path.read_text(encoding="utf-8")
            except UnicodeDecodeError as e:
                texts[kind] = GraphError(f"{path} is not UTF-8 text (byte {e.start})")
    return texts


def _input_name(name: str, aliases: dict[str, str]) -> str:
    for graph_pattern, protocol in aliases.items():
        m = pattern_regex(graph_pattern).fullmatch(name)
        if m:
            return _PLACEHOLDER.sub(lambda p: m.group(p.group(1)), protocol)
    return name
