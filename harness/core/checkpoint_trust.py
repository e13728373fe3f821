"""What a checkpoint directory (--checkpoint DIR) may hold and name, found before any of it is opened: it is
untrusted input, and archval and transformers open its files by name (docs/checkpoints.md, Trust).

Each check raises the caller's error class with one sentence naming the file and what is wrong, as
emitter/config_input.read_json_object does.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from ...emitter.config_input import printable, read_json_object


def check_entries(directory: Path, error: type[ValueError]) -> None:
    """An entry of DIR that is neither a regular file nor a folder, or a link that leads out of DIR, refused
    with stat and readlink alone: a link to /etc/passwd must not be read, nor a FIFO waited on. A Hugging
    Face cache snapshot is links into the blobs/ beside it (snapshots/REV/NAME -> ../../blobs/SHA): those
    are inside. Only DIR's own entries: nothing reads deeper."""
    root = Path(os.path.realpath(directory))
    inside = [root] + ([root.parent.parent / "blobs"] if root.parent.name == "snapshots" else [])
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        shown = printable(str(directory / entry.name))
        target = Path(os.path.realpath(entry.path))
        if entry.is_symlink() and not any(target == p or p in target.parents for p in inside):
            raise error(f"{shown}: a link to {printable(str(target))}, outside the checkpoint; a link may lead only "
                        "into its directory, or into the blobs/ of the Hugging Face cache holding it (copy the "
                        "file in instead).")
        try:
            mode = os.stat(entry.path).st_mode
        except OSError as e:
            raise error(f"{shown}: cannot be read ({e.strerror}).") from None
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise error(f"{shown}: neither a regular file nor a folder (a device, FIFO or socket); a checkpoint "
                        "holds files.")


def tokenizer_code(directory: Path, config: dict, error: type[ValueError]) -> str | None:
    """Where the checkpoint names Python of its own for its tokenizer, as `FILE: field 'auto_map'`: an
    auto_map in tokenizer_config.json, or one for AutoTokenizer in config.json (transformers would import
    and run the file it names); None where the tokenizer is data alone."""
    tokenizer_config = directory / "tokenizer_config.json"
    if tokenizer_config.is_file() and "auto_map" in read_json_object(tokenizer_config, error):
        return f"{printable(str(tokenizer_config))}: field 'auto_map'"
    auto_map = config.get("auto_map")
    if auto_map is not None and (not isinstance(auto_map, dict) or "AutoTokenizer" in auto_map):
        return f"{printable(str(directory / 'config.json'))}: field 'auto_map'"
    return None
