"""The leaderboard as data: one row per (task, base, adapter), the best value per column, HELM's
mean win rate across tasks, and the CSV / JSON / Markdown exports.

Everything here reads the results store only and returns typed values; the HTML pages
(site.py) and the figures (figures.py) are drawn from these values.

Choices worth knowing:
- When several runs hold the same (task, base, adapter), the newest finished cell wins; a cell
  that never finished is shown only when no finished cell exists, so a crashed re-run does not
  hide a good result.
- Every metric is higher-is-better (all metrics this harness knows are). Cost columns
  (trainable parameters, adapter size, latency, peak memory) are best when lowest.
- The headline metric of a task is the first of `HEADLINE_ORDER` the task reports; the mean win
  rate and the normalised score use it.
- Mean win rate follows HELM (`summarize.py`, "Mean win rate"): on each task, a row's win rate is
  the share of the other rows it beats on the headline metric (a tie counts half); the mean is
  taken over the tasks the row has a finished result on.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, Field

from harness.errors import HarnessError
from harness.metrics.base import MetricValue
from harness.store import CellRow, Store

SCHEMA_VERSION = 1

# Headline metrics first, in the order a reader looks for them; other keys follow alphabetically.
HEADLINE_ORDER: tuple[str, ...] = (
    "field_f1", "json_valid", "schema_valid",
    "rougeL", "rouge1", "rouge2", "rougeLsum",
    "bleu", "chrf", "sentence_bleu",
    "accuracy", "f1", "mcc",
)  # fmt: skip

Direction = Literal["higher", "lower"]


@dataclass(frozen=True)
class Column:
    """A sortable, best-marked leaderboard column that is not a metric."""

    key: str
    title: str
    direction: Direction | None  # None: no "best" for this column (e.g. the LoRA rank)


COST_COLUMNS: tuple[Column, ...] = (
    Column("trainable_params", "trainable params", "lower"),
    Column("adapter_bytes", "adapter size", "lower"),
)
TIMING_COLUMNS: tuple[Column, ...] = (
    Column("latency_p50", "latency p50 (s)", "lower"),
    Column("latency_p95", "latency p95 (s)", "lower"),
    Column("tokens_per_s", "tokens/s", "higher"),
    Column("examples_per_s", "examples/s", "higher"),
    Column("peak_memory_bytes", "peak memory", "lower"),
    Column("mfu", "MFU", "higher"),
)


@dataclass(frozen=True)
class LeaderboardRow:
    """One cell of the matrix as the leaderboard shows it."""

    cell_id: int
    run_id: str
    task: str
    split: str
    base: str
    adapter: str  # "base" for the base model itself
    adapter_path: str | None
    adapter_hash: str | None
    method: str | None
    rank: int | None
    trainable_params: int | None
    adapter_bytes: int | None
    status: str
    error: str | None
    n_examples: int | None
    metrics: dict[str, MetricValue]
    latency_p50: float | None = None
    latency_p95: float | None = None
    tokens_per_s: float | None = None
    examples_per_s: float | None = None
    peak_memory_bytes: int | None = None
    mfu: float | None = None

    @property
    def is_base(self) -> bool:
        return self.adapter == "base" and self.adapter_hash is None

    @property
    def key(self) -> tuple[str, str]:
        return (self.base, self.adapter)

    def value(self, column: str) -> float | None:
        """The number a column sorts and compares on (a metric name or a row attribute)."""
        if column in self.metrics:
            return self.metrics[column].value
        found = getattr(self, column, None)
        return float(found) if isinstance(found, (int, float)) and not isinstance(found, bool) else None


@dataclass
class TaskBoard:
    """The leaderboard of one task."""

    task: str
    metric_names: list[str]
    rows: list[LeaderboardRow]
    # column key -> the row keys that hold the best value of that column (ties all marked)
    best: dict[str, set[tuple[str, str]]] = field(default_factory=dict)

    @property
    def headline(self) -> str | None:
        return self.metric_names[0] if self.metric_names else None

    def is_best(self, column: str, row: LeaderboardRow) -> bool:
        return row.key in self.best.get(column, set())


@dataclass(frozen=True)
class OverallRow:
    """One (base, adapter) across tasks: HELM's mean win rate and a normalised score per task."""

    base: str
    adapter: str
    method: str | None
    rank: int | None
    mean_win_rate: float | None
    normalised: dict[str, float]  # task -> headline metric min-max scaled over that task's rows

    @property
    def mean_normalised(self) -> float | None:
        values = list(self.normalised.values())
        return sum(values) / len(values) if values else None


