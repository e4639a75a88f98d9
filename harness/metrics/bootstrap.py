"""Percentile bootstrap confidence intervals for any Metric, seeded and vectorised where possible.

A resample is a vector of n example indices drawn with replacement. Three ways to score one:
1. Mean metrics (`is_mean`): the mean of the resampled rows of the per-example score matrix.
2. Decomposable corpus metrics (they have `sufficient_stats` and `score_from_stats`, see `SummableMetric`):
   per-example sufficient statistics (BLEU n-gram matches, TP/FP/FN, confusion counts) are
   summed over the resample and the corpus score is recomputed from the sums. That is the same
   computation as `corpus()` on the resampled examples (corpus BLEU recomputed, not averaged),
   without re-tokenising anything.
3. Any other corpus metric (e.g. an `evaluate` plugin): `metric.corpus` on the resampled data.

Both 1 and 2 use a resample-count matrix W (W[r, i] = how often example i is in resample r), so a
resample's sums are one matrix product. `paired_resample_indices` and `resampled_values` are
public so that the regression gate resamples both sides of a comparison with the same indices.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from harness.metrics.base import Metric, MetricValue, ScoringInput, SummableMetric

# Resamples are processed in blocks so the count matrix stays near this many entries (~32 MB).
_BLOCK_ENTRIES = 4_000_000


def paired_resample_indices(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """An (n_resamples, n) int array of example indices drawn with replacement, seeded."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(n_resamples, n), dtype=np.int64) if n else np.zeros((n_resamples, 0), np.int64)


def _count_blocks(indices: np.ndarray, n: int) -> Iterator[np.ndarray]:
    """Resample-count matrices for consecutive blocks of resamples."""
    block = max(1, _BLOCK_ENTRIES // max(n, 1))
    for start in range(0, len(indices), block):
        chunk = indices[start : start + block]
        counts = np.zeros((len(chunk), n), dtype=np.float64)
        rows = np.repeat(np.arange(len(chunk)), chunk.shape[1])
        np.add.at(counts, (rows, chunk.ravel()), 1.0)
        yield counts


def resampled_sums(matrix: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """(n_resamples, n_columns): each resample's column sums of `matrix`."""
    blocks = [counts @ matrix for counts in _count_blocks(indices, matrix.shape[0])]
    return np.vstack(blocks) if blocks else np.zeros((0, matrix.shape[1]))


def _subset(data: ScoringInput, rows: np.ndarray) -> ScoringInput:
    labels = [data.labels[i] for i in rows] if len(data.labels) == len(data.predictions) else []
    return ScoringInput(
        predictions=[data.predictions[i] for i in rows],
        references=[data.references[i] for i in rows],
        labels=labels,
    )


def per_example_matrix(per_example: Sequence[dict[str, float]], keys: Sequence[str]) -> np.ndarray:
    return np.asarray([[row[key] for key in keys] for row in per_example], dtype=np.float64).reshape(
        len(per_example), len(keys)
    )


def _mean_keys(metric: Metric, per_example: Sequence[dict[str, float]]) -> list[str] | None:
    """The keys to resample as means, or None when the metric is not a mean (or has no rows)."""
    return list(per_example[0]) if metric.is_mean and per_example else None


def _scores_of_rows(metric: SummableMetric, totals: np.ndarray) -> dict[str, np.ndarray]:
    scored = [metric.score_from_stats(row) for row in totals]
    keys = list(scored[0]) if scored else []
    return {key: np.asarray([values[key] for values in scored], dtype=np.float64) for key in keys}


def point_values(metric: Metric, data: ScoringInput, per_example: Sequence[dict[str, float]]) -> dict[str, float]:
    """The metric on the whole data, computed the same way its resamples are."""
    keys = _mean_keys(metric, per_example)
    if keys is not None:
        return dict(zip(keys, per_example_matrix(per_example, keys).mean(axis=0).tolist()))
    return metric.corpus(data)


def resampled_values(
    metric: Metric, data: ScoringInput, per_example: Sequence[dict[str, float]], indices: np.ndarray
) -> dict[str, np.ndarray]:
    """The metric's corpus values on every resample: key -> array of n_resamples values."""
    n = len(data.predictions)
    keys = _mean_keys(metric, per_example)
    if keys is not None:
        sums = resampled_sums(per_example_matrix(per_example, keys), indices)
        return {key: sums[:, column] / n for column, key in enumerate(keys)}
    if isinstance(metric, SummableMetric):
        return _scores_of_rows(metric, resampled_sums(metric.sufficient_stats(data), indices))
    scored = [metric.corpus(_subset(data, rows)) for rows in indices]
    keys = list(scored[0]) if scored else []
    return {key: np.asarray([values[key] for values in scored], dtype=np.float64) for key in keys}


def _point_and_samples(
    metric: Metric, data: ScoringInput, per_example: Sequence[dict[str, float]], indices: np.ndarray
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    # a summable corpus metric extracts its statistics once for the point value and the resamples
    if _mean_keys(metric, per_example) is None and isinstance(metric, SummableMetric):
        stats = metric.sufficient_stats(data)
        point = metric.score_from_stats(stats.sum(axis=0))
        return point, _scores_of_rows(metric, resampled_sums(stats, indices)) if len(indices) else {}
    point = point_values(metric, data, per_example)
    return point, resampled_values(metric, data, per_example, indices) if len(indices) else {}


def bootstrap_interval(
    metric: Metric,
    data: ScoringInput,
    per_example: list[dict[str, float]],
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, MetricValue]:
    """Point value and percentile-bootstrap interval for every key of `metric`.

    Same seed, same interval. With no examples or no resamples the interval is the point value.
    """
    n = len(data.predictions)
    resamples = n_resamples if n and n_resamples > 0 else 0
    point, samples = _point_and_samples(metric, data, per_example, paired_resample_indices(n, resamples, seed))
    if not resamples:
        return {key: MetricValue(value, value, value) for key, value in point.items()}
    tail = (1.0 - confidence) / 2.0 * 100.0
    result: dict[str, MetricValue] = {}
    for key, value in point.items():
        values = samples.get(key)
        if values is None or np.all(np.isnan(values)):
            result[key] = MetricValue(float(value), float("nan"), float("nan"))
            continue
        low, high = np.nanpercentile(values, [tail, 100.0 - tail])
        result[key] = MetricValue(float(value), float(low), float(high))
    return result
