"""One case, end to end: emit -> parse -> oracle -> bind by name -> compile -> run -> compare."""
from __future__ import annotations

import contextlib
import hashlib
import io
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from harness import ROOT
from harness.core import cache, compare, noise
from harness.checks import triangulate
from harness.backends import xla
from harness.core.fixtures import Fixture
from harness.core.graph import FunctionSignature, GraphError, parse_signature
from harness.backends.iree import BackendError, Module, compile_text
from harness.core.oracle_cache import OracleRun, fp64_logits
from harness.core.oracle_cache import run as oracle_run

DEFAULT_EMITTER = (sys.executable, "-m", "emitter")
EMIT_TIMEOUT_S = 120





class CaseError(RuntimeError):
    """The case could not be judged (emitter, binding or input problem): the family's ERROR."""


class EmitterRefused(CaseError):
    """The emitter exited 2: it refuses the config, with one sentence saying why."""


def replay_command(fixture: Fixture) -> str:
    return fixture.replay or f"./validate_arch.sh --family {fixture.name}"


_BUILTIN_LOCK = threading.Lock()


def _run_builtin(argv: list[str]) -> tuple[int, str]:
    """The built-in emitter's own CLI entry, called in-process: same argv, exit code and file,
    without a Python start per graph (which would dominate a structural run)."""
    from emitter.__main__ import main
    err = io.StringIO()
    with _BUILTIN_LOCK, contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse usage errors
            code = e.code if isinstance(e.code, int) else 1
    return code, err.getvalue()


def emit_with_command(command, config_path: Path, graph: str) -> str:
    """Run an emitter that follows the protocol `CMD --config C --graph KIND --out FILE`."""
    with tempfile.TemporaryDirectory(prefix="archval-emit-") as tmp:
        out = Path(tmp) / f"{graph}.mlir"
        config = Path(config_path).resolve()
        config = config.relative_to(ROOT) if config.is_relative_to(ROOT) else config
        argv = [*command, "--config", str(config), "--graph", graph, "--out", str(out)]
        if tuple(command) == DEFAULT_EMITTER:
            returncode, said = _run_builtin(["--config", str(ROOT / config), *argv[len(command) + 2:]])
        else:
            try:
                proc = subprocess.run(argv, capture_output=True, text=True, timeout=EMIT_TIMEOUT_S, cwd=ROOT)
            except subprocess.TimeoutExpired:
                raise CaseError(f"the emitter did not finish within {EMIT_TIMEOUT_S} s") from None
            except OSError as e:
                raise CaseError(f"the emitter could not start: {e}") from None
            returncode, said = proc.returncode, proc.stderr.strip() or proc.stdout.strip()
        said = (said.strip() or "(no output)").splitlines()[-1]
        if returncode == 2:  # name the config as the subprocess path does, relative to the project
            raise EmitterRefused(said.removeprefix("error: ").replace(str(ROOT / config), str(config)))
        if returncode != 0:
            raise CaseError(f"the emitter exited with {returncode}: {said}")
        if not out.is_file() or out.stat().st_size == 0:
            raise CaseError(f"the emitter exited 0 but wrote nothing to {out.name}")
        return out.read_text()