# ------------------------------------------------------------------------------------- reading


def resolve_runs(store: Store, runs: Sequence[str] | None) -> list[str] | None:
    """Full run ids for the given ids or prefixes; None (or none given) means every run in the store."""
    if not runs:
        return None
    return [str(store.run(run_id)["run_id"]) for run_id in runs]


def collect_rows(store: Store, runs: Sequence[str] | None = None) -> list[LeaderboardRow]:
    """One row per (task, base, adapter) over the chosen runs (all runs when None)."""
    run_ids = resolve_runs(store, runs)
    cells = store.cells() if run_ids is None else [c for run_id in run_ids for c in store.cells(run_id=run_id)]
    if run_ids is not None and not cells:
        raise HarnessError(f"Runs {', '.join(run_ids)} hold no cells; run `harness runs` to pick runs with results.")
    chosen: dict[tuple[str, str, str], CellRow] = {}
    for cell in sorted(cells, key=lambda c: c.cell_id):
        key = (cell.task, cell.base, cell.label)
        previous = chosen.get(key)
        # a newer cell replaces an older one unless it would hide a finished result
        if previous is None or cell.status == "done" or previous.status != "done":
            chosen[key] = cell
    return [_row(store, cell) for cell in chosen.values()]


def _row(store: Store, cell: CellRow) -> LeaderboardRow:
    timing = store.timing(cell.cell_id) or {}
    return LeaderboardRow(
        cell_id=cell.cell_id,
        run_id=cell.run_id,
        task=cell.task,
        split=cell.split,
        base=cell.base,
        adapter=cell.label,
        adapter_path=cell.adapter_path,
        adapter_hash=cell.adapter_hash,
        method=cell.method,
        rank=cell.rank,
        trainable_params=cell.trainable_params,
        adapter_bytes=cell.adapter_bytes,
        status=cell.status,
        error=cell.error,
        n_examples=cell.n_examples,
        metrics=store.metrics(cell.cell_id) if cell.status == "done" else {},
        latency_p50=_number(timing.get("latency_p50")),
        latency_p95=_number(timing.get("latency_p95")),
        tokens_per_s=_number(timing.get("generated_tokens_per_s")),
        examples_per_s=_number(timing.get("examples_per_s")),
        peak_memory_bytes=_integer(timing.get("peak_memory_bytes")),
        mfu=_number(timing.get("mfu")),
    )


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _integer(value: object) -> int | None:
    number = _number(value)
    return int(number) if number is not None else None


# ---------------------------------------------------------------------------------- boards


def metric_order(names: Iterable[str]) -> list[str]:
    """Headline metrics in HEADLINE_ORDER, then the rest alphabetically (f1_name, f1_email...)."""
    unique = set(names)
    first = [name for name in HEADLINE_ORDER if name in unique]
    return first + sorted(unique - set(first))


def row_sort_key(row: LeaderboardRow) -> tuple[object, ...]:
    """Base rows first, then by method and rank, so a rank sweep reads top to bottom."""
    return (row.base, not row.is_base, row.method or "", row.rank or 0, row.adapter)


def task_boards(rows: Sequence[LeaderboardRow]) -> list[TaskBoard]:
    by_task: dict[str, list[LeaderboardRow]] = {}
    for row in rows:
        by_task.setdefault(row.task, []).append(row)
    boards = []
    for task in sorted(by_task):
        task_rows = sorted(by_task[task], key=row_sort_key)
        names = metric_order(name for row in task_rows for name in row.metrics)
        board = TaskBoard(task, names, task_rows)
        board.best = best_values(board)
        boards.append(board)
    return boards


