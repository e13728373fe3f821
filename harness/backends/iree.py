"""IREE llvm-cpu: compile StableHLO text (content-addressed cache, core/cache.py) and run it.

The cache key covers the text, the compiler version, the flags and the host CPU
(host-tuned vmfbs are not portable).

Graphs run on as many threads as whoever starts the process gives them (use_threads: a gate worker its share
of the cores, a --checkpoint run all of them; 1 unless told): on one, IREE's `local-sync` driver, in the
calling thread; on more, `local-task`. A dispatch's reductions are tiled at compile time, never by the thread
count: every fixture family's prefill and decode logits are the same bits on `local-sync` and on `local-task`
with 1 or 2 threads (bench/iree_threads.py, and a test on three families), so the verdicts do not depend on
the machine's cores.
"""
from __future__ import annotations

import importlib.metadata
import os
import signal
import subprocess
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np

from .base import Backend, BackendError, Module, Stage
from ..core import cache, lifetime
from ..core.files import scratch_directory, write_atomic
from ..core.graph import FunctionSignature, GraphSignature
from ..core.host import cpu_identity
from ..core.watchdog import time_limit

COMPILE_TIMEOUT_S = 300
# Seams for fault injection and odd installs: another iree-compile executable, a shorter timeout.
COMPILER_ENV, TIMEOUT_ENV = "ARCHVAL_IREE_COMPILE", "ARCHVAL_COMPILE_TIMEOUT_S"
ALIGNMENT = 64  # IREE's heap buffers are 64-byte aligned, and its CPU code may assume it
TARGET_FLAGS = ("--iree-hal-target-backends=llvm-cpu", "--iree-llvmcpu-target-cpu=host")
# One thread: local-sync, no worker thread to hand each call to (the fixtures' tiny graphs: 109-134 ms for 468
# calls against 203-316 ms on local-task's one worker; docs/performance.md). DRIVER set: that driver, whatever the count.
DRIVER: str | None = None
# A --checkpoint run's graphs (core/modes/checkpoint.py): --iree-opt-level=O3 made a 1.1B decode call 8.4x faster
# (0.113 s against 0.952 s, the compile as long; docs/checkpoints.md); the fixtures' graphs, whose calls take
# microseconds, keep the default level, under which the strict factor's tables were measured.
_level: list[str] = []
THREADS_FLAG = "--task_topology_group_count"  # worker threads, unpinned: the OS places them on the allowed cores
_threads = [1]  # this process's setting; the driver reads it once, when the first graph is loaded


@lru_cache(maxsize=1)
def compiler_identity() -> str:
    return f"iree-base-compiler {importlib.metadata.version('iree-base-compiler')}"


def compile_timeout_s() -> float:
    return float(os.environ.get(TIMEOUT_ENV) or COMPILE_TIMEOUT_S)


def cache_key(text: str) -> str:
    return cache.key(text, compiler_identity(), os.environ.get(COMPILER_ENV, ""), " ".join((*TARGET_FLAGS, *_level)),
                     cpu_identity())


LINKER_FLAG = "--iree-llvmcpu-embedded-linker-path"


def compiler_tools() -> tuple[str, Path]:
    """(iree-compile, the iree-lld beside it) as archval runs them."""
    from iree.compiler.tools import binaries
    tool = os.environ.get(COMPILER_ENV) or binaries.find_tool("iree-compile")
    return tool, Path(tool).with_name("iree-lld")


def compile_command(source: str, out: str) -> list[str]:
    """The iree-compile command line archval runs (a repro bundle's compile.sh writes it out)."""
    tool, lld = compiler_tools()
    # One compile per worker already keeps every core busy; threads inside a tiny compile only contend
    # (8 compiles on 2 cores: 14.2 s threaded, 11.8 s not) and the vmfb is the same byte for byte.
    return [tool, source, "--iree-input-type=stablehlo", *TARGET_FLAGS, *_level, f"{LINKER_FLAG}={lld}",
            "--mlir-print-op-on-diagnostic=false", "--mlir-disable-threading", "-o", out]


def source_path(text: str) -> Path:
    """Where the text is written for iree-compile: kept when the compile fails, so that its diagnostics cite a
    file that exists (stdin would make them cite "-":1:16)."""
    return cache.cache_dir() / "compile-sources" / f"{cache_key(text)}.mlir"


def compile_text(text: str) -> tuple[bytes, bool]:
    """(vmfb, cache_hit)."""
    path = cache.cache_dir() / f"{cache_key(text)}.vmfb"
    cached = cache.read_entry(path)
    if cached is not None:
        return cached, True
    source = source_path(text)
    write_atomic(source, text)
    with scratch_directory("archval-compile-") as tmp:
        out = tmp / "module.vmfb"
        command, timeout = compile_command(str(source), str(out)), compile_timeout_s()
        try:
            proc = lifetime.start(command)
        except OSError as e:
            raise BackendError(f"iree-compile could not start ({command[0]}): {e.strerror}") from None
        try:
            _, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            lifetime.finish(proc)
            _, stderr = proc.communicate()  # what it said before it was killed
            raise BackendError(f"iree-compile did not finish within {timeout:g} s (killed){_said(stderr)}") from None
        finally:  # a Ctrl-C or an error here must not leave the compiler running
            lifetime.finish(proc)
        if proc.returncode < 0:
            raise BackendError(f"iree-compile was killed by {signal.Signals(-proc.returncode).name}{_said(stderr)}")
        if proc.returncode != 0:
            said = stderr.decode(errors="replace").strip()
            raise BackendError(f"iree-compile exited with {proc.returncode}: {said[-2000:]}")
        if not out.is_file() or out.stat().st_size == 0:  # a compiler that claims success must show its module
            raise BackendError(f"iree-compile exited 0 but wrote no module{_said(stderr)}")
        vmfb = out.read_bytes()
    source.unlink(missing_ok=True)  # compiled: the cache keeps the vmfb, the emitter can write the text again
    cache.write_entry(path, vmfb)
    return vmfb, False


