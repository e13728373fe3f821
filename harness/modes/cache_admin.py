"""python -m archval cache info|prune [--max-size SIZE]: the cache directory's size, and a bound on it.

Every entry is rebuilt when missing (core/cache.py), so any of them may go. prune removes the least
recently used first (an entry's modification time is its last use: read_entry touches it on a hit)
until the directory fits SIZE; `--max-size 0` empties it.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter
from pathlib import Path

from ..core import cache
from ..core.summary import command
from . import UsageError

UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """'500M', '2G', '1024', '1.5g' -> bytes."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(?:i?[bB])?\s*", text)
    if not found:
        raise UsageError(f"--max-size {text!r}: not a size (e.g. 500M, 2G, 1048576)")
    return int(float(found.group(1)) * UNITS[found.group(2).lower()])


def size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def entries(directory: Path) -> list[tuple[float, int, Path]]:
    """(last use, bytes, path) of every file, least recently used first."""
    found = []
    for path in directory.rglob("*"):
        try:
            if path.is_file() and not path.is_symlink():
                stat = path.stat()
                found.append((stat.st_mtime, stat.st_size, path))
        except OSError:  # removed meanwhile by another run
            continue
    return sorted(found)


def kind(path: Path) -> str:
    return path.parent.name if path.parent.name == "compile-sources" else path.suffix.lstrip(".") or "other"


def info(directory: Path) -> list[str]:
    found = entries(directory)
    if not found:
        return [f"{directory}: empty"]
    counts, sizes = Counter(), Counter()
    for _, n, path in found:
        counts[kind(path)] += 1
        sizes[kind(path)] += n
    oldest = time.strftime("%Y-%m-%d", time.localtime(found[0][0]))
    return [f"{directory}: {size(sum(sizes.values()))} in {len(found)} entries, least recently used {oldest}",
            *(f"  {k:<16} {counts[k]:>6} entries {size(sizes[k]):>11}" for k in sorted(sizes, key=lambda k: -sizes[k]))]


def prune(directory: Path, limit: int) -> list[str]:
    found = entries(directory)
    total, removed, freed = sum(n for _, n, _ in found), 0, 0
    for _, n, path in found:
        if total - freed <= limit:
            break
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as e:
            return [f"error: {path}: {e.strerror or e}"]
        removed, freed = removed + 1, freed + n
    return [f"{directory}: removed {removed} least recently used entries ({size(freed)}); "
            f"{size(total - freed)} left (limit {size(limit)})"]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog=f"{Path(command()).name} cache", description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=("info", "prune"))
    ap.add_argument("--max-size", metavar="SIZE", help="prune: the size to prune to (e.g. 500M, 2G)")
    args = ap.parse_args(argv)
    directory = cache.cache_dir()
    try:
        if args.action == "prune" and args.max_size is None:
            raise UsageError("cache prune needs --max-size SIZE (e.g. 500M; 0 empties the cache)")
        if args.action == "info" and args.max_size is not None:
            raise UsageError("--max-size is for cache prune")
        said = info(directory) if args.action == "info" else prune(directory, parse_size(args.max_size))
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("\n".join(said))
    return 1 if said[0].startswith("error:") else 0
