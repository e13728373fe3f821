"""The verdict logic on hand-made logits: each rule decides a case on its own."""
import numpy as np

from harness.compare import compare_logits, verdict

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
    assert not c.argmax_match and c.near_tie_flip
    assert verdict(c, 1e-2)[0] == "PASS"


def test_a_single_position_flip_is_always_within_twice_the_error():
    """Why prefill needs no separate argmax rule: any top-1 swap implies gap <= 2 max|Δ|."""
    rng = np.random.default_rng(0)
    flips = 0
    for _ in range(2000):
        oracle = rng.standard_normal(8).astype(np.float32)
        c = compare_logits(oracle, oracle + rng.standard_normal(8).astype(np.float32) * 0.3)
        flips += not c.argmax_match
        assert c.argmax_match or c.near_tie_flip
    assert flips > 100


def test_nan_or_inf_fails_with_its_own_message():
    for bad in (np.nan, np.inf):
        graph = ORACLE.copy()
        graph[3] = bad
        v, message = verdict(compare_logits(ORACLE, graph), 1e-2)
        assert v == "FAIL" and "NaN/Inf" in message
