"""The oracle's outputs, computed once and kept in the cache directory (core/cache.py).

What the HF oracle says is a pure function of the fixture's config, its seed, the inputs,
the installed torch and transformers, oracles/hf.py, and the machine: torch's SIMD kernels
round differently by CPU (the same fixture's logits differ in their last bits under
ATEN_CPU_CAPABILITY default, avx2 and avx512; its seeded weights do not). Every entry is
keyed by all of them. A warm run reads the entries back and never imports torch (~6 s per worker); a
change to any of those inputs, or an empty cache directory, runs the oracle again.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from archval.harness import ROOT
from archval.harness.core import cache, host
from archval.harness.core.fixtures import QUIET_TOKENS, Fixture

SOURCES = (ROOT / "oracles" / "hf.py", ROOT / "oracles" / "fields.py")


@dataclass(frozen=True)
class OracleRun:
    """The oracle's greedy continuation with its own cache: logits [steps + 1, V] (row 0 is the
    prompt's last token, prefill's expectation) and the tokens they choose; plus its weights."""
    logits: np.ndarray
    tokens: np.ndarray
    weights: dict[str, np.ndarray]
    class_name: str
    mapping: str  # checkpoint names -> the class's names ("identity" unless a stand-in class serves the family)
    routed_layers: tuple[int, ...]  # layers whose MLP routes to experts
    cached: bool  # read from the cache directory, not computed by this process
    unread_fields: tuple[str, ...] = ()  # the config's fields the oracle never reads (oracles/fields.py)


@dataclass(frozen=True)
class BlockExpectation:
    """One MoE block of the oracle on given hidden states."""
    output: np.ndarray
    router_margin: float  # smallest gap between a token's k-th and (k+1)-th router probability
    expert_sets: int  # distinct expert sets chosen


def run(fixture: Fixture) -> OracleRun:
    """Once per process and, through the cache directory, once per machine: a family's prefill,
    decode and block cases share it. A checkpoint's (fixture.source) is its own, never cached: its
    weights are already on disk, and its logits depend on every byte of them."""
    if fixture.source is not None:
        return fixture.source.oracle_run()
    return _run(*_run_key(fixture))


def cached(fixture: Fixture) -> bool:
    """Whether run(fixture) will be read from the cache directory (no torch needed for it)."""
    return _entry_path("run", _run_parts(*_run_key(fixture))).is_file()


Inputs = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]  # the prompt, its positions, decode's positions


def _inputs(fixture: Fixture) -> Inputs:
    return tuple(tuple(int(x) for x in a) for a in (fixture.prompt(), fixture.prompt_positions(),
                                                     fixture.decode_positions()))


def _run_key(fixture: Fixture) -> tuple[str, int, Inputs]:
    return _config_json(fixture), fixture.seed, _inputs(fixture)


def _run_parts(config_json: str, seed: int, inputs: Inputs) -> dict:
    return {"config": config_json, "seed": seed, "inputs": inputs, "quiet": QUIET_TOKENS}


def fp64_logits(fixture: Fixture, tokens: np.ndarray) -> np.ndarray:
    """The fp64 oracle's logits [len(tokens), V] (the same seeded fp32 weights, upcast): the prompt's
    last token, then each step fed tokens[s - 1] (the fp32 oracle's choices)."""
    if fixture.source is not None:
        return fixture.source.fp64_logits(tokens)
    return teacher_forced_logits(fixture, tokens, "float64")


def teacher_forced_logits(fixture: Fixture, tokens: np.ndarray, dtype: str) -> np.ndarray:
    """fp64_logits' run with the model in another torch dtype (bfloat16: weights rounded, every op in bf16 as torch
    runs it; a reduced-precision graph's noise, core/precision.py), returned as f32 or f64; fixtures only."""
    return _fp64_logits(_config_json(fixture), fixture.seed, _inputs(fixture), tuple(int(t) for t in tokens), dtype)


def prompt_logits(fixture: Fixture, dtype: str = "float32") -> np.ndarray:
    """The oracle's logits [prompt_len, V] at every prompt position (a prefill graph that returns them all
    is compared at each); dtype float64: the strict bound's noise floor."""
    parts = {"config": _config_json(fixture), "seed": fixture.seed, "quiet": QUIET_TOKENS,
             "prompt": tuple(fixture.prompt().tolist()), "positions": tuple(fixture.prompt_positions().tolist()),
             "dtype": dtype}
    return _stored("prompt_logits", parts, lambda: (
        {"logits": model(fixture, dtype).prompt_logits(fixture.prompt(), fixture.prompt_positions())}, {}))[0]["logits"]


def moe_block(fixture: Fixture, layer: int, hidden: np.ndarray) -> BlockExpectation:
    parts = {"config": _config_json(fixture), "seed": fixture.seed, "quiet": QUIET_TOKENS, "layer": layer,
             "hidden": hashlib.sha256(hidden.tobytes()).hexdigest() + str(hidden.shape)}

    def compute():
        output, margin, sets = model(fixture).moe_block(layer, hidden)
        return {"output": output}, {"router_margin": margin, "expert_sets": sets}

    arrays, meta, _ = _stored("moe_block", parts, compute)
    return BlockExpectation(arrays["output"], meta["router_margin"], meta["expert_sets"])


def model(fixture: Fixture, dtype: str = "float32"):
    """The fixture's live oracles.hf.Oracle (imports torch), built once per process."""
    return _model(_config_json(fixture), fixture.seed, dtype)


def _config_json(fixture: Fixture) -> str:
    return json.dumps(fixture.config, sort_keys=True)


@lru_cache(maxsize=8)
def _model(config_json: str, seed: int, dtype: str):
    import torch

    from archval.oracles.hf import Oracle
    return Oracle(json.loads(config_json), seed, dtype=getattr(torch, dtype), quiet_tokens=QUIET_TOKENS)


@lru_cache(maxsize=8)
def _run(config_json: str, seed: int, inputs: Inputs) -> OracleRun:
    def compute():
        oracle = _model(config_json, seed, "float32")
        logits, tokens = oracle.greedy(*map(np.array, inputs))
        arrays = {"logits": logits, "tokens": tokens} | {f"weight:{k}": v for k, v in oracle.state_dict().items()}
        return arrays, {"class_name": oracle.binding.class_name, "mapping": oracle.binding.mapping,
                        "routed_layers": oracle.routed_layers(),
                        "unread_fields": oracle.unread_fields(json.loads(config_json))}

    arrays, meta, hit = _stored("run", _run_parts(config_json, seed, inputs), compute)
    weights = {k.removeprefix("weight:"): v for k, v in arrays.items() if k.startswith("weight:")}
    return OracleRun(arrays["logits"], arrays["tokens"], weights, meta["class_name"], meta["mapping"],
                     tuple(meta["routed_layers"]), hit, tuple(meta["unread_fields"]))


@lru_cache(maxsize=8)
def _fp64_logits(config_json: str, seed: int, inputs: Inputs, tokens: tuple[int, ...], dtype: str) -> np.ndarray:
    parts = {**_run_parts(config_json, seed, inputs), "tokens": tokens}

    def compute():
        logits = _model(config_json, seed, dtype).teacher_forced(*map(np.array, inputs), np.array(tokens))
        return {"logits": logits}, {}

    return _stored("fp64" if dtype == "float64" else dtype, parts, compute)[0]["logits"]


@lru_cache(maxsize=1)
def _identity() -> str:
    """What the outputs depend on besides their inputs: the libraries, the oracle's own code, the machine."""
    versions = ", ".join(f"{p} {importlib.metadata.version(p)}" for p in ("torch", "transformers"))
    sources = ", ".join(f"oracles/{p.name} {hashlib.sha256(p.read_bytes()).hexdigest()}" for p in SOURCES)
    return f"{versions}, {sources}, {host.cpu_identity()}"


def _entry_path(kind: str, parts: dict) -> Path:
    return cache.cache_dir() / f"{cache.key(kind, json.dumps(parts, sort_keys=True), _identity())}.oracle"


def _stored(kind: str, parts: dict, compute: Callable[[], tuple[dict, dict]]) -> tuple[dict[str, np.ndarray], dict, bool]:
    """(arrays, meta, cached): the entry for (kind, parts), computed and stored when missing or corrupt."""
    return cache.stored_arrays(_entry_path(kind, parts), compute)
