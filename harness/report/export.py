"""leaderboard.json: the leaderboard as one typed, versioned file, and the boards read back from it.

The export holds everything the HTML pages draw from a TaskBoard and an OverallRow: each row's metrics
with their interval and its kind, its flags with their kind, the significance order, tiers and every
paired test keyed by (base, adapter), each task's spectral-quality correlations and domain-shift gaps. So
`boards_from_export` gives back boards equal to the ones it was written from, and the site can be
rebuilt from committed files alone (`harness report --from`). No prediction, input or reference text
is part of it. Its JSON Schema is written beside it as leaderboard.schema.json.

Schema versions: 3 added flag kinds, each row's run status, the significance order, alpha and pair
keys, overall n per task, spectral-quality rows, and adapter paths relative to the working folder;
4 added each task's domain-shift rows (report/domain_shift.py).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal, cast

from pydantic import BaseModel, Field, ValidationError

from harness.errors import HarnessError
from harness.metrics.base import MetricValue
from harness.metrics.intervals import IntervalKind
from harness.report import domain_shift, spectral_quality
from harness.report.degenerate import Flag, FlagKind
from harness.report.domain_shift import DomainShift, ShiftValue
from harness.report.leaderboard import LeaderboardRow, OverallRow, TaskBoard, to_csv, to_markdown
from harness.report.significance import ALPHA, PairResult, Significance, TestKind
from harness.report.spectral_quality import SpectralQuality

SCHEMA_VERSION = 4
# A row's identity within a task, as the significance order and the pairs name it.
RowKey = tuple[str, str]  # (base, adapter)
Correlations = Mapping[str, Sequence[SpectralQuality]]  # task -> its spectral-quality rows
Shifts = Mapping[str, Sequence[DomainShift]]  # task -> its domain-shift rows


class MetricExport(BaseModel):
    value: float | None = Field(description="the corpus-level score (higher is better)")
    low: float | None = Field(description="lower end of the 95% interval")
    high: float | None = Field(description="upper end of the 95% interval")
    interval: str = Field(description="'wilson' (a proportion of 0/1 per-example scores) or 'bootstrap' (percentile)")
    n: int | None = Field(description="examples the value was computed on")
    warning: str | None = Field(description="set when the interval is a bootstrap on too few examples to trust")
    delta_vs_base: float | None = Field(description="this value minus the same base model's own row (null for the base)")


class FlagExport(BaseModel):
    kind: str = Field(description="'constant' (every prediction the same) or 'majority' (a majority-class answer scores within the interval)")
    text: str


class PairExport(BaseModel):
    a: str = Field(description="row name; delta = a - b")
    b: str
    a_key: RowKey = Field(description="[base, adapter] of row a, as the task's rows name them")
    b_key: RowKey
    n: int = Field(description="examples both rows were scored on")
    # null only when the rows share no example (then there is no difference to state)
    delta: float | None
    low: float | None = Field(description="95% paired bootstrap interval of delta")
    high: float | None
    p: float = Field(description="two-sided p: McNemar exact for 0/1 scores, else paired bootstrap (of the corpus value for a corpus metric)")
    p_holm: float | None = Field(description="p Holm-adjusted over all pairs of the task")
    test: str = Field(description="'mcnemar', 'bootstrap' (mean of per-example scores), 'corpus bootstrap' (corpus value recomputed per resample) or 'none'")


class SpectralQualityExport(BaseModel):
    base: str
    metric: str = Field(description="the task's headline metric the diagnostic is correlated with")
    diagnostic: str = Field(description="the per-adapter median over its layers of this spectral diagnostic")
    n: int = Field(description="adapters with both a score and this diagnostic")
    rho: float | None = Field(description="Spearman's rho; null with fewer than 4 adapters or a constant side")
    low: float | None = Field(description="95% bootstrap interval of rho, resampling adapters")
    high: float | None
    p_value: float | None
    note: str


class ShiftValueExport(BaseModel):
    metric: str
    in_domain: float | None = Field(description="the in-domain cell's predictions scored as this task scores them (null: NaN)")
    shifted: float | None = Field(description="this task's cell")
    gap: float | None = Field(description="shifted - in_domain")
    low: float | None = Field(description="95% bootstrap interval of the gap, each side's examples resampled independently")
    high: float | None


class DomainShiftExport(BaseModel):
    source: str = Field(description="the in-domain task this one shifts from (the task's shift_of)")
    base: str
    adapter: str
    n_in_domain: int
    n_shifted: int
    values: list[ShiftValueExport]


class RowExport(BaseModel):
    """One (task, base, adapter) cell of the leaderboard."""

    task: str
    split: str
    name: str = Field(description="the row's display name (qualified by base when a board has several)")
    base: str = Field(description="the base model's name as the run named it")
    adapter: str = Field(description="the adapter's name, or 'base' for the base model alone")
    description: str | None = Field(description="for the base row: what it measures")
    adapter_path: str | None = Field(description="the adapter's folder, relative to the working folder the export was written in when it lies under it")
    adapter_hash: str | None = Field(description="sha256 of the adapter's weights")
    method: str | None = Field(description="PEFT peft_type as stored, e.g. LORA, IA3, PROMPT_TUNING; null for the base")
    method_label: str = Field(description="the method as a reader knows it: LoRA, QLoRA, DoRA, rsLoRA, LoHa, LoKr, VeRA, IA3, ...")
    rank: int | None = Field(description="LoRA rank r, when the method has one")
    trainable_params: int | None
    adapter_bytes: int | None = Field(description="bytes of the adapter's weight files")
    status: Literal["done", "failed", "running"] | str
    run_status: str | None = Field(description="status of the run the cell belongs to ('interrupted': its process died)")
    incomplete: bool = Field(description="the cell did not finish or its run was interrupted: not a final result")
    error: str | None = Field(description="why the cell failed, when it did")
    n_examples: int | None
    tier: int | None = Field(description="significance tier on the headline metric (1 = indistinguishable from the best)")
    p_vs_best: float | None = Field(description="Holm-adjusted p of the paired test against the task's best row")
    flags: list[FlagExport] = Field(description="degenerate-result notes: constant predictions, majority-baseline scores")
    metrics: dict[str, MetricExport] = Field(description="metric key -> value with its 95% interval")
    latency_p50: float | None = Field(description="median seconds per example within the cell's shared batches")
    latency_p95: float | None
    tokens_per_s: float | None = Field(description="generated tokens per second (null when all predictions were cached)")
    examples_per_s: float | None
    shared_batch_seconds: float | None = Field(description="wall time of the (possibly mixed-adapter) batches the cell ran in")
    cost_source: str = Field(description="'isolated': latency at batch 1 and throughput at a full batch measured for this adapter alone on a probe set; 'shared batch': measured inside the cell's batches")
    peak_memory_bytes: int | None
    mfu: float | None = Field(description="model FLOPs utilisation, 0-1")
    best: list[str] = Field(description="the cost/timing columns in which this row holds the task's best value")
    run_id: str
    cell_id: int


class OverallExport(BaseModel):
    name: str
    base: str
    adapter: str
    method: str | None
    method_label: str
    rank: int | None
    mean_win_rate: float | None = Field(description="HELM mean win rate over tasks; only significant differences win")
    values: dict[str, MetricExport] = Field(description="task -> its headline metric")
    tiers: dict[str, int] = Field(description="task -> significance tier on the headline metric")
    n_examples: dict[str, int | None] = Field(description="task -> examples of the row's cell, finished or not")
    incomplete: bool


class TaskExport(BaseModel):
    task: str
    headline: str | None = Field(description="the metric the tiers and the win rate use")
    metrics: list[str]
    same_examples: bool = Field(description="false when rows were scored on different example sets")
    notes: list[str]
    rows: list[RowExport]
    order: list[RowKey] | None = Field(description="[base, adapter] of the tested rows, best headline value first; null: no headline, no tests")
    alpha: float | None = Field(description="the significance level of the tiers and pairs")
    pairs: list[PairExport] = Field(description="every pair of finished rows on the headline metric")
    spectral_quality: list[SpectralQualityExport] = Field(description="Spearman correlations of spectral diagnostics with the headline metric")
    domain_shift: list[DomainShiftExport] = Field(description="per adapter, its gap from the in-domain task this one shifts from (empty: none)")


class LeaderboardExport(BaseModel):
    """leaderboard.json: the whole leaderboard. Its JSON Schema is written as leaderboard.schema.json."""

    schema_version: int = SCHEMA_VERSION
    runs: list[str] = Field(description="the run ids the leaderboard was built from (all runs when empty)")
    tasks: list[TaskExport]
    overall: list[OverallExport]


# ------------------------------------------------------------------------------------ writing


def portable_path(path: str | None, root: Path | None = None) -> str | None:
    """An absolute path under `root` (the working folder by default) as a relative POSIX path, so a
    committed file names an adapter folder the same on every checkout; other paths stay as given."""
    if not path or not Path(path).is_absolute():
        return path
    try:
        return Path(path).resolve().relative_to((root or Path.cwd()).resolve()).as_posix()
    except (ValueError, OSError):
        return path


def _finite(value: float) -> float | None:
    # JSON has no NaN: pydantic writes it as null, and null is what the reader turns back into NaN
    return None if math.isnan(value) else value


def _metric_export(value: MetricValue, row: LeaderboardRow, name: str, delta: float | None) -> MetricExport:
    return MetricExport(
        value=value.value, low=value.low, high=value.high, interval=row.interval_kinds.get(name, "bootstrap"),
        n=row.n_examples, warning=row.interval_warning(name), delta_vs_base=delta,
    )  # fmt: skip


def export_model(
    boards: Sequence[TaskBoard],
    overall_rows: Sequence[OverallRow],
    runs: Sequence[str],
    correlations: Correlations | None = None,
    root: Path | None = None,
    shifts: Shifts | None = None,
) -> LeaderboardExport:
    """The export of the boards; adapter paths under `root` (the working folder by default) become relative."""
    tasks = [
        _task_export(board, (correlations or {}).get(board.task, ()), (shifts or {}).get(board.task, ()), root) for board in boards
    ]
    return LeaderboardExport(runs=list(runs), tasks=tasks, overall=[_overall_export(row) for row in overall_rows])


def _task_export(board: TaskBoard, correlations: Sequence[SpectralQuality], shifts: Sequence[DomainShift], root: Path | None) -> TaskExport:
    tested = board.significance
    return TaskExport(
        task=board.task, headline=board.headline, metrics=board.metric_names,
        same_examples=tested.same_examples if tested else True, notes=board.notes,
        rows=[_row_export(board, row, root) for row in board.rows],
        order=[cast(RowKey, key) for key in tested.order] if tested else None, alpha=tested.alpha if tested else None,
        pairs=_pair_exports(board), spectral_quality=[_correlation_export(c) for c in correlations],
        domain_shift=[_shift_export(shift) for shift in shifts],
    )  # fmt: skip


def _overall_export(row: OverallRow) -> OverallExport:
    values = {
        task: MetricExport(value=v.value, low=v.low, high=v.high, interval="", n=row.n_examples.get(task), warning=None,
                           delta_vs_base=row.deltas.get(task))
        for task, v in row.values.items()
    }  # fmt: skip
    return OverallExport(
        name=row.name, base=row.base, adapter=row.adapter, method=row.method, method_label=row.method_label, rank=row.rank,
        mean_win_rate=row.mean_win_rate, values=values, tiers=row.tiers, n_examples=row.n_examples, incomplete=row.incomplete,
    )  # fmt: skip


def _pair_exports(board: TaskBoard) -> list[PairExport]:
    if board.significance is None:
        return []
    names = {row.key: board.name(row) for row in board.rows}
    return [
        PairExport(a=names[a], b=names[b], a_key=cast(RowKey, a), b_key=cast(RowKey, b), n=p.n, delta=_finite(p.delta),
                   low=_finite(p.low), high=_finite(p.high), p=p.p, p_holm=_finite(p.p_adjusted), test=p.test)
        for (a, b), p in board.significance.pairs.items()
    ]  # fmt: skip


def _correlation_export(found: SpectralQuality) -> SpectralQualityExport:
    return SpectralQualityExport(
        base=found.base, metric=found.metric, diagnostic=found.diagnostic, n=found.n, rho=found.rho,
        low=found.low, high=found.high, p_value=found.p_value, note=found.note,
    )  # fmt: skip


def _shift_export(shift: DomainShift) -> DomainShiftExport:
    values = [
        ShiftValueExport(metric=metric, in_domain=_finite(v.in_domain), shifted=_finite(v.shifted), gap=_finite(v.gap), low=v.low, high=v.high)
        for metric, v in shift.values.items()
    ]  # fmt: skip
    return DomainShiftExport(source=shift.source, base=shift.base, adapter=shift.adapter, n_in_domain=shift.n_in_domain,
                             n_shifted=shift.n_shifted, values=values)  # fmt: skip


def _row_export(board: TaskBoard, row: LeaderboardRow, root: Path | None) -> RowExport:
    metrics = {name: _metric_export(v, row, name, board.delta(row, name)) for name, v in row.metrics.items()}
    best = sorted(column for column, keys in board.best.items() if row.key in keys)
    versus_best = board.versus(row, board.leader())
    return RowExport(
        task=row.task, split=row.split, name=board.name(row), base=row.base, adapter=row.adapter,
        description=row.description, adapter_path=portable_path(row.adapter_path, root), adapter_hash=row.adapter_hash,
        method=row.method, method_label=row.method_name, rank=row.rank, trainable_params=row.trainable_params,
        adapter_bytes=row.adapter_bytes, status=row.status, run_status=row.run_status, incomplete=row.incomplete,
        error=row.error, n_examples=row.n_examples, tier=board.tier(row),
        p_vs_best=versus_best.p_adjusted if versus_best else None,
        flags=[FlagExport(kind=flag.kind, text=flag.text) for flag in row.flags], metrics=metrics,
        latency_p50=row.latency_p50, latency_p95=row.latency_p95, tokens_per_s=row.tokens_per_s,
        examples_per_s=row.examples_per_s, shared_batch_seconds=row.shared_batch_seconds, cost_source=row.cost_source,
        peak_memory_bytes=row.peak_memory_bytes, mfu=row.mfu, best=best, run_id=row.run_id, cell_id=row.cell_id,
    )  # fmt: skip


def to_json(export: LeaderboardExport) -> str:
    return export.model_dump_json(indent=2)


def json_schema() -> str:
    return json.dumps(LeaderboardExport.model_json_schema(), indent=2)


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def write_exports(
    out: Path,
    boards: Sequence[TaskBoard],
    overall_rows: Sequence[OverallRow],
    runs: Sequence[str],
    correlations: Correlations,
    root: Path | None = None,
    shifts: Shifts | None = None,
) -> list[Path]:
    """leaderboard.{csv,json,md}, leaderboard.schema.json, spectral_quality.md and domain_shift.md: the small exports."""
    export = export_model(boards, overall_rows, runs, correlations, root, shifts)
    every_correlation = [found for board in boards for found in correlations.get(board.task, ())]
    shift_tables = [domain_shift.to_markdown((shifts or {}).get(b.task, ()), b.metric_names) for b in boards]
    return [
        write_text(out / "leaderboard.csv", to_csv(boards)),
        write_text(out / "leaderboard.json", to_json(export)),
        write_text(out / "leaderboard.schema.json", json_schema()),
        write_text(out / "leaderboard.md", to_markdown(boards, overall_rows)),
        write_text(out / "spectral_quality.md", spectral_quality.to_markdown(every_correlation)),
        write_text(out / "domain_shift.md", "\n".join(t for t in shift_tables if t) or "No task of this leaderboard names a task it shifts from.\n"),
    ]


# ------------------------------------------------------------------------------------ reading


def read_export(path: Path) -> LeaderboardExport:
    """A leaderboard.json of this schema version, or a one-sentence HarnessError saying what is wrong."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise HarnessError(f"Cannot read '{path}' ({error.strerror}); pass the leaderboard.json `harness publish` wrote.")
    except ValueError as error:
        raise HarnessError(f"'{path}' is not JSON ({error}); pass the leaderboard.json `harness publish` wrote.")
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version != SCHEMA_VERSION:
        raise HarnessError(
            f"'{path}' has leaderboard schema version {version}; this harness reads version {SCHEMA_VERSION}: "
            "write it again with `harness publish` from the results store."
        )
    try:
        return LeaderboardExport.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise HarnessError(f"'{path}' is not a valid leaderboard export ({where}: {first['msg']}).")


