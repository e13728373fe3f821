"""A repro bundle: one case as files an IREE engineer can run without archval.

reports/bundles/<family>-<graph>/ holds each graph's exact .mlir, compile.sh (the iree-compile
command archval ran, with its flags), every weight and input as .npy, run.sh (iree-run-module on
exactly what archval fed each call of @main, its results written to out/), what archval recorded
of those calls (recorded/), the oracle's expected output and the graph's as compared (expected.npy,
actual.npy) and a README.txt. The gate writes one for every FAIL and ERROR (and, with --bundle all,
for every case); a bundle that cannot be written is a problem said with the reports, never a verdict.
"""
from __future__ import annotations

import io
import os
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..backends.iree import COMPILER_ENV, LINKER_FLAG, compile_command
from .files import write_atomic
from .graph import bind
from .record import ERROR, FAIL, Record

if TYPE_CHECKING:
    from .case import Case

BUNDLES = "bundles"  # the folder under the reports directory


@dataclass
class Bundles:
    """Which cases get a bundle, and where they go."""
    reports: Path  # the reports directory
    every: bool = False  # a bundle for every case, a PASS too (--bundle all)
    problems: list[str] = field(default_factory=list)  # bundles that could not be written

    def wanted(self, record: Record) -> bool:
        return self.every or record.verdict in (FAIL, ERROR)  # an UNSUPPORTED case has no graph to hand over

    def write(self, case: Case, expected: np.ndarray | None, actual: np.ndarray | None) -> str | None:
        """The bundle's folder relative to the reports directory; None (and a problem) when it cannot be written."""
        name = f"{BUNDLES}/{case.record.family}-{case.record.graph}"
        directory = Path(self.reports) / name
        try:
            shutil.rmtree(directory, ignore_errors=True)  # an earlier run's bundle of this case: no stale files
            write_bundle(directory, case, expected, actual)
        except Exception as e:  # noqa: BLE001 - a bundle explains a verdict, it never decides or stops it
            self.problems.append(f"{name} not written: {type(e).__name__}: {e}")
            return None
        return name