def _said(stderr: bytes | None) -> str:
    """The compiler's last words, when it said any."""
    text = (stderr or b"").decode(errors="replace").strip()
    return f"; its stderr: {text[-2000:]}" if text else "; it wrote nothing to stderr"


@contextmanager
def opt_level(level: str):
    """The graphs compiled inside the block at IREE's --iree-opt-level=level (O0 ... O3)."""
    saved, _level[:] = list(_level), [f"--iree-opt-level={level}"]
    try:
        yield
    finally:
        _level[:] = saved


def use_threads(count: int) -> int:
    """Ask for count threads for the graphs of this process; returns the count they run on. IREE's driver reads
    it once, when the process's first graph is loaded, so a later request cannot change it (in-process tests
    load graphs before a --checkpoint run asks): that count stays, and is what is returned and said. The
    results are the same bits on any count (above), so only the time depends on it."""
    if not device.cache_info().currsize:
        _threads[0] = max(1, int(count))
    return _threads[0]


def driver() -> str:
    return DRIVER or ("local-sync" if _threads[0] == 1 else "local-task")


@lru_cache(maxsize=1)
def device():
    """The process's one device: local-sync, or local-task on use_threads' count of worker threads."""
    import iree.runtime as rt
    from iree.runtime.flags import parse_flags
    parse_flags(f"{THREADS_FLAG}={_threads[0]}")
    return rt.get_driver(driver()).create_device_by_uri(driver())


class IreeModule(Module):
    """A vmfb loaded into IREE's runtime, on the process's device."""

    def __init__(self, main: FunctionSignature, vmfb: bytes, module_name: str, cache_hit: bool):
        import iree.runtime as rt
        super().__init__(main, cache_hit)
        self._ctx = rt.SystemContext(config=rt.Config(device=device()))
        try:
            self._ctx.add_vm_module(rt.VmModule.copy_buffer(self._ctx.instance, vmfb))
        except Exception as e:  # noqa: BLE001 - the runtime raises plain RuntimeError/ValueError
            raise BackendError(f"IREE could not load the compiled module: {e}") from None
        self._function = self._ctx.modules[module_name][main.name]
        self._bound: dict[int, tuple[np.ndarray, object]] = {}  # id(weight) -> (the weight, its device array)

    def _weight(self, array: np.ndarray):
        """A weight bound once for the module's life: the same device array at every call (the array is kept
        with it, so that its id cannot be reused by another)."""
        bound = self._bound.get(id(array))
        if bound is None or bound[0] is not array:
            bound = self._bound[id(array)] = (array, self._in_place(array))
        return bound[1]

    def _in_place(self, array: np.ndarray):
        """A weight as a buffer over the array's own memory: the runtime would otherwise copy every weight at
        every call (a second copy of a checkpoint; on a 58M-parameter checkpoint 200 ms a decode call instead
        of 60); weights are arguments, which the graph only reads."""
        import iree.runtime as rt
        element = {"float32": rt.HalElementType.FLOAT_32, "uint16": rt.HalElementType.BFLOAT_16,
                   "float16": rt.HalElementType.FLOAT_16}.get(array.dtype.name)  # uint16: a bf16 weight's bits
        if element is None or not array.flags.c_contiguous or array.ctypes.data % ALIGNMENT:
            return array  # copied by the runtime, into memory aligned as its code assumes
        device = self._ctx.config.device
        buffer = device.allocator.import_host_allocation(
            array, rt.MemoryType.DEVICE_LOCAL | rt.MemoryType.HOST_VISIBLE, rt.BufferUsage.DEFAULT)
        return rt.DeviceArray(device, rt.HalBufferView(buffer, array.shape, element))

    def execute(self, args: list[np.ndarray], inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            with time_limit("run", f"IREE running @{self.main.name}"):
                out = self._function(*(a if spec.name in inputs else self._weight(a)
                                       for spec, a in zip(self.main.args, args)))
        except Exception as e:  # noqa: BLE001
            raise BackendError(f"IREE failed running @{self.main.name}: {e}") from None
        results = out if isinstance(out, (tuple, list)) else (out,)
        # copies: to_host() maps the module's buffers, which are freed (and reused) once the module is gone
        return [np.array(r.to_host() if hasattr(r, "to_host") else r) for r in results]


class Iree(Backend):
    """IREE llvm-cpu, host-tuned: the backend the verdict judges."""
    name, run_stage = "iree", "run"

    def load(self, text: str, graph: GraphSignature, stage: Stage) -> IreeModule:
        with stage("compile"):
            vmfb, hit = compile_text(text)
        with stage("load"):
            return IreeModule(graph.functions["main"], vmfb, graph.module_name, hit)

    def cache_key(self, text: str) -> str:
        return cache_key(text)


IREE = Iree()
