"""Spectral diagnostics vs quality: Spearman over a task's adapters, checked against scipy."""

from __future__ import annotations

from itertools import permutations

import numpy as np
import pytest
from scipy.stats import spearmanr

from harness.metrics.base import MetricValue
from harness.report.leaderboard import collect_rows, task_boards
from harness.report.spectral_quality import FEW_NOTE, adapter_summary, permutation_p, spearman_with_interval, task_correlations
from harness.store import Store

STABLE_RANKS = [1.1, 1.9, 2.5, 3.0, 4.2, 5.0]
SCORES = [0.30, 0.35, 0.62, 0.60, 0.81, 0.90]


def _layer(stable_rank: float, effective_rank: float, primary: bool = True) -> dict[str, object]:
    return {"record": "layer", "primary": primary, "stable_rank": stable_rank, "effective_rank": effective_rank,
            "relative_update": 0.01, "ww_alpha": float("nan")}


def _store(tmp_path, adapters: int) -> Store:
    store = Store(tmp_path / "s.sqlite")
    store.start_run("r1", {})
    base = store.upsert_cell("r1", "base", {"base": "b", "task": "t", "split": "test", "settings_json": {}, "status": "done"})
    store.set_metrics(base, {"accuracy": MetricValue(0.2, 0.1, 0.3)})
    for i in range(adapters):
        cell = store.upsert_cell("r1", f"a{i}", {"base": "b", "adapter": f"lora_{i}", "adapter_hash": f"h{i}", "task": "t",
                                                 "split": "test", "settings_json": {}, "status": "done"})
        store.set_metrics(cell, {"accuracy": MetricValue(SCORES[i], SCORES[i] - 0.1, SCORES[i] + 0.1)})
        # two layers whose median is the stable rank; a non-primary (DoRA full-delta) row must be ignored
        store.set_spectra(f"h{i}", [_layer(STABLE_RANKS[i] - 0.1, 2.0), _layer(STABLE_RANKS[i] + 0.1, 2.0), _layer(99.0, 99.0, False)])
    return store


def test_adapter_summary_takes_medians_of_finite_primary_values() -> None:
    summary = adapter_summary([_layer(1.0, 3.0), _layer(3.0, 5.0), _layer(50.0, 50.0, primary=False)])
    assert summary["stable_rank"] == pytest.approx(2.0) and summary["effective_rank"] == pytest.approx(4.0)
    assert "ww_alpha" not in summary  # NaN everywhere: no value, not a NaN correlation


def test_rho_matches_scipy_and_the_interval_contains_it(tmp_path) -> None:
    store = _store(tmp_path, 6)
    [board] = task_boards(collect_rows(store))
    rows = {r.diagnostic: r for r in task_correlations(store, board)}
    expected = spearmanr(STABLE_RANKS, SCORES)
    stable = rows["stable rank"]
    assert stable.n == 6 and stable.metric == "accuracy"
    assert stable.rho == pytest.approx(expected.statistic) and stable.p_value == pytest.approx(_exact_p(STABLE_RANKS, SCORES))
    assert stable.low <= stable.rho <= stable.high and stable.note == FEW_NOTE  # 6 adapters: the interval is flagged
    assert rows["effective rank"].rho is None  # constant diagnostic: undefined, said so
    assert rows["weightwatcher alpha"].n == 0 and rows["weightwatcher alpha"].rho is None


def test_too_few_adapters_give_no_correlation(tmp_path) -> None:
    store = _store(tmp_path, 3)
    [board] = task_boards(collect_rows(store))
    stable = next(r for r in task_correlations(store, board) if r.diagnostic == "stable rank")
    assert stable.n == 3 and stable.rho is None and "at least 4" in stable.note


def test_the_bootstrap_is_seeded() -> None:
    x, y = np.arange(8.0), np.array([1, 3, 2, 5, 4, 7, 6, 8.0])
    assert spearman_with_interval(x, y, seed=3) == spearman_with_interval(x, y, seed=3)


def test_the_vectorised_bootstrap_equals_scipy_on_each_resample() -> None:
    x, y = np.array([3.0, 1, 4, 1, 5, 9, 2, 6]), np.array([2.0, 7, 1, 8, 2, 8, 1, 8])
    rho, low, high, _ = spearman_with_interval(x, y, seed=5)
    index = np.random.default_rng(5).integers(0, len(x), (2000, len(x)))
    draws = [spearmanr(x[i], y[i]).statistic for i in index if np.ptp(x[i]) > 0 and np.ptp(y[i]) > 0]
    assert rho == pytest.approx(spearmanr(x, y).statistic)
    assert (low, high) == pytest.approx((np.percentile(draws, 2.5), np.percentile(draws, 97.5)))


def test_the_report_shows_the_correlations_on_the_task_page_and_exports_them(tmp_path) -> None:
    from harness.report.site import task_page, write_report

    store = _store(tmp_path, 6)
    out = tmp_path / "site"
    write_report(store, out)
    page = (out / task_page("t")).read_text(encoding="utf-8")
    expected = spearmanr(STABLE_RANKS, SCORES).statistic
    assert "Do spectral diagnostics predict accuracy?" in page and f"{expected:+.2f}" in page
    exported = (out / "spectral_quality.md").read_text(encoding="utf-8")
    assert f"| t | b | accuracy | stable rank | 6 | {expected:+.2f} [" in exported


def _exact_p(x: list[float], y: list[float]) -> float:
    """Two-sided p over every pairing of x with y, by brute force."""
    observed = abs(spearmanr(x, y).statistic)
    rhos = [abs(spearmanr(list(order), y).statistic) for order in permutations(x)]
    return sum(r >= observed - 1e-12 for r in rhos) / len(rhos)


def test_four_adapters_in_perfect_order_are_not_significant() -> None:
    """scipy's t approximation says p = 0 for rho = 1 at n = 4; one pairing in 12 is that good by chance."""
    x, y = [1.0, 2.0, 3.0, 4.0], [0.2, 0.4, 0.5, 0.9]
    rho, low, high, p = spearman_with_interval(x, y)
    assert rho == pytest.approx(1.0) and (low, high) == (1.0, 1.0)  # the collapsed interval the note warns about
    assert p == pytest.approx(2 / 24) and permutation_p(x, y) == pytest.approx(_exact_p(x, y))


def test_the_markdown_never_prints_a_permutation_p_as_zero() -> None:
    """A permutation p is at least 1/(resamples + 1): 0.000 would claim what the test cannot."""
    from harness.report.spectral_quality import SpectralQuality, to_markdown

    rows = [SpectralQuality("t", "b", "acc", "stable rank", 10, 0.98, 0.81, 1.0, 1e-4),
            SpectralQuality("t", "b", "acc", "effective rank", 10, 0.5, -0.2, 0.9, 0.1374),
            SpectralQuality("t", "b", "acc", "weightwatcher alpha", 0, None, None, None, None)]
    lines = to_markdown(rows).splitlines()
    assert lines[2].endswith("| +0.98 [+0.81, +1.00] | <0.001 |")
    assert lines[3].endswith("| 0.137 |") and lines[4].endswith("| n/a | n/a |")
