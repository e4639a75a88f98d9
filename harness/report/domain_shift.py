"""How far does an adapter's score fall on a shifted task? The domain-shift gap per adapter.

A task may name the in-domain task it shifts from (`shift_of: resume_json` in resume_json_real's
task.yaml: real resumes against the synthetic ones the adapters were trained on). For every (base,
adapter) finished on both tasks, both sides' stored predictions are scored with the shifted task's
filters and metrics: resume_json_real scores no phone, so the synthetic side must not either, or the
gap would compare two different F1s. The gap (shifted minus in-domain) gets a 95% percentile-bootstrap
interval from independent resamples of each side's examples: the two sides share no example, so
there is nothing to pair.

Reads the store, the task definitions and the in-domain task's data (its references), like the
example pages; it loads no model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.errors import HarnessError
from harness.metrics import get_metric
from harness.metrics.bootstrap import paired_resample_indices, point_values, resampled_values
from harness.metrics.filters import RAW_SUFFIX
from harness.report.corpus_stats import filtered_input
from harness.report.leaderboard import LeaderboardRow, TaskBoard
from harness.spec import Example, TaskSpec
from harness.store import Store

if TYPE_CHECKING:
    import numpy as np

N_RESAMPLES = 2000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class ShiftValue:
    """One metric on both sides and the gap between them."""

    in_domain: float
    shifted: float
    gap: float  # shifted - in_domain
    low: float | None  # 95% interval of the gap
    high: float | None


@dataclass(frozen=True)
class DomainShift:
    """One (base, adapter): its scores on the in-domain and the shifted task, metric by metric."""

    task: str  # the shifted task
    source: str  # the in-domain task it shifts from
    base: str
    adapter: str
    n_in_domain: int
    n_shifted: int
    values: dict[str, ShiftValue]


def task_shifts(store: Store, board: TaskBoard, boards: Mapping[str, TaskBoard], specs: Mapping[str, TaskSpec | None], seed: int = 0) -> list[DomainShift]:
    """The gap of every adapter finished on both this task and the task it shifts from (none otherwise)."""
    spec = specs.get(board.task)
    if spec is None or spec.shift_of is None or spec.shift_of not in boards:
        return []
    source_spec = specs.get(spec.shift_of)
    if source_spec is None:
        return []
    source_rows = {row.key: row for row in boards[spec.shift_of].rows if row.status == "done"}
    pairs = [(source_rows[row.key], row) for row in board.rows if row.status == "done" and row.key in source_rows]
    if not pairs:
        return []
    source_examples = _examples_by_id(source_spec, pairs[0][0].split)
    shifted_examples = _examples_by_id(spec, pairs[0][1].split)
    return [
        _shift(store, spec, (source, source_examples), (shifted, shifted_examples), seed)
        for source, shifted in pairs
    ]


def _examples_by_id(spec: TaskSpec, split: str) -> dict[str, Example]:
    from harness.data import load_examples

    try:
        return {example.id: example for example in load_examples(spec, split)}
    except (HarnessError, OSError) as error:
        raise HarnessError(f"The domain shift of '{spec.name}' needs its {split} split: {error}") from error


Side = tuple[LeaderboardRow, Mapping[str, Example]]


def _shift(store: Store, spec: TaskSpec, source: Side, shifted: Side, seed: int) -> DomainShift:
    """Both sides scored the shifted task's way; the gap's interval from independent resamples."""
    source_points, source_samples, n_source = _scored_side(store, spec, *source, seed=seed)
    shifted_points, shifted_samples, n_shifted = _scored_side(store, spec, *shifted, seed=seed + 1)
    values: dict[str, ShiftValue] = {}
    for key, shifted_value in shifted_points.items():
        if key.endswith(RAW_SUFFIX) or key not in source_points:
            continue
        low, high = _interval(shifted_samples.get(key), source_samples.get(key))
        values[key] = ShiftValue(source_points[key], shifted_value, shifted_value - source_points[key], low, high)
    row = shifted[0]
    return DomainShift(spec.name, spec.shift_of or "", row.base, row.adapter, n_source, n_shifted, values)


def _scored_side(
    store: Store, spec: TaskSpec, row: LeaderboardRow, examples: Mapping[str, Example], seed: int
) -> tuple[dict[str, float], dict[str, np.ndarray], int]:
    """Point values and resampled values of the shifted task's metrics on one cell's predictions."""
    ids, data = filtered_input(store, spec, row.cell_id, examples)
    if not ids:
        raise HarnessError(f"Cell {row.cell_id} ({row.task}, {row.adapter}) has no stored prediction of a known example.")
    texts = data.predictions
    labels = data.labels if len(data.labels) == len(texts) else [None] * len(texts)
    indices = paired_resample_indices(len(texts), N_RESAMPLES, seed)
    points: dict[str, float] = {}
    samples: dict[str, np.ndarray] = {}
    for name in spec.metrics:
        metric = get_metric(name, spec.folder)
        rows = [metric.per_example(text, refs, label) for text, refs, label in zip(data.predictions, data.references, labels)]
        points |= point_values(metric, data, rows)
        samples |= resampled_values(metric, data, rows, indices)
    return points, samples, len(texts)


def _interval(shifted: np.ndarray | None, source: np.ndarray | None) -> tuple[float | None, float | None]:
    import numpy as np

    if shifted is None or source is None:
        return None, None
    differences = shifted - source
    if np.all(np.isnan(differences)):
        return None, None
    tail = (1.0 - CONFIDENCE) / 2.0 * 100.0
    low, high = np.nanpercentile(differences, [tail, 100.0 - tail])
    return float(low), float(high)


def shown_metrics(shifts: Sequence[DomainShift], metric_names: Sequence[str], limit: int = 4) -> list[str]:
    """The first `limit` of the task's metrics (its order) that every shift row has."""
    return [name for name in metric_names if shifts and all(name in s.values for s in shifts)][:limit]


