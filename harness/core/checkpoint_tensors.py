"""A checkpoint's tensors as a graph takes them: upcast to f32, or as stored where the graph's argument is the
storage's own narrow type (the bf16/f16 weight variant, docs/emitter-protocol.md#abi-variants).

Each is read from its file the first time a graph takes it, into memory aligned for the IREE runtime to read in
place (core/backends/iree.py), and kept for the next call: no second full-precision copy is made, and a narrow
argument costs the stored bytes alone.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .checkpoint_files import Checkpoint

ALIGNMENT = 64  # what IREE's CPU code assumes of a buffer it is handed
# a narrow argument's type -> (the storage it is fed from, how its bits are held in numpy: bf16 has no numpy type)
NARROW = {"bf16": ("BF16", np.dtype("<u2")), "f16": ("F16", np.dtype("<f2"))}


def aligned(shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    """An array at an ALIGNMENT-byte boundary (numpy's own are 16-byte aligned)."""
    dtype, count = np.dtype(dtype), int(np.prod(shape))
    raw = np.empty(dtype.itemsize * count + ALIGNMENT, np.uint8)
    skip = -raw.ctypes.data % ALIGNMENT
    return raw[skip: skip + dtype.itemsize * count].view(dtype).reshape(shape)


def aligned_f32(shape: tuple[int, ...]) -> np.ndarray:
    return aligned(shape, np.float32)


class NarrowStorageError(ValueError):
    """A narrow weight argument whose tensor is stored in another dtype: feeding it would round or widen it."""


class GraphTensors(Mapping):
    """The checkpoint's tensors by name, each read and upcast to f32 the first time a graph takes it and
    kept for the next call (the IREE runtime reads them in place: core/backends/iree.py); `narrow` reads one
    as stored, for a graph whose argument takes the storage's type."""

    def __init__(self, checkpoint: Checkpoint):
        self._checkpoint, self._read, self._narrow = checkpoint, {}, {}

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._read:
            if name not in self._checkpoint.tensors:
                raise KeyError(name)
            self._read[name] = self._checkpoint.f32(name)
        return self._read[name]

    def narrow(self, name: str, dtype: str) -> np.ndarray:
        """The tensor's stored bits for an argument of type dtype (bf16: uint16, which the IREE runtime is told
        are bf16); KeyError where there is no such tensor, NarrowStorageError where it is stored otherwise."""
        storage, held = NARROW[dtype]
        t = self._checkpoint.tensors[name]
        if t.dtype != storage:
            raise NarrowStorageError(f"the graph takes '{name}' as {dtype} but the checkpoint stores it as {t.dtype}: "
                                     f"an argument of type {dtype} takes the stored bits of a {storage} tensor only")
        if name not in self._narrow:
            out = aligned(t.shape, held)
            with open(t.file, "rb") as f:
                f.seek(t.start)
                f.readinto(memoryview(out.reshape(-1).view(np.uint8)))
            self._narrow[name] = out
        return self._narrow[name]

    def __contains__(self, name) -> bool:  # from the headers: asking never reads a tensor
        return name in self._checkpoint.tensors

    def __iter__(self) -> Iterator[str]:
        return iter(self._checkpoint.tensors)

    def __len__(self) -> int:
        return len(self._checkpoint.tensors)

    def bytes_read(self) -> int:
        """The bytes of every tensor read so far, as the graph took it (f32 or narrow)."""
        return sum(a.nbytes for a in (*self._read.values(), *self._narrow.values()))
