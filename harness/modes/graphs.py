"""--graphs DIR: pre-emitted graph files validated without running an emitter (docs/binding.md#graph-folders).

DIR holds a folder per family (or is one): its config.json, taken as given (byte for byte, its fields'
defaults the config class's), and a file per graph kind (prefill.mlir, decode.mlir, moe_block.mlir, or the
names the binding's [graphs] table gives). A kind without its file is that case's UNSUPPORTED, as an emitter's
refusal is. Seed and prompt are the --as-is ones (checks/published.py), so a run replays exactly."""
from __future__ import annotations

import tempfile
from pathlib import Path

from archval.harness import COMMAND
from archval.harness.checks import published
from archval.harness.core.case import error_record
from archval.harness.core.emitters import PRE_EMITTED
from archval.harness.core.kinds import KINDS, chosen
from archval.harness.core.summary import RunInfo
from archval.harness.modes import Outcome, UsageError, claim_reports, workers
from archval.harness.modes.gate import validate
from archval.harness.present.console import line



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


def run(args, info: RunInfo) -> Outcome:
    chosen = folders(args.graphs, args.family)
    print("== pre-emitted graphs: configs as given, seeded weights, no emitter run", flush=True)
    with tempfile.TemporaryDirectory(prefix="archval-graphs-") as tmp:
        prepared = []
        for name, folder in chosen.items():
            replay = f"{COMMAND} --graphs {args.graphs} --family {name}"
            try:
                prepared.append((folder, published.prepare(str(folder / "config.json"), Path(tmp), name, as_is=True,
                                                           replay=replay)))
            except published.PublishedConfigError as e:
                raise UsageError(str(e)) from None
            print(published.format_summary(prepared[-1][1]), flush=True)
        claim_reports(args)
        print("== numerical: oracle vs IREE, and XLA CPU on the same text", flush=True)
        runnable = [(folder, p) for folder, p in prepared if p.error is None]
        tasks = [workers.Task(p.fixture.name, PRE_EMITTED, not args.fixed_bound_only, args.reports, info,
                              directory=str(p.fixture.config_path.parent), graphs=args.graph,
                              bundle_all=args.bundle == "all", binding=args.binding, graph_files=str(folder))
                 for folder, p in runnable]
        jobs = max(1, min(args.jobs, len(tasks)))
        outcome = (validate(workers.start(jobs, [p.fixture for _, p in runnable]), tasks, jobs, args.quiet)
                   if tasks else Outcome(True, [], set()))
    for _, p in prepared:
        if p.error:
            for kind in KINDS.values():
                if kind.every_family and chosen(kind, args.graph):
                    record = error_record(p.fixture, kind.name, "inputs", p.error, PRE_EMITTED)
                    outcome.records.append(record)
                    print(line(record), flush=True)
    return outcome
