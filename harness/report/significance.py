"""Which leaderboard rows are statistically indistinguishable: significance tiers and a pairwise matrix.

A star on the highest point estimate says nothing when 32 examples separate 1.000 from 0.938. Here
every comparison is paired (the same examples under both rows) and uses the per-example scores
the store keeps:
- When both rows' per-example scores are all 0 or 1 (accuracy, json_valid, schema_valid) the test is
  McNemar's exact test: under "no difference" the discordant examples split Binomial(b + c, 1/2).
- Otherwise a paired bootstrap: resample examples, recompute the mean difference; the two-sided
  p-value is the normal one of the observed difference over the bootstrap standard error,
  2 * Phi(-|delta| / se). The share of centred resamples at least as extreme cannot fall below
  1 / (resamples + 1), and Holm multiplies the smallest p by the number of pairs: with 16 rows (120
  pairs) and 2000 resamples no pair could ever be significant, so every win rate was a tie.
The interval of a difference is always the 95% percentile interval of the paired bootstrap
(scipy.stats.bootstrap, paired=True).

Tiers: the row with the best point value leads tier 1; every other row is tested against it,
Holm-corrected over those tests; the rows not significantly worse join tier 1. The rest repeat the
procedure for tier 2, and so on. The matrix Holm-corrects over all pairs of the task.
Rows scored on different example sets are compared on the examples they share, and the board says so.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from harness.gate.decide import discordant_pairs, holm, mcnemar_exact
from harness.metrics.intervals import is_binary

ALPHA = 0.05
N_RESAMPLES = 2000
SEED = 0

TestKind = Literal["mcnemar", "bootstrap", "none"]
# per row: example id -> that example's score on the metric under test
Scores = Mapping[str, float]


@dataclass(frozen=True)
class PairResult:
    """Row a against row b on the examples both were scored on (delta = a - b)."""

    n: int
    delta: float
    low: float
    high: float
    p: float
    test: TestKind
    p_adjusted: float = math.nan


@dataclass
class Significance:
    """The tiers and the pairwise matrix of one task's metric."""

    metric: str
    order: list[Hashable]  # rows by point value, best first
    tiers: dict[Hashable, int] = field(default_factory=dict)
    pairs: dict[tuple[Hashable, Hashable], PairResult] = field(default_factory=dict)
    same_examples: bool = True
    alpha: float = ALPHA

    def pair(self, a: Hashable, b: Hashable) -> PairResult | None:
        """The test of a against b (delta = a - b), whichever order it was computed in."""
        if (a, b) in self.pairs:
            return self.pairs[(a, b)]
        found = self.pairs.get((b, a))
        if found is None:
            return None
        return PairResult(found.n, -found.delta, -found.high, -found.low, found.p, found.test, found.p_adjusted)


def paired_test(a: Sequence[float], b: Sequence[float], n_resamples: int = N_RESAMPLES, seed: int = SEED) -> PairResult:
    """Paired comparison of two aligned score vectors: delta = mean(a) - mean(b), its interval and p."""
    import numpy as np

    n = len(a)
    if n != len(b):
        raise ValueError("paired scores must be aligned and of one length")
    if n == 0:
        return PairResult(0, math.nan, math.nan, math.nan, 1.0, "none")
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    delta = float(x.mean() - y.mean())
    low, high, distribution = _bootstrap_difference(x, y, n_resamples, seed)
    if is_binary(list(a)) and is_binary(list(b)):
        # discordant_pairs(baseline, candidate): (right only for b, right only for a)
        only_b, only_a = discordant_pairs(list(b), list(a))
        return PairResult(n, delta, low, high, mcnemar_exact(only_b, only_a), "mcnemar")
    if distribution is None:
        return PairResult(n, delta, low, high, 1.0 if delta == 0 else 0.0, "bootstrap")
    return PairResult(n, delta, low, high, bootstrap_p(delta, distribution), "bootstrap")


def bootstrap_p(delta: float, distribution: object) -> float:
    """Two-sided p of `delta` from its bootstrap distribution's standard error (no 1/(B+1) floor)."""
    import numpy as np
    from scipy.stats import norm

    se = float(np.std(np.asarray(distribution), ddof=1))
    if se == 0 or not math.isfinite(se):
        return 1.0 if delta == 0 else 0.0
    return float(min(1.0, 2.0 * norm.sf(abs(delta) / se)))


def _bootstrap_difference(x: object, y: object, n_resamples: int, seed: int) -> tuple[float, float, object | None]:
    """Percentile interval and resampled distribution of mean(x - y); None when nothing varies."""
    import numpy as np
    from scipy.stats import bootstrap

    differences = np.asarray(x) - np.asarray(y)
    if len(differences) < 2 or np.all(differences == differences[0]):
        value = float(differences.mean())
        return value, value, None  # every resample is the same: the interval is the point
    result = bootstrap(
        (np.asarray(x), np.asarray(y)),
        lambda u, v, axis: np.mean(u - v, axis=axis),
        paired=True,
        vectorized=True,
        n_resamples=n_resamples,
        method="percentile",
        confidence_level=0.95,
        rng=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return float(interval.low), float(interval.high), result.bootstrap_distribution


def aligned(a: Scores, b: Scores) -> tuple[list[float], list[float]]:
    """The scores of the examples both rows have, in one order."""
    shared = sorted(set(a) & set(b))
    return [float(a[i]) for i in shared], [float(b[i]) for i in shared]


def significance(
    metric: str,
    values: Mapping[Hashable, float],
    scores: Mapping[Hashable, Scores],
    alpha: float = ALPHA,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> Significance:
    """Tiers and pairwise tests for the rows that have both a point value and per-example scores.

    `values` orders the rows (the corpus value, best = highest); `scores` are what is tested.
    """
    rows = sorted((key for key in values if key in scores and scores[key]), key=lambda key: -values[key])
    result = Significance(metric, rows, alpha=alpha)
    if not rows:
        return result
    example_sets = {frozenset(scores[key]) for key in rows}
    result.same_examples = len(example_sets) == 1
    for i, a in enumerate(rows):
        for b in rows[i + 1 :]:
            result.pairs[(a, b)] = paired_test(*aligned(scores[a], scores[b]), n_resamples=n_resamples, seed=seed)
    keys = list(result.pairs)
    for key, adjusted in zip(keys, holm([result.pairs[k].p for k in keys])):
        pair = result.pairs[key]
        result.pairs[key] = PairResult(pair.n, pair.delta, pair.low, pair.high, pair.p, pair.test, adjusted)
    result.tiers = tiers(rows, result, alpha)
    return result


def tiers(order: Sequence[Hashable], tested: Significance, alpha: float = ALPHA) -> dict[Hashable, int]:
    """Tier 1 = the leader and every row not significantly worse (Holm over the leader's tests); repeat."""
    assigned: dict[Hashable, int] = {}
    remaining = list(order)
    tier = 1
    while remaining:
        leader, others = remaining[0], remaining[1:]
        raw = [_p(tested.pair(leader, other)) for other in others]
        adjusted = holm(raw) if raw else []
        members = [leader] + [other for other, p in zip(others, adjusted) if p >= alpha]
        for member in members:
            assigned[member] = tier
        remaining = [row for row in remaining if row not in assigned]
        tier += 1
    return assigned


def _p(pair: PairResult | None) -> float:
    return 1.0 if pair is None else pair.p


def format_p(value: float | None) -> str:
    """A p-value as the tables print it: a permutation or bootstrap p is never exactly 0, so '<0.001'."""
    if value is None:
        return "–"
    return "<0.001" if value < 0.001 else f"{value:.3f}"
