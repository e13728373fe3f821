"""Three-way comparison: XLA CPU runs the same text; the odd one out is named."""
import numpy as np
import pytest

from archval.harness.backends import iree, xla
from archval.harness.checks import mutants
from archval.harness.core import fixtures, triangulate
from archval.harness.core.case import run_case
from archval.harness.present.console import line as format_line


@pytest.mark.parametrize("pairs,expected", [
    ((1e-5, 1e-5, 1e-6), triangulate.AGREE),
    ((3.0, 3.0, 1e-5), triangulate.EMITTER),
    ((3.0, 1e-5, 3.0), triangulate.IREE),
    ((1e-5, 3.0, 3.0), triangulate.XLA),
    ((3.0, 2.0, 1.0), triangulate.NONE),
    ((np.inf, 1e-5, np.inf), triangulate.IREE),
])
def test_odd_one_out(pairs, expected):
    assert triangulate.odd_one_out(*pairs, bound=1e-2) == expected


def test_iree_and_xla_both_non_finite_is_said_in_words():
    oracle = np.zeros((2, 8), np.float32)
    nan_at_1, inf_at_3 = oracle.copy(), oracle.copy()
    nan_at_1[0, 1], inf_at_3[1, 3] = np.nan, np.inf
    assert triangulate.triangulate(oracle, nan_at_1, inf_at_3, 1e-2, False).verdict == triangulate.BOTH_NONFINITE
    assert triangulate.triangulate(oracle, nan_at_1, oracle, 1e-2, False).verdict == triangulate.IREE


def test_xla_runs_the_same_text_and_agrees():
    record = run_case(fixtures.load("llama"), "decode")
    x = record.xla
    assert record.verdict == "PASS" and x.verdict == triangulate.AGREE, x
    assert x.oracle_xla < 1e-3 and x.iree_xla < 1e-3 and x.argmax_match
    assert "xla" in format_line(record)


def test_emitter_bug_is_blamed_on_the_emitter():
    fixture, bug = fixtures.load("gemma2"), mutants.MUTANTS["no_attn_softcap"]
    record = run_case(fixture, "prefill", texts=bug.texts(fixture.config_path))
    assert record.verdict == "FAIL" and record.xla.verdict == triangulate.EMITTER, record.xla
    assert "emitter bug" in format_line(record)


def test_a_compiler_problem_is_blamed_on_iree(monkeypatch):
    """IREE made to miscompute (its logits shifted): XLA sides with the oracle."""
    execute = iree.IreeModule.execute

    def miscompiled(self, args, inputs):
        logits, *rest = execute(self, args, inputs)
        return [logits + np.float32(0.5), *rest]

    monkeypatch.setattr(iree.IreeModule, "execute", miscompiled)
    record = run_case(fixtures.load("qwen3"), "decode")
    assert record.verdict == "FAIL" and record.xla.verdict == triangulate.IREE, record.xla


def test_a_subtle_emitter_bug_is_blamed_at_the_strict_bound():
    """Scores 0.1% too large on Llama: inside 1e-2, beyond the strict bound; both compilers agree on the wrong
    answer."""
    fixture, bug = fixtures.load("llama"), mutants.MUTANTS["attn_scale_permille"]
    record = run_case(fixture, "prefill", texts=bug.texts(fixture.config_path))
    assert record.verdict == "FAIL" and record.fixed_verdict == "PASS"
    assert record.xla.verdict == triangulate.EMITTER, record.xla


def test_xla_logits_are_cached_by_text_and_inputs(tmp_path, monkeypatch):
    """XLA is a reference: the same text on the same inputs is run once; another text, or a failure, is not
    served from the cache."""
    monkeypatch.setenv("ARCHVAL_CACHE_DIR", str(tmp_path))
    fixture = fixtures.load("qwen2")
    first, again = run_case(fixture, "prefill"), run_case(fixture, "prefill")
    assert (first.xla.cache_hit, again.xla.cache_hit) == (False, True)
    first.xla.cache_hit = again.xla.cache_hit = None
    assert first.xla == again.xla and "xla_compile" not in again.timings
    bug = mutants.MUTANTS["no_qkv_bias"]
    mutated = run_case(fixture, "prefill", texts=bug.texts(fixture.config_path))
    assert mutated.xla.cache_hit is False and mutated.xla.oracle_xla != first.xla.oracle_xla

    def broken(self, main, text):
        raise iree.BackendError("XLA could not compile the module: on purpose")
    monkeypatch.setattr(xla.XlaModule, "__init__", broken)
    decode = run_case(fixture, "decode")
    assert decode.xla == triangulate.unavailable("XLA could not compile the module: on purpose")
    assert run_case(fixture, "decode").xla == decode.xla  # the failure was not stored as an answer
