"""XLA CPU through jaxlib: a second, independent compiler for the same StableHLO text.

Triangulation needs a compiler that shares nothing with IREE but the input: when IREE and
XLA agree against the oracle the emitter is wrong; when XLA agrees with the oracle the
problem is IREE's. jaxlib's client API is private (jax._src), so it is wrapped here, in
one place, for the pinned jax 0.10.x. XLA is the reference here, not the subject, so it
compiles without LLVM's optimisation passes (DEBUG_OPTIONS: ~0.55 s instead of ~1.2 s of CPU
for a tiny graph). Its sums then round in another order: over the 40 fixture cases its
distance to the oracle moved within the same decade (3e-6 ... 1.3e-4), never beyond a
bound; fast-math is off either way. Loading a serialized executable takes ~0.1 s:
executables are cached beside IREE's.
"""
from __future__ import annotations

import importlib.metadata
from functools import lru_cache

import numpy as np

from .base import Backend, BackendError, Module, Stage
from ..core import cache
from ..core.graph import FunctionSignature, GraphSignature
from ..core.host import cpu_identity
from ..core.watchdog import time_limit

DEBUG_OPTIONS = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


@lru_cache(maxsize=1)
def client():
    import jax
    jax.config.update("jax_platforms", "cpu")
    from jax._src import xla_bridge
    return xla_bridge.get_backend("cpu")


@lru_cache(maxsize=1)
def compiler_identity() -> str:
    return f"XLA CPU (jaxlib {importlib.metadata.version('jaxlib')})"


def cache_key(text: str) -> str:
    return cache.key(text, compiler_identity(), repr(sorted(DEBUG_OPTIONS.items())), cpu_identity())


class XlaModule(Module):
    """StableHLO text compiled by XLA CPU (the entry function @main only). The weights are copied to
    the device at the first call and kept there: every call of a case takes the same ones."""

    def __init__(self, main: FunctionSignature, text: str):
        from jax._src.lib import xla_client
        cpu = client()
        self._device = cpu.local_devices()[0]
        devices, options = xla_client.DeviceList((self._device,)), xla_client.CompileOptions()
        for name, value in DEBUG_OPTIONS.items():
            setattr(options.executable_build_options.debug_options, name, value)
        self._weights = None
        path = cache.cache_dir() / f"{cache_key(text)}.xla"
        blob = cache.read_entry(path)
        if blob is not None:
            try:
                self._exe = cpu.deserialize_executable(blob, devices, options)
                super().__init__(main, True)
                return
            except Exception:  # noqa: BLE001 - an unreadable entry is rebuilt below
                pass
        try:
            self._exe = cpu.compile_and_load(text, devices, options)
        except Exception as e:  # noqa: BLE001 - jaxlib raises XlaRuntimeError/ValueError
            raise BackendError(f"XLA could not compile the module: {str(e)[-2000:]}") from None
        cache.write_entry(path, cpu.serialize_executable(self._exe))
        super().__init__(main, False)

    def _upload(self, array: np.ndarray):
        import jax
        return jax.device_put(np.asarray(array), self._device)

    def execute(self, args: list[np.ndarray], inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        names = [a.name for a in self.main.args]
        if self._weights is None:
            self._weights = {n: self._upload(v) for n, v in zip(names, args) if n not in inputs}
        try:
            with time_limit("xla_run", "XLA running @main"):
                out = self._exe.execute([self._weights[n] if n in self._weights else self._upload(v)
                                         for n, v in zip(names, args)])
                out = [np.asarray(r) for r in out]  # the wait for an asynchronous execution, inside the limit
        except Exception as e:  # noqa: BLE001
            raise BackendError(f"XLA failed running @main: {e}") from None
        return out


class Xla(Backend):
    """XLA CPU: a reference backend for the three-way comparison; its figures never decide the verdict, its
    failure to run is the case's ERROR (core/case.py)."""
    name, run_stage = "xla", "xla_run"

    def load(self, text: str, graph: GraphSignature, stage: Stage) -> XlaModule:
        with stage("xla_compile"):
            return XlaModule(graph.functions["main"], text)

    def cache_key(self, text: str) -> str:
        return cache_key(text)


XLA = Xla()
