"""The one way archval writes a file: whole or not at all, readable like any other output.

A reader (a browser, a CI artifact server, a parallel worker) never sees half a file: the
content goes to a temporary file beside the target, then is renamed over it. mkstemp creates
that file 0600, so its mode is set to what open() would have given (0666 less the umask,
0644 usually) before the rename. An interrupted or failed write leaves the old file whole and
no temporary file behind.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; put it back at once
    os.umask(mask)
    return mask


_MODE = 0o666 & ~_umask()


def write_atomic(path: Path, content: str | bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content.encode() if isinstance(content, str) else content)
        os.chmod(tmp, _MODE)
        os.replace(tmp, path)
    except BaseException:  # interrupted or failed: the old file stays whole, and no temporary file is left
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json_atomic(path: Path, value) -> None:
    write_atomic(path, json.dumps(value, indent=2, sort_keys=True) + "\n")
