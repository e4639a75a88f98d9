"""The metric interface every scorer implements, and the typed results it returns.

A metric scores one example at a time (`per_example`, kept for the paired regression gate)
and a whole corpus (`corpus`). For mean-type metrics the corpus score is the mean of the
per-example scores; corpus-level metrics (BLEU, chrF, F1, Matthews) recompute from all
predictions, so bootstrap resamples call `corpus` on each resample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:  # the CLI imports the metric interface at startup; numpy only where statistics are made
    import numpy as np


@dataclass(frozen=True)
class MetricValue:
    value: float
    low: float  # 95% interval: Wilson for proportions, percentile bootstrap otherwise (metrics.intervals)
    high: float


@dataclass(frozen=True)
class ScoringInput:
    """What a metric sees: predictions aligned with references (and labels for classification)."""

    predictions: Sequence[str]
    references: Sequence[Sequence[str]]
    labels: Sequence[int | None] = ()

    def __post_init__(self) -> None:
        if len(self.predictions) != len(self.references):
            raise ValueError("predictions and references differ in length")


@dataclass
class MetricReport:
    corpus: dict[str, MetricValue]
    per_example: list[dict[str, float]] = field(default_factory=list)


@runtime_checkable
class Metric(Protocol):
    """One scorer. `names` lists the score keys it produces (e.g. rouge1, rouge2, rougeL)."""

    name: str
    names: tuple[str, ...]
    # True when corpus() is just the mean of per_example(): the bootstrap can then resample
    # the per-example matrix instead of recomputing the metric.
    is_mean: bool

    def per_example(self, prediction: str, references: Sequence[str], label: int | None) -> dict[str, float]: ...

    def corpus(self, data: ScoringInput) -> dict[str, float]: ...


@runtime_checkable
class SummableMetric(Protocol):
    """Optional extra for a corpus metric whose value depends only on summed per-example statistics.

    BLEU (n-gram matches and totals, lengths), chrF (character n-gram counts) and F1 or Matthews
    (confusion-matrix cells) qualify. sacrebleu exposes both halves:
    `sufficient_stats` = `np.array(bleu._extract_corpus_statistics(hyps, [refs_stream, ...]))`,
    `score_from_stats` = `{"bleu": bleu._compute_score_from_stats(totals).score}`. Bootstraps (the
    gate's, the leaderboard's, the intervals') then resample rows of the statistics matrix instead
    of calling `corpus` on every resample.
    """

    def sufficient_stats(self, data: ScoringInput) -> np.ndarray:
        """An (n_examples, n_stats) float matrix of per-example additive statistics."""
        ...

    def score_from_stats(self, totals: np.ndarray) -> dict[str, float]:
        """The corpus scores from statistics summed over a corpus (a vector of n_stats)."""
        ...