def best_values(board: TaskBoard) -> dict[str, set[tuple[str, str]]]:
    """For each column with a direction, the rows (of finished cells) that hold its best value."""
    directions: dict[str, Direction] = {name: "higher" for name in board.metric_names}
    directions.update({c.key: c.direction for c in (*COST_COLUMNS, *TIMING_COLUMNS) if c.direction})
    best: dict[str, set[tuple[str, str]]] = {}
    done = [row for row in board.rows if row.status == "done"]
    for column, direction in directions.items():
        values = [(row.value(column), row.key) for row in done]
        present = [(value, key) for value, key in values if value is not None]
        if len(present) < 2:  # a single value is not "the best" of anything
            continue
        target = max(v for v, _ in present) if direction == "higher" else min(v for v, _ in present)
        best[column] = {key for value, key in present if value == target}
    return best


def win_rates(board: TaskBoard) -> dict[tuple[str, str], float]:
    """HELM's per-task win rate on the headline metric: the share of other rows beaten, ties half."""
    metric = board.headline
    if metric is None:
        return {}
    scored = [(row.key, row.metrics[metric].value) for row in board.rows if metric in row.metrics]
    scored = [(key, value) for key, value in scored if value is not None]
    if len(scored) < 2:
        return {}
    rates = {}
    for key, value in scored:
        wins = sum(1.0 if value > other else 0.5 if value == other else 0.0 for k, other in scored if k != key)
        rates[key] = wins / (len(scored) - 1)
    return rates


def normalised_scores(board: TaskBoard) -> dict[tuple[str, str], float]:
    """The headline metric min-max scaled to [0, 1] over the task's finished rows (all 1 if equal)."""
    metric = board.headline
    if metric is None:
        return {}
    values = {row.key: row.metrics[metric].value for row in board.rows if metric in row.metrics}
    values = {key: value for key, value in values.items() if value is not None}
    if not values:
        return {}
    low, high = min(values.values()), max(values.values())
    return {key: 1.0 if high == low else (value - low) / (high - low) for key, value in values.items()}


def overall(boards: Sequence[TaskBoard]) -> list[OverallRow]:
    """The cross-task table, best mean win rate first."""
    facts: dict[tuple[str, str], LeaderboardRow] = {}
    rates: dict[tuple[str, str], list[float]] = {}
    normalised: dict[tuple[str, str], dict[str, float]] = {}
    for board in boards:
        for row in board.rows:
            facts.setdefault(row.key, row)
        for key, rate in win_rates(board).items():
            rates.setdefault(key, []).append(rate)
        for key, score in normalised_scores(board).items():
            normalised.setdefault(key, {})[board.task] = score
    rows = [
        OverallRow(
            base=key[0],
            adapter=key[1],
            method=row.method,
            rank=row.rank,
            mean_win_rate=sum(rates[key]) / len(rates[key]) if rates.get(key) else None,
            normalised=normalised.get(key, {}),
        )
        for key, row in facts.items()
    ]
    return sorted(rows, key=lambda r: (-(r.mean_win_rate if r.mean_win_rate is not None else -1.0), r.base, r.adapter))


# ------------------------------------------------------------------------------------ formats


def format_bytes(value: float | None) -> str:
    if value is None:
        return "–"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(value) < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"  # unreachable: the loop returns at GB


def format_count(value: float | None) -> str:
    if value is None:
        return "–"
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.1f}{unit}"
    return f"{value:.0f}"


