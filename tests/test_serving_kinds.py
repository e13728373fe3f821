"""The serving graph kinds (core/continued.py: prefill_chunked, decode_verify, prefill_embeddings): the built-in
emitter passes each on families of different mechanisms, each kind's mutant FAILs by at least 3x its bound, the
oracle's chunked prefill agrees with its one-shot one, a graph of the wrong shape is an ERROR naming it, and a run
that names no kind leaves them out."""
import numpy as np
import pytest

from archval.emitter import Config, emit
from archval.emitter.continued import continued
from archval.harness.checks import mutants
from archval.harness.cli import main
from archval.harness.core import fixtures, oracle_cache
from archval.harness.core.case import run_case
from archval.harness.core.inputs import chunk_starts
from archval.harness.core.kinds import KINDS, selected
from archval.harness.present.console import line

SERVING = ("prefill_chunked", "decode_verify", "prefill_embeddings")
# llama: plain; gemma2: sliding windows, softcaps, sqrt(hidden) inside its embedding module, a tied head;
# granite: its multipliers, embedding_multiplier applied by the forward to inputs_embeds
FAMILIES = ("llama", "gemma2", "granite")
MARGIN = 3  # a mutant's error over the bound it must at least reach


@pytest.mark.parametrize("family", FAMILIES)
def test_the_built_in_emitter_passes_every_serving_kind(family):
    texts, fixture = {}, fixtures.load(family)
    for graph in SERVING:
        record = run_case(fixture, graph, texts=texts)
        assert record.verdict == "PASS", line(record)
        assert "strict bound" in {c.name for c in record.checks} and record.xla.verdict == "all agree", line(record)
    assert record.logits.argmax_match


def test_chunked_prefill_is_judged_at_every_prompt_token_against_the_one_shot_oracle_too():
    fixture = fixtures.load("gemma2")
    starts = chunk_starts(fixture)
    assert starts == (0, 5, 9)  # the position gap (after token 5) falls inside the second chunk
    chunked, one_shot = oracle_cache.chunked_logits(fixture, starts), oracle_cache.prompt_logits(fixture)
    assert chunked.shape == one_shot.shape and np.abs(chunked - one_shot).max() < 1e-4
    record = run_case(fixture, "prefill_chunked", xla=False)
    assert record.verdict == "PASS" and record.abi.logits == "every position", line(record)


SERVING_MUTANTS = [("llama", "chunk_offset_ignored"), ("gemma2", "chunk_offset_ignored"),
                   ("llama", "verify_mask_sees_next"), ("gemma2", "verify_mask_sees_next"),
                   ("gemma2", "embeddings_scaled_twice"), ("granite", "embeddings_scaled_twice")]


@pytest.mark.parametrize("family,mutant", SERVING_MUTANTS, ids=[f"{f}-{m}" for f, m in SERVING_MUTANTS])
def test_each_serving_mutant_fails_by_three_times_its_bound(family, mutant):
    fixture, bug = fixtures.load(family), mutants.MUTANTS[mutant]
    assert mutants.applicable(mutant, Config.from_json(fixture.config_path))
    broken = bug.texts(fixture.config_path)
    assert broken[bug.graph] != emit(Config.from_json(fixture.config_path), bug.graph)
    record = run_case(fixture, bug.graph, texts=broken, xla=False, strict_bound=False)
    assert record.verdict == "FAIL", line(record)
    assert record.max_abs_diff >= MARGIN * record.bound, line(record)
    print(f"{family} {mutant}: max |Δlogit| {record.max_abs_diff:.3e} = {record.max_abs_diff / record.bound:.0f}x "
          f"the bound {record.bound:.0e}")


def test_embeddings_scaled_twice_applies_only_where_a_family_scales_its_embeddings():
    applies = {name: mutants.applicable("embeddings_scaled_twice", Config.from_json(fixtures.load(name).config_path))
               for name in ("llama", "gemma", "gemma2", "granite", "mistral")}
    assert applies == {"llama": False, "gemma": True, "gemma2": True, "granite": True, "mistral": False}


def test_a_serving_graph_of_the_wrong_shape_is_an_error_naming_it():
    fixture = fixtures.load("llama")
    config = Config.from_json(fixture.config_path)
    narrow = {"prefill_chunked": continued(config, "prefill_chunked", 4, 32)}
    record = run_case(fixture, "prefill_chunked", texts=narrow, xla=False)
    assert record.verdict == "ERROR" and "holds 5 tokens, but the prefill_chunked graph takes 4" in record.message, \
        line(record)
    no_real_len = {"prefill_chunked": continued(config, "decode_verify", 16, 32)}
    record = run_case(fixture, "prefill_chunked", texts=no_real_len, xla=False)
    assert record.verdict == "ERROR" and "takes no argument named 'real_len'" in record.message, line(record)
    prefill_as_verify = {"prefill": emit(config, "prefill"), "decode_verify": emit(config, "prefill")}
    record = run_case(fixture, "decode_verify", texts=prefill_as_verify, xla=False)
    assert record.verdict == "ERROR" and "the decode_verify graph's cache arguments are none" in record.message, \
        line(record)


def test_the_serving_kinds_run_only_when_named():
    assert [k for k, kind in KINDS.items() if kind.on_request] == [*SERVING, "decode_batched", "decode_paged"]
    assert [k for k, kind in KINDS.items() if selected(kind, None)] == ["prefill", "decode", "moe_block"]
    assert [k for k, kind in KINDS.items() if selected(kind, ["decode_verify", "prefill"])] == ["prefill",
                                                                                                "decode_verify"]


def test_the_gate_validates_a_serving_kind_when_named_and_its_support_table_shows_it(tmp_path, capsys):
    assert main(["--family", "llama", "--graph", "decode_verify", "--reports", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "llama                decode_verify max|Δlogit|" in out and "greedy 17/17 tokens" in out, out
    support = (tmp_path / "support.md").read_text()
    assert "| family | decode_verify |" in support and "| llama | PASS (" in support, support
