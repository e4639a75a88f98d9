"""Honest intervals: Wilson for proportions (checked against statsmodels), bootstrap for the rest."""

from __future__ import annotations

import math

import pytest
from statsmodels.stats.proportion import proportion_confint

from harness.metrics import score
from harness.metrics.base import MetricValue, ScoringInput
from harness.metrics.intervals import (
    MIN_BOOTSTRAP_N,
    honest,
    interval_kind,
    is_proportion,
    small_sample_warning,
    wilson_interval,
)


@pytest.mark.parametrize(("k", "n"), [(0, 8), (8, 8), (32, 32), (29, 32), (3, 10), (0, 1), (50, 100)])
def test_wilson_matches_statsmodels(k: int, n: int) -> None:
    low, high = wilson_interval(k, n)
    expected_low, expected_high = proportion_confint(k, n, alpha=0.05, method="wilson")
    assert low == pytest.approx(expected_low, abs=1e-12)
    assert high == pytest.approx(expected_high, abs=1e-12)


def test_wilson_does_not_collapse_at_the_edges() -> None:
    # the case from issue 17: 32/32 right was shown as [1.000, 1.000]
    low, high = wilson_interval(32, 32)
    assert high == 1.0 and low == pytest.approx(0.8928, abs=1e-4)
    low, high = wilson_interval(0, 8)
    assert low == pytest.approx(0.0, abs=1e-12) and high == pytest.approx(0.3244, abs=1e-4)
    assert all(math.isnan(x) for x in wilson_interval(0, 0))


def test_only_a_mean_of_zero_one_scores_is_a_proportion() -> None:
    assert is_proportion(0.75, [1.0, 1.0, 0.0, 1.0])
    assert not is_proportion(0.8, [1.0, 1.0, 0.0, 1.0])  # a corpus F1 over per-example correctness
    assert not is_proportion(0.5, [0.5, 0.5])
    assert not is_proportion(None, [1.0])
    assert interval_kind(0.5, [1.0, 0.0]) == "wilson"
    assert interval_kind(0.5, [0.4, 0.6]) == "bootstrap"


def test_honest_replaces_only_proportion_intervals() -> None:
    collapsed = MetricValue(1.0, 1.0, 1.0)
    fixed = honest(collapsed, [1.0] * 32)
    assert (fixed.low, fixed.high) == pytest.approx(proportion_confint(32, 32, method="wilson"))
    graded = MetricValue(0.6, 0.5, 0.7)
    assert honest(graded, [0.5, 0.7]) is graded


def test_small_sample_warning_only_for_bootstrap_below_the_minimum() -> None:
    assert small_sample_warning("bootstrap", MIN_BOOTSTRAP_N - 1) is not None
    assert small_sample_warning("bootstrap", MIN_BOOTSTRAP_N) is None
    assert small_sample_warning("wilson", 4) is None
    assert small_sample_warning("bootstrap", None) is None


def test_score_gives_accuracy_wilson_and_f1_a_bootstrap_interval() -> None:
    labels = ["1", "1", "1", "1", "0", "0", "1", "0"]
    data = ScoringInput(predictions=labels, references=[(x,) for x in labels])  # all right
    report = score(["accuracy", "f1"], data, n_resamples=200)
    accuracy = report.corpus["accuracy"]
    assert accuracy.value == 1.0 and accuracy.high == 1.0
    assert accuracy.low == pytest.approx(proportion_confint(8, 8, method="wilson")[0])
    f1 = report.corpus["f1"]
    assert f1.value == f1.low == f1.high == 1.0  # the bootstrap of a perfect F1: why the page warns at small n
