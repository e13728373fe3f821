"""The serving graph kinds: decode_batched (B sequences stepped together over dense per-row caches) and
decode_paged (the same over a block pool and block tables, vLLM-style), registered in core/kinds.py.

Each row is its own sequence (inputs.batch_row: ragged prompts, ragged ends), prefilled by the family's prefill
graph, then every row is stepped by one call per step, teacher-forced with its own oracle run's tokens
(oracle_cache.sequence), and judged against that run step by step as decode is: no NaN/Inf, max |Δlogit| within
the bound, greedy tokens equal or a near tie. Then the rows' isolation, on the same graph: the last row's
inputs and cache changed, and that row a padding row throughout, must each leave every other row's logits bit for
bit as they were. The strict bound and XLA are not run for these kinds (decode judges the forward's numbers; these
judge the batching).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import compare, oracle_cache
from .abi import LOGITS, prefill_results
from .emitter_protocol import CaseError
from .fixtures import Fixture
from .inputs import Row, batch_row, padded_prompt, serving_step
from .record import FAILED, PASSED, AbiVariant, BatchResult, BatchRow, Check, Record
from .serving import NULL_BLOCK, Layout, block_tables, fill, scramble, serving_layout

if TYPE_CHECKING:
    from ..backends.base import Backend
    from .case import Case

CHANGED, PADDED = "rows independent", "padding row inert"
DECODE_CHECKS = ("finite", "bound", "greedy tokens")


class Serving:
    """A serving graph stepped over its batch's rows; paged: its caches are a block pool. A graph kind as
    core/kinds.py's GraphKind describes one (not its subclass: kinds.py registers this one)."""
    signed, every_family, strict, three_way, takes_every_weight = False, True, False, False, True
    on_request = True  # run only where --graph names it (docs/performance.md: the gate's cost)
    metric = "max |Δlogit|"

    def __init__(self, name: str, paged: bool):
        self.name, self.emits, self.paged = name, ("prefill", name), paged

    def applies(self, fixture: Fixture) -> bool:
        return True

    def bound(self, fixture: Fixture) -> float:
        return fixture.bound

    def checks(self, record: Record) -> tuple[str, ...]:
        alone = record.batch is not None and record.batch.size == 1  # one row: nothing to isolate it from
        return DECODE_CHECKS + (() if alone else (CHANGED, PADDED))

    def layout(self, case: Case) -> Layout:
        return serving_layout(case.graph(self.name).functions["main"], case.fixture, self.name, self.paged)

    def rows(self, case: Case) -> list[Row]:
        return [batch_row(case.fixture, r) for r in range(self.layout(case).batch)]

    def prepare(self, case: Case) -> None:
        if case.fixture.oracle is not None:
            raise CaseError(f"{self.name} runs on the fixtures' seeded rows, not on a checkpoint's prompt")

    def protocol(self, case: Case) -> AbiVariant:
        layout = self.layout(case)  # the case's own graph first: its problem, not prefill's
        prefill = prefill_results(case.graph("prefill").functions["main"], case.fixture)
        if prefill.count - 1 != len(layout.specs) or prefill.caches != layout.caches:
            raise CaseError(f"the prefill graph returns {prefill.count - 1} caches ({prefill.caches}) but the "
                            f"{self.name} graph takes {len(layout.specs)} ({layout.caches})")
        rows = self.rows(case)
        slots, reach = max(len(r.prompt) + r.steps for r in rows), max(int(r.decode_positions()[-1]) for r in rows)
        if slots > layout.capacity or reach >= layout.capacity:  # else writes past a row's end clamp silently
            raise CaseError(f"the rows need {slots} cache slots and positions up to {reach}, but the {self.name} "
                            f"graph's rows hold {layout.capacity} slots")
        return AbiVariant(layout.caches, prefill.logits, LOGITS)

    def oracle_rows(self, case: Case) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each row's oracle run: (logits [steps + 1, V], tokens)."""
        with case.stage("oracle"):
            return [oracle_cache.sequence(case.fixture, row.prompt, row.positions, row.decode_positions())
                    for row in self.rows(case)]

    def expected(self, case: Case) -> np.ndarray:
        """The oracle's logits of every row's decode steps, [B, steps, V] (zeros after a row's last step)."""
        runs, rows = self.oracle_rows(case), self.rows(case)
        out = np.zeros((len(rows), max(r.steps for r in rows), runs[0][0].shape[1]), np.float32)
        for row, (logits, _) in zip(rows, runs):
            out[row.index, : row.steps] = logits[1:]
        return out

    def start(self, case: Case, backend: Backend) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """The caches with every row's prompt prefilled by the prefill graph, and the block tables (paged)."""
        layout, rows = self.layout(case), self.rows(case)
        tables = block_tables(layout, rows, case.fixture.seed) if layout.paged else None
        storage = {spec.name: np.zeros(spec.shape, np.float32) for spec in layout.specs}
        prefill = case.module("prefill", backend)
        for row in rows:
            _, *caches = case.call(prefill, backend, padded_prompt(row.prompt, row.positions,
                                                                   prefill.main.arg("tokens").shape[0]))
            fill(layout, row, [np.asarray(c, np.float32) for c in caches], storage, tables)
        return storage, tables

    def feeds(self, case: Case, tables: np.ndarray | None) -> list[dict[str, np.ndarray]]:
        """Every step's inputs: the rows' tokens, positions and slots; paged, the block tables, a padding row's
        all NULL_BLOCK."""
        rows, tokens = self.rows(case), [t for _, t in self.oracle_rows(case)]
        feeds = []
        for step in range(1, max(r.steps for r in rows) + 1):
            feed = serving_step(rows, step, tokens)
            if tables is not None:
                feed["block_table"] = np.where(np.array([[step <= r.steps] for r in rows]), tables, NULL_BLOCK)
            feeds.append(feed)
        return feeds

    def run(self, case: Case, backend: Backend, storage: dict, feeds: list[dict]) -> np.ndarray:
        """The graph stepped through feeds from storage: the logits [B, steps, V]."""
        module, out = case.module(self.name, backend), []
        for feed in feeds:
            first, *returned = case.call(module, backend, {**feed, **storage})
            storage = dict(zip(storage, returned))
            out.append(np.asarray(first, np.float32))
        return np.stack(out, axis=1)

    def actual(self, case: Case, backend: Backend) -> np.ndarray:
        storage, tables = self.start(case, backend)
        return self.run(case, backend, storage, self.feeds(case, tables))

    def judge(self, case: Case, expected: np.ndarray, actual: np.ndarray) -> None:
        record, rows, layout = case.record, self.rows(case), self.layout(case)
        window = case.fixture.config.get("sliding_window")
        judged = [compare.compare_steps(expected[r.index, : r.steps], actual[r.index, : r.steps],
                                        r.decode_positions(), record.bound) for r in rows]
        worst = max(range(len(rows)), key=lambda r: (judged[r].steps[judged[r].worst_step].nonfinite > 0,
                                                   judged[r].steps[judged[r].worst_step].max_abs_diff))
        tables = block_tables(layout, rows, case.fixture.seed) if layout.paged else None
        record.batch = BatchResult(
            layout.batch, [BatchRow(r.index, len(r.prompt), r.steps, r.slot(r.steps),
                                    None if window is None else r.slot(r.steps) >= window,
                                    d.steps[d.worst_step].max_abs_diff, d.worst_step, d.first_divergence,
                                    None if tables is None else [int(b) for b in tables[r.index] if b != NULL_BLOCK])
                           for r, d in zip(rows, judged)],
            worst, None, None, None, layout.block_size,
            None if tables is None or len(rows) < 2 else len(set(tables[0]) & set(tables[1]) - {NULL_BLOCK}))
        d = judged[worst]
        record.max_abs_diff = d.steps[d.worst_step].max_abs_diff
        record.logits, record.decode = d.results(expected[worst, : rows[worst].steps],
                                                 actual[worst, : rows[worst].steps])
        record.checks += _row_checks(judged)
        if len(rows) > 1:
            with case.stage("isolation"):
                self.isolation(case, actual, tables)

    def isolation(self, case: Case, actual: np.ndarray, tables: np.ndarray | None) -> None:
        """The last row's inputs and cache changed, then that row a padding row: every other row's logits, at every
        step it is active, bit for bit as they were."""
        rows, layout, batch = self.rows(case), self.layout(case), case.record.batch
        last = batch.isolated_row = len(rows) - 1
        vocab = actual.shape[2]
        changed_storage, _ = self.start(case, case.subject)
        scramble(layout, changed_storage, last, tables, np.random.default_rng([case.fixture.seed, 0x150]))
        changed = self.feeds(case, tables)
        for feed in changed:
            feed["token"][last] = (feed["token"][last] + 1) % vocab
            feed["position"][last] += 1
            feed["cache_len"][last] += 1
        padded_storage, _ = self.start(case, case.subject)
        padded = self.feeds(case, tables)
        for feed in padded:
            feed["token"][last] = feed["position"][last] = feed["cache_len"][last] = 0
            if tables is not None:
                feed["block_table"][last] = NULL_BLOCK
        if not layout.paged:
            for target in padded_storage.values():
                target[last] = 0.0
        for name, storage, feeds in ((CHANGED, changed_storage, changed), (PADDED, padded_storage, padded)):
            moved = _moved(actual, self.run(case, case.subject, storage, feeds), rows, last)
            if name == CHANGED:
                batch.changed_max_diff = moved[0]
            else:
                batch.padded_max_diff = moved[0]
            what = "changing its token, position, slot and cache" if name == CHANGED else "making it a padding row"
            case.record.checks.append(Check(
                name, "isolation", PASSED if moved[1] is None else FAILED,
                "" if moved[1] is None else f"{what} (row {last}) moved row {moved[1][0]}'s logits at step "
                                            f"{moved[1][1]} by {moved[0]:.3e}: rows must not reach each other",
                moved[0], 0.0))


