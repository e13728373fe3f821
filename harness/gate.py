"""The gate: validate every selected family, one line each, then RESULT; exit 0 pass, 1 fail, 2 bad input."""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shlex
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from emitter.config_input import printable

from . import fixtures, mutation, oracle, published, shard, structural, triangulate
from .compare import ERROR, FAIL, PASS
from .validate import DEFAULT_EMITTER, replay_command

REPORTS_DIR = Path(__file__).resolve().parent.parent / "reports"
GRAPHS = structural.GRAPHS


def _warm_up(cold: bool) -> None:
    """Runs in each new worker while the main process does the structural pass: the imports that
    every family needs and, when the cache lacks the oracle's outputs (and so XLA's, keyed by the
    oracle's weights), torch and XLA's client, so that the first family does not pay for them (nor
    carry them in its measured cost)."""
    import iree.runtime  # noqa: F401

    from . import blocks, report, validate, xla_backend  # noqa: F401
    if cold:
        import oracles.hf  # noqa: F401
        xla_backend.client()


def _load(name: str, directory: str | None) -> fixtures.Fixture:
    return fixtures.load(name) if directory is None else fixtures.load_dir(Path(directory))


def _validate_family(name: str, emitter: tuple[str, ...], texts: dict[str, str], checks: dict[str, dict],
                     reports: Path | None, emitter_label: str, strict_bound: bool,
                     directory: str | None = None) -> tuple[list[dict], list[str]]:
    """Every graph kind of one family in one worker (they share its oracle run and compiled prefill;
    a family with a routed MLP adds its block-level check), then its report page, so that pages
    render in parallel. checks: the structural pass's result per graph kind; directory: a fixture
    outside fixtures/ (--config)."""
    from . import blocks
    from .validate import run_case
    fixture = _load(name, directory)
    records = [run_case(fixture, graph, texts=texts, emitter=emitter, strict_bound=strict_bound) for graph in GRAPHS]
    if blocks.applies(fixture):
        records.append(blocks.run_moe_block(fixture, emitter=emitter))
    for record in records:
        check = checks.get(record["graph"])
        record["structural"] = check and structural.brief(check)
        if check and "emit_s" in check:  # emitted once, by the structural pass
            record["timings"].setdefault("emit", check["emit_s"])
        if emitter == DEFAULT_EMITTER and record["graph"] == "prefill" and record["verdict"] == FAIL:
            record["localisation"] = _localise(fixture)  # the built-in emitter can re-emit it with debug taps
    return records, (_write_pages(records, reports, emitter_label) if reports else [])


def _localise(fixture) -> dict:
    from . import localise
    try:
        result = localise.localise(fixture)
    except Exception as e:  # noqa: BLE001 - a diagnosis that fails must not hide the verdict
        return {"error": f"{type(e).__name__}: {e}"}
    return {**result, "summary": localise.describe(result)}


def _write_pages(records: list[dict], directory: Path, emitter_label: str) -> list[str]:
    try:
        from . import report
        return report.write_pages(records, directory, emitter_label)[1]
    except Exception as e:  # noqa: BLE001 - reports explain a verdict, they never decide or stop it
        return [f"{records[0]['family']}.html not written: {type(e).__name__}: {e}"]


def format_line(r: dict) -> str:
    diff = "-" if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.3e}"
    if r["graph"] == "moe_block":
        agree = (f"layer {r['layer']}, {r['expert_sets']} expert sets, router margin {r['router_margin']:.1e}"
                 if "layer" in r else "-")
    elif r["graph"] == "decode" and r["argmax_match"] is not None:
        tokens = r["steps"] + 1
        agree = (f"greedy {tokens}/{tokens} tokens" if r["first_divergence"] is None
                 else f"greedy {r['divergence']} at step {r['first_divergence']}")
    else:
        agree = {None: "-", True: "argmax match", False: "argmax differs"}[r["argmax_match"]]
        if r.get("near_tie_flip"):
            agree = "argmax near-tie flip"
    metric = "max|Δ|    " if r["graph"] == "moe_block" else "max|Δlogit|"
    line = (f"{r['family']:<20} {r['graph']:<9} {metric} {diff:>9}  bound {r['bound']:.0e}  "
            f"{agree:<30} {r['verdict']}")
    if r.get("xla"):
        line += f"  [{triangulate.note(r['xla'])}]"
    if r["verdict"] != PASS or r["message"]:
        line += f"\n    {r['message']}"
        if r.get("xla") and r["xla"].get("verdict") != triangulate.AGREE:
            line += f"\n    {triangulate.detail(r['xla'])}"
        if r.get("localisation"):
            line += f"\n    localised: {r['localisation'].get('summary') or r['localisation'].get('error')}"
        line += f"\n    replay: {r['replay']}"
    return line


