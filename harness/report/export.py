"""leaderboard.json: the leaderboard as one typed, versioned file (its JSON Schema is leaderboard.schema.json)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, Field

from harness.metrics.base import MetricValue
from harness.report.leaderboard import LeaderboardRow, OverallRow, TaskBoard

SCHEMA_VERSION = 2


class MetricExport(BaseModel):
    value: float | None = Field(description="the corpus-level score (higher is better)")
    low: float | None = Field(description="lower end of the 95% interval")
    high: float | None = Field(description="upper end of the 95% interval")
    interval: str = Field(description="'wilson' (a proportion of 0/1 per-example scores) or 'bootstrap' (percentile)")
    n: int | None = Field(description="examples the value was computed on")
    warning: str | None = Field(description="set when the interval is a bootstrap on too few examples to trust")
    delta_vs_base: float | None = Field(description="this value minus the same base model's own row (null for the base)")


class PairExport(BaseModel):
    a: str = Field(description="row name; delta = a - b")
    b: str
    n: int = Field(description="examples both rows were scored on")
    delta: float
    low: float = Field(description="95% paired bootstrap interval of delta")
    high: float
    p: float = Field(description="two-sided p: McNemar exact for 0/1 scores, else paired bootstrap")
    p_holm: float = Field(description="p Holm-adjusted over all pairs of the task")
    test: str


class RowExport(BaseModel):
    """One (task, base, adapter) cell of the leaderboard."""

    task: str
    split: str
    name: str = Field(description="the row's display name (qualified by base when a board has several)")
    base: str = Field(description="the base model's name as the run named it")
    adapter: str = Field(description="the adapter's name, or 'base' for the base model alone")
    description: str | None = Field(description="for the base row: what it measures")
    adapter_path: str | None
    adapter_hash: str | None = Field(description="sha256 of the adapter's weights")
    method: str | None = Field(description="PEFT peft_type as stored, e.g. LORA, IA3, PROMPT_TUNING; null for the base")
    method_label: str = Field(description="the method as a reader knows it: LoRA, QLoRA, DoRA, rsLoRA, LoHa, LoKr, VeRA, IA3, ...")
    rank: int | None = Field(description="LoRA rank r, when the method has one")
    trainable_params: int | None
    adapter_bytes: int | None = Field(description="bytes of the adapter's weight files")
    status: Literal["done", "failed", "running"] | str
    incomplete: bool = Field(description="the cell did not finish or its run was interrupted: not a final result")
    error: str | None = Field(description="why the cell failed, when it did")
    n_examples: int | None
    tier: int | None = Field(description="significance tier on the headline metric (1 = indistinguishable from the best)")
    p_vs_best: float | None = Field(description="Holm-adjusted p of the paired test against the task's best row")
    flags: list[str] = Field(description="degenerate-result notes: constant predictions, majority-baseline scores")
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
    incomplete: bool


class TaskExport(BaseModel):
    task: str
    headline: str | None = Field(description="the metric the tiers and the win rate use")
    metrics: list[str]
    same_examples: bool = Field(description="false when rows were scored on different example sets")
    notes: list[str]
    rows: list[RowExport]
    pairs: list[PairExport] = Field(description="every pair of finished rows on the headline metric")


class LeaderboardExport(BaseModel):
    """leaderboard.json: the whole leaderboard. Its JSON Schema is written as leaderboard.schema.json."""

    schema_version: int = SCHEMA_VERSION
    runs: list[str] = Field(description="the run ids the leaderboard was built from (all runs when empty)")
    tasks: list[TaskExport]
    overall: list[OverallExport]


def _metric_export(value: MetricValue, row: LeaderboardRow, name: str, delta: float | None) -> MetricExport:
    return MetricExport(
        value=value.value, low=value.low, high=value.high, interval=row.interval_kinds.get(name, "bootstrap"),
        n=row.n_examples, warning=row.interval_warning(name), delta_vs_base=delta,
    )  # fmt: skip


def export_model(boards: Sequence[TaskBoard], overall_rows: Sequence[OverallRow], runs: Sequence[str]) -> LeaderboardExport:
    tasks = []
    for board in boards:
        rows = [_row_export(board, row) for row in board.rows]
        tasks.append(TaskExport(
            task=board.task, headline=board.headline, metrics=board.metric_names,
            same_examples=board.significance.same_examples if board.significance else True,
            notes=board.notes, rows=rows, pairs=_pair_exports(board),
        ))  # fmt: skip
    overall_export = [
        OverallExport(
            name=r.name, base=r.base, adapter=r.adapter, method=r.method, method_label=r.method_label, rank=r.rank,
            mean_win_rate=r.mean_win_rate, tiers=r.tiers, incomplete=r.incomplete,
            values={task: MetricExport(value=v.value, low=v.low, high=v.high, interval="", n=r.n_examples.get(task),
                                       warning=None, delta_vs_base=r.deltas.get(task)) for task, v in r.values.items()},
        )  # fmt: skip
        for r in overall_rows
    ]
    return LeaderboardExport(runs=list(runs), tasks=tasks, overall=overall_export)


def _pair_exports(board: TaskBoard) -> list[PairExport]:
    if board.significance is None:
        return []
    names = {row.key: board.name(row) for row in board.rows}
    return [
        PairExport(a=names[a], b=names[b], n=p.n, delta=p.delta, low=p.low, high=p.high, p=p.p, p_holm=p.p_adjusted, test=p.test)
        for (a, b), p in board.significance.pairs.items()
    ]


def _row_export(board: TaskBoard, row: LeaderboardRow) -> RowExport:
    metrics = {name: _metric_export(v, row, name, board.delta(row, name)) for name, v in row.metrics.items()}
    best = sorted(column for column, keys in board.best.items() if row.key in keys)
    versus_best = board.versus(row, board.leader())
    return RowExport(
        task=row.task, split=row.split, name=board.name(row), base=row.base, adapter=row.adapter,
        description=row.description, adapter_path=row.adapter_path, adapter_hash=row.adapter_hash, method=row.method,
        method_label=row.method_name, rank=row.rank, trainable_params=row.trainable_params,
        adapter_bytes=row.adapter_bytes, status=row.status, incomplete=row.incomplete, error=row.error,
        n_examples=row.n_examples, tier=board.tier(row), p_vs_best=versus_best.p_adjusted if versus_best else None,
        flags=[flag.text for flag in row.flags], metrics=metrics, latency_p50=row.latency_p50,
        latency_p95=row.latency_p95, tokens_per_s=row.tokens_per_s, examples_per_s=row.examples_per_s,
        shared_batch_seconds=row.shared_batch_seconds, cost_source=row.cost_source, peak_memory_bytes=row.peak_memory_bytes, mfu=row.mfu,
        best=best, run_id=row.run_id, cell_id=row.cell_id,
    )  # fmt: skip


def to_json(export: LeaderboardExport) -> str:
    return export.model_dump_json(indent=2)


def json_schema() -> str:
    return json.dumps(LeaderboardExport.model_json_schema(), indent=2)
