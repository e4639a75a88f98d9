"""Significance tiers and pairwise tests, checked against scipy and statsmodels on fixed data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest
from scipy.stats import bootstrap as scipy_bootstrap
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from harness.gate.decide import holm
from harness.report.significance import aligned, paired_test, significance

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
