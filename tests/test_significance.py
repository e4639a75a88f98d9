"""Significance tiers and pairwise tests, checked against scipy and statsmodels on fixed data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest
from scipy.stats import bootstrap as scipy_bootstrap
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from harness.gate.decide import holm
from harness.metrics.bootstrap import paired_resample_indices
from harness.report.significance import (
    CorpusStats,
    CorpusTester,
    aligned,
    bootstrap_p,
    paired_corpus_test,
    paired_test,
    significance,
)

# 32 examples, as in issue 17: r8 gets all right, r4 misses 2, base misses 16
R8 = [1.0] * 32
R4 = [1.0] * 30 + [0.0, 0.0]
BASE = [float(i % 2) for i in range(32)]


def _ids(values: list[float]) -> dict[str, float]:
    return {f"ex{i:02d}": v for i, v in enumerate(values)}


def test_mcnemar_matches_scipy_binomtest_and_statsmodels() -> None:
    a = [1, 1, 1, 0, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 0, 1, 1, 1]
    b = [1, 0, 0, 0, 1, 0, 0, 1, 0, 1, 0, 1, 0, 1, 1, 0, 1, 1, 0, 1]
    result = paired_test([float(x) for x in a], [float(x) for x in b])
    only_a = sum(1 for x, y in zip(a, b) if x == 1 and y == 0)
    only_b = sum(1 for x, y in zip(a, b) if x == 0 and y == 1)
    assert result.test == "mcnemar"
    assert result.p == pytest.approx(binomtest(only_a, only_a + only_b, 0.5).pvalue, abs=1e-12)
    table = [[sum(1 for x, y in zip(a, b) if x == i and y == j) for j in (1, 0)] for i in (1, 0)]
    assert result.p == pytest.approx(mcnemar(table, exact=True).pvalue, abs=1e-12)
    assert result.delta == pytest.approx(np.mean(a) - np.mean(b))
    assert result.low <= result.delta <= result.high


def test_holm_matches_statsmodels() -> None:
    p = [0.01, 0.04, 0.03, 0.20, 0.005]
    assert holm(p) == pytest.approx(list(multipletests(p, method="holm")[1]))


def test_bootstrap_interval_matches_scipy_and_p_is_small_for_a_clear_difference() -> None:
    rng = np.random.default_rng(7)
    a = rng.uniform(0.4, 1.0, 60)
    b = a - 0.1 + rng.normal(0, 0.05, 60)
    result = paired_test(list(a), list(b), n_resamples=4000, seed=3)
    reference = scipy_bootstrap((a - b,), np.mean, n_resamples=4000, method="percentile", rng=np.random.default_rng(11))
    assert result.test == "bootstrap"
    assert result.low == pytest.approx(reference.confidence_interval.low, abs=0.005)
    assert result.high == pytest.approx(reference.confidence_interval.high, abs=0.005)
    assert result.p < 0.001
    noise = rng.normal(0, 0.05, 60)
    same = paired_test(list(a), list(a + noise - noise.mean() + 0.001), n_resamples=4000)  # a difference of 0.001
    assert same.p > 0.5 and same.low < 0 < same.high


def test_bootstrap_p_has_no_resample_floor_so_holm_over_many_pairs_can_still_decide() -> None:
    """16 rows are 120 pairs: a p floored at 1/(B+1) = 1/2001 times 120 is 0.06, never significant."""
    rng = np.random.default_rng(5)
    a = rng.uniform(0.6, 1.0, 40)
    clear = paired_test(list(a), list(a - 0.3 + rng.normal(0, 0.05, 40)))
    assert clear.test == "bootstrap" and clear.p < 0.05 / 120
    values = {f"r{i}": 0.9 - 0.02 * i for i in range(16)}
    scores = {f"r{i}": {f"e{j}": float(a[j] - (0.3 if i else 0) + rng.normal(0, 0.05)) for j in range(40)} for i in range(16)}
    tested = significance("f1", values, scores)
    assert len(tested.pairs) == 120
    pair = tested.pair("r0", "r1")
    assert pair is not None and pair.p_adjusted < 0.05  # the clear difference survives Holm over 120 pairs


def test_identical_rows_are_tied() -> None:
    result = paired_test([0.5, 0.7, 0.2], [0.5, 0.7, 0.2])
    assert result.delta == 0 and result.p == 1.0 and result.low == result.high == 0


def test_issue_17_case_top_rows_share_tier_one_and_base_is_below() -> None:
    values = {"r8": 1.0, "r4": 30 / 32, "base": 0.5}
    scores = {"r8": _ids(R8), "r4": _ids(R4), "base": _ids(BASE)}
    tested = significance("accuracy", values, scores)
    assert tested.order == ["r8", "r4", "base"]
    assert tested.tiers == {"r8": 1, "r4": 1, "base": 2}
    assert tested.same_examples
    # r8 vs base: 16 discordant examples all one way, Holm over three pairs
    raw = binomtest(16, 16, 0.5).pvalue
    pair = tested.pair("base", "r8")
    assert pair is not None and pair.p == pytest.approx(raw) and pair.delta == pytest.approx(-0.5)
    assert pair.p_adjusted == pytest.approx(multipletests([tested.pairs[k].p for k in tested.pairs], method="holm")[1][1])


def test_rows_on_different_examples_are_compared_on_the_shared_ones() -> None:
    scores = {"a": {"x": 1.0, "y": 1.0, "z": 0.0}, "b": {"y": 0.0, "z": 0.0}}
    assert aligned(scores["a"], scores["b"]) == ([1.0, 0.0], [0.0, 0.0])
    tested = significance("accuracy", {"a": 2 / 3, "b": 0.0}, scores)
    assert not tested.same_examples
    pair = tested.pair("a", "b")
    assert pair is not None and pair.n == 2


def test_rows_without_scores_get_no_tier() -> None:
    tested = significance("accuracy", {"a": 1.0, "b": 0.5}, {"a": _ids(R8)})
    assert tested.tiers == {"a": 1} and tested.pairs == {}


# ------------------------------------------------------------------ corpus metrics (micro F1 of TP/FP/FN)


def _micro_f1(totals: np.ndarray) -> float:
    tp, fp, fn = totals
    return 0.0 if tp == 0 else float(2 * tp / (2 * tp + fp + fn))


def _f1_rows(counts: list[tuple[int, int, int]]) -> dict[str, np.ndarray]:
    return {f"ex{i:02d}": np.asarray(c, dtype=np.float64) for i, c in enumerate(counts)}


# Row A is perfect on 10 short examples and empty on 2 long ones; row B gets 60% of everything. The mean of
# per-example F1 says A (0.83 vs 0.60); the micro F1 the board prints says B (0.60 vs 0.25).
A_COUNTS = [(1, 0, 0)] * 10 + [(0, 0, 30)] * 2
B_COUNTS = [(3, 2, 2)] * 10 + [(18, 12, 12)] * 2


def _per_example_f1(counts: list[tuple[int, int, int]]) -> dict[str, float]:
    return {key: _micro_f1(row) for key, row in _f1_rows(counts).items()}


def test_a_corpus_metric_is_tested_on_the_value_the_board_prints() -> None:
    a, b = _f1_rows(A_COUNTS), _f1_rows(B_COUNTS)
    value_a, value_b = _micro_f1(sum(a.values())), _micro_f1(sum(b.values()))
    assert value_b > value_a and np.mean(list(_per_example_f1(A_COUNTS).values())) > np.mean(list(_per_example_f1(B_COUNTS).values()))
    corpus = CorpusStats({"A": a, "B": b}, _micro_f1)
    tested = significance("field_f1", {"A": value_a, "B": value_b}, {}, corpus=corpus)
    pair = tested.pair("B", "A")
    assert pair.test == "corpus bootstrap" and pair.n == 12
    assert pair.delta == pytest.approx(value_b - value_a)  # the gap between the printed values
    assert pair.low <= pair.delta <= pair.high
    # the same rows tested on per-example means point the other way
    means = significance("field_f1", {"A": value_a, "B": value_b}, {"A": _per_example_f1(A_COUNTS), "B": _per_example_f1(B_COUNTS)})
    assert means.pair("B", "A").delta < 0 < pair.delta


def test_corpus_bootstrap_matches_a_resample_by_resample_recomputation() -> None:
    rng = np.random.default_rng(3)
    a = rng.integers(0, 6, size=(25, 3)).astype(np.float64)
    b = rng.integers(0, 6, size=(25, 3)).astype(np.float64)
    pair = paired_corpus_test(a, b, _micro_f1, n_resamples=2000, seed=7)
    # by hand: draw the same indices, recompute both corpus values on each resampled corpus
    indices = paired_resample_indices(25, 2000, 7)
    by_hand = np.asarray([_micro_f1(a[row].sum(axis=0)) - _micro_f1(b[row].sum(axis=0)) for row in indices])
    low, high = np.percentile(by_hand, [2.5, 97.5])
    assert (pair.low, pair.high) == pytest.approx((low, high))
    assert pair.p == pytest.approx(bootstrap_p(pair.delta, by_hand))
    # the memoised tester over rows keyed by example id gives the same test
    ids = [f"ex{i:02d}" for i in range(25)]
    tester = CorpusTester(CorpusStats({"a": dict(zip(ids, a)), "b": dict(zip(ids, b))}, _micro_f1), 2000, 7)
    assert tester.test("a", "b") == pair


def test_corpus_rows_on_different_examples_are_compared_on_the_shared_ones() -> None:
    a, b = _f1_rows(A_COUNTS), _f1_rows(B_COUNTS)
    short_b = {key: b[key] for key in list(b)[:10]}  # B scored only on the 10 short examples, where A is perfect
    corpus = CorpusStats({"A": a, "B": short_b}, _micro_f1)
    tested = significance("field_f1", {"A": 0.25, "B": 0.6}, {}, corpus=corpus)
    pair = tested.pair("A", "B")
    assert not tested.same_examples and pair.n == 10
    assert pair.delta == pytest.approx(1.0 - 0.6)
