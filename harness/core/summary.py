"""summary.json: the records of a run inside an envelope that says which run it was.

    {"schema_version": 1, "run": {command, mode, started, host, versions, emitter}, "records": [...]}

docs/summary.schema.json is generated from these types (python -m archval.harness.core.schema).
Reading also accepts what archval wrote before the envelope existed: a bare list of flat
records (each converted, so that --merge can join old shard runs with new ones).
"""
from __future__ import annotations

import datetime
import functools
import importlib.metadata
import json
import os
import platform
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .. import ROOT
from . import host
from .emitter_protocol import BUILTIN_EMITTER
from .files import write_json_atomic
from .record import (ERROR, ERRORED, FAILED, PASS, PASSED, BlockResult, Check, DecodeResult,
                                 FixtureFacts, Localisation, LogitsResult, MutantFacts, NoiseResult, OracleFacts,
                                 PublishedFacts, Record, Step, StructuralBrief, Tap, ThreeWay)
from .typed import from_json, to_json

SCHEMA_VERSION = 1
# How a user runs archval, as replay lines, usage and summary.json say it: a checkout's wrapper, else the `archval`
# command; cli.main started as the `archval` command says so (use_command), and a gate hands its own to its workers.
_command = ["./validate_arch.sh" if (ROOT / "validate_arch.sh").is_file() else "archval"]
LIBRARIES = (("torch", "torch"), ("transformers", "transformers"), ("IREE compiler", "iree-base-compiler"),
             ("IREE runtime", "iree-base-runtime"), ("jax", "jax"), ("numpy", "numpy"))


@dataclass
class Host:
    """The machine a run ran on (numerics and compiled code can depend on its CPU)."""
    machine: str  # platform.machine()
    cpu: str  # the CPU's model name (core/host.py)
    cores: int  # os.cpu_count()
    system: str  # platform.platform()


@dataclass
class RunInfo:
    """Which run wrote the records."""
    command: str  # the command line, as run
    mode: str  # gate, config, merge, pytest
    started: str  # when it started (ISO 8601, UTC)
    host: Host  # where it ran
    versions: dict[str, str]  # Python, the libraries, archval itself
    emitter: str  # the emitter under test: its command, or the built-in one
    merged: list[str] = field(default_factory=list)  # --merge: the reports directories joined


@dataclass
class Summary:
    """summary.json: the records of a run, and the run that wrote them."""
    schema_version: int  # the version of this layout: a reader checks it before anything else
    run: RunInfo  # the run
    records: list[Record]  # one per case, in the family order of the run


def command() -> str:
    return _command[0]


def use_command(name: str) -> None:
    _command[0] = name


def run_info(mode: str, command: list[str], emitter: str | None) -> RunInfo:
    return RunInfo(command=shlex.join(command), mode=mode,
                   started=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                   host=Host(platform.machine(), host.cpu_model(), os.cpu_count() or 1, platform.platform()),
                   versions=versions(), emitter=emitter or BUILTIN_EMITTER)


@functools.cache
def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for label, dist in LIBRARIES:
        try:
            found[label] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[label] = "not installed"
    found["archval"] = project_version()
    return found


def project_version() -> str:
    """git describe of this checkout when it is one; else the installed package's version."""
    try:
        described = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty", "--tags"],
                                   capture_output=True, text=True, timeout=10)
        if described.returncode == 0 and described.stdout.strip():
            return f"git {described.stdout.strip()}"
    except OSError:
        pass
    try:
        return importlib.metadata.version("archval")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def write(path: Path, run: RunInfo, records: list[Record]) -> None:
    write_json_atomic(path, to_json(Summary(SCHEMA_VERSION, run, records)))


def read(path: Path) -> tuple[RunInfo | None, list[Record]]:
    """(the run, its records); the run is None for a bare list. ValueError, one sentence naming the file."""
    try:
        found = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"{path}: not readable as JSON ({type(e).__name__}: {e})") from None
    try:
        if isinstance(found, dict) and "schema_version" in found:
            if found["schema_version"] != SCHEMA_VERSION:
                raise ValueError(f"schema_version {found['schema_version']!r}, this archval reads {SCHEMA_VERSION}")
            summary = from_json(Summary, found, "summary")
            return summary.run, summary.records
        if isinstance(found, list):
            return None, [Record.from_json(r, f"record {i}") if isinstance(r, dict) and "checks" in r
                          else from_flat(r) for i, r in enumerate(found)]
        raise ValueError("neither an object with schema_version nor a list of records")
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(f"{path}: not a gate summary.json ({e})") from None


