"""The one cache directory: compiled modules (IREE, XLA), the oracle's outputs and XLA's.

`~/.cache/archval`, or `$ARCHVAL_CACHE_DIR` (an empty directory is a cold run). Every entry
is content-addressed by its caller's key, written atomically (a temporary file, then
rename: parallel workers racing on one key both write whole files and one wins) and
carries a sha256 trailer, so a torn or corrupted entry reads as missing and is rebuilt.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np

from .files import write_atomic

DIR_ENV = "ARCHVAL_CACHE_DIR"


def cache_dir() -> Path:
    return Path(os.environ.get(DIR_ENV) or Path.home() / ".cache" / "archval")


def key(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def read_entry(path: Path) -> bytes | None:
    """The entry's body, or None when it is missing or fails its checksum."""
    try:
        blob = path.read_bytes()
    except OSError:
        return None
    body, digest = blob[:-32], blob[-32:]
    if len(blob) <= 32 or hashlib.sha256(body).digest() != digest:
        return None
    with contextlib.suppress(OSError):  # its last use, for pruning least recently used first (modes/cache_admin.py)
        os.utime(path)
    return body


def write_entry(path: Path, body: bytes) -> None:
    """Atomic, with the checksum trailer; a failed write only costs a recomputation next time."""
    try:
        write_atomic(path, body + hashlib.sha256(body).digest())
    except OSError:
        pass


def stored_arrays(path: Path, compute: Callable[[], tuple[dict, dict]]) -> tuple[dict[str, np.ndarray], dict, bool]:
    """(arrays, meta, hit): the entry at path (an npz of named arrays and a JSON-able meta dict),
    computed by compute() and stored when it is missing or corrupt."""
    body = read_entry(path)
    if body is not None:
        with np.load(io.BytesIO(body), allow_pickle=False) as entry:
            arrays = {k: entry[k] for k in entry.files}
        return arrays, json.loads(arrays.pop("__meta__").tobytes()), True
    arrays, meta = compute()
    buffer = io.BytesIO()
    np.savez(buffer, **arrays, __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    write_entry(path, buffer.getvalue())
    return arrays, meta, False
