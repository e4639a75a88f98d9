"""Paired-bootstrap regression gate: may a candidate adapter replace a baseline?

For every (task, metric key) the gate compares the candidate's outputs with the baseline's on
the same examples and says *no regression*, *regression* or *inconclusive*.

Statistics, exactly:

* **Paired bootstrap.** Per task one seeded generator draws `n_resamples` (>= 2,000) index
  vectors of length n; the SAME indices resample both sides and every metric of the task, so
  the deltas are paired. Mean-type metrics (`Metric.is_mean`) average the resampled
  per-example scores (vectorised); corpus metrics (BLEU, chrF, F1, Matthews) are recomputed
  on each resampled corpus, never averaged from per-example scores: through
  `metric.corpus`, or, when the metric also implements `SummableMetric` (its corpus value is
  a function of summed per-example statistics, as sacrebleu's n-gram counts are), by summing
  the resampled statistics, which gives the same numbers without re-tokenising. The
  generator is seeded with (seed, crc32(task name)), so a task's verdict does not depend on
  which other tasks are gated with it.
* **Margin.** The candidate may be worse than the baseline by an allowed drop: `max_drop`
  (absolute, in the metric's units) or `min_ratio` (candidate >= ratio x baseline, i.e. an
  allowed drop of (1 - ratio) x |baseline|, recomputed on each resample). The default is
  `min_ratio = 0.99`: a drop of up to 1% of the baseline's value, which is unit-free and so
  means the same for accuracy in [0, 1] and for BLEU in [0, 100]. For a lower-is-better
  metric the same amount is the allowed rise. `--calibrate` widens the
  allowed drop by z_(1-alpha) x sqrt(2) x sigma, where sigma is the run-to-run standard
  deviation of the baseline's corpus value over repeated sampled runs (sqrt(2): the delta of
  two independent sampled runs has that much more noise than one run). Greedy decoding is
  deterministic and gets no widening.
* **Slack.** On each resample, slack* = (candidate* - baseline*) oriented so that positive is
  better, plus the allowed drop. Slack >= 0 means "within the margin".
* **p-value** (the table's column) tests H0 "no regression beyond the margin" (slack >= 0)
  against H1 "regression" (slack < 0): p = (1 + #{slack* >= 0}) / (1 + n_resamples), the
  percentile-bootstrap p-value dual to the one-sided upper confidence bound (the +1 keeps it
  above zero). Holm's step-down correction runs over all (task, metric) rows of one gate.
* **Verdict.** *regression* when the Holm-adjusted p <= alpha; *no regression* when the
  one-sided lower (1 - alpha) bound of slack (its alpha-quantile) is >= 0, i.e. the candidate
  is non-inferior at level alpha (no multiplicity correction is needed for this side: "all
  metrics are fine" is an intersection-union test, level alpha as it stands); otherwise
  *inconclusive* (the interval straddles the margin).
* **Interval.** The reported delta interval is [q_alpha, q_(1-alpha)] of the bootstrap deltas:
  each end is a one-sided (1 - alpha) bound, the two ends together a two-sided (1 - 2 alpha)
  interval, the convention of non-inferiority (TOST) testing.
* **McNemar's exact test** is reported for accuracy-type rows (mean metrics whose per-example
  scores are all 0/1): two-sided binomial test on the discordant pairs. It tests "equal
  accuracy" (margin 0), so it informs the reader but does not drive the verdict.

Exit codes: 0 nothing regressed, 1 a regression, 2 an inconclusive result under --strict
(errors, raised as HarnessError, are the CLI's exit 2). The report is rendered (markdown, JSON,
JUnit XML) by harness.gate.outputs; this module only decides.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from statistics import NormalDist
from typing import TYPE_CHECKING

from harness.errors import HarnessError
from harness.metrics.base import Metric, ScoringInput, SummableMetric

if TYPE_CHECKING:  # numpy is cheap, but the CLI imports this module at startup
    import numpy as np

MIN_RESAMPLES = 2000
DEFAULT_MIN_RATIO = 0.99
# Index chunks hold at most this many entries, so 2,000 resamples of a 100k-example task
# never materialise as one 1.6 GB array, and at most this many rows, so a progress bar moves
# while a slow corpus metric is recomputed. numpy's Generator draws the same stream whatever
# the chunk shape, so the chunking never changes which indices a resample gets.
_CHUNK_ENTRIES = 1_000_000
_CHUNK_ROWS = 100

# progress(task, resamples done, resamples in all), called after each chunk of a task
Progress = Callable[[str, int, int], None]


class Verdict(str, Enum):
    NO_REGRESSION = "no regression"
    REGRESSION = "regression"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Side:
    """One model's outputs on one task, one entry per example, in example order.

    `scores` holds the per-example score dicts from the results store; when empty the gate
    computes them with `metric.per_example` (needed only for mean-type metrics).
    """

    ids: Sequence[str]
    predictions: Sequence[str]
    references: Sequence[Sequence[str]]
    labels: Sequence[int | None] = ()
    scores: Sequence[Mapping[str, float]] = ()

    def __post_init__(self) -> None:
        n = len(self.ids)
        sizes = {"predictions": len(self.predictions), "references": len(self.references)}
        if self.labels:
            sizes["labels"] = len(self.labels)
        if self.scores:
            sizes["scores"] = len(self.scores)
        for what, size in sizes.items():
            if size != n:
                raise HarnessError(f"the gate got {size} {what} for {n} example ids; store one entry per example.")
        if len(set(self.ids)) != n:
            raise HarnessError("the gate got duplicate example ids; each example must appear once per run.")

    def subset(self, order: Sequence[int]) -> Side:
        """The same outputs reordered (or restricted) to `order`."""
        pick = list(order)
        return Side(
            ids=[self.ids[i] for i in pick],
            predictions=[self.predictions[i] for i in pick],
            references=[self.references[i] for i in pick],
            labels=[self.labels[i] for i in pick] if self.labels else (),
            scores=[self.scores[i] for i in pick] if self.scores else (),
        )

    def scoring_input(self, order: Sequence[int] | None = None) -> ScoringInput:
        if order is None:
            return ScoringInput(self.predictions, self.references, self.labels)
        return ScoringInput(
            predictions=[self.predictions[i] for i in order],
            references=[self.references[i] for i in order],
            labels=[self.labels[i] for i in order] if self.labels else (),
        )


@dataclass(frozen=True)
class GateInput:
    """Everything the gate needs about one task; the lead's CLI fills it from the store."""

    task: str
    metrics: Sequence[Metric]
    baseline: Side
    candidate: Side
    # metric keys to gate on (e.g. "rougeL", "bleu"); empty = every key of every metric
    keys: Sequence[str] = ()
    # key -> direction; missing keys are higher-is-better (true of every metric we ship)
    higher_is_better: Mapping[str, bool] = field(default_factory=dict)
    # sampled decoding (GenerationSettings.do_sample): only then does --calibrate apply
    do_sample: bool = False
    # further baseline runs with the same settings, for --calibrate
    baseline_reruns: Sequence[Side] = ()


