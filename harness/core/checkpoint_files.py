"""A local Hugging Face checkpoint (`--checkpoint DIR`): config.json and safetensors, single or sharded.

Nothing is ever downloaded. The safetensors headers are read here, without torch, so that a
missing shard, a truncated file or a dtype the graph cannot take is refused (one sentence)
before anything heavy starts. The graph's weights are read tensor by tensor under their names
in the files, the names a real loader sees, and upcast to f32 as they are bound (GraphTensors),
so that no second full-precision copy of the checkpoint is ever made; the oracle loads the same
directory through transformers (core/checkpoint_oracle.py), and is gone before the graph's weights are
read: the peak is one of the two, never both (MemoryEstimate).
"""
from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...emitter.config_input import ConfigError, check_input, printable, read_json_object
from .checkpoint_tensors import GraphTensors, aligned_f32
from . import phases
from .checkpoint_trust import check_entries

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")
UPCAST = {"F32": np.dtype("<f4"), "BF16": np.dtype("<u2"), "F16": np.dtype("<f2")}  # storage -> how it is read
ITEM_BYTES = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "BF16": 2, "F16": 2, "I16": 2, "U16": 2,
              "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
HEADER_LIMIT = 100 << 20  # safetensors' own reader refuses larger headers
GiB = 1 << 30
RUNTIME_BYTES = int(1.5 * GiB)  # python with torch, transformers and the IREE runtime loaded, measured ~1.1 GiB


class CheckpointError(ValueError):
    """A checkpoint archval cannot take: one sentence naming the file, tensor or field, and the value."""


@dataclass(frozen=True)
class Stored:
    """One tensor as a safetensors file holds it."""
    file: Path
    dtype: str  # safetensors' name: F32, BF16, F16, ...
    shape: tuple[int, ...]
    start: int  # byte offsets in the file
    end: int


@dataclass(frozen=True)
class Checkpoint:
    directory: Path
    config: dict
    tensors: dict[str, Stored]  # every tensor of every file, by its name
    files: tuple[Path, ...]
    tokenizer: bool  # the directory holds a tokenizer

    def parameters(self) -> int:
        return sum(int(np.prod(t.shape)) for t in self.tensors.values())

    def storage(self) -> str:
        """The storage dtypes, most parameters first: 'bf16', 'bf16 and f32'."""
        counts: dict[str, int] = {}
        for t in self.tensors.values():
            counts[t.dtype.lower()] = counts.get(t.dtype.lower(), 0) + int(np.prod(t.shape))
        return " and ".join(sorted(counts, key=lambda d: -counts[d]))

    def stored_bytes(self) -> int:
        return sum(t.end - t.start for t in self.tensors.values())

    def f32(self, name: str) -> np.ndarray:
        """One tensor read from its file into f32 (bf16: its 16 bits are the f32's high half), aligned so that
        the IREE runtime can read it in place."""
        t = self.tensors[name]
        out = aligned_f32(t.shape)
        with open(t.file, "rb") as f:
            f.seek(t.start)
            if t.dtype == "F32":
                f.readinto(memoryview(out.reshape(-1).view(np.uint8)))
                return out
            raw = np.fromfile(f, UPCAST[t.dtype], (t.end - t.start) // UPCAST[t.dtype].itemsize).reshape(t.shape)
        if t.dtype == "BF16":
            bits = out.view(np.uint32)
            bits[...] = raw
            bits <<= 16
        else:
            out[...] = raw
        return out


def read(directory: str | Path) -> Checkpoint:
    """The checkpoint's config and tensor headers; CheckpointError for anything it cannot be validated with."""
    directory = Path(directory)
    shown = printable(str(directory))
    if not directory.is_dir():
        raise CheckpointError(f"--checkpoint {shown}: no such directory (a local checkpoint: config.json and "
                              "safetensors; nothing is downloaded).")
    check_entries(directory, CheckpointError)
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{printable(str(config_path))}: missing; a checkpoint directory holds config.json "
                              "beside its safetensors.")
    config = read_json_object(config_path, CheckpointError)
    try:
        check_input(config, str(config_path))
    except ConfigError as e:
        raise CheckpointError(str(e)) from None
    files = _files(directory)
    tensors: dict[str, Stored] = {}
    for path in files:
        for name, stored in _header(path).items():
            if name in tensors:
                raise CheckpointError(f"{printable(str(path))}: tensor '{printable(name)}' is also in "
                                      f"{tensors[name].file.name}.")
            tensors[name] = stored
    tokenizer = any((directory / f).is_file() for f in TOKENIZER_FILES)
    return Checkpoint(directory, config, tensors, tuple(files), tokenizer)