FLAT_KEYS = ("family", "graph", "verdict", "max_abs_diff", "argmax_match", "bound", "message", "replay")


def from_flat(r) -> Record:
    """A record as archval wrote it before schema_version 1: one flat object of 45+ keys."""
    if not (isinstance(r, dict) and all(k in r for k in FLAT_KEYS) and isinstance(r["family"], str)):
        raise ValueError(f"a record without {', '.join(FLAT_KEYS)}")
    status = {PASS: PASSED, ERROR: ERRORED}.get(r["verdict"], FAILED)
    timeline = [Step(**{k: t[k] for k in Step.__dataclass_fields__}) for t in r.get("timeline", [])]
    record = Record(
        family=r["family"], model_type=r.get("model_type", "?"), graph=r["graph"], bound=r["bound"],
        replay=r["replay"],
        fixture=FixtureFacts(config_path="", purpose="", dims="", seed=r.get("seed", 0), prompt=[],
                             decode_steps=r.get("steps", 0), bound=r["bound"],
                             bound_reason=r.get("bound_reason")),
        checks=[Check("verdict", "recorded", status, r["message"])], max_abs_diff=r["max_abs_diff"],
        timings=r.get("timings", {}),
        cache_hit={k: r[old] for k, old in (("compile", "cache_hit"), ("oracle", "oracle_cache_hit"))
                   if r.get(old) is not None})
    if "worst_index" in r:
        position = timeline[r["worst_step"]].position if timeline else r.get("prompt_len", 1) - 1
        logits = r.get("logits") or {"oracle": [], "graph": []}
        record.logits = LogitsResult(position, r["worst_index"], r["oracle_argmax"], r["graph_argmax"],
                                     r["oracle_top2_gap"], r["nonfinite"], r["argmax_match"], r["near_tie_flip"],
                                     [tuple(x) for x in r["oracle_top_k"]], [tuple(x) for x in r["graph_top_k"]],
                                     logits["oracle"], logits["graph"])
    if timeline:
        record.decode = DecodeResult(r["steps"], r["worst_step"], r["first_divergence"], r["divergence"], timeline)
    if "layer" in r:
        record.block = BlockResult(r["layer"], r["tokens"], r["router_margin"], r["expert_sets"], 0, 0)
    if "noise_floor" in r:
        # older runs judged the whole run against one floor: that floor, as if at step 0
        record.noise = NoiseResult(r["noise_floor"], r["noise_ratio"], r["strict_factor"], r["strict_bound"], 0,
                                   [r["noise_floor"]])
    if r.get("xla"):
        x = r["xla"]
        record.xla = ThreeWay(x.get("error"), *(x.get(k) for k in ("oracle_iree", "oracle_xla", "iree_xla", "bound",
                                                                    "argmax_match", "verdict", "cache_hit")))
    if r.get("localisation"):
        found = r["localisation"]
        taps = [Tap(**t) for t in found.get("taps", [])]
        record.localisation = Localisation(found.get("error"), found["first"] and Tap(**found["first"]), taps,
                                           found.get("strict_factor"), found.get("summary", ""))
    if r.get("structural"):
        s = r["structural"]
        record.structural = StructuralBrief(s["status"], s["detail"], s.get("sha256"), s.get("args", 0),
                                            s.get("results"), s.get("ops"), None)
    if "oracle_class" in r:
        record.oracle = OracleFacts(r["oracle_class"], r["oracle_mapping"], r.get("unused_tensors", []))
    if r.get("published"):
        record.published = from_json(PublishedFacts, r["published"], "published")
    if r.get("mutant"):
        record.mutant = MutantFacts(r["mutant"], r.get("mutant_description", ""))
    return record
