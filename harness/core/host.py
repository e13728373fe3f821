"""This machine as its numbers see it: read the same way on Linux, macOS and Windows, x86 and Arm.

Compiled modules (IREE and XLA target the host CPU) and the oracle's logits (torch picks SIMD
kernels from the CPU, and they round differently) depend on it, so every cache key that holds
such numbers includes cpu_identity(): a cache directory shared by machines of different kinds
keeps each kind's entries apart.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

# Environment switches that change which kernels numpy and torch run on the same CPU.
KERNEL_SWITCHES = ("NPY_DISABLE_CPU_FEATURES", "NPY_ENABLE_CPU_FEATURES", "ATEN_CPU_CAPABILITY")


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """The processor's name: /proc/cpuinfo on Linux (x86 'model name'; Arm implementer and part),
    sysctl on macOS, platform.processor() elsewhere."""
    if sys.platform == "darwin":
        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                  timeout=10).stdout.strip() or platform.processor()
        except (OSError, subprocess.SubprocessError):
            return platform.processor()
    try:
        first_cpu = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
    except OSError:
        return platform.processor()
    named = ("model name", "CPU implementer", "CPU architecture", "CPU variant", "CPU part", "Hardware")
    return "; ".join(line.strip() for line in first_cpu.splitlines() if line.split(":")[0].strip() in named)


def cpu_features() -> list[str]:
    """The SIMD features numpy detected at run time and has enabled (NPY_DISABLE_CPU_FEATURES applied):
    one detection for every OS and architecture numpy supports."""
    from numpy._core._multiarray_umath import __cpu_features__
    return sorted(feature for feature, enabled in __cpu_features__.items() if enabled)


def cpu_identity() -> str:
    switches = [f"{name}={os.environ[name]}" for name in KERNEL_SWITCHES if os.environ.get(name)]
    return "\n".join([platform.system(), platform.machine(), cpu_model(), " ".join(cpu_features()), *switches])


def cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS
        return os.cpu_count() or 1
