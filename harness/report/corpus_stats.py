"""Per-example sufficient statistics of a corpus headline metric, so the board tests what it prints.

field_f1 (micro F1 of TP/FP/FN summed over the examples), BLEU and MCC are corpus metrics: the value a
board prints is not the mean of the per-example scores the store keeps. The pairwise tests and tiers
therefore need each row's per-example sufficient statistics (`sufficient_stats` of the metric), which
the store does not keep: they are recomputed here from the stored predictions (through the task's
output filters, as the cell was scored) and the task's references. Reads the store, the task
definition and its data, like the domain-shift table; it loads no model.

When the task cannot be found (an lm-eval task, a removed task) there are no statistics and the board
tests the per-example means. When the task is found and its headline is a corpus metric but its data
cannot be read (not mounted), `headline_stats` says so (`StatsUnavailable`) and the board prints why
its tests compare per-example means instead of the value it shows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.errors import HarnessError
from harness.metrics import get_metric
from harness.metrics.base import ScoringInput, SummableMetric
from harness.metrics.filters import RAW_SUFFIX, apply_filters
from harness.scoring import scoring_input
from harness.spec import Example, TaskSpec
from harness.store import Store

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class CellStats:
    """One metric's per-example statistics for each cell of a task, and the metric from summed statistics."""

    by_cell: dict[int, dict[str, np.ndarray]]  # cell id -> example id -> statistics vector
    value_of: Callable[[np.ndarray], float]


@dataclass(frozen=True)
class StatsUnavailable:
    """A corpus headline whose statistics could not be recomputed, and why (one sentence for the board)."""

    reason: str


def corpus_metrics(spec: TaskSpec) -> list[SummableMetric]:
    """The task's corpus metrics whose value is a function of summed per-example statistics."""
    metrics = [get_metric(name, spec.folder) for name in spec.metrics]
    return [m for m in metrics if not m.is_mean and isinstance(m, SummableMetric)]


def headline_stats(
    store: Store, task: str, key: str, cells: Mapping[int, str]
) -> CellStats | StatsUnavailable | None:
    """Statistics of `key` for every cell (cell id -> split) of `task`.

    None for a mean metric or a task not in the registry; StatsUnavailable when `key` belongs to a
    corpus metric of the task but the references cannot be read.
    """
    from harness.data import load_examples
    from harness.registry import task_registry

    if key.endswith(RAW_SUFFIX) or not cells:
        return None  # the raw text's scores are never a headline
    try:
        spec = task_registry().get(task)
        candidates = corpus_metrics(spec)
    except HarnessError:
        return None
    if not candidates:
        return None
    try:
        examples = {split: {e.id: e for e in load_examples(spec, split)} for split in set(cells.values())}
    except (HarnessError, OSError) as error:
        if any(key in metric.names for metric in candidates):
            return StatsUnavailable(f"the references of {task} could not be read ({str(error).rstrip('.')})")
        return None
    metric = next((m for m in candidates if reports_key(store, spec, m, key, cells, examples)), None)
    if metric is None:
        return None
    by_cell = {cell: cell_statistics(store, spec, metric, cell, examples[split]) for cell, split in cells.items()}
    return CellStats(by_cell, lambda totals: float(metric.score_from_stats(totals)[key]))


def reports_key(
    store: Store, spec: TaskSpec, metric: SummableMetric, key: str, cells: Mapping[int, str],
    examples: Mapping[str, Mapping[str, Example]],
) -> bool:
    """Whether `metric` reports `key`, read off the first cell with predictions (the keys do not depend on it)."""
    for cell, split in cells.items():
        stats = list(cell_statistics(store, spec, metric, cell, examples[split]).values())
        if stats:
            return key in metric.score_from_stats(sum(stats))
    return False


def cell_statistics(
    store: Store, spec: TaskSpec, metric: SummableMetric, cell_id: int, examples: Mapping[str, Example]
) -> dict[str, np.ndarray]:
    """Example id -> the metric's statistics of this cell's stored prediction, scored as the cell was."""
    ids, data = filtered_input(store, spec, cell_id, examples)
    stats = metric.sufficient_stats(data)
    return {example_id: stats[i] for i, example_id in enumerate(ids)}


def filtered_input(
    store: Store, spec: TaskSpec, cell_id: int, examples: Mapping[str, Example]
) -> tuple[list[str], ScoringInput]:
    """A cell's stored predictions of the given examples through `spec`'s output filters, ready to score."""
    predictions = [p for p in store.cell_predictions(cell_id) if p.example_id in examples]
    texts = [apply_filters(spec.filters, p.prediction) for p in predictions]
    return [p.example_id for p in predictions], scoring_input(spec, [examples[p.example_id] for p in predictions], texts)
