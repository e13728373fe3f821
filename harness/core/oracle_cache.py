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
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from .. import ROOT
from . import cache, host
from .fixtures import QUIET_TOKENS, Fixture
from ...oracles.interface import BlockExpectation, CaseOracle, Embedded, OracleRun

SOURCES = (ROOT / "oracles" / "hf.py", ROOT / "oracles" / "fields.py")  # the seeded oracle's code


class SeededOracle:
    """The CaseOracle (oracles/interface.py) of a fixture on seeded synthetic weights: oracles/hf.py's Oracle of the
    fixture's model type, each output computed once per process and, through the cache directory, once per
    machine: a family's prefill, decode and block cases share them."""

    def __init__(self, fixture: Fixture):
        self.fixture = fixture

    def run(self) -> OracleRun:
        return _run(*_run_key(self.fixture))

    def cached(self) -> bool:
        return _entry_path("run", _run_parts(*_run_key(self.fixture))).is_file()

    def fp64_logits(self, tokens: np.ndarray) -> np.ndarray:
        """The same seeded fp32 weights, upcast: the prompt's last token, then each step fed tokens[s - 1]."""
        return self.teacher_forced(tokens, "float64")

    def teacher_forced(self, tokens: np.ndarray, dtype: str) -> np.ndarray:
        """fp64_logits' run with the model in another torch dtype (bfloat16: weights rounded, every op in bf16 as
        torch runs it; a reduced-precision graph's noise, core/precision.py), returned as f32 or f64."""
        return _fp64_logits(_config_json(self.fixture), self.fixture.seed, _inputs(self.fixture),
                            tuple(int(t) for t in tokens), dtype)

    def prompt_logits(self, dtype: str = "float32") -> np.ndarray:
        fixture = self.fixture
        return _stored("prompt_logits", _prompt_parts(fixture, dtype), lambda: (
            {"logits": model(fixture, dtype).prompt_logits(fixture.prompt(), fixture.prompt_positions())}, {}))[0][
            "logits"]

    def sequence(self, prompt: np.ndarray, positions: np.ndarray,
                 decode_positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fixture = self.fixture
        parts = {"config": _config_json(fixture), "seed": fixture.seed, "quiet": QUIET_TOKENS,
                 "inputs": tuple(tuple(int(x) for x in a) for a in (prompt, positions, decode_positions))}
        arrays = _stored("sequence", parts, lambda: (dict(zip(("logits", "tokens"), model(fixture).greedy(
            prompt, positions, decode_positions))), {}))[0]
        return arrays["logits"], arrays["tokens"]

    def chunked_logits(self, starts: tuple[int, ...], dtype: str = "float32") -> np.ndarray:
        fixture = self.fixture
        parts = {**_prompt_parts(fixture, dtype), "starts": starts}
        return _stored("chunked_logits", parts, lambda: ({"logits": model(fixture, dtype).chunked_logits(
            fixture.prompt(), fixture.prompt_positions(), list(starts))}, {}))[0]["logits"]

    def embedded(self, dtype: str = "float32") -> Embedded:
        fixture = self.fixture

        def compute():
            embeddings, logits, table = model(fixture, dtype).embedded_logits(fixture.prompt(),
                                                                              fixture.prompt_positions())
            return {"embeddings": embeddings, "logits": logits}, {"table": table}

        arrays, meta, _ = _stored("embedded", _prompt_parts(fixture, dtype), compute)
        return Embedded(arrays["embeddings"], arrays["logits"], meta["table"])

    def moe_block(self, layer: int, hidden: np.ndarray) -> BlockExpectation:
        fixture = self.fixture
        parts = {"config": _config_json(fixture), "seed": fixture.seed, "quiet": QUIET_TOKENS, "layer": layer,
                 "hidden": hashlib.sha256(hidden.tobytes()).hexdigest() + str(hidden.shape)}

        def compute():
            output, margin, sets = model(fixture).moe_block(layer, hidden)
            return {"output": output}, {"router_margin": margin, "expert_sets": sets}

        arrays, meta, _ = _stored("moe_block", parts, compute)
        return BlockExpectation(arrays["output"], meta["router_margin"], meta["expert_sets"])

    def taps(self, dtype: str) -> dict[str, np.ndarray]:
        return model(self.fixture, dtype).taps(self.fixture.prompt(), self.fixture.prompt_positions())


def of(fixture: Fixture) -> CaseOracle:
    """The fixture's oracle: its checkpoint's (a --checkpoint run's, never cached: its weights are already on disk
    and its logits depend on every byte of them), else the seeded model's."""
    return fixture.oracle if fixture.oracle is not None else SeededOracle(fixture)


def run(fixture: Fixture) -> OracleRun:
    return of(fixture).run()


def cached(fixture: Fixture) -> bool:
    """Whether run(fixture) will be read back without running a model (no torch needed for it)."""
    return of(fixture).cached()


def fp64_logits(fixture: Fixture, tokens: np.ndarray) -> np.ndarray:
    """The fp64 oracle's logits [len(tokens), V]: the prompt's last token, then each step fed tokens[s - 1] (the
    fp32 oracle's choices)."""
    return of(fixture).fp64_logits(tokens)


def teacher_forced_logits(fixture: Fixture, tokens: np.ndarray, dtype: str) -> np.ndarray:
    """The oracle in dtype teacher-forced on tokens: [len(tokens), V] (core/precision.py's bf16 run)."""
    return of(fixture).teacher_forced(tokens, dtype)


def prompt_logits(fixture: Fixture, dtype: str = "float32") -> np.ndarray:
    """The oracle's logits [prompt_len, V] at every prompt position (a prefill graph that returns them all
    is compared at each); dtype float64: the strict bound's noise floor."""
    return of(fixture).prompt_logits(dtype)


def moe_block(fixture: Fixture, layer: int, hidden: np.ndarray) -> BlockExpectation:
    return of(fixture).moe_block(layer, hidden)


def sequence(fixture: Fixture, prompt: np.ndarray, positions: np.ndarray,
             decode_positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The oracle's greedy continuation of another prompt than the fixture's (a serving graph's row): its logits
    [steps + 1, V] (the prompt's last token, then each step) and the tokens they choose, as run() computes them."""
    return of(fixture).sequence(prompt, positions, decode_positions)


def chunked_logits(fixture: Fixture, starts: tuple[int, ...], dtype: str = "float32") -> np.ndarray:
    """The oracle's logits [prompt_len, V] at every prompt position, the prompt fed in chunks beginning at starts
    through its own cache (prefill_chunked's expectation)."""
    return of(fixture).chunked_logits(starts, dtype)


def embedded(fixture: Fixture, dtype: str = "float32") -> Embedded:
    """The oracle fed the prompt's inputs_embeds at its positions (prefill_embeddings' expectation and input)."""
    return of(fixture).embedded(dtype)


def _prompt_parts(fixture: Fixture, dtype: str) -> dict:
    return {"config": _config_json(fixture), "seed": fixture.seed, "quiet": QUIET_TOKENS,
            "prompt": tuple(fixture.prompt().tolist()), "positions": tuple(fixture.prompt_positions().tolist()),
            "dtype": dtype}


Inputs = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]  # the prompt, its positions, decode's positions


def _inputs(fixture: Fixture) -> Inputs:
    return tuple(tuple(int(x) for x in a) for a in (fixture.prompt(), fixture.prompt_positions(),
                                                     fixture.decode_positions()))


def _run_key(fixture: Fixture) -> tuple[str, int, Inputs]:
    return _config_json(fixture), fixture.seed, _inputs(fixture)


def _run_parts(config_json: str, seed: int, inputs: Inputs) -> dict:
    return {"config": config_json, "seed": seed, "inputs": inputs, "quiet": QUIET_TOKENS}


def model(fixture: Fixture, dtype: str = "float32"):
    """The fixture's live seeded oracles.hf.Oracle (imports torch), built once per process."""
    return _model(_config_json(fixture), fixture.seed, dtype)


def _config_json(fixture: Fixture) -> str:
    return json.dumps(fixture.config, sort_keys=True)


@lru_cache(maxsize=8)
def _model(config_json: str, seed: int, dtype: str):
    from ...oracles.hf import Oracle
    return Oracle(json.loads(config_json), seed, dtype=dtype, quiet_tokens=QUIET_TOKENS)


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