def format_number(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if abs(value) < 1000 else f"{value:,.0f}"


def format_metric(value: MetricValue | None) -> str:
    if value is None or value.value is None:
        return "–"
    return f"{format_number(value.value)} [{format_number(value.low)}, {format_number(value.high)}]"


# ------------------------------------------------------------------------------------ exports


class MetricExport(BaseModel):
    value: float | None = Field(description="the corpus-level score (higher is better)")
    low: float | None = Field(description="lower end of the 95% bootstrap interval")
    high: float | None = Field(description="upper end of the 95% bootstrap interval")


class RowExport(BaseModel):
    """One (task, base, adapter) cell of the leaderboard."""

    task: str
    split: str
    base: str = Field(description="the base model's name as the run named it")
    adapter: str = Field(description="the adapter's name, or 'base' for the base model alone")
    adapter_path: str | None
    adapter_hash: str | None = Field(description="sha256 of the adapter's weights")
    method: str | None = Field(description="PEFT method, e.g. LORA, IA3, PROMPT_TUNING; null for the base")
    rank: int | None = Field(description="LoRA rank r, when the method has one")
    trainable_params: int | None
    adapter_bytes: int | None = Field(description="bytes of the adapter's weight files")
    status: Literal["done", "failed", "running"] | str
    error: str | None = Field(description="why the cell failed, when it did")
    n_examples: int | None
    metrics: dict[str, MetricExport] = Field(description="metric key -> value with its 95% interval")
    latency_p50: float | None = Field(description="median seconds per example")
    latency_p95: float | None
    tokens_per_s: float | None = Field(description="generated tokens per second (null when all predictions were cached)")
    examples_per_s: float | None
    peak_memory_bytes: int | None
    mfu: float | None = Field(description="model FLOPs utilisation, 0-1")
    best: list[str] = Field(description="the columns in which this row holds the task's best value")
    run_id: str
    cell_id: int


class OverallExport(BaseModel):
    base: str
    adapter: str
    method: str | None
    rank: int | None
    mean_win_rate: float | None = Field(description="HELM mean win rate over tasks on each task's headline metric")
    normalised: dict[str, float] = Field(description="task -> headline metric min-max scaled over the task's rows")


class TaskExport(BaseModel):
    task: str
    headline: str | None = Field(description="the metric the win rate and normalised score use")
    metrics: list[str]
    rows: list[RowExport]


class LeaderboardExport(BaseModel):
    """leaderboard.json: the whole leaderboard. Its JSON Schema is written as leaderboard.schema.json."""

    schema_version: int = SCHEMA_VERSION
    runs: list[str] = Field(description="the run ids the leaderboard was built from (all runs when empty)")
    tasks: list[TaskExport]
    overall: list[OverallExport]


def export_model(boards: Sequence[TaskBoard], overall_rows: Sequence[OverallRow], runs: Sequence[str]) -> LeaderboardExport:
    tasks = []
    for board in boards:
        rows = [_row_export(board, row) for row in board.rows]
        tasks.append(TaskExport(task=board.task, headline=board.headline, metrics=board.metric_names, rows=rows))
    overall_export = [
        OverallExport(base=r.base, adapter=r.adapter, method=r.method, rank=r.rank, mean_win_rate=r.mean_win_rate, normalised=r.normalised)
        for r in overall_rows
    ]
    return LeaderboardExport(runs=list(runs), tasks=tasks, overall=overall_export)


def _row_export(board: TaskBoard, row: LeaderboardRow) -> RowExport:
    metrics = {name: MetricExport(value=v.value, low=v.low, high=v.high) for name, v in row.metrics.items()}
    best = sorted(column for column, keys in board.best.items() if row.key in keys)
    return RowExport(
        task=row.task, split=row.split, base=row.base, adapter=row.adapter, adapter_path=row.adapter_path,
        adapter_hash=row.adapter_hash, method=row.method, rank=row.rank, trainable_params=row.trainable_params,
        adapter_bytes=row.adapter_bytes, status=row.status, error=row.error, n_examples=row.n_examples,
        metrics=metrics, latency_p50=row.latency_p50, latency_p95=row.latency_p95, tokens_per_s=row.tokens_per_s,
        examples_per_s=row.examples_per_s, peak_memory_bytes=row.peak_memory_bytes, mfu=row.mfu, best=best,
        run_id=row.run_id, cell_id=row.cell_id,
    )  # fmt: skip


def to_json(export: LeaderboardExport) -> str:
    return export.model_dump_json(indent=2)


def json_schema() -> str:
    return json.dumps(LeaderboardExport.model_json_schema(), indent=2)


CSV_FACTS = ("task", "split", "base", "adapter", "method", "rank", "trainable_params", "adapter_bytes", "status", "error", "n_examples")
CSV_TIMING = ("latency_p50", "latency_p95", "tokens_per_s", "examples_per_s", "peak_memory_bytes", "mfu", "run_id", "cell_id")


def to_csv(boards: Sequence[TaskBoard]) -> str:
    """Wide CSV: one line per (task, base, adapter); each metric as <name>, <name>_low, <name>_high."""
    metrics = metric_order(name for board in boards for name in board.metric_names)
    header = [*CSV_FACTS, *(f"{m}{suffix}" for m in metrics for suffix in ("", "_low", "_high")), *CSV_TIMING]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for board in boards:
        for row in board.rows:
            facts = [getattr(row, name) for name in CSV_FACTS]
            values = []
            for name in metrics:
                value = row.metrics.get(name)
                values += [value.value, value.low, value.high] if value else ["", "", ""]
            writer.writerow([_csv_cell(v) for v in (*facts, *values, *(getattr(row, name) for name in CSV_TIMING))])
    return buffer.getvalue()


def _csv_cell(value: object) -> object:
    if value is None:
        return ""
    # a leading = + - @ makes spreadsheets run the cell as a formula (CSV injection); quote it as text
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value


def _md(text: str) -> str:
    """Text safe in a Markdown table cell that GitHub also renders as HTML."""
    return html.escape(text.replace("\n", " "), quote=False).replace("|", "\\|")


def to_markdown(boards: Sequence[TaskBoard], overall_rows: Sequence[OverallRow], max_metrics: int = 4) -> str:
    """For pull-request comments: the overall table, then one table per task (headline metrics only)."""
    lines = ["## Leaderboard", ""]
    if overall_rows:
        tasks = [board.task for board in boards]
        lines += ["| adapter | method | rank | mean win rate | " + " | ".join(map(_md, tasks)) + " |"]
        lines += ["|" + " --- |" * (4 + len(tasks))]
        for row in overall_rows:
            scores = [format_number(row.normalised.get(task), 2) for task in tasks]
            lines.append(
                f"| {_md(row.adapter)} | {_md(row.method or '–')} | {row.rank or '–'} | "
                f"{format_number(row.mean_win_rate, 2)} | " + " | ".join(scores) + " |"
            )
        lines.append("")
    for board in boards:
        lines += _markdown_board(board, board.metric_names[:max_metrics])
    return "\n".join(lines)


def _markdown_board(board: TaskBoard, metrics: Sequence[str]) -> list[str]:
    lines = [f"### {_md(board.task)}", ""]
    lines.append("| adapter | method | rank | " + " | ".join(metrics) + " | latency p50 (s) | status |")
    lines.append("|" + " --- |" * (5 + len(metrics)))
    for row in board.rows:
        cells = []
        for name in metrics:
            text = format_metric(row.metrics.get(name))
            cells.append(f"**{text}**" if board.is_best(name, row) else text)
        status = row.status if not row.error else f"{row.status}: {row.error}"
        lines.append(
            f"| {_md(row.adapter)} | {_md(row.method or '–')} | {row.rank or '–'} | " + " | ".join(cells)
            + f" | {format_number(row.latency_p50)} | {_md(status)} |"
        )
    return [*lines, ""]


def build(store: Store, runs: Sequence[str] | None = None) -> tuple[list[TaskBoard], list[OverallRow]]:
    """The task boards and the overall table of the chosen runs."""
    boards = task_boards(collect_rows(store, runs))
    return boards, overall(boards)


Formatter = Callable[[float | None], str]
COLUMN_FORMATS: dict[str, Formatter] = {
    "trainable_params": format_count,
    "adapter_bytes": format_bytes,
    "peak_memory_bytes": format_bytes,
    "tokens_per_s": lambda v: format_number(v, 1),
    "examples_per_s": lambda v: format_number(v, 2),
    "mfu": lambda v: "–" if v is None else f"{100 * v:.2f}%",
}