def _files(directory: Path) -> list[Path]:
    """The safetensors files: those the index names (each must exist), else model.safetensors."""
    index = directory / INDEX
    if index.is_file():
        weight_map = read_json_object(index, CheckpointError).get("weight_map")
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise CheckpointError(f"{printable(str(index))}: field 'weight_map' must map tensor names to file names.")
        names = sorted(set(weight_map.values()))
        for name in names:
            if Path(name).name != name or not (directory / name).is_file():
                tensor = next(k for k, v in weight_map.items() if v == name)
                raise CheckpointError(f"{printable(str(directory / name))}: missing, but {INDEX} puts "
                                      f"'{printable(tensor)}' there.")
        return [directory / n for n in names]
    if (directory / SINGLE).is_file():
        return [directory / SINGLE]
    raise CheckpointError(f"{printable(str(directory))}: holds neither {SINGLE} nor {INDEX}; archval reads "
                          "safetensors only (no .bin, nothing downloaded).")


def _header(path: Path) -> dict[str, Stored]:
    """A safetensors file's tensors: an 8-byte header length, a JSON header, then the data it places."""
    shown, size = printable(str(path)), path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        length = struct.unpack("<Q", head)[0] if len(head) == 8 else None
        if length is None or length > min(HEADER_LIMIT, size - 8):
            raise CheckpointError(f"{shown}: not a safetensors file (its {size} bytes hold no complete header).")
        try:
            header = json.loads(f.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{shown}: its safetensors header is not JSON ({e}).") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{shown}: its safetensors header is not a JSON object.")
    data, found = 8 + length, {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (start, end) = entry["dtype"], tuple(entry["shape"]), entry["data_offsets"]
            item = ITEM_BYTES[dtype]
            ok = all(isinstance(d, int) and d >= 0 for d in (*shape, start, end)) and end - start == item * int(
                np.prod(shape))
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise CheckpointError(f"{shown}: tensor '{printable(name)}' has no valid dtype, shape and data_offsets "
                                  f"({printable(json.dumps(entry))[:200]}).")
        if dtype not in UPCAST:
            raise CheckpointError(f"{shown}: tensor '{printable(name)}' is stored as {dtype}, which the graph's f32 "
                                  f"arguments cannot take (f32, bf16 and f16 storage are upcast).")
        if data + end > size:
            raise CheckpointError(f"{shown}: truncated: tensor '{printable(name)}' ends at byte {data + end} of a "
                                  f"{size}-byte file.")
        found[name] = Stored(path, dtype, shape, data + start, data + end)
    return found


def check_shapes(checkpoint: Checkpoint, expected: dict[str, tuple[int, ...]]) -> None:
    """CheckpointError where the files disagree with what config.json implies (expected: the tensors a
    save_pretrained of the config's model writes, by name)."""
    config = printable(str(checkpoint.directory / "config.json"))
    for name, shape in expected.items():
        stored = checkpoint.tensors.get(name)
        if stored is None:
            raise CheckpointError(f"{printable(str(checkpoint.directory))}: no safetensors file holds tensor "
                                  f"'{printable(name)}', which {config} implies ({list(shape)}).")
        if stored.shape != shape:
            raise CheckpointError(f"{printable(str(stored.file))}: tensor '{printable(name)}' is {list(stored.shape)} "
                                  f"but {config} implies {list(shape)}.")


LAYER = re.compile(r"\.layers\.(\d+)\.")  # a decoder layer's tensors: model.layers.N., gpt_neox.layers.N.


@dataclass(frozen=True)
class MemoryEstimate:
    """The peak a --checkpoint run will reach, and what of it must be free: the process, then the larger of
    the oracle's phase and the graph's, never both.
    - the oracle: the model loaded while its files are mapped (pages the kernel can reclaim: in the peak, not in
      what must be free), its layers held in f32, or, where that would not fit and every tensor is stored in one
      16-bit dtype, as stored; computing in f32 (f64 for the strict bound's noise floor) what lies outside the
      decoder layers and one layer at a time (oracles/hf.py's compute_by_layer);
    - the graph: its weight arguments as it takes them (f32, or a bf16/f16 argument's stored bits), read in
      place by IREE."""
    oracle: int  # the oracle's phase, the mapped files included
    mapped: int  # the files mapped to load the model
    graph: int
    held: str  # the dtype the oracle holds the layers in: "f32", or the storage's "bf16"/"f16"

    @classmethod
    def of(cls, checkpoint: Checkpoint, strict: bool, graph: int | None = None,
           available: int | None = None) -> MemoryEstimate:
        """graph: the bytes of the graph's arguments (None: every parameter in f32); available: the memory free
        (None: unknown), which decides whether the layers are held in f32."""
        params, stored, per_layer = checkpoint.parameters(), checkpoint.stored_bytes(), {}
        for name, t in checkpoint.tensors.items():
            layer = LAYER.search(name)
            key = layer[1] if layer else "outside"
            per_layer[key] = per_layer.get(key, 0) + int(np.prod(t.shape))
        widened = per_layer.pop("outside", 0) + max(per_layer.values(), default=0)
        compute = 8 if strict else 4

        def oracle(held: int) -> int:  # the load (mapped files beside), or the widened parts beside the held model
            return max(held * params + stored, held * params + (compute - held) * widened)

        narrow = checkpoint.storage() in ("bf16", "f16")  # every tensor stored in that one 16-bit dtype
        f32 = cls(oracle(4), stored, 4 * params if graph is None else graph, "f32")
        held = cls(oracle(2), stored, f32.graph, checkpoint.storage())
        # held as stored only where it helps: a model with no `layers` of its own (GPT-2's h) is converted whole
        return held if narrow and available is not None and f32.needed > available and held.needed < f32.needed \
            else f32

    @property
    def peak(self) -> int:
        return RUNTIME_BYTES + max(self.oracle, self.graph)

    @property
    def needed(self) -> int:
        """What must be free: the peak but for the mapped files."""
        return RUNTIME_BYTES + max(self.oracle - self.mapped, self.graph)

    def describe(self) -> str:
        return (f"{self.peak / GiB:.1f} GiB (the process {RUNTIME_BYTES / GiB:.1f}, then the larger of the oracle "
                f"{self.oracle / GiB:.1f}, its layers held in {self.held}, and the graph's weights "
                f"{self.graph / GiB:.1f}; never both), of which {self.needed / GiB:.1f} GiB must be free (not the "
                "files mapped to load it)")


def available_memory() -> int | None:
    """Memory the run can take now: psutil's 'available' where installed, else Linux's MemAvailable (the
    reclaimable page cache counted: a checkpoint just written sits there), else the free pages (os.sysconf, on
    macOS; it leaves the page cache out, so it errs low), else the physical memory; None if unknown."""
    try:
        import psutil
        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as f:
            found = next((line.split()[1] for line in f if line.startswith("MemAvailable:")), None)
        if found is not None:
            return int(found) * 1024
    except (OSError, ValueError):
        pass
    for pages in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):
        try:
            return os.sysconf(pages) * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            continue
    return None
