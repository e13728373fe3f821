"""The mutation self-test: every applicable mutant of every selected family, and the kill rate.

A harness that never fails on a subtle bug proves nothing. Each mutant applicable to a family
(harness/mutants.py: its predicate on the config's flags, or the fixture lists it) is emitted,
run through the same case as the real graph, and must FAIL. The report gives the kill rate per
family, the survivors, and the mutants the fixed bound alone would have let through (killed only
by the strict, noise-derived bound).

A survivor whose slip HF can express too (Mutant.oracle_config) is measured exactly: the
fp64 oracle with the slip against the fp64 oracle without it. When that exact effect is
within the strict bound, no fp32 evaluation can tell the slip from rounding: the mutant is
reported as equivalent at fp32 (mutation testing's "equivalent mutant"), listed, and not
counted in the kill rate. (Its text still differs, so the structural goldens catch it.)
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from emitter import Config, emit

from harness.core import fixtures
from harness.checks import mutants
from harness.core.compare import FAIL


def family_mutants(name: str) -> list[str]:
    fixture = fixtures.load(name)
    config = Config.from_json(fixture.config_path)
    return [m for m in mutants.MUTANTS if mutants.applicable(m, config, fixture.mutants)]


def run_family(name: str, strict_bound: bool = True, only: tuple[str, ...] | None = None) -> list[dict]:
    """One record per applicable mutant (or the `only` ones): the case's record plus mutant,
    description, killed (FAIL under the verdict in force) and fixed_killed (FAIL under 1e-2 alone)."""
    from harness.core.case import run_case
    fixture = fixtures.load(name)
    config = Config.from_json(fixture.config_path)
    records = []
    for mutant in family_mutants(name):
        if only is not None and mutant not in only:
            continue
        bug = mutants.MUTANTS[mutant]
        text = bug.emit(fixture.config_path)
        if text == emit(config, bug.graph):
            record = {"family": name, "graph": bug.graph, "verdict": "UNCHANGED", "max_abs_diff": None,
                      "message": "the mutant does not change this family's graph"}
        else:
            record = run_case(fixture, bug.graph, texts={bug.graph: text}, xla=False, strict_bound=strict_bound)
        record.update(mutant=mutant, description=bug.description, killed=record["verdict"] == FAIL,
                      fixed_killed=record.get("fixed_verdict", record["verdict"]) == FAIL, equivalent=False)
        if not record["killed"] and bug.oracle_config and record.get("strict_bound") is not None:
            _measure_exact_effect(record, fixture, bug)
        records.append(record)
    return records


def _measure_exact_effect(record: dict, fixture, bug: mutants.Mutant) -> None:
    from dataclasses import replace

    from harness.core.oracle_cache import fp64_logits
    from harness.core.oracle_cache import run as oracle_run
    tokens = oracle_run(fixture).tokens
    steps = 1 if record["graph"] == "prefill" else len(tokens)
    slipped = replace(fixture, config=bug.oracle_config(fixture.config))
    effect = float(np.abs(fp64_logits(slipped, tokens)[:steps] - fp64_logits(fixture, tokens)[:steps]).max())
    record["exact_effect"] = effect
    record["equivalent"] = effect <= record["strict_bound"]


def format_line(r: dict) -> str:
    diff = "-" if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.3e}"
    ratio = f"{r['noise_ratio']:>9.1f}x noise" if r.get("noise_ratio") is not None else " " * 15
    state = "killed" if r["killed"] else f"SURVIVED ({r['verdict']})"
    if r.get("equivalent"):
        state = (f"equivalent at fp32: its exact effect {r['exact_effect']:.1e} (fp64 oracle with the slip) is "
                 f"within the strict bound {r['strict_bound']:.1e}")
    note = "  (the fixed 1e-2 bound alone would miss it)" if r["killed"] and not r["fixed_killed"] else ""
    return f"{r['family']:<20} {r['mutant']:<24} {r['graph']:<8} max|Δlogit| {diff:>9} {ratio}  {state}{note}"


def summary(records: list[dict]) -> tuple[list[str], bool]:
    """Per-family kill rates, the survivors, and what the fixed bound alone misses; ok if all killed."""
    lines = []
    equivalent = [f"{r['family']}:{r['mutant']}" for r in records if r.get("equivalent")]
    records = [r for r in records if not r.get("equivalent")]
    for family in dict.fromkeys(r["family"] for r in records):
        rs = [r for r in records if r["family"] == family]
        killed, fixed = sum(r["killed"] for r in rs), sum(r["fixed_killed"] for r in rs)
        lines.append(f"{family:<20} killed {killed}/{len(rs)} ({100 * killed / len(rs):.0f}%)   "
                     f"fixed bound alone {fixed}/{len(rs)}")
    survivors = [f"{r['family']}:{r['mutant']}" for r in records if not r["killed"]]
    missed = [f"{r['family']}:{r['mutant']}" for r in records if r["killed"] and not r["fixed_killed"]]
    total, killed = len(records), sum(r["killed"] for r in records)
    lines.append(f"kill rate {killed}/{total} ({100 * killed / max(total, 1):.1f}%)")
    lines.append("survivors: " + (", ".join(survivors) or "none"))
    lines.append("killed only by the strict bound (the fixed bound alone misses): " + (", ".join(missed) or "none"))
    lines.append("equivalent at fp32, not counted (exact effect within the strict bound): "
                 + (", ".join(equivalent) or "none"))
    return lines, not survivors


def _worker_init(threads: int) -> None:
    import torch
    torch.set_num_threads(threads)


def run_all(names: list[str], jobs: int, strict_bound: bool = True) -> list[dict]:
    """Every family in a worker process (one oracle run each), lines printed as families finish."""
    ctx = multiprocessing.get_context("spawn")
    threads = max(1, (os.cpu_count() or 1) // jobs)
    by_family = {}
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_init,
                             initargs=(threads,)) as pool:
        futures = {n: pool.submit(run_family, n, strict_bound) for n in names}
        for name, future in futures.items():
            by_family[name] = future.result()
            for record in by_family[name]:
                print(format_line(record), flush=True)
    return [r for n in names for r in by_family[n]]