def boards_from_export(export: LeaderboardExport) -> tuple[list[TaskBoard], list[OverallRow]]:
    """The task boards and the overall table the export was written from (equal to them, field by field)."""
    return [board_from_export(task) for task in export.tasks], [overall_row_from_export(row) for row in export.overall]


def board_from_export(task: TaskExport) -> TaskBoard:
    rows = [row_from_export(row) for row in task.rows]
    best: dict[str, set[RowKey]] = {}
    for exported, row in zip(task.rows, rows):
        for column in exported.best:
            best.setdefault(column, set()).add(row.key)
    return TaskBoard(task.task, list(task.metrics), rows, best, _significance(task, rows), list(task.notes))


def _significance(task: TaskExport, rows: Sequence[LeaderboardRow]) -> Significance | None:
    if task.order is None or task.headline is None:
        return None
    tiers = {row.key: exported.tier for exported, row in zip(task.rows, rows) if exported.tier is not None}
    pairs = {
        (tuple(p.a_key), tuple(p.b_key)): PairResult(p.n, _nan(p.delta), _nan(p.low), _nan(p.high), p.p,
                                                     cast(TestKind, p.test), _nan(p.p_holm))
        for p in task.pairs
    }  # fmt: skip
    order = [tuple(key) for key in task.order]
    alpha = ALPHA if task.alpha is None else task.alpha
    return Significance(task.headline, order, tiers, pairs, task.same_examples, alpha)  # type: ignore[arg-type]


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def row_from_export(row: RowExport) -> LeaderboardRow:
    return LeaderboardRow(
        cell_id=row.cell_id, run_id=row.run_id, task=row.task, split=row.split, base=row.base, adapter=row.adapter,
        adapter_path=row.adapter_path, adapter_hash=row.adapter_hash, method=row.method, rank=row.rank,
        trainable_params=row.trainable_params, adapter_bytes=row.adapter_bytes, status=row.status, error=row.error,
        n_examples=row.n_examples,
        metrics={name: MetricValue(m.value, m.low, m.high) for name, m in row.metrics.items()},  # type: ignore[arg-type]
        latency_p50=row.latency_p50, latency_p95=row.latency_p95, tokens_per_s=row.tokens_per_s,
        examples_per_s=row.examples_per_s, peak_memory_bytes=row.peak_memory_bytes, mfu=row.mfu,
        method_label=row.method_label, description=row.description,
        interval_kinds={name: cast(IntervalKind, m.interval) for name, m in row.metrics.items()},
        flags=tuple(Flag(cast(FlagKind, flag.kind), flag.text) for flag in row.flags), run_status=row.run_status,
        shared_batch_seconds=row.shared_batch_seconds, cost_source=row.cost_source,
    )  # fmt: skip