@dataclass(frozen=True)
class GateSettings:
    alpha: float = 0.05
    n_resamples: int = MIN_RESAMPLES
    seed: int = 0
    max_drop: float | None = None
    min_ratio: float | None = None
    calibrate: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 0.5:
            raise HarnessError(f"--alpha {self.alpha} is outside (0, 0.5); use e.g. --alpha 0.05.")
        if self.n_resamples < MIN_RESAMPLES:
            raise HarnessError(f"{self.n_resamples} bootstrap resamples are too few; use at least {MIN_RESAMPLES}.")
        if self.max_drop is not None and self.min_ratio is not None:
            raise HarnessError("--max-drop and --min-ratio both set a margin; give only one of them.")
        if self.max_drop is not None and self.max_drop < 0:
            raise HarnessError(f"--max-drop {self.max_drop} is negative; give an allowed drop >= 0.")
        if self.min_ratio is not None and not 0.0 < self.min_ratio <= 1.0:
            raise HarnessError(f"--min-ratio {self.min_ratio} is outside (0, 1]; use e.g. --min-ratio 0.99.")

    @property
    def ratio(self) -> float | None:
        """The ratio in force: the user's, the default, or None when --max-drop is given."""
        if self.max_drop is not None:
            return None
        return DEFAULT_MIN_RATIO if self.min_ratio is None else self.min_ratio

    def margin_text(self) -> str:
        if self.max_drop is not None:
            return f"allowed drop {self.max_drop:g} (absolute)"
        default = " (default)" if self.min_ratio is None else ""
        return f"candidate >= {self.ratio:g} x baseline{default}"


