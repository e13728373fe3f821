"""The published description of summary.json, generated from the record's types (core/record.py,
core/summary.py), so that it cannot drift from what a run writes:

    python -m archval.harness.core.schema           # rewrites docs/summary.schema.json and docs/record.md
    python -m archval.harness.core.schema --check   # exit 1 when either is out of date (a test runs it)
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing

from .. import ROOT
from . import typed
from .files import write_atomic
from .summary import SCHEMA_VERSION, Summary

SCHEMA_PATH, DOC_PATH = ROOT / "docs" / "summary.schema.json", ROOT / "docs" / "record.md"


def summary_schema() -> dict:
    defs: dict = {}
    typed.schema(Summary, defs)
    root = defs.pop("Summary")
    root["properties"]["schema_version"] = {**root["properties"]["schema_version"], "const": SCHEMA_VERSION}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "archval summary.json",
            **root, "$defs": dict(sorted(defs.items()))}


def type_name(tp) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join("null" if a is type(None) else type_name(a) for a in args)
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin in (list, tuple, dict):
        return f"{origin.__name__}[{', '.join(type_name(a) for a in args)}]"
    return "any" if tp is typing.Any else tp.__name__


def record_doc() -> str:
    """docs/record.md: every type of summary.json, field by field."""
    lines = ["# The record: summary.json, field by field", "",
             "Generated from the types in `harness/core/record.py` and `harness/core/summary.py` by",
             "`python -m archval.harness.core.schema`; the machine-readable form is",
             f"[summary.schema.json](summary.schema.json) (JSON Schema 2020-12, schema_version {SCHEMA_VERSION}).",
             "A run with `--reports DIR` writes `DIR/summary.json`; its records are also what `--merge` reads.", ""]
    seen, todo = [], [Summary]
    while todo:
        cls = todo.pop(0)
        if cls in seen:
            continue
        seen.append(cls)
        hints, docs = typed.hints_of(cls), typed.field_docs(cls)
        lines += [f"## {cls.__name__}", "", cls.__doc__.strip(), "", "| field | type | meaning |", "|---|---|---|"]
        for f in dataclasses.fields(cls):
            lines.append(f"| `{f.name}` | {type_name(hints[f.name])} | {docs.get(f.name, '')} |")
            todo += [t for t in _dataclasses_in(hints[f.name]) if t not in seen]
        for name in getattr(cls, "DERIVED", ()):
            prop = getattr(cls, name)
            lines.append(f"| `{name}` | {type_name(typing.get_type_hints(prop.fget)['return'])} | "
                         f"{prop.__doc__.strip()} (derived: read-only) |")
        lines.append("")
    return "\n".join(lines)


def _dataclasses_in(tp) -> list:
    if dataclasses.is_dataclass(tp):
        return [tp]
    return [d for a in typing.get_args(tp) for d in _dataclasses_in(a)]


def generated() -> dict:
    return {SCHEMA_PATH: json.dumps(summary_schema(), indent=1, ensure_ascii=False) + "\n", DOC_PATH: record_doc()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m archval.harness.core.schema", description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only say whether the files are up to date")
    args = ap.parse_args(argv)
    stale = [path for path, text in generated().items() if not path.is_file() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"{path.relative_to(ROOT)} is out of date: run python -m archval.harness.core.schema")
        return 1 if stale else 0
    for path in stale:
        write_atomic(path, generated()[path])
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
