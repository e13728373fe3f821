"""--graphs DIR: pre-emitted graph files validated without running an emitter (docs/binding.md#graph-folders).

DIR holds a folder per family (or is one): its config.json, taken as given (byte for byte, its fields'
defaults the config class's), and a file per graph kind (prefill.mlir, decode.mlir, moe_block.mlir, or the
names the binding's [graphs] table gives). A kind without its file is that case's UNSUPPORTED, as an emitter's
refusal is. Seed and prompt are the --as-is ones (checks/published.py), so a run replays exactly."""
from __future__ import annotations

import tempfile
from pathlib import Path

from ..checks import published
from ..core.emitter_protocol import PRE_EMITTED
from ..core.summary import RunInfo, command
from . import Options, Outcome, UsageError
from .gate import validate_prepared


def folders(directory: Path, chosen: list[str] | None) -> dict[str, Path]:
    """The family folders under directory (itself, when it holds config.json), by name; UsageError naming what
    is missing."""
    if not directory.is_dir():
        raise UsageError(f"--graphs {directory}: no such directory")
    found = ({directory.resolve().name: directory} if (directory / "config.json").is_file() else
             {p.name: p for p in sorted(directory.iterdir()) if (p / "config.json").is_file()})
    if not found:
        raise UsageError(f"--graphs {directory}: holds no config.json, nor any folder that does (a family's folder "
                         "holds its config.json and a file per graph kind)")
    for name in chosen or ():
        if name not in found:
            raise UsageError(f"--family {name}: no such folder in --graphs {directory} (has: {', '.join(found)})")
    return {n: p for n, p in found.items() if not chosen or n in chosen}


def run(options: Options, info: RunInfo) -> Outcome:
    chosen = folders(options.graphs, options.family)
    print("== pre-emitted graphs: configs as given, seeded weights, no emitter run", flush=True)
    with tempfile.TemporaryDirectory(prefix="archval-graphs-") as tmp:
        prepared = []
        for name, folder in chosen.items():
            replay = f"{command()} --graphs {options.graphs} --family {name}"
            try:
                prepared.append(published.prepare(str(folder / "config.json"), Path(tmp), name, as_is=True,
                                                  replay=replay))
            except published.PublishedConfigError as e:
                raise UsageError(str(e)) from None
            print(published.format_summary(prepared[-1]), flush=True)
        options.claim()
        print("== numerical: oracle vs IREE, and XLA CPU on the same text", flush=True)
        return validate_prepared(prepared, options, info, PRE_EMITTED,  # each family's folder is its fixture's name
                                 lambda p: {"graph_files": str(chosen[p.fixture.name])})
