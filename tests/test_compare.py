"""The verdict logic on hand-made logits: each rule decides a case on its own."""
import numpy as np

from archval.harness.core.compare import compare_logits, compare_steps, decode_checks, logit_checks, position_checks
from archval.harness.core.record import message_of, verdict_of


def verdict(c, bound):
    """A position's verdict and message, as a record derives them from its checks."""
    checks = logit_checks(c, bound)
    return verdict_of(checks), message_of(checks)


def decode_verdict(d):
    checks = decode_checks(d)
    return verdict_of(checks), message_of(checks)

ORACLE = np.array([0.0, 3.0, 1.0, 2.999], np.float32)


def test_within_bound_and_same_argmax_passes():
    assert verdict(compare_logits(ORACLE, ORACLE + 1e-4), 1e-2) == ("PASS", "")


def test_error_above_bound_fails_naming_metric_value_and_bound():
    v, message = verdict(compare_logits(ORACLE, ORACLE + np.array([0, 0, 0.05, 0], np.float32)), 1e-2)
    assert v == "FAIL"
    assert "max |Δlogit| = 5.000e-02 at vocab index 2 exceeds the bound 1.0e-02" in message


def test_flip_within_twice_the_error_is_a_near_tie():
    graph = ORACLE + np.array([0, -0.001, 0, 0.001], np.float32)  # 3.0 vs 2.999 swap
    c = compare_logits(ORACLE, graph)
    assert not c.argmax_match and c.near_tie_flip(1e-2)
    assert verdict(c, 1e-2)[0] == "PASS"


def test_a_flip_is_a_near_tie_only_while_the_error_is_within_the_bound():
    """The same swap explained by an error over the bound is a failure, not a near tie."""
    graph = ORACLE + np.array([0, -0.001, 0, 0.05], np.float32)
    c = compare_logits(ORACLE, graph)
    assert not c.argmax_match and c.oracle_top2_gap <= 2 * c.max_abs_diff
    assert c.near_tie_flip(0.1) and not c.near_tie_flip(1e-2)
    assert [ch.status for ch in logit_checks(c, 1e-2)][-1] == "failed"


def test_a_single_position_flip_is_always_within_twice_the_error():
    """Why prefill needs no separate argmax rule: any top-1 swap implies gap <= 2 max|Δ|."""
    rng = np.random.default_rng(0)
    flips = 0
    for _ in range(2000):
        oracle = rng.standard_normal(8).astype(np.float32)
        c = compare_logits(oracle, oracle + rng.standard_normal(8).astype(np.float32) * 0.3)
        flips += not c.argmax_match
        assert c.argmax_match or c.oracle_top2_gap <= 2 * c.max_abs_diff
    assert flips > 100


def test_nan_or_inf_fails_with_its_own_message():
    for bad in (np.nan, np.inf):
        graph = ORACLE.copy()
        graph[3] = bad
        v, message = verdict(compare_logits(ORACLE, graph), 1e-2)
        assert v == "FAIL" and "NaN/Inf" in message


def _steps(deltas):
    """A 3-step continuation: the oracle's logits per step, and the graph's with the given deltas added."""
    oracle = np.array([[0.0, 3.0, 1.0, 2.0], [2.0, 0.0, 1.0, 1.999], [0.0, 1.0, 5.0, 0.5]], np.float32)
    return oracle, oracle + np.asarray(deltas, np.float32)


def test_decode_near_tie_divergence_is_reported_with_its_step_and_position():
    oracle, graph = _steps([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    graph[1, 0] -= 0.002  # 2.0 vs 1.999 swap at step 1
    d = compare_steps(oracle, graph, [12, 13, 14], 1e-2)
    assert (d.first_divergence, d.divergence) == (1, "near-tie flip")
    v, message = decode_verdict(d)
    assert v == "PASS" and "greedy diverges at step 1 (position 13): oracle 0, graph 3" in message
    logits, decode = d.results(oracle, graph)
    assert decode.steps == 2 and decode.first_divergence == 1 and not logits.argmax_match
    assert [s.graph_token for s in decode.timeline] == [1, 3, 2]


def test_decode_error_above_bound_names_the_step_position_and_vocab_index():
    oracle, graph = _steps([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0.2, 0, 0]])
    d = compare_steps(oracle, graph, [12, 13, 14], 1e-2)
    v, message = decode_verdict(d)
    assert v == "FAIL" and d.worst_step == 2 and d.first_divergence is None
    assert "max |Δlogit| = 2.000e-01 at step 2 (position 14), vocab index 1 exceeds the bound 1.0e-02" in message


def test_decode_nan_at_any_step_fails_naming_it():
    oracle, graph = _steps([[0, 0, 0, 0], [0, 0, 0, np.nan], [0, 0, 0, 0]])
    v, message = decode_verdict(compare_steps(oracle, graph, [12, 13, 14], 1e-2))
    assert v == "FAIL" and message.startswith("step 1: graph logits hold 1 NaN/Inf")


def test_decode_flip_that_needs_an_out_of_bound_error_is_a_failure():
    oracle, graph = _steps([[0, 0, 0, 0], [0, 0, 0.5, 0], [0, 0, 0, 0]])
    graph[1, 2] += 1.0  # a 1.5 error lifts token 2 over token 0 at step 1
    d = compare_steps(oracle, graph, [12, 13, 14], 1e-2)
    assert (d.first_divergence, d.divergence) == (1, "failure")
    assert decode_verdict(d)[0] == "FAIL"


def test_top_k_keeps_both_sides_highest_logits_with_nan_last():
    graph = ORACLE.copy()
    graph[1] = np.nan
    c = compare_logits(ORACLE, graph)
    assert c.oracle_top_k[:3] == ((1, 3.0), (3, 2.999), (2, 1.0))
    assert [i for i, _ in c.graph_top_k] == [3, 2, 0, 1]


def test_every_position_is_judged_when_prefill_returns_them_all():
    """A graph wrong at one early prompt position only fails there, and says where."""
    oracle = np.tile(ORACLE, (4, 1))
    graph = oracle.copy()
    graph[1, 2] += 0.05
    checks = position_checks(compare_steps(oracle, graph, range(4), 1e-2))
    bound = next(c for c in checks if c.name == "bound")
    assert bound.status == "failed" and "at position 1, vocab index 2" in bound.message, bound
    assert [c.status for c in position_checks(compare_steps(oracle, oracle, range(4), 1e-2))] == ["passed"] * 3
