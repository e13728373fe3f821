"""Dataclasses to JSON and back, and their JSON Schema, read from the type hints alone.

The record (core/record.py) is plain dataclasses; this walks their type hints so that the
JSON a run writes, the objects --merge reads back and the published schema can never
disagree. A field's description is the comment at the end of its line in the class body;
a class may name read-only properties (DERIVED) that the JSON carries for its readers.
"""
from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from functools import cache
from typing import Any, Literal, Union

_FIELD_LINE = re.compile(r"^    (\w+): [^#]*?(?:#\s*(.*))?$")


def to_json(value):
    """A dataclass (recursively) as JSON-able values: its fields, then its DERIVED properties."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
        out.update((name, to_json(getattr(value, name))) for name in getattr(type(value), "DERIVED", ()))
        return out
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    return value


def from_json(tp, value, where: str = "record"):
    """value (parsed JSON) as an instance of tp; ValueError naming the place for anything else."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return from_json(inner, value, where)
    if origin is Literal:
        if value not in args:
            raise ValueError(f"{where}: {value!r} is none of {', '.join(map(repr, args))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise ValueError(f"{where}: expected a list, found {type(value).__name__}")
        if origin is list:
            return [from_json(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
        if len(args) != len(value):
            raise ValueError(f"{where}: expected {len(args)} items, found {len(value)}")
        return tuple(from_json(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected an object, found {type(value).__name__}")
        return {k: from_json(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected an object, found {type(value).__name__}")
        hints = hints_of(tp)
        unknown = set(value) - set(hints) - set(getattr(tp, "DERIVED", ()))
        if unknown:
            raise ValueError(f"{where}: unknown field {sorted(unknown)[0]!r}")
        return tp(**{f.name: from_json(hints[f.name], value[f.name], f"{where}.{f.name}")
                     for f in dataclasses.fields(tp) if f.name in value})
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
        return value
    raise ValueError(f"{where}: expected {tp.__name__}, found {type(value).__name__} {value!r}")


@cache
def hints_of(cls) -> dict:
    return typing.get_type_hints(cls)


@cache
def field_docs(cls) -> dict[str, str]:
    """{field: the comment at the end of its line} from the class body."""
    return {m.group(1): m.group(2) or "" for line in inspect.getsource(cls).splitlines()
            if (m := _FIELD_LINE.match(line))}


def schema(tp, defs: dict) -> dict:
    """The JSON Schema of tp; dataclasses go into defs (by class name) and are referenced."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return {}
    if origin in (Union, types.UnionType):
        return {"anyOf": [schema(a, defs) if a is not type(None) else {"type": "null"} for a in args]}
    if origin is Literal:
        return {"enum": list(args)}
    if origin is list:
        return {"type": "array", "items": schema(args[0], defs)}
    if origin is tuple:
        return {"type": "array", "prefixItems": [schema(a, defs) for a in args], "minItems": len(args),
                "maxItems": len(args)}
    if origin is dict:
        return {"type": "object", "additionalProperties": schema(args[1], defs)}
    if dataclasses.is_dataclass(tp):
        if tp.__name__ not in defs:
            defs[tp.__name__] = {}  # before the fields: a type may refer to itself
            defs[tp.__name__] = _object_schema(tp, defs)
        return {"$ref": f"#/$defs/{tp.__name__}"}
    return {"type": {str: "string", int: "integer", float: "number", bool: "boolean"}[tp]}


def _object_schema(cls, defs: dict) -> dict:
    hints, docs = hints_of(cls), field_docs(cls)
    properties = {}
    for f in dataclasses.fields(cls):
        properties[f.name] = {**schema(hints[f.name], defs), "description": docs.get(f.name, "")}
    for name in getattr(cls, "DERIVED", ()):
        prop = getattr(cls, name)
        properties[name] = {**schema(typing.get_type_hints(prop.fget)["return"], defs), "readOnly": True,
                            "description": inspect.getdoc(prop) or ""}
    return {"type": "object", "description": inspect.getdoc(cls) or "", "properties": properties,
            "required": list(properties), "additionalProperties": False}
