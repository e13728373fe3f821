"""The serving kinds (core/batched.py): decode_batched and decode_paged PASS on a sample of families at batch sizes 1,
3 and 8, their isolation checks FAIL a graph whose rows leak into each other by less than any bound sees, and
their mutants FAIL by WEAK_MARGIN or more."""
import numpy as np
import pytest

from archval.emitter import Config, emit
from archval.emitter.batched import BatchedDecoder
from archval.harness.checks import self_test
from archval.harness.core import fixtures
from archval.harness.core.batched import CHANGED, PADDED
from archval.harness.core.case import run_case
from archval.harness.core.inputs import SHARED_PREFIX, batch_row
from archval.harness.core.record import FAIL, FAILED, PASS, PASSED
from archval.harness.core.serving import NULL_BLOCK, Layout, block_tables
from archval.harness.present.console import line, mutant_line


def serving_case(name: str, graph: str, batch: int | None = None, core=BatchedDecoder):
    """The case on the built-in emitter's graphs, at the emitter's batch or the one given."""
    fixture = fixtures.load(name)
    config = Config.from_json(fixture.config_path)
    texts = {"prefill": emit(config, "prefill"),
             graph: emit(config, graph, core=core, **({"batch": batch} if batch else {}))}
    return run_case(fixture, graph, texts=texts, xla=False)


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_decode_batched_passes_at_every_batch_size(batch):
    record = serving_case("llama", "decode_batched", batch)
    assert record.verdict == PASS, line(record)
    assert record.batch.size == batch and len({r.prompt_len for r in record.batch.rows}) == batch  # ragged
    isolation = {c.name for c in record.checks} & {CHANGED, PADDED}
    assert isolation == (set() if batch == 1 else {CHANGED, PADDED})  # one row has nothing to be isolated from
    if batch > 1:
        assert record.batch.changed_max_diff == record.batch.padded_max_diff == 0.0


@pytest.mark.parametrize("name,graph", [("gemma2", "decode_batched"), ("mixtral", "decode_paged"),
                                        ("llama", "decode_paged")])
def test_serving_kinds_pass_on_a_windowed_and_an_moe_family(name, graph):
    record = serving_case(name, graph)
    assert record.verdict == PASS, line(record)
    if name != "llama":  # windowed families: one row past the window, another inside it
        assert {r.past_window for r in record.batch.rows} == {True, False}
    if graph == "decode_paged":
        assert record.batch.shared_blocks == SHARED_PREFIX // record.batch.block_size
        first, second = record.batch.rows[0].blocks, record.batch.rows[1].blocks
        assert first[:2] == second[:2] and first != sorted(first)  # a shared prefix, blocks scattered


class BatchMeanLeak(BatchedDecoder):
    """Each row's logits take a millionth of the batch's mean logit: inside every bound, yet rows reach each other."""
    def row_logits(self, h):
        g, logits = self.g, super().row_logits(h)
        batch, vocab = logits.shape
        mean = g.div(g.reduce(logits, g.scalar(0.0), "add", [0]), g.scalar(float(batch)))
        return g.add(logits, g.mul(g.broadcast(mean, (batch, vocab), [1]), g.scalar(1e-6)))


def test_isolation_fails_a_graph_whose_rows_leak_inside_the_bound():
    record = serving_case("llama", "decode_batched", core=BatchMeanLeak)
    status = {c.name: c.status for c in record.checks}
    assert record.verdict == FAIL, line(record)
    assert status["bound"] == status["greedy tokens"] == PASSED  # no logit check could see it
    assert status[CHANGED] == status[PADDED] == FAILED, line(record)
    assert "rows must not reach each other" in record.message


@pytest.mark.parametrize("mutant", ["row_reads_neighbour", "block_table_off_by_one"])
def test_serving_mutants_fail_by_a_wide_margin(mutant):
    (record,) = self_test.run_family("llama", only=(mutant,))
    assert record.mutant.killed and record.mutant.margin >= self_test.WEAK_MARGIN, mutant_line(record)
    print(mutant_line(record))


def test_rows_are_a_function_of_the_seed_and_their_index():
    fixture = fixtures.load("llama")
    rows = [batch_row(fixture, r) for r in range(8)]
    assert all(np.array_equal(batch_row(fixture, r).prompt, rows[r].prompt) for r in range(3))
    assert np.array_equal(rows[1].prompt[:SHARED_PREFIX], rows[0].prompt[:SHARED_PREFIX])
    assert np.array_equal(rows[1].positions[:SHARED_PREFIX], rows[0].positions[:SHARED_PREFIX])
    assert not np.array_equal(rows[1].prompt, rows[0].prompt[: len(rows[1].prompt)])
    assert all((r.positions != np.arange(len(r.prompt))).any() for r in rows)  # positions apart from slots


def test_block_tables_share_row_zeros_prefix_and_leave_the_null_block_alone():
    rows = [batch_row(fixtures.load("llama"), r) for r in range(4)]
    tables = block_tables(Layout(4, "stacked", (), 32, 4, 33, 8), rows, seed=1)
    used = [b for t in tables for b in t if b != NULL_BLOCK]
    assert len(used) - len(set(used)) == SHARED_PREFIX // 4  # only the shared blocks are named twice
    assert (tables[0, :2] == tables[1, :2]).all() and NULL_BLOCK not in tables[0, :2]


def test_a_single_sequence_decode_graph_is_refused_naming_the_batch_inputs():
    fixture = fixtures.load("llama")
    config = Config.from_json(fixture.config_path)
    record = run_case(fixture, "decode_batched", xla=False,
                      texts={"prefill": emit(config, "prefill"), "decode_batched": emit(config, "decode")})
    assert record.verdict == "ERROR" and "stage 'protocol'" in record.message, line(record)
    assert "token, position, cache_len are i32[], i32[], i32[]; the protocol wants i32[B] each" in record.message


def test_a_graph_too_small_for_the_rows_is_refused_before_it_runs():
    fixture = fixtures.load("llama")
    config = Config.from_json(fixture.config_path)
    record = run_case(fixture, "decode_batched", xla=False, texts={
        "prefill": emit(config, "prefill"), "decode_batched": emit(config, "decode_batched", capacity=20)})
    assert record.verdict == "ERROR" and "the rows need 21 cache slots and positions up to 23, but the decode_batched " \
        "graph's rows hold 20 slots" in record.message, line(record)
