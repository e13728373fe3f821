"""Structural signatures of emitted graphs, their goldens, and readable drift reports.

A signature is computed from the parsed module: per function the argument schedule
(names, shapes, dtypes, in order), the result types and a histogram of op names; plus
the SHA-256 of the exact text. The golden keeps the text beside it, so a drift can show
its first differing line.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

from ..core.graph import GraphError, parse_signature

GOLDEN_DIR_NAME = "golden"


def signature(text: str) -> dict:
    graph = parse_signature(text)
    return {
        "module": graph.module_name,
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
        "functions": {
            name: {"args": [[a.name, list(a.shape), a.dtype] for a in fn.args],
                   "results": [[list(r.shape), r.dtype] for r in fn.results],
                   "ops": fn.ops}
            for name, fn in sorted(graph.functions.items())
        },
    }


def golden_paths(case_dir: Path, graph: str) -> tuple[Path, Path]:
    d = case_dir / GOLDEN_DIR_NAME
    return d / f"{graph}.signature.json", d / f"{graph}.mlir"


def load_golden(case_dir: Path, graph: str) -> tuple[dict, str] | None:
    sig_path, text_path = golden_paths(case_dir, graph)
    if not sig_path.is_file():
        return None
    try:
        golden = json.loads(sig_path.read_text())
    except json.JSONDecodeError as e:
        raise GraphError(f"{sig_path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    return golden, text_path.read_text() if text_path.is_file() else ""


def drift(golden: dict, golden_text: str, current: dict, current_text: str) -> list[str]:
    """What changed, in words; empty when the signature and text match the golden."""
    report = []
    if golden.get("module") != current["module"]:
        report.append(f"module name: {golden.get('module')} -> {current['module']}")
    g_fns, c_fns = golden.get("functions", {}), current["functions"]
    for name in sorted(set(g_fns) | set(c_fns)):
        if name not in c_fns:
            report.append(f"@{name}: function vanished")
            continue
        if name not in g_fns:
            report.append(f"@{name}: function appeared")
            continue
        g, c = g_fns[name], c_fns[name]
        g_args = {a[0]: a for a in g.get("args", [])}
        c_args = {a[0]: a for a in c["args"]}
        for arg in c_args.keys() - g_args.keys():
            report.append(f"@{name}: argument appeared: {arg} {c_args[arg][2]}{c_args[arg][1]}")
        for arg in g_args.keys() - c_args.keys():
            report.append(f"@{name}: argument vanished: {arg} {g_args[arg][2]}{g_args[arg][1]}")
        for arg in sorted(g_args.keys() & c_args.keys()):
            if g_args[arg] != c_args[arg]:
                report.append(f"@{name}: argument {arg} changed: {g_args[arg][2]}{g_args[arg][1]} -> "
                              f"{c_args[arg][2]}{c_args[arg][1]}")
        if [a[0] for a in g.get("args", [])] != [a[0] for a in c["args"]] and g_args.keys() == c_args.keys():
            report.append(f"@{name}: argument order changed")
        if g.get("results") != c["results"]:
            report.append(f"@{name}: results {g.get('results')} -> {c['results']}")
        g_ops, c_ops = Counter(g.get("ops", {})), Counter(c["ops"])
        for op in sorted(set(g_ops) | set(c_ops)):
            if g_ops[op] != c_ops[op]:
                delta = c_ops[op] - g_ops[op]
                report.append(f"@{name}: {op} x{g_ops[op]} -> x{c_ops[op]} ({delta:+d})")
    if golden.get("sha256") != current["sha256"]:
        report.append("text hash differs: " + first_difference(golden_text, current_text))
    elif golden_text != current_text:
        report.append("the golden text beside the signature differs: " + first_difference(golden_text, current_text))
    return report


def first_difference(old: str, new: str) -> str:
    old_lines, new_lines = old.splitlines(), new.splitlines()
    for i, (a, b) in enumerate(zip(old_lines, new_lines), start=1):
        if a != b:
            return f"first differing line {i}:\n      golden: {a.strip()[:200]}\n      emitted: {b.strip()[:200]}"
    if len(old_lines) != len(new_lines):
        return f"the texts agree up to line {min(len(old_lines), len(new_lines))}; lengths {len(old_lines)} vs {len(new_lines)} lines"
    return "the golden text is missing or differs only in its line endings"