def overall_row_from_export(row: OverallExport) -> OverallRow:
    return OverallRow(
        base=row.base, adapter=row.adapter, method=row.method, rank=row.rank, mean_win_rate=row.mean_win_rate,
        values={task: MetricValue(v.value, v.low, v.high) for task, v in row.values.items()},  # type: ignore[arg-type]
        deltas={task: v.delta_vs_base for task, v in row.values.items() if v.delta_vs_base is not None},
        tiers=dict(row.tiers), n_examples=dict(row.n_examples), method_label=row.method_label, name=row.name,
        incomplete=row.incomplete,
    )  # fmt: skip


def correlations_from_export(export: LeaderboardExport) -> dict[str, list[SpectralQuality]]:
    """task -> its spectral-quality rows, as spectral_quality.task_correlations computed them."""
    return {
        task.task: [
            SpectralQuality(task.task, c.base, c.metric, c.diagnostic, c.n, c.rho, c.low, c.high, c.p_value, c.note)
            for c in task.spectral_quality
        ]
        for task in export.tasks
    }


def shifts_from_export(export: LeaderboardExport) -> dict[str, list[DomainShift]]:
    """task -> its domain-shift rows, as domain_shift.task_shifts computed them (null numbers read back as NaN)."""
    return {
        task.task: [
            DomainShift(task.task, found.source, found.base, found.adapter, found.n_in_domain, found.n_shifted, {
                v.metric: ShiftValue(_nan(v.in_domain), _nan(v.shifted), _nan(v.gap), v.low, v.high) for v in found.values
            })  # fmt: skip
            for found in task.domain_shift
        ]
        for task in export.tasks
    }