def write_json_atomic(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(value, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def write_index(records: list[dict], directory: Path, emitter_label: str, problems: list[str]) -> None:
    """The index and summary.csv over the pages the workers wrote. A report problem is said
    plainly; the verdict stays the gate's."""
    from . import report
    problems = list(problems)
    written = {report.page_name(r) for r in records} - {p.split(".html")[0] for p in problems}
    try:
        report.write_index(records, directory, emitter_label, written, problems)
    except Exception as e:  # noqa: BLE001 - reports explain a verdict, they never decide or stop it
        problems.append(f"index.html not written: {type(e).__name__}: {e} (the verdict is unaffected)")
    for problem in problems:
        print(f"reports: {problem}", flush=True)
    print(f"reports: {directory / 'index.html'} and a page per family", flush=True)


def start_workers(jobs: int, selected: list[fixtures.Fixture]) -> ProcessPoolExecutor:
    """Spawned now, so that their imports overlap the structural pass."""
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))
    cold = not all(oracle.cached(f) for f in selected)
    for _ in range(jobs):
        pool.submit(_warm_up, cold)
    return pool


def run_all(pool: ProcessPoolExecutor, names: list[str], emitter: tuple[str, ...], structural_results: list[dict],
            reports: Path | None, emitter_label: str, strict_bound: bool,
            directories: dict[str, str] | None = None) -> tuple[list[dict], list[str]]:
    """Numerical validation in the worker processes, one family per task, reusing the texts the
    structural pass emitted, the slowest first (fixtures/costs.json) so that no long one starts last;
    (records in family order, report problems). A worker that dies (signal,
    OOM) breaks the whole pool, so the families it took down with it run again, each in a process
    of its own: only the one that dies again is an ERROR."""
    directories = directories or {}
    by_family: dict[str, list[dict]] = {}
    problems: list[str] = []
    checks = {(r["case"], r["graph"]): r for r in structural_results}
    tasks = {}
    for n in names:
        mine = {g: checks[(n, g)] for g in GRAPHS if (n, g) in checks}
        texts = {g: c["text"] for g, c in mine.items() if c["text"]}
        tasks[n] = (n, emitter, texts, mine, reports, emitter_label, strict_bound, directories.get(n))

    def take(name: str, outcome: tuple[list[dict], list[str]]) -> None:
        by_family[name], family_problems = outcome
        problems.extend(family_problems)
        for record in by_family[name]:
            print(format_line(record), flush=True)

    futures = {pool.submit(_validate_family, *tasks[n]): n for n in shard.slowest_first(names)}
    broken = []
    for future in as_completed(futures):
        try:
            take(futures[future], future.result())
        except BrokenProcessPool:
            broken.append(futures[future])
    if broken:
        print(f"a worker process died: running {', '.join(sorted(broken))} again, one process each", flush=True)
        with ThreadPoolExecutor(max_workers=min(len(broken), os.cpu_count() or 1)) as threads:
            again = {threads.submit(_validate_isolated, tasks[n]): n for n in broken}
            for future in as_completed(again):
                take(again[future], future.result())
    return [record for name in names for record in by_family[name]], problems


def _validate_isolated(task: tuple) -> tuple[list[dict], list[str]]:
    """One family in a worker process of its own; if that process dies too, its cases are ERRORs."""
    name, directory = task[0], task[-1]
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            return pool.submit(_validate_family, *task).result()
        except BrokenProcessPool as e:
            fixture = _load(name, directory)
            return ([error_record(fixture, graph, f"the worker process died (run alone too): {e}") for graph in GRAPHS],
                    [f"{name}.html not written: its worker died"])


def error_record(fixture: fixtures.Fixture, graph: str, message: str) -> dict:
    return {"family": fixture.name, "model_type": fixture.model_type, "graph": graph, "verdict": ERROR,
            "max_abs_diff": None, "argmax_match": None, "bound": fixture.bound, "message": message,
            "replay": replay_command(fixture)}