@dataclass(frozen=True)
class GateRow:
    task: str
    metric: str
    n: int
    baseline: float
    candidate: float
    delta: float  # candidate - baseline, in the metric's units
    ci_low: float
    ci_high: float
    allowed_drop: float  # at the observed baseline value, calibration included
    p_value: float
    p_adjusted: float
    mcnemar_p: float | None
    verdict: Verdict
    higher_is_better: bool = True


@dataclass(frozen=True)
class GateReport:
    rows: list[GateRow]
    verdict: Verdict
    settings: GateSettings
    notes: list[str] = field(default_factory=list)

    def exit_code(self, strict: bool = False) -> int:
        if self.verdict is Verdict.REGRESSION:
            return 1
        if self.verdict is Verdict.INCONCLUSIVE and strict:
            return 2
        return 0


# ----------------------------------------------------------------------------- exact tests, multiplicity


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts b and c.

    Under H0 the b + c discordant pairs split Binomial(b + c, 1/2); the p-value doubles the
    smaller tail (capped at 1), as scipy's `binomtest` does for p = 1/2.
    """
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2.0 * tail)


def discordant_pairs(baseline: Sequence[float], candidate: Sequence[float]) -> tuple[int, int]:
    """(b, c): examples right only for the baseline, right only for the candidate."""
    b = sum(1 for x, y in zip(baseline, candidate, strict=True) if x == 1 and y == 0)
    c = sum(1 for x, y in zip(baseline, candidate, strict=True) if x == 0 and y == 1)
    return b, c


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        # monotone: a later (larger) p can never be adjusted below an earlier one
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


# ----------------------------------------------------------------------------- bootstrap


def resample_indices(n: int, n_resamples: int, seed: int, task: str) -> Iterator[np.ndarray]:
    """The task's bootstrap index vectors, drawn lazily in chunks of shape (rows, n)."""
    import numpy as np

    rng = np.random.default_rng([seed, zlib.crc32(task.encode())])
    rows = max(1, min(n_resamples, _CHUNK_ROWS, _CHUNK_ENTRIES // max(n, 1)))
    done = 0
    while done < n_resamples:
        size = min(rows, n_resamples - done)
        yield rng.integers(0, n, size=(size, n))
        done += size


def resample_corpus(metric: Metric, side: Side, keys: Sequence[str], indices: np.ndarray) -> dict[str, np.ndarray]:
    """`metric.corpus` recomputed on each resampled corpus (one row of `indices` each)."""
    import numpy as np

    values = {key: np.empty(len(indices)) for key in keys}
    for r, row in enumerate(indices):
        scores = metric.corpus(side.scoring_input(row.tolist()))
        for key in keys:
            values[key][r] = scores[key]
    return values


def resample_stats(metric: SummableMetric, stats: np.ndarray, keys: Sequence[str], indices: np.ndarray) -> dict[str, np.ndarray]:
    """The corpus scores of each resample from its summed per-example statistics."""
    import numpy as np

    rows, n = indices.shape
    # how often each example is drawn in each resample; counts @ stats sums the drawn rows
    # without materialising a (rows, n, s) array
    offsets = indices + n * np.arange(rows)[:, None]
    counts = np.bincount(offsets.ravel(), minlength=rows * n).reshape(rows, n)
    values = {key: np.empty(rows) for key in keys}
    for r, totals in enumerate(counts @ stats):
        scores = metric.score_from_stats(totals)
        for key in keys:
            values[key][r] = scores[key]
    return values


def resample_means(scores: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Means of per-example scores (n, k) over each resample: shape (rows, k)."""
    return scores[indices].mean(axis=1)


@dataclass
class _Series:
    """Bootstrap values of one key on both sides, filled chunk by chunk."""

    key: str
    metric: Metric
    higher_is_better: bool
    baseline_value: float
    candidate_value: float
    baseline_boot: list[np.ndarray] = field(default_factory=list)
    candidate_boot: list[np.ndarray] = field(default_factory=list)
    mcnemar_p: float | None = None


def _per_example(side: Side, metric: Metric, key: str, task: str) -> list[float]:
    if not side.scores:
        return [
            float(metric.per_example(p, r, side.labels[i] if side.labels else None)[key])
            for i, (p, r) in enumerate(zip(side.predictions, side.references, strict=True))
        ]
    missing = sum(1 for s in side.scores if key not in s)
    if missing:
        raise HarnessError(
            f"{missing} stored per-example scores of task '{task}' lack metric '{key}'; re-run the task for that adapter so its scores are stored."
        )
    return [float(s[key]) for s in side.scores]


def _metric_for(key: str, metrics: Sequence[Metric], task: str) -> Metric:
    for metric in metrics:
        if key in metric.names:
            return metric
    known = sorted(name for metric in metrics for name in metric.names)
    raise HarnessError(f"task '{task}' has no metric '{key}'; pick one of {', '.join(known)}.")


def _align(gate: GateInput) -> Side:
    """The candidate reordered to the baseline's example order; refuses different example sets."""
    base_ids, cand_ids = list(gate.baseline.ids), list(gate.candidate.ids)
    if base_ids == cand_ids:
        return gate.candidate
    missing = set(base_ids) - set(cand_ids)
    extra = set(cand_ids) - set(base_ids)
    if missing or extra:
        raise HarnessError(
            f"baseline and candidate of task '{gate.task}' cover different examples "
            f"({len(missing)} only in the baseline, {len(extra)} only in the candidate); run both on the same split."
        )
    where = {example_id: i for i, example_id in enumerate(cand_ids)}
    return gate.candidate.subset([where[example_id] for example_id in base_ids])


_Resample = Callable[["np.ndarray"], tuple[dict[str, "np.ndarray"], dict[str, "np.ndarray"]]]


@dataclass
class _Group:
    """One metric's gated keys, and how to get their values on a chunk of resamples for both sides."""

    series: list[_Series]
    resample: _Resample


def _mean_group(gate: GateInput, metric: Metric, keys: list[str], candidate: Side) -> _Group:
    import numpy as np

    base = np.array([_per_example(gate.baseline, metric, k, gate.task) for k in keys]).T
    cand = np.array([_per_example(candidate, metric, k, gate.task) for k in keys]).T
    series = []
    for j, key in enumerate(keys):
        row = _Series(key, metric, gate.higher_is_better.get(key, True), float(base[:, j].mean()), float(cand[:, j].mean()))
        row.mcnemar_p = _mcnemar_if_binary(base[:, j], cand[:, j])
        series.append(row)

    def resample(chunk: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        base_means, cand_means = resample_means(base, chunk), resample_means(cand, chunk)
        return ({k: base_means[:, j] for j, k in enumerate(keys)}, {k: cand_means[:, j] for j, k in enumerate(keys)})

    return _Group(series, resample)


def _corpus_group(gate: GateInput, metric: Metric, keys: list[str], candidate: Side) -> _Group:
    import numpy as np

    base_full = metric.corpus(gate.baseline.scoring_input())
    cand_full = metric.corpus(candidate.scoring_input())
    series = [
        _Series(key, metric, gate.higher_is_better.get(key, True), float(base_full[key]), float(cand_full[key]))
        for key in keys
    ]
    if isinstance(metric, SummableMetric):
        base_stats = np.asarray(metric.sufficient_stats(gate.baseline.scoring_input()), dtype=float)
        cand_stats = np.asarray(metric.sufficient_stats(candidate.scoring_input()), dtype=float)

        def resample(chunk: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
            return resample_stats(metric, base_stats, keys, chunk), resample_stats(metric, cand_stats, keys, chunk)

    else:

        def resample(chunk: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
            return resample_corpus(metric, gate.baseline, keys, chunk), resample_corpus(metric, candidate, keys, chunk)

    return _Group(series, resample)


def _groups_for_task(gate: GateInput, candidate: Side) -> list[_Group]:
    """The gated keys grouped by metric, so each metric is computed once per resample."""
    keys = list(gate.keys) or [name for metric in gate.metrics for name in metric.names]
    by_metric: dict[int, tuple[Metric, list[str]]] = {}
    for key in keys:
        metric = _metric_for(key, gate.metrics, gate.task)
        by_metric.setdefault(id(metric), (metric, []))[1].append(key)
    groups = [
        (_mean_group if metric.is_mean else _corpus_group)(gate, metric, metric_keys, candidate)
        for metric, metric_keys in by_metric.values()
    ]
    for s in (s for g in groups for s in g.series):
        if not (math.isfinite(s.baseline_value) and math.isfinite(s.candidate_value)):
            raise HarnessError(f"metric '{s.key}' of task '{gate.task}' is not a finite number; check the metric's inputs.")
    return groups


def _series_for_task(gate: GateInput, settings: GateSettings, progress: Progress | None) -> list[_Series]:
    """Observed values and paired bootstrap values of every gated key of one task."""
    candidate = _align(gate)
    n = len(gate.baseline.ids)
    if n == 0:
        raise HarnessError(f"task '{gate.task}' has no examples to compare; run both adapters on it first.")
    groups = _groups_for_task(gate, candidate)
    # one index chunk at a time, shared by both sides and every metric: the pairing
    done = 0
    for chunk in resample_indices(n, settings.n_resamples, settings.seed, gate.task):
        for group in groups:
            base_values, cand_values = group.resample(chunk)
            for s in group.series:
                s.baseline_boot.append(base_values[s.key])
                s.candidate_boot.append(cand_values[s.key])
        done += len(chunk)
        if progress is not None:
            progress(gate.task, done, settings.n_resamples)
    return [s for group in groups for s in group.series]


def _mcnemar_if_binary(base: np.ndarray, cand: np.ndarray) -> float | None:
    import numpy as np

    if not (np.isin(base, (0.0, 1.0)).all() and np.isin(cand, (0.0, 1.0)).all()):
        return None
    return mcnemar_exact(*discordant_pairs(base.tolist(), cand.tolist()))


# ----------------------------------------------------------------------------- calibration


def run_to_run_std(runs: Sequence[Side], metric: Metric, key: str) -> float:
    """Standard deviation (ddof=1) of the corpus value of `key` across repeated runs."""
    import numpy as np

    if len(runs) < 2:
        raise HarnessError("calibration needs at least 2 runs of the baseline; run it again with sampled decoding.")
    values = [float(metric.corpus(run.scoring_input())[key]) for run in runs]
    return float(np.std(values, ddof=1))


def calibration_widening(std: float, alpha: float) -> float:
    """How much the allowed drop widens for run-to-run noise `std` (see the module docstring)."""
    return NormalDist().inv_cdf(1.0 - alpha) * math.sqrt(2.0) * std


def _calibrate(gate: GateInput, series: list[_Series], settings: GateSettings) -> tuple[dict[str, float], str | None]:
    """Per-key widening of the allowed drop for this task, and a note for the report."""
    if not settings.calibrate:
        if gate.do_sample:
            return {}, f"{gate.task}: sampled decoding without --calibrate; run-to-run noise is not in the margin."
        return {}, None
    if not gate.do_sample:
        return {}, f"{gate.task}: greedy decoding is deterministic: no calibration needed."
    runs = [gate.baseline, *gate.baseline_reruns]
    if len(runs) < 2:
        raise HarnessError(
            f"--calibrate for task '{gate.task}' needs at least 2 baseline runs with sampled decoding; run the baseline again."
        )
    widening = {
        s.key: calibration_widening(run_to_run_std(runs, s.metric, s.key), settings.alpha) for s in series
    }
    detail = ", ".join(f"{k} +{v:.4g}" for k, v in widening.items())
    return widening, f"{gate.task}: sampled decoding, margin widened from {len(runs)} baseline runs ({detail})."


# ----------------------------------------------------------------------------- verdicts


@dataclass(frozen=True)
class _Tested:
    """One row before Holm's correction."""

    task: str
    n: int
    series: _Series
    delta_low: float
    delta_high: float
    allowed_drop: float
    p_value: float
    slack_low: float


def _allowed_drop(baseline: np.ndarray | float, settings: GateSettings, widening: float) -> np.ndarray | float:
    import numpy as np

    ratio = settings.ratio
    base = settings.max_drop if ratio is None else (1.0 - ratio) * np.abs(baseline)
    return base + widening


def _test(task: str, n: int, s: _Series, settings: GateSettings, widening: float) -> _Tested:
    import numpy as np

    base = np.concatenate(s.baseline_boot)
    cand = np.concatenate(s.candidate_boot)
    delta = cand - base
    finite = np.isfinite(delta)
    if not finite.any():
        raise HarnessError(f"metric '{s.key}' of task '{task}' is undefined on every bootstrap resample; gate on another metric.")
    delta, base = delta[finite], base[finite]
    sign = 1.0 if s.higher_is_better else -1.0
    slack = sign * delta + _allowed_drop(base, settings, widening)
    alpha = settings.alpha
    return _Tested(
        task=task,
        n=n,
        series=s,
        delta_low=float(np.quantile(delta, alpha)),
        delta_high=float(np.quantile(delta, 1.0 - alpha)),
        allowed_drop=float(_allowed_drop(s.baseline_value, settings, widening)),
        p_value=(1.0 + float((slack >= 0).sum())) / (1.0 + len(slack)),
        slack_low=float(np.quantile(slack, alpha)),
    )


def _verdict(p_adjusted: float, slack_low: float, alpha: float) -> Verdict:
    if p_adjusted <= alpha:
        return Verdict.REGRESSION
    if slack_low >= 0.0:
        return Verdict.NO_REGRESSION
    return Verdict.INCONCLUSIVE


def _overall(rows: Sequence[GateRow]) -> Verdict:
    verdicts = {row.verdict for row in rows}
    if Verdict.REGRESSION in verdicts:
        return Verdict.REGRESSION
    if Verdict.INCONCLUSIVE in verdicts:
        return Verdict.INCONCLUSIVE
    return Verdict.NO_REGRESSION


def run_gate(
    inputs: Sequence[GateInput], settings: GateSettings = GateSettings(), progress: Progress | None = None
) -> GateReport:
    """Compare candidate with baseline on every task and metric; Holm-correct the regression tests.

    `progress` lets the CLI drive a progress bar: a corpus metric without `SummableMetric`
    costs 2 x n_resamples calls of `metric.corpus` (minutes for BLEU on a large test set).
    """
    if not inputs:
        raise HarnessError("the gate got no tasks; pass at least one with --task.")
    tested: list[_Tested] = []
    notes: list[str] = []
    for gate in inputs:
        series = _series_for_task(gate, settings, progress)
        widening, note = _calibrate(gate, series, settings)
        if note:
            notes.append(note)
        n = len(gate.baseline.ids)
        tested.extend(_test(gate.task, n, s, settings, widening.get(s.key, 0.0)) for s in series)
    adjusted = holm([t.p_value for t in tested])
    rows = [
        GateRow(
            task=t.task,
            metric=t.series.key,
            n=t.n,
            baseline=float(t.series.baseline_value),
            candidate=float(t.series.candidate_value),
            delta=float(t.series.candidate_value - t.series.baseline_value),
            ci_low=t.delta_low,
            ci_high=t.delta_high,
            allowed_drop=t.allowed_drop,
            p_value=t.p_value,
            p_adjusted=p_adj,
            mcnemar_p=t.series.mcnemar_p,
            verdict=_verdict(p_adj, t.slack_low, settings.alpha),
            higher_is_better=t.series.higher_is_better,
        )
        for t, p_adj in zip(tested, adjusted, strict=True)
    ]
    return GateReport(rows=rows, verdict=_overall(rows), settings=settings, notes=notes)
