"""What a run wrote under its reports directory, so that the next run can remove what it did not write.

The reports directory may hold anything else the user put there: only the files and bundles named
in archval's own list (MANIFEST, written by the run before) are ever removed, and only when this run
did not write them again (a page of a family this run did not validate, a bundle of a case that
passes now). A directory without the list (an older archval's, or none) loses nothing.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..core.files import WRITTEN_LIST, write_json_atomic

MANIFEST = WRITTEN_LIST


def _listed(directory: Path) -> set[str]:
    try:
        return set(json.loads((directory / MANIFEST).read_text())["written"])
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def tidy(directory: Path, written: set[str]) -> list[str]:
    """Removes what the last run listed and this one did not write, then lists what this one wrote
    (paths relative to directory); the problems met."""
    directory, problems = Path(directory), []
    root = directory.resolve()
    for name in sorted(_listed(directory) - written):
        path = directory / name
        if not path.resolve().is_relative_to(root) or path.resolve() == root:  # a list edited to point elsewhere
            problems.append(f"{name} not removed: outside {directory}")
            continue
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        except OSError as e:
            problems.append(f"{name} (of an earlier run) not removed: {e.strerror or e}")
    write_json_atomic(directory / MANIFEST, {"written": sorted(written)})
    return problems
