"""The mutation self-test: every applicable mutant of every selected family, and the kill rate.

A harness that never fails on a subtle bug proves nothing. Each mutant applicable to a family
(checks/mutants.py: its predicate on the config's flags, or the fixture lists it) is emitted,
run through the same case as the real graph, and must FAIL. The report gives the kill rate per
family, the survivors, the mutants the fixed bound alone would have let through (killed only
by the strict, noise-derived bound), and each mutant's detection margin: how many times over the
bound that judged it the graph failed. A mutant killed by less than WEAK_MARGIN is a weak spot:
a slightly noisier seed or a slightly smaller slip would let it through.

A survivor whose slip HF can express too (Mutant.oracle_config) is measured exactly: the
fp64 oracle with the slip against the fp64 oracle without it. When that exact effect is
within the strict bound, no fp32 evaluation can tell the slip from rounding: the mutant is
reported as equivalent at fp32 (mutation testing's "equivalent mutant"), listed, and not
counted in the kill rate. (Its text still differs, so the structural goldens catch it.)
"""
from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Executor, as_completed
from itertools import zip_longest

import numpy as np

from ...emitter import Config, emit

from . import mutants
from .finish import finish
from ..core import fixtures
from ..core.case import error_record, run_case
from ..core.record import ERROR, FAIL, FAILED, MutantFacts, Record
from ..core.summary import command

WEAK_MARGIN = 3.0


def family_mutants(name: str) -> list[str]:
    fixture = fixtures.load(name)
    config = Config.from_json(fixture.config_path)
    return [m for m in mutants.MUTANTS if mutants.applicable(m, config, fixture.mutants)]


def run_family(name: str, strict_bound: bool = True, only: tuple[str, ...] | None = None) -> list[Record]:
    """A record per applicable mutant (or the `only` ones): the case's record with its mutant part (killed:
    FAIL under the verdict in force; fixed_killed: FAIL under 1e-2 alone)."""
    fixture = fixtures.load(name)
    config = Config.from_json(fixture.config_path)
    records = []
    for mutant in family_mutants(name):
        if only is not None and mutant not in only:
            continue
        bug = mutants.MUTANTS[mutant]
        texts = bug.texts(fixture.config_path)
        facts = MutantFacts(mutant, bug.description,
                            changes_graph=any(text != emit(config, graph) for graph, text in texts.items()))
        if facts.changes_graph:
            record = run_case(fixture, bug.graph, texts=texts, xla=False, strict_bound=strict_bound)
        else:
            record = error_record(fixture, bug.graph, "emit", "the mutant does not change this family's graph")
        facts.refused = bool(bug.refused_as) and record.verdict == ERROR and bug.refused_as in record.message
        facts.killed = record.verdict == FAIL or facts.refused
        facts.fixed_killed = (record.fixed_verdict or record.verdict) == FAIL or facts.refused  # no bound refuses
        facts.equivalent = False
        facts.margin, facts.judged_by = detection_margin(record)
        if not facts.killed and bug.oracle_config and record.noise:
            facts.exact_effect = _exact_effect(record, fixture, bug)
            facts.equivalent = facts.exact_effect <= record.noise.strict_bound
        # the replay runs this family's mutants, this one too
        finish([record], fixture, mutant=facts, replay=f"{command()} --mutants --family {name}")
        records.append(record)
    return records


def detection_margin(record: Record) -> tuple[float | None, str | None]:
    """(how many times over its bound the most decisive failed check found the graph, that check). A check
    without a ratio (tokens, NaN/Inf) gives no margin but still names itself; (None, None) when nothing failed."""
    failed = [c for c in record.checks if c.status == FAILED]
    ratios = [(c.value / c.bound, c.name) for c in failed if c.value is not None and c.bound]
    if ratios:
        margin, name = max(ratios)
        return float(margin), name
    return None, failed[0].name if failed else None


def _exact_effect(record: Record, fixture, bug: mutants.Mutant) -> float:
    """The slip's exact effect on the logits: the fp64 oracle with it against the fp64 oracle without it."""
    from dataclasses import replace

    from ..core.oracle_cache import fp64_logits
    from ..core.oracle_cache import run as oracle_run
    tokens = oracle_run(fixture).tokens
    steps = 1 if record.graph == "prefill" else len(tokens)
    slipped = replace(fixture, config=bug.oracle_config(fixture.config))
    return float(np.abs(fp64_logits(slipped, tokens)[:steps] - fp64_logits(fixture, tokens)[:steps]).max())


def order(names: list[str]) -> list[tuple[str, str]]:
    """(family, mutant) in the order they are handed out: each family's first mutant before any second one,
    so that a family's oracle run (cached) is done once before its other mutants start."""
    by_family = [[(n, m) for m in family_mutants(n)] for n in names]
    return [pair for rank in zip_longest(*by_family) for pair in rank if pair]


def run_all(pool: Executor, work: list[tuple[str, str]], strict_bound: bool = True) -> Iterator[tuple[str, str, Record]]:
    """Each (family, mutant) in a worker process of pool (the run mode owns the processes, see
    modes/mutants.py); (family, mutant, record) as each is done."""
    futures = {pool.submit(run_family, n, strict_bound, (m,)): (n, m) for n, m in work}
    for future in as_completed(futures):
        (record,) = future.result()
        yield *futures[future], record
