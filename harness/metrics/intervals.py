"""Which confidence interval a metric value gets, and the Wilson interval for proportions.

A percentile bootstrap of a proportion collapses at 0 and 1: 32 right answers out of 32 give the
interval [1.000, 1.000], which looks certain and is not. When every per-example score of a mean
metric is 0 or 1 (accuracy, json_valid, schema_valid, and field F1 on data where each answer is
all right or all wrong), the value is a binomial proportion, and the Wilson score interval is the
standard remedy (Brown, Cai & DasGupta 2001): it never has zero width and stays inside [0, 1].
Every other value keeps its bootstrap interval, which is unreliable on few examples, so values
scored on fewer than `MIN_BOOTSTRAP_N` examples carry a warning wherever they are shown.

Stores written before this module existed hold bootstrap intervals for proportions too; the report
recomputes Wilson from the stored per-example scores of `KNOWN_PROPORTIONS`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from harness.metrics.base import Metric, MetricValue

IntervalKind = Literal["wilson", "bootstrap"]
CONFIDENCE = 0.95
# Below this many examples a percentile bootstrap interval is too narrow to trust (Efron & Tibshirani).
MIN_BOOTSTRAP_N = 30
# The built-in keys that are proportions (see `proportion_keys`), for reading stores without metric objects.
KNOWN_PROPORTIONS = frozenset({"accuracy", "json_valid", "schema_valid"})


def is_binary(values: Sequence[float]) -> bool:
    """True when there is at least one value and every value is exactly 0 or 1."""
    return bool(values) and all(value in (0.0, 1.0) for value in values)


def wilson_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Wilson score interval of successes / n (scipy's implementation); (nan, nan) when n is 0."""
    if n <= 0:
        return float("nan"), float("nan")
    from scipy.stats import binomtest

    interval = binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low), float(interval.high)


def proportion_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Wilson interval of the mean of 0/1 per-example scores."""
    return wilson_interval(int(round(sum(values))), len(values), confidence)


def is_proportion(value: float | None, values: Sequence[float]) -> bool:
    """True when `value` is the share of 1s among 0/1 per-example scores.

    Checking the value against the mean (not the metric's name) keeps corpus metrics out: binary F1
    and MCC store per-example correctness, but their corpus value is not its mean.
    """
    if value is None or math.isnan(value) or not is_binary(values):
        return False
    return abs(value - sum(values) / len(values)) <= 1e-9


def interval_kind(value: float | None, values: Sequence[float]) -> IntervalKind:
    """Wilson for a proportion; bootstrap for anything else."""
    return "wilson" if is_proportion(value, values) else "bootstrap"


def honest(value: MetricValue, values: Sequence[float], confidence: float = CONFIDENCE) -> MetricValue:
    """`value` with its Wilson interval when it is a proportion of `values`, else unchanged."""
    if not is_proportion(value.value, values):
        return value
    low, high = proportion_interval(values, confidence)
    return MetricValue(value.value, low, high)


def proportion_keys(metric: Metric) -> frozenset[str]:
    """The keys of `metric` whose corpus value is a mean of per-example scores.

    A metric may list them as `proportions` (json_fields: json_valid and schema_valid); otherwise
    all keys of a mean metric qualify and none of a corpus metric (F1 is 1.0 when every example is
    right, like accuracy, but its interval is not a binomial one).
    """
    declared = getattr(metric, "proportions", None)
    if declared is not None:
        return frozenset(declared)
    return frozenset(metric.names) if metric.is_mean else frozenset()


def honest_all(
    corpus: Mapping[str, MetricValue], per_example: Sequence[Mapping[str, float]], keys: Iterable[str]
) -> dict[str, MetricValue]:
    """`corpus` with the Wilson interval for each of `keys` whose per-example scores make it a proportion."""
    chosen = set(keys)
    result = dict(corpus)
    for key in chosen & set(corpus):
        values = [row[key] for row in per_example if key in row]
        if values and len(values) == len(per_example):
            result[key] = honest(corpus[key], values)
    return result


def small_sample_warning(kind: IntervalKind, n: int | None) -> str | None:
    """A sentence to show beside a bootstrap interval made from too few examples, else None."""
    if kind == "bootstrap" and n is not None and n < MIN_BOOTSTRAP_N:
        return f"bootstrap interval on n={n} < {MIN_BOOTSTRAP_N} examples: likely too narrow"
    return None