def published_pass(paths: list[str], workdir: Path, part: tuple[int, int] | None = None) -> list[published.Published]:
    """Each --config (of shard part, when given) shrunk into workdir, its seed chosen; PublishedConfigError
    on bad input."""
    print("== published configs: shrunk to tiny synthetic models (field old -> new), every architectural "
          "choice kept", flush=True)
    taken, named = set(), {}
    for path in paths:
        base = published.label(Path(path))
        name = next(n for n in (base, *(f"{base}-{i}" for i in range(2, len(paths) + 2))) if n not in taken)
        taken.add(name)
        named[name] = path
    if part:  # a published config has no measured cost: each costs the table's median
        named = {name: named[name] for name in shard.assign(named, *part)}
        say_shard(part, list(named))
    prepared = []
    for name in named:
        prepared.append(published.prepare(named[name], workdir, name))
        print(published.format_summary(prepared[-1]), flush=True)
    return prepared


def structural_pass(cases: list[str] | None, update: bool, jobs: int, orphans: bool) -> tuple[list[dict], bool]:
    """These cases (None: all) signed and compared with their goldens; orphan goldens looked for when
    asked (only a run over every case can tell one)."""
    print("== structural signatures" + (" (updating goldens)" if update else ""), flush=True)
    results = structural.run(DEFAULT_EMITTER, update=update, names=cases, jobs=max(1, jobs))
    said = said_structural(results)
    found = structural.orphan_goldens() if orphans else []
    for path in found:
        print(f"golden without a case: fixtures/{path}")
    print(f"structural: {said} as recorded, "
          + (f"{len(found)} orphan goldens" if orphans else "orphan goldens not checked (a part of the cases)"),
          flush=True)
    return results, all(structural.passed(r) for r in results) and not found


def said_structural(results: list[dict]) -> str:
    """Prints a line per result; 'passed/all'."""
    for r in results:
        print(structural.format_result(r), flush=True)
    return f"{sum(structural.passed(r) for r in results)}/{len(results)}"


def check_meanwhile(cases: list[str]):
    """Structural cases no numerical case needs (the published configs'), checked in a thread of this
    process while the workers run the families; a Future of their results, None when there are none."""
    if not cases:
        return None
    thread = ThreadPoolExecutor(max_workers=1)
    future = thread.submit(structural.run, DEFAULT_EMITTER, False, cases, 1)
    thread.shutdown(wait=False)  # its one task still runs to the end
    return future


