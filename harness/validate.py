"""One case, end to end: emit -> parse -> oracle -> bind by name -> compile -> run -> compare."""
from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import compare
from .fixtures import Fixture
from .graph import FunctionSignature, GraphError, parse_signature
from .iree_backend import BackendError, Module, compile_text

DEFAULT_EMITTER = (sys.executable, "-m", "emitter")
EMIT_TIMEOUT_S = 120
INPUTS = ("tokens", "positions", "real_len")


ROOT = Path(__file__).resolve().parent.parent


class CaseError(RuntimeError):
    """The case could not be judged (emitter, binding or input problem): the family's ERROR."""


class EmitterRefused(CaseError):
    """The emitter exited 2: it refuses the config, with one sentence saying why."""


def replay_command(fixture: Fixture) -> str:
    return f"./validate_arch.sh --family {fixture.name}"


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


def oracle_run(fixture: Fixture) -> tuple[np.ndarray, dict[str, np.ndarray], str]:
    """(last-token logits, state dict, oracle class) for a fixture; cached per process."""
    return _oracle_run(json.dumps(fixture.config, sort_keys=True), fixture.seed, tuple(fixture.prompt().tolist()))


@lru_cache(maxsize=8)
def _oracle_run(config_json: str, seed: int, prompt: tuple[int, ...]):
    from oracles.hf import Oracle
    oracle = Oracle(json.loads(config_json), seed)
    return oracle.last_logits(np.array(prompt)), oracle.state_dict(), oracle.binding.class_name


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
def _timed(timings: dict, stage: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = round(time.perf_counter() - start, 4)


def run_case(fixture: Fixture, graph: str = "prefill", text: str | None = None,
             emitter=DEFAULT_EMITTER) -> dict:
    """Validate one fixture and graph kind; never raises: failures become the record's verdict."""
    timings: dict[str, float] = {}
    record = {"family": fixture.name, "model_type": fixture.model_type, "graph": graph,
              "bound": fixture.bound, "bound_reason": fixture.bound_reason, "seed": fixture.seed,
              "prompt_len": fixture.prompt_len, "max_abs_diff": None, "argmax_match": None,
              "verdict": compare.ERROR, "message": "", "timings": timings,
              "replay": replay_command(fixture)}
    try:
        if text is None:
            with _timed(timings, "emit"):
                text = emit_with_command(emitter, fixture.config_path, graph)
        fn_sig = parse_signature(text)
        if "main" not in fn_sig.functions:
            raise CaseError("the graph has no func.func @main")
        main = fn_sig.functions["main"]
        bucket = main.arg("tokens").shape[0]
        prompt = fixture.prompt()
        if len(prompt) > bucket:
            raise CaseError(f"prompt_len {len(prompt)} exceeds the graph's prefill bucket {bucket}")
        vocab = fixture.config["vocab_size"]
        if prompt.max() >= vocab or prompt.min() < 0:  # IREE's gather would clamp silently
            raise CaseError(f"prompt token {int(prompt.max())} is outside the vocabulary [0, {vocab})")
        with _timed(timings, "oracle"):
            expected, weights, oracle_class = oracle_run(fixture)
        record["oracle_class"] = oracle_class
        tokens = np.zeros(bucket, np.int32)
        tokens[: len(prompt)] = prompt
        inputs = {"tokens": tokens, "positions": np.arange(bucket, dtype=np.int32),
                  "real_len": np.array(len(prompt), np.int32)}
        args = bind(main, weights, inputs)
        record["unused_tensors"] = sorted(set(weights) - {a.name for a in main.args})
        with _timed(timings, "compile"):
            vmfb, record["cache_hit"] = compile_text(text)
        with _timed(timings, "load"):
            module = Module(vmfb, fn_sig.module_name)
        with _timed(timings, "run"):
            (logits,) = module.call("main", *args)
        result = compare.compare_logits(expected, logits)
        record.update(result.as_dict())
        record["verdict"], record["message"] = compare.verdict(result, fixture.bound)
    except (CaseError, GraphError, BackendError) as e:
        record["message"] = str(e)
    except Exception as e:  # noqa: BLE001 - one family's crash must never stop the others
        record["message"] = f"unexpected {type(e).__name__}: {e}"
    return record