def _moved(before: np.ndarray, after: np.ndarray, rows: list[Row], changed: int) -> tuple[float, tuple | None]:
    """(max |Δ| of the other rows' logits over their active steps, (row, step) of the first that is not bit for bit
    the same, or None)."""
    largest, first = 0.0, None
    for row in rows:
        if row.index == changed:
            continue
        a, b = before[row.index, : row.steps], after[row.index, : row.steps]
        same = (a.view(np.uint32) == b.view(np.uint32)).all(axis=1)
        largest = max(largest, float(np.nan_to_num(np.abs(a.astype(np.float64) - b), nan=np.inf).max()))
        if first is None and not same.all():
            first = (row.index, int(np.argmin(same)))
    return largest, first


def _row_checks(judged: list[compare.DecodeComparison]) -> list[Check]:
    """decode's checks over every row: each one's first failure among the rows (named), else the worst row's."""
    per_row = [compare.decode_checks(d) for d in judged]
    checks = []
    for i, name in enumerate(DECODE_CHECKS):
        found = [(r, c[i]) for r, c in enumerate(per_row)]
        failed = [(r, c) for r, c in found if c.status == FAILED]
        r, c = failed[0] if failed else max(found, key=lambda rc: rc[1].value or 0.0)
        checks.append(Check(c.name, c.stage, c.status, f"row {r}: {c.message}" if c.message else "", c.value,
                            c.bound))
    return checks


SERVING_KINDS = (Serving("decode_batched", paged=False), Serving("decode_paged", paged=True))