def mutation_pass(names: list[str], jobs: int, strict_bound: bool, reports: Path, start: float) -> int:
    bound = "the strict and the fixed bound" if strict_bound else "the fixed bound alone"
    print(f"== mutation self-test: every applicable mutant must FAIL ({bound})", flush=True)
    records = mutation.run_all(names, jobs, strict_bound)
    write_json_atomic(reports / "mutants.json", records)
    lines, ok = mutation.summary(records)
    print("\n".join(lines))
    print(f"-> {reports / 'mutants.json'} ({time.perf_counter() - start:.1f} s)")
    print(f"RESULT: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="validate_arch.sh", description=__doc__)
    ap.add_argument("--family", action="append", metavar="NAME",
                    help="validate only this fixture (repeatable); default: all")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes")
    ap.add_argument("--config", action="append", metavar="PATH",
                    help="validate a published config.json (repeatable): shrunk to a tiny model, every "
                         "architectural choice kept, no weights needed")
    ap.add_argument("--emitter", help="emitter command (default: the built-in `python -m emitter`)")
    ap.add_argument("--reports", type=Path, default=REPORTS_DIR, help="where summary.json goes")
    ap.add_argument("--list", action="store_true", help="list the fixtures and exit")
    ap.add_argument("--structural-only", action="store_true",
                    help="only emit and check signatures against goldens (no compile, no run, no torch)")
    ap.add_argument("--update-goldens", action="store_true",
                    help="rewrite the goldens that differ from what the emitter writes now, and say which")
    ap.add_argument("--fixed-bound-only", action="store_true",
                    help="judge by the fixed bound alone (no fp64 oracle run, no strict noise-derived bound)")
    ap.add_argument("--mutants", action="store_true",
                    help="the mutation self-test: every applicable mutant of the selected families must FAIL")
    ap.add_argument("--shard", metavar="I/N",
                    help="only shard I of N (1-based): the families harness/shard.py assigns it by their cost in "
                         "fixtures/costs.json, for N machines; --merge joins their reports")
    ap.add_argument("--merge", nargs="+", type=Path, metavar="DIR",
                    help="join the reports of shard runs (each one's --reports DIR) into --reports, as one run "
                         "over all their families would have written them")
    args = ap.parse_args(argv)

    if args.update_goldens and os.environ.get("PYTEST_XDIST_WORKER"):
        print("error: --update-goldens refuses to run inside a parallel pytest worker "
              f"({os.environ['PYTEST_XDIST_WORKER']}): concurrent writers would lose goldens", file=sys.stderr)
        return 2
    if args.jobs < 1:
        print(f"error: --jobs {args.jobs}: must be at least 1", file=sys.stderr)
        return 2
    try:
        emitter = emitter_command(args.emitter)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.merge:
        return run_merge(args)
    try:
        args.shard = None if args.shard is None else shard.parse(args.shard)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.shard and args.family:
        print("error: --shard cannot be combined with --family: a shard's families are chosen by their cost",
              file=sys.stderr)
        return 2
    if args.config:
        clash = [o for o, on in (("--family", args.family), ("--structural-only", args.structural_only),
                                 ("--update-goldens", args.update_goldens)) if on]
        if clash:
            print(f"error: --config cannot be combined with {clash[0]}", file=sys.stderr)
            return 2
        return run_published(args)
    known = fixtures.names()
    if args.list:
        print("\n".join(known))
        return 0
    selected = args.family or (shard.assign(known, *args.shard) if args.shard else known)
    unknown = [n for n in selected if n not in known]
    if unknown:
        print(f"error: --family {unknown[0]}: no such fixture under fixtures/ (known: {', '.join(known)})",
              file=sys.stderr)
        return 2
    try:
        for name in selected:
            fixtures.load(name)
    except fixtures.FixtureError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.mutants and args.emitter:
        print("error: --mutants mutates the built-in emitter; it cannot take --emitter", file=sys.stderr)
        return 2
    names = list(dict.fromkeys(selected))
    cases = args.family
    if args.shard:
        say_shard(args.shard, names)
        cases = names + [c.name for c in structural.cases()  # published configs' cases: no cost, by name
                         if c.name not in known and shard.by_hash(c.name, args.shard[1]) == args.shard[0]]

    start = time.perf_counter()
    if args.mutants:
        return mutation_pass(names, max(1, min(args.jobs, len(names))), not args.fixed_bound_only, args.reports,
                             start)
    numeric = not (args.structural_only or args.update_goldens)
    pool = start_workers(min(args.jobs, len(names)), [fixtures.load(n) for n in names]) if numeric and names else None
    structural_results, structural_ok, published_checks = [], True, None
    if emitter != DEFAULT_EMITTER:  # goldens record the built-in emitter; another one has none
        print("== structural signatures: skipped (the goldens record the built-in emitter)")
    elif numeric:
        every = cases if cases is not None else [c.name for c in structural.cases()]
        structural_results, structural_ok = structural_pass([c for c in every if c in known], False, args.jobs,
                                                            orphans=cases is None)
        published_checks = check_meanwhile([c for c in every if c not in known])
    else:
        structural_results, structural_ok = structural_pass(cases, args.update_goldens, args.jobs,
                                                            orphans=cases is None)
    if not numeric:
        print(f"structural-only: {time.perf_counter() - start:.2f} s")
        print(f"RESULT: {'PASS' if structural_ok else 'FAIL'}")
        return 0 if structural_ok else 1

    print("== numerical: oracle vs IREE, and XLA CPU on the same text", flush=True)
    emitter_label = args.emitter or "built-in (python -m emitter)"
    records, problems = [], []
    if pool:
        with pool:
            records, problems = run_all(pool, names, emitter, structural_results, args.reports, emitter_label,
                                        strict_bound=not args.fixed_bound_only)
    if published_checks:
        print("== structural signatures of the published configs (checked while the families ran)", flush=True)
        published_results = published_checks.result()
        print(f"structural: {said_structural(published_results)} as recorded", flush=True)
        structural_ok = structural_ok and all(structural.passed(r) for r in published_results)
    return finish(args, records, structural_ok, start, problems)


def emitter_command(text: str | None) -> tuple[str, ...]:
    """--emitter split as a shell would, or the built-in emitter where the option is not given; ValueError
    for text that is no command line or names no command (an unset variable must not validate the built-in)."""
    if text is None:
        return DEFAULT_EMITTER
    shown = printable(shlex.quote(text))
    try:
        command = tuple(shlex.split(text))
    except ValueError as e:
        raise ValueError(f"--emitter {shown}: not a command line ({e})") from None
    if not command:
        raise ValueError(f"--emitter {shown}: names no command; leave --emitter out to validate the built-in emitter")
    return command


def say_shard(part: tuple[int, int], names: list[str]) -> None:
    index, count = part
    if names:
        print(f"== shard {index}/{count}: {len(names)} families, {sum(map(shard.cost, names)):.0f} s cold by "
              f"fixtures/costs.json: {' '.join(names)}", flush=True)
    else:
        print(f"== shard {index}/{count}: no families (more shards than families)", flush=True)


def run_published(args) -> int:
    """--config: each published config shrunk into a temporary fixture, then the usual cases on it."""
    start = time.perf_counter()
    emitter = emitter_command(args.emitter)
    emitter_label = args.emitter or "built-in (python -m emitter)"
    records, problems = [], []
    with tempfile.TemporaryDirectory(prefix="archval-config-") as tmp:
        try:
            prepared = published_pass(args.config, Path(tmp), args.shard)
        except published.PublishedConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print("== structural signatures: skipped (a shrunk config has no golden)")
        print("== numerical: oracle vs IREE, and XLA CPU on the same text", flush=True)
        runnable = [p for p in prepared if p.error is None]
        names = [p.fixture.name for p in runnable]
        if names:
            with start_workers(max(1, min(args.jobs, len(names))), [p.fixture for p in runnable]) as pool:
                records, problems = run_all(pool, names, emitter, [], args.reports, emitter_label,
                                            not args.fixed_bound_only,
                                            {p.fixture.name: str(p.fixture.config_path.parent) for p in runnable})
    for p in prepared:
        if p.error:
            records += [error_record(p.fixture, graph, p.error) for graph in GRAPHS]
            for record in records[-len(GRAPHS):]:
                print(format_line(record), flush=True)
    by_name = {p.fixture.name: p.summary() for p in prepared}
    for record in records:
        record["published"] = by_name[record["family"]]
    return finish(args, records, True, start, problems)


def run_merge(args) -> int:
    """--merge DIR...: the shards' summary.json records in the gate's family order, their pages copied,
    then summary.json, the index and RESULT as one run over all their families."""
    from . import report
    clash = [o for o, on in (("--family", args.family), ("--shard", args.shard), ("--config", args.config),
                             ("--structural-only", args.structural_only), ("--update-goldens", args.update_goldens),
                             ("--mutants", args.mutants), ("--list", args.list)) if on]
    if clash:
        print(f"error: --merge cannot be combined with {clash[0]}", file=sys.stderr)
        return 2
    if args.reports.resolve() in {d.resolve() for d in args.merge}:
        print(f"error: --reports {args.reports} is one of the --merge inputs: merge into another directory, "
              "so that no shard's reports are overwritten", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        records, homes = shard.read_shards(args.merge)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    problems = []
    args.reports.mkdir(parents=True, exist_ok=True)
    for page, family in {report.page_name(r): r["family"] for r in records}.items():
        source = homes[family] / f"{page}.html"
        try:
            report.write_text_atomic(args.reports / source.name, source.read_text(encoding="utf-8"))
        except OSError as e:
            problems.append(f"{source.name} not copied from {source.parent}: {e.strerror or e}")
    for record in records:
        print(format_line(record), flush=True)
    drifted = [r for r in records if r.get("structural") and not structural.passed(r["structural"])]
    for r in drifted:
        print(f"structural: {r['family']} {r['graph']} {r['structural']['status']} (see its page)", flush=True)
    return finish(args, records, not drifted, start, problems)


def finish(args, records: list[dict], structural_ok: bool, start: float, problems: list[str]) -> int:
    """summary.json, the index over the workers' pages, the counts and RESULT."""
    write_json_atomic(args.reports / "summary.json", records)
    write_index(records, args.reports, args.emitter or "built-in (python -m emitter)", problems)
    numeric_ok = all(r["verdict"] == PASS for r in records)
    counts = {v: sum(r["verdict"] == v for r in records) for v in ("PASS", "FAIL", "ERROR")}
    print(f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['ERROR']} errors "
          f"-> {args.reports / 'summary.json'} ({time.perf_counter() - start:.1f} s)")
    passed = numeric_ok and structural_ok
    print(f"RESULT: {'PASS' if passed else 'FAIL'}")
    return 0 if passed else 1