def to_markdown(shifts: Sequence[DomainShift], metric_names: Sequence[str]) -> str:
    """One table: per adapter, in-domain -> shifted score and the gap with its interval, per metric."""
    if not shifts:
        return ""
    metrics = shown_metrics(shifts, metric_names)
    head = f"Domain shift from `{shifts[0].source}` to `{shifts[0].task}` (both scored as `{shifts[0].task}` scores):"
    lines = [head, "", "| base | adapter | n | " + " | ".join(f"{m}: in-domain → shifted, gap [95% CI]" for m in metrics) + " |",
             "| --- | --- | --- | " + " | ".join("---" for _ in metrics) + " |"]  # fmt: skip
    for s in shifts:
        cells = [_markdown_value(s.values[m]) for m in metrics]
        lines.append(f"| {s.base} | {s.adapter} | {s.n_in_domain} / {s.n_shifted} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _markdown_value(value: ShiftValue) -> str:
    interval = "n/a" if value.low is None or value.high is None else f"[{value.low:+.3f}, {value.high:+.3f}]"
    return f"{_num(value.in_domain)} → {_num(value.shifted)}, {value.gap:+.3f} {interval}"


def _num(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def board_shifts(store: Store, boards: Sequence[TaskBoard]) -> dict[str, list[DomainShift]]:
    """task -> its domain-shift rows, for every board whose task names an in-domain task among the boards."""
    specs = {board.task: registered_task(board.task) for board in boards}
    by_task = {board.task: board for board in boards}
    return {board.task: task_shifts(store, board, by_task, specs) for board in boards}


def registered_task(name: str) -> TaskSpec | None:
    """The task's definition, or None for a task not in the registry (removed since, or an lm-eval task)."""
    from harness.registry import task_registry

    try:
        return task_registry().get(name)
    except HarnessError:
        return None
