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
- A corpus metric (field_f1, BLEU, MCC: not the mean of its per-example scores) is tested on the value
  the board prints when its per-example sufficient statistics are given (`CorpusStats`): each resample
  sums both rows' statistics over the same drawn examples and recomputes both corpus values
  ("corpus bootstrap"). Testing the per-example means instead tests a different number: resume_json
  r16 - r8 is +0.125 in mean per-example F1 but +0.091 in the field F1 the board shows.

Tiers: the row with the best point value leads tier 1; every other row is tested against it,
Holm-corrected over those tests; the rows not significantly worse join tier 1. The rest repeat the
procedure for tier 2, and so on. The matrix Holm-corrects over all pairs of the task.
Rows scored on different example sets are compared on the examples they share, and the board says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from harness.gate.decide import discordant_pairs, holm, mcnemar_exact
from harness.metrics.intervals import is_binary

if TYPE_CHECKING:
    import numpy as np

ALPHA = 0.05
N_RESAMPLES = 2000
SEED = 0

TestKind = Literal["mcnemar", "bootstrap", "corpus bootstrap", "none"]
# per row: example id -> that example's score on the metric under test
Scores = Mapping[str, float]


@dataclass(frozen=True)
class CorpusStats:
    """A corpus metric's additive per-example statistics per row, and its value from summed statistics."""

    rows: Mapping[Hashable, Mapping[str, np.ndarray]]  # row -> example id -> statistics vector (s,)
    value_of: Callable[[np.ndarray], float]  # statistics summed over a corpus -> the metric


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


def paired_corpus_test(
    a: np.ndarray, b: np.ndarray, value_of: Callable[[np.ndarray], float], n_resamples: int = N_RESAMPLES, seed: int = SEED
) -> PairResult:
    """Corpus value of a minus that of b on aligned statistics (n, s), resampling whole examples of both."""
    if len(a) != len(b):
        raise ValueError("paired statistics must be aligned and of one length")
    if len(a) == 0:
        return PairResult(0, math.nan, math.nan, math.nan, 1.0, "none")
    delta = value_of(a.sum(axis=0)) - value_of(b.sum(axis=0))
    # same n, same seed: the same drawn examples for a and b, so the difference is paired
    distribution = corpus_samples(a, value_of, n_resamples, seed) - corpus_samples(b, value_of, n_resamples, seed)
    return corpus_difference(len(a), delta, distribution)


def corpus_samples(stats: np.ndarray, value_of: Callable[[np.ndarray], float], n_resamples: int, seed: int) -> np.ndarray:
    """The corpus value on each bootstrap resample of the examples (rows of `stats`), seeded by (n, seed)."""
    import numpy as np

    from harness.metrics.bootstrap import paired_resample_indices, resampled_sums

    indices = paired_resample_indices(len(stats), n_resamples, seed)
    return np.asarray([value_of(totals) for totals in resampled_sums(stats, indices)], dtype=np.float64)


def corpus_difference(n: int, delta: float, distribution: np.ndarray) -> PairResult:
    """The test of a corpus difference from its paired bootstrap distribution."""
    import numpy as np

    if np.all(distribution == distribution[0]):
        return PairResult(n, delta, delta, delta, 1.0 if delta == 0 else 0.0, "corpus bootstrap")
    low, high = np.percentile(distribution, [2.5, 97.5])
    return PairResult(n, delta, float(low), float(high), bootstrap_p(delta, distribution), "corpus bootstrap")


class CorpusTester:
    """Paired corpus-value tests where each row's resampled values are computed once per example set.

    16 rows make 120 pairs; recomputing both sides' 2,000 resampled values per pair calls the metric
    480,000 times, where once per row and example set (rows sharing every example: one) is 32,000.
    """

    def __init__(self, corpus: CorpusStats, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> None:
        self.corpus = corpus
        self.n_resamples = n_resamples
        self.seed = seed
        self.memo: dict[tuple[Hashable, tuple[str, ...]], tuple[float, np.ndarray]] = {}

    def test(self, a: Hashable, b: Hashable) -> PairResult:
        shared = tuple(sorted(set(self.corpus.rows[a]) & set(self.corpus.rows[b])))
        if not shared:
            return PairResult(0, math.nan, math.nan, math.nan, 1.0, "none")
        (value_a, samples_a), (value_b, samples_b) = self.side(a, shared), self.side(b, shared)
        return corpus_difference(len(shared), value_a - value_b, samples_a - samples_b)

    def side(self, row: Hashable, shared: tuple[str, ...]) -> tuple[float, np.ndarray]:
        """The row's corpus value on `shared` and on each of its resamples."""
        key = (row, shared)
        if key not in self.memo:
            import numpy as np

            stats = np.asarray([self.corpus.rows[row][example] for example in shared], dtype=np.float64)
            value_of = self.corpus.value_of
            self.memo[key] = (value_of(stats.sum(axis=0)), corpus_samples(stats, value_of, self.n_resamples, self.seed))
        return self.memo[key]


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
    corpus: CorpusStats | None = None,
) -> Significance:
    """Tiers and pairwise tests for the rows that have both a point value and per-example scores.

    `values` orders the rows (the corpus value, best = highest); `scores` are what is tested, or, for
    a corpus metric, `corpus`: then every row must have statistics, and the pairs test corpus values.
    """
    tested: Mapping[Hashable, Mapping[str, object]] = corpus.rows if corpus is not None else scores
    rows = sorted((key for key in values if key in tested and tested[key]), key=lambda key: -values[key])
    result = Significance(metric, rows, alpha=alpha)
    if not rows:
        return result
    example_sets = {frozenset(tested[key]) for key in rows}
    result.same_examples = len(example_sets) == 1
    tester = CorpusTester(corpus, n_resamples, seed) if corpus is not None else None
    for i, a in enumerate(rows):
        for b in rows[i + 1 :]:
            if tester is not None:
                result.pairs[(a, b)] = tester.test(a, b)
            else:
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
