"""--config PATH...: each published config.json shrunk into a temporary fixture (checks/published.py),
then the usual cases on it in the workers. A shrunk config has no golden."""
from __future__ import annotations

import tempfile
from pathlib import Path

from ..checks import published
from ..core.summary import RunInfo
from . import Options, Outcome, UsageError
from ..pool import shard
from .gate import say_shard, validate_prepared


def prepare(paths: list[str], workdir: Path, part: tuple[int, int] | None = None,
            as_is: bool = False) -> list[published.Published]:
    """Each --config (of shard part, when given) shrunk (as_is: taken as given) into workdir, its seed chosen;
    UsageError on bad input."""
    print("== configs as given (--as-is), seeded weights" if as_is else "== published configs: shrunk to tiny "
          "synthetic models (field old -> new), every architectural choice kept", flush=True)
    taken, named = set(), {}
    for path in paths:
        try:
            base = published.label(Path(path))
        except published.PublishedConfigError as e:
            raise UsageError(str(e)) from None
        name = next(n for n in (base, *(f"{base}-{i}" for i in range(2, len(paths) + 2))) if n not in taken)
        taken.add(name)
        named[name] = path
    if part:  # a published config has no measured cost: each costs the table's median
        named = {name: named[name] for name in shard.assign(named, *part)}
        say_shard(part, list(named))
    prepared = []
    for name in named:
        try:
            prepared.append(published.prepare(named[name], workdir, name, as_is))
        except published.PublishedConfigError as e:
            raise UsageError(str(e)) from None
        print(published.format_summary(prepared[-1]), flush=True)
    return prepared


def run(options: Options, info: RunInfo) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="archval-config-") as tmp:
        prepared = prepare(options.config, Path(tmp), options.shard, options.as_is)
        options.claim()
        print(f"== structural signatures: skipped (a {'config as given' if options.as_is else 'shrunk config'} has no golden)")
        print("== numerical: oracle vs IREE, and XLA CPU on the same text", flush=True)
        return validate_prepared(prepared, options, info, options.emitter, lambda p: {"published": p.facts()})