def _npy(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    write_atomic(path, buffer.getvalue())


def _script(path: Path, lines: list[str]) -> None:
    write_atomic(path, "\n".join(["#!/bin/sh", "set -eu", 'cd "$(dirname "$0")"', *lines]) + "\n")
    path.chmod(0o755)


def _find_tool(variable: str, name: str) -> list[str]:
    """A script's lines that set $variable to one of IREE's tools, unless the user set it: the tool on PATH, else
    beside the Python that wrote the bundle (a venv's bin, seldom on PATH: pip puts the tools there), else one
    sentence saying what to install. No path of this machine is needed: on another, PATH finds the tools."""
    return [f"WRITER_BIN={shlex.quote(str(Path(sys.executable).parent))}  # tried after PATH",
            f'if [ -z "${{{variable}:-}}" ]; then',
            f'  if command -v {name} >/dev/null 2>&1; then {variable}={name}',
            f'  elif [ -x "$WRITER_BIN/{name}" ]; then {variable}="$WRITER_BIN/{name}"',
            f'  else echo "$0: {name} not found on PATH nor in $WRITER_BIN: pip install iree-base-compiler '
            f'iree-base-runtime (or set {variable})" >&2; exit 127',
            "  fi", "fi"]


def _file_name(tensor: str) -> str:
    """A checkpoint tensor's name as a file name (names are dotted paths; keep anything else harmless)."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in tensor) + ".npy"


def write_bundle(directory: Path, case: Case, expected: np.ndarray | None, actual: np.ndarray | None) -> None:
    graphs = [g for g in case.kind.emits if isinstance(case.texts.get(g), str)]  # not a failed emission's error
    for graph in graphs:
        write_atomic(directory / f"{graph}.mlir", case.texts[graph])
    compile_lines = []
    for graph in graphs:  # the linker's path is this machine's: iree-compile finds the iree-lld installed beside it
        _, *flags = compile_command(f"{graph}.mlir", f"{graph}.vmfb")
        words = [f'${{IREE_LLD:+"{LINKER_FLAG}=$IREE_LLD"}}' if f.startswith(LINKER_FLAG) else shlex.quote(f)
                 for f in flags]
        compile_lines.append(" ".join(['"$IREE_COMPILE"', *words]))
    named = os.environ.get(COMPILER_ENV)  # a compiler the user chose for archval, not where pip put one
    _script(directory / "compile.sh", [
        "# The iree-compile command archval ran for each graph (its flags exactly; only the tools' paths differ",
        "# between machines: IREE_COMPILE, and IREE_LLD for a linker other than the iree-lld beside iree-compile).",
        *([f"IREE_COMPILE=${{IREE_COMPILE:-{shlex.quote(named)}}}  # ${COMPILER_ENV}, as archval ran it"]
          if named else []),
        *_find_tool("IREE_COMPILE", "iree-compile"), *compile_lines])
    run_lines = []
    if case.calls:
        for i, call in enumerate(case.calls):
            stem = f"call{i}-{call.graph}"
            args = []
            for spec, value in zip(call.main.args, bind(call.main, case.graph_weights(call.graph)[0], call.inputs)):
                path = f"{stem}/{_file_name(spec.name)}" if spec.name in call.inputs else f"weights/{_file_name(spec.name)}"
                if not (directory / path).exists():
                    _npy(directory / path, value)
                args.append(f"--input=@{path}")
            outputs = []
            for j, result in enumerate(call.results):
                _npy(directory / "recorded" / f"{stem}-result{j}.npy", result)
                outputs.append(f"--output=@out/{stem}-result{j}.npy")
            run_lines.append(" \\\n  ".join(['"$IREE_RUN_MODULE" --device=local-sync', f"--module={call.graph}.vmfb",
                                             "--function=main", *args, *outputs]))
        _script(directory / "run.sh", [
            "# Each call of @main archval made, fed exactly what archval fed it (arguments in @main's order);",
            "# run compile.sh first. out/ then holds the results, recorded/ what archval's IREE run returned.",
            *_find_tool("IREE_RUN_MODULE", "iree-run-module"), "mkdir -p out", *run_lines])
    if expected is not None:
        _npy(directory / "expected.npy", expected)
    if actual is not None:
        _npy(directory / "actual.npy", actual)
    write_atomic(directory / "README.txt", readme(case, bool(case.calls), expected is not None, actual is not None))


def readme(case: Case, ran: bool, expected: bool, actual: bool) -> str:
    r = case.record
    calls = ", ".join(f"call{i}: {c.graph}" for i, c in enumerate(case.calls))
    lines = [f"archval repro bundle: {r.family} {r.graph}: {r.verdict}", "", r.message, "",
             f"replay through archval: {r.replay}", "",
             "Without archval (IREE's command-line tools only: pip install iree-base-compiler iree-base-runtime):",
             "  sh compile.sh    # each .mlir -> .vmfb, with archval's iree-compile flags (llvm-cpu, host CPU)"]
    if ran:
        lines += ["  sh run.sh        # each call of @main archval made -> out/callI-GRAPH-resultJ.npy", "",
                  f"The calls, in order ({calls}): a decode step is fed the caches the previous call returned.",
                  "recorded/ holds what archval's IREE run returned for each call; out/ should equal it bit for bit",
                  "on the machine (CPU) that wrote this bundle."]
    else:
        lines += ["", "No call of @main was made (the case stopped before running: see the message above), so there",
                  "is no run.sh; compile.sh reproduces a compile failure."]
    if ran:
        lines += ["", "weights/      the checkpoint tensors @main's arguments name (the oracle's seeded weights)",
                  "callI-GRAPH/  the inputs of call I (the arguments that are no weights)"]
    if expected:
        lines.append("expected.npy  the oracle's output the verdict compared with (logit rows, or a block's output)")
    if actual:
        lines.append("actual.npy    the graph's output as archval compared it (taken from the calls' results)")
    lines += ["", f"bound {r.bound:g}; max_abs_diff {r.max_abs_diff}", ""]
    return "\n".join(lines)
