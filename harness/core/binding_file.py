"""A binding file (TOML, docs/binding.md, docs/binding.schema.json) read into a core.binding.Binding, every entry
checked before anything runs: BindingError naming the file, the entry and the value."""
from __future__ import annotations

import ast
import tomllib
from pathlib import Path

from .binding import SCHEMA, VERSION, Binding, BindingError, Source, pattern_regex


def load(path: str | Path) -> Binding:
    """The binding file at path; BindingError naming the file, the entry and the value for anything wrong."""
    shown = str(path)
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BindingError(f"--binding {shown}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BindingError(f"--binding {shown}: cannot be read ({e})") from None
    except tomllib.TOMLDecodeError as e:
        raise BindingError(f"{shown}: not TOML ({e})") from None
    if raw.get("version") != VERSION:
        raise BindingError(f"{shown}: field 'version' = {raw.get('version')!r}; this archval reads version {VERSION}")
    unknown = sorted(set(raw) - {"version", "inputs", "weights", "graphs"})
    if unknown:
        raise BindingError(f"{shown}: unknown table '{unknown[0]}' (known: version, inputs, weights, graphs; {SCHEMA})")
    inputs = {"": {}}
    for key, value in _table(raw, "inputs", shown).items():
        if isinstance(value, dict):
            inputs[key] = _string_table({key: value}, key, shown, f"inputs.{key}")
        elif isinstance(value, str):
            inputs[""][key] = value
        else:
            raise BindingError(f"{shown}: [inputs] {key!r} = {value!r} must be a string (or a graph kind's table)")
    graphs = _string_table(raw, "graphs", shown)
    for kind, name in graphs.items():
        if Path(name).name != name:
            raise BindingError(f"{shown}: [graphs] {kind} = {name!r} must be a file name in the family's folder")
    weights = []
    for entry, spec in _table(raw, "weights", shown).items():
        weights.append((entry, pattern_regex(entry), _source(entry, spec, shown)))
    return Binding(shown, inputs, tuple(weights), graphs)


def _table(raw: dict, name: str, shown: str) -> dict:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise BindingError(f"{shown}: '{name}' must be a table")
    return value


def _string_table(raw: dict, name: str, shown: str, label: str | None = None) -> dict[str, str]:
    table = _table(raw, name, shown)
    for key, value in table.items():
        if not isinstance(value, str):
            raise BindingError(f"{shown}: [{label or name}] {key!r} = {value!r} must be a string")
    return dict(table)


def _source(entry: str, spec, shown: str) -> Source:
    where = f"{shown}: [weights] {entry!r}"
    if isinstance(spec, str):
        return Source(entry, "tensor", (spec,))
    if not isinstance(spec, dict):
        raise BindingError(f"{where} = {spec!r} must be a tensor name or a table")
    kinds = [k for k in ("tensor", "stack", "concat") if k in spec]
    if len(kinds) != 1:
        raise BindingError(f"{where} needs exactly one of tensor, stack, concat (has {', '.join(kinds) or 'none'})")
    unknown = sorted(set(spec) - {"tensor", "stack", "concat", "over", "axis", "rows", "cols", "transpose"})
    if unknown:
        raise BindingError(f"{where}: unknown key '{unknown[0]}' ({SCHEMA})")
    kind = kinds[0]
    patterns = spec[kind]
    if kind == "concat":
        if not (isinstance(patterns, list) and len(patterns) >= 2 and all(isinstance(p, str) for p in patterns)):
            raise BindingError(f"{where}: concat = {patterns!r} must be a list of two or more tensor names")
        patterns = tuple(patterns)
    elif not isinstance(patterns, str):
        raise BindingError(f"{where}: {kind} = {patterns!r} must be a tensor name")
    else:
        patterns = (patterns,)
    over = spec.get("over", "e")
    if kind == "stack" and "{" + str(over) + "}" not in patterns[0]:
        raise BindingError(f"{where}: stack = {patterns[0]!r} has no {{{over}}} to count over")
    bounds = {}
    for key in ("rows", "cols"):
        value = spec.get(key)
        if value is not None and not (isinstance(value, list) and len(value) == 2
                                      and all(isinstance(b, (int, str)) and not isinstance(b, bool) for b in value)):
            raise BindingError(f"{where}: {key} = {value!r} must be [start, stop] (integers or size arithmetic)")
        bounds[key] = tuple(value) if value is not None else None
    axis, transpose = spec.get("axis", 0), spec.get("transpose", False)
    if type(axis) is not int or type(transpose) is not bool:
        raise BindingError(f"{where}: axis must be an integer and transpose true or false")
    for bound in (b for pair in bounds.values() if pair for b in pair if isinstance(b, str)):
        try:
            tree = ast.parse(bound, mode="eval")
        except SyntaxError:
            raise BindingError(f"{where}: {bound!r} is not an arithmetic expression") from None
        allowed = (ast.Expression, ast.Constant, ast.Name, ast.Load, ast.BinOp, ast.UnaryOp, ast.USub, ast.Add, ast.Sub,
                   ast.Mult, ast.FloorDiv)
        if not all(isinstance(node, allowed) for node in ast.walk(tree)):
            raise BindingError(f"{where}: {bound!r} is not integer arithmetic over the config's sizes (+ - * // only)")
    return Source(entry, kind, patterns, str(over), axis, bounds["rows"], bounds["cols"], transpose)