def bind(fn: FunctionSignature, weights: dict[str, np.ndarray], inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Arguments in the graph's order, each found by its name; shapes and dtypes must agree."""
    args = []
    for spec in fn.args:
        value = inputs.get(spec.name, weights.get(spec.name))
        if value is None:
            raise CaseError(f"graph argument '{spec.name}' names no tensor of the oracle's state dict")
        if tuple(value.shape) != spec.shape or str(value.dtype) != {"f32": "float32", "i32": "int32"}.get(spec.dtype):
            raise CaseError(f"graph argument '{spec.name}' is {spec.dtype}{list(spec.shape)} but the oracle's "
                            f"tensor is {value.dtype}{list(value.shape)}")
        args.append(value)
    return args


@contextmanager
def timed(timings: dict, stage: str):
    """Adds the block's wall time to timings[stage] (a decode case compiles and runs two graphs)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = round(timings.get(stage, 0.0) + time.perf_counter() - start, 4)


class CompiledGraph:
    """One graph kind of a case: emitted (or given), parsed, compiled and loaded."""
    run_stage = "run"

    def __init__(self, kind: str, text: str | None, fixture: Fixture, emitter, timings: dict, record: dict):
        if text is None:
            with timed(timings, "emit"):
                text = emit_with_command(emitter, fixture.config_path, kind)
        self.text = text
        sig = parse_signature(text)
        if "main" not in sig.functions:
            raise CaseError(f"the {kind} graph has no func.func @main")
        self.main = sig.functions["main"]
        with timed(timings, "compile"):
            vmfb, hit = compile_text(text)
        record["cache_hit"] = record.get("cache_hit", True) and hit
        with timed(timings, "load"):
            self.module = Module(vmfb, sig.module_name)
        self.timings = timings

    def __call__(self, weights: dict, inputs: dict) -> list[np.ndarray]:
        args = bind(self.main, weights, inputs)
        with timed(self.timings, self.run_stage):
            return self.module.call("main", *args)


class _XlaGraph(CompiledGraph):
    """The same text compiled by XLA CPU: the second compiler of the triangulation."""
    run_stage = "xla_run"

    def __init__(self, graph: CompiledGraph, timings: dict):
        self.text, self.main, self.timings = graph.text, graph.main, timings
        with timed(timings, "xla_compile"):
            self.module = xla.Module(graph.text)
        self._weights_on_device = None

    def __call__(self, weights: dict, inputs: dict) -> list[np.ndarray]:
        args = bind(self.main, weights, inputs)
        with timed(self.timings, self.run_stage):
            if self._weights_on_device is None:  # every step takes the same weights: copy them once
                self._weights_on_device = {a.name: self.module.upload(v) for a, v in zip(self.main.args, args)
                                           if a.name not in inputs}
            return self.module.call("main", *(self._weights_on_device.get(a.name, v)
                                              for a, v in zip(self.main.args, args)))


def new_record(fixture: Fixture, graph: str, bound: float) -> dict:
    """A case's record before it runs: an ERROR until a comparison says otherwise."""
    return {"family": fixture.name, "model_type": fixture.model_type, "graph": graph,
            "bound": bound, "bound_reason": fixture.bound_reason, "seed": fixture.seed,
            "prompt_len": fixture.prompt_len, "max_abs_diff": None, "argmax_match": None,
            "verdict": compare.ERROR, "message": "", "timings": {}, "replay": replay_command(fixture)}


def run_case(fixture: Fixture, graph: str = "prefill", texts: dict[str, str] | None = None,
             emitter=DEFAULT_EMITTER, xla: bool = True, strict_bound: bool = True) -> dict:
    """Validate one fixture and graph kind; never raises: failures become the record's verdict.
    texts: graph kind -> StableHLO text already emitted (a decode case runs the prefill graph too).
    xla: also run the text on XLA CPU and report the three-way comparison (record["xla"]).
    strict_bound: also require the error within noise.STRICT_FACTOR x the fp32 noise floor (an fp64
    oracle run); False judges by the fixed bound alone."""
    texts = texts or {}
    record = new_record(fixture, graph, fixture.bound)
    timings = record["timings"]
    if graph == "decode":
        record.update(steps=fixture.decode_steps, first_divergence=None, divergence=None)
    try:
        prompt = fixture.prompt()
        vocab = fixture.config["vocab_size"]
        outside = prompt[(prompt < 0) | (prompt >= vocab)]
        if outside.size:  # IREE's gather would clamp silently
            raise CaseError(f"prompt token {int(outside[0])} is outside the vocabulary [0, {vocab})")
        prefill = CompiledGraph("prefill", texts.get("prefill"), fixture, emitter, timings, record)
        bucket = prefill.main.arg("tokens").shape[0]
        if len(prompt) > bucket:
            raise CaseError(f"prompt_len {len(prompt)} exceeds the graph's prefill bucket {bucket}")
        decoder = CompiledGraph("decode", texts.get("decode"), fixture, emitter, timings, record) if graph == "decode" else None
        with timed(timings, "oracle"):
            oracle = oracle_run(fixture)
        record["oracle_class"], record["oracle_mapping"] = oracle.class_name, oracle.mapping
        record["oracle_cache_hit"] = oracle.cached
        steps = _graph_logits(prefill, decoder, oracle, prompt, bucket)
        used = {a.name for a in prefill.main.args}
        if decoder is None:
            result = compare.compare_logits(oracle.logits[0], steps[0])
            record.update(result.as_dict())
            record["verdict"], record["message"] = compare.verdict(result, fixture.bound)
            record["logits"] = {"oracle": compare.f32_list(oracle.logits[0]), "graph": compare.f32_list(steps[0])}
        else:
            used |= {a.name for a in decoder.main.args}
            positions = range(len(prompt) - 1, len(prompt) + fixture.decode_steps)
            result = compare.compare_steps(oracle.logits, steps, positions, fixture.bound)
            record.update(result.as_dict())
            record["verdict"], record["message"] = compare.decode_verdict(result)
            record["logits"] = {"oracle": compare.f32_list(oracle.logits[result.worst_step]),
                                "graph": compare.f32_list(steps[result.worst_step])}
        record["unused_tensors"] = sorted(set(oracle.weights) - used)
        if strict_bound:
            _judge_against_noise(record, fixture, oracle, len(steps), timings)
        if xla:
            bound = min(fixture.bound, record.get("strict_bound", fixture.bound))  # the bound the verdict used
            record["xla"] = _triangulate(prefill, decoder, oracle, prompt, bucket, steps, bound, timings)
    except (CaseError, GraphError, BackendError) as e:
        record["message"] = str(e)
    except Exception as e:  # noqa: BLE001 - one family's crash must never stop the others
        record["message"] = f"unexpected {type(e).__name__}: {e}"
    return record


def _graph_logits(prefill: CompiledGraph, decoder: CompiledGraph | None, oracle: OracleRun, prompt: np.ndarray,
                  bucket: int) -> np.ndarray:
    """The graph side's logits [steps + 1, V] fed the oracle's tokens (prefill alone: one row)."""
    tokens = np.zeros(bucket, np.int32)
    tokens[: len(prompt)] = prompt
    logits, *caches = prefill(oracle.weights, {"tokens": tokens, "positions": np.arange(bucket, dtype=np.int32),
                                               "real_len": np.array(len(prompt), np.int32)})
    if decoder is None:
        return np.asarray(logits, np.float32).reshape(1, -1)
    return _decode(decoder, oracle, len(prompt), logits, caches)


def _judge_against_noise(record: dict, fixture: Fixture, oracle: OracleRun, steps: int, timings: dict) -> None:
    """Adds the noise floor and the strict bound; a PASS beyond the strict bound becomes a FAIL."""
    with timed(timings, "oracle_fp64"):
        fp64 = fp64_logits(fixture, oracle.tokens)[:steps]
    record.update(noise.assess(record["max_abs_diff"], noise.noise_floor(oracle.logits[:steps], fp64)))
    record["fixed_verdict"] = record["verdict"]
    if record["verdict"] == compare.PASS and not record["max_abs_diff"] <= record["strict_bound"]:
        record["verdict"], record["message"] = compare.FAIL, noise.strict_failure(record)


def _triangulate(prefill: CompiledGraph, decoder: CompiledGraph | None, oracle: OracleRun, prompt: np.ndarray, bucket: int,
                 iree_logits: np.ndarray, bound: float, timings: dict) -> dict:
    """The same texts and inputs on XLA CPU; an XLA failure is reported there, never the case's verdict.
    XLA is a reference, like the oracle: its logits are cached by (its texts and build, the inputs)."""
    def compute():
        return {"logits": _graph_logits(_XlaGraph(prefill, timings), decoder and _XlaGraph(decoder, timings),
                                        oracle, prompt, bucket)}, {}

    texts = [xla.cache_key(g.text) for g in (prefill, decoder) if g is not None]
    path = cache.cache_dir() / f"{cache.key('xla logits', *texts, _inputs_digest(oracle, prompt))}.xla-logits"
    try:
        xla_logits, _, hit = cache.stored_arrays(path, compute)
    except (CaseError, BackendError) as e:
        return {"error": str(e)}
    return {**triangulate.triangulate(oracle.logits[: len(iree_logits)], iree_logits, xla_logits["logits"], bound),
            "cache_hit": hit}


def _inputs_digest(oracle: OracleRun, prompt: np.ndarray) -> str:
    """What the graphs are fed: every weight, the prompt and the teacher-forced tokens."""
    h = hashlib.sha256()
    for name, value in sorted(oracle.weights.items()):
        h.update(f"{name}:{value.dtype}{value.shape}".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    for array in (prompt, oracle.tokens):
        h.update(np.asarray(array, np.int64).tobytes())
    return h.hexdigest()


def _decode(decoder: CompiledGraph, oracle: OracleRun, prompt_len: int, prefill_logits: np.ndarray,
            prefill_caches: list[np.ndarray]) -> np.ndarray:
    """Teacher-forced decode: step s feeds the oracle's token s-1 at position prompt_len + s - 1.
    Returns the logits of every step, prefill's first."""
    k_spec = decoder.main.arg("k_cache")
    capacity, steps = k_spec.shape[1], len(oracle.tokens) - 1
    if prompt_len + steps > capacity:
        raise CaseError(f"prompt_len {prompt_len} + {steps} decode steps need {prompt_len + steps} cache slots "
                        f"but the decode graph's k_cache holds {capacity}")
    if len(prefill_caches) != 2:
        raise CaseError(f"the prefill graph returns {1 + len(prefill_caches)} results; decode needs "
                        "(logits, k_cache, v_cache)")
    caches = []
    for cache in prefill_caches:  # the prefill bucket, padding slots and all, starts the decode cache
        full = np.zeros(k_spec.shape, np.float32)
        if cache.shape[0] != full.shape[0] or cache.shape[2:] != full.shape[2:] or cache.shape[1] > capacity:
            raise CaseError(f"the prefill graph's cache is f32{list(cache.shape)} but the decode graph's "
                            f"is f32{list(k_spec.shape)}")
        full[:, : cache.shape[1]] = cache
        caches.append(full)
    logits = [prefill_logits]
    for s in range(1, steps + 1):
        slot = np.int32(prompt_len + s - 1)
        step_logits, *caches = decoder(oracle.weights, {
            "token": np.array(oracle.tokens[s - 1], np.int32), "position": np.array(slot), "cache_len": np.array(slot),
            "k_cache": caches[0], "v_cache": caches[1]})
        logits.append(step_logits)
    return np.stack([np.asarray(x, np.float32).reshape(-1) for x in logits])
