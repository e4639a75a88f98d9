"""The leaderboard as data: one row per (task, base, adapter), the best value per column, HELM's
mean win rate across tasks, and the CSV and Markdown exports (the JSON export is export.py).

Everything here reads the results store only and returns typed values; the HTML pages
(site.py) and the figures (figures.py) are drawn from these values.

Choices worth knowing:
- When several runs hold the same (task, base, adapter), the newest finished cell wins; a cell
  that never finished is shown only when no finished cell exists, so a crashed re-run does not
  hide a good result.
- Every metric is higher-is-better (all metrics this harness knows are). Cost columns
  (trainable parameters, adapter size, latency, peak memory) are best when lowest.
- The headline metric of a task is the first of `HEADLINE_ORDER` the task reports; the mean win
  rate, the tiers and the overview use it.
- Mean win rate follows HELM (`summarize.py`, "Mean win rate"): on each task, a row's win rate is
  the share of the other rows it beats on the headline metric (a tie counts half); the mean is
  taken over the tasks the row has a finished result on. A row only "beats" another when the paired
  test says so (Holm-adjusted p < 0.05, see significance.py); a difference the data cannot tell
  apart is a tie.
- Intervals are recomputed from the stored per-example scores for proportions (Wilson, see
  harness.metrics.intervals), so stores written before Wilson intervals read honestly too.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from harness.errors import HarnessError
from harness.metrics.base import MetricValue
from harness.metrics.intervals import KNOWN_PROPORTIONS, IntervalKind, honest_all, interval_kind, small_sample_warning
from harness.report.corpus_stats import CellStats, StatsUnavailable, headline_stats
from harness.report.degenerate import Flag, degenerate_flags, gold_labels, task_is_private
from harness.report.rows import base_description, display_name, method_label
from harness.report.significance import CorpusStats, PairResult, Significance, significance
from harness.store import CellRow, Store

# cell_id -> example id -> that example's scores (the store's example_scores table)
ExampleScores = dict[int, dict[str, dict[str, float]]]

# Headline metrics first, in the order a reader looks for them; other keys follow alphabetically.
HEADLINE_ORDER: tuple[str, ...] = (
    "field_f1", "json_valid", "schema_valid",
    "rougeL", "rouge1", "rouge2", "rougeLsum",
    "bleu", "chrf", "sentence_bleu",
    "accuracy", "f1", "mcc",
)  # fmt: skip

Direction = Literal["higher", "lower"]
# (task, headline key, cell id -> split) -> the cells' per-example statistics; None for a mean metric,
# StatsUnavailable for a corpus metric whose references cannot be read
CorpusSource = Callable[[str, str, Mapping[int, str]], CellStats | StatsUnavailable | None]


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
    Column("latency_p50", "latency p50 (s), batch 1", "lower"),
    Column("latency_p95", "latency p95 (s), batch 1", "lower"),
    Column("tokens_per_s", "tokens/s, full batch", "higher"),
    Column("examples_per_s", "examples/s, full batch", "higher"),
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
    method_label: str = ""  # QLoRA, DoRA, rsLoRA... (rows.method_label); empty: derived from `method`
    description: str | None = None  # the base row: what it measures
    interval_kinds: dict[str, IntervalKind] = field(default_factory=dict)
    flags: tuple[Flag, ...] = ()
    run_status: str | None = None
    shared_batch_seconds: float | None = None  # the wall time of the mixed batches the cell ran in
    # "isolated": latency/throughput from the adapter's own cost profile; "shared batch": from its batches
    cost_source: str = "shared batch"

    @property
    def is_base(self) -> bool:
        return self.adapter == "base" and self.adapter_hash is None

    @property
    def method_name(self) -> str:
        return self.method_label or ("base" if self.is_base else (self.method or "unknown"))

    @property
    def incomplete(self) -> bool:
        """Not a final result: the cell did not finish, or its run was interrupted."""
        return self.status != "done" or self.run_status == "interrupted"

    def interval_warning(self, metric: str) -> str | None:
        return small_sample_warning(self.interval_kinds.get(metric, "bootstrap"), self.n_examples)

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
    significance: Significance | None = None  # of the headline metric
    notes: list[str] = field(default_factory=list)  # what a reader must know before ranking

    @property
    def headline(self) -> str | None:
        return self.metric_names[0] if self.metric_names else None

    @property
    def several_bases(self) -> bool:
        return len({row.base for row in self.rows}) > 1

    def is_best(self, column: str, row: LeaderboardRow) -> bool:
        return row.key in self.best.get(column, set())

    def name(self, row: LeaderboardRow) -> str:
        return display_name(row.base, row.adapter, self.several_bases)

    def tier(self, row: LeaderboardRow) -> int | None:
        return self.significance.tiers.get(row.key) if self.significance else None

    def base_row(self, row: LeaderboardRow) -> LeaderboardRow | None:
        """The finished base-model row of the same base (what Δ columns subtract)."""
        return next((r for r in self.rows if r.is_base and r.base == row.base and r.status == "done"), None)

    def delta(self, row: LeaderboardRow, metric: str) -> float | None:
        base = self.base_row(row)
        if base is None or base.key == row.key:
            return None
        mine, theirs = row.value(metric), base.value(metric)
        return None if mine is None or theirs is None else mine - theirs

    def versus(self, row: LeaderboardRow, other: LeaderboardRow | None) -> PairResult | None:
        """The paired test of `row` against `other` on the headline metric (delta = row - other)."""
        if other is None or self.significance is None or other.key == row.key:
            return None
        return self.significance.pair(row.key, other.key)

    def leader(self) -> LeaderboardRow | None:
        if not self.significance or not self.significance.order:
            return None
        return next(r for r in self.rows if r.key == self.significance.order[0])


@dataclass(frozen=True)
class OverallRow:
    """One (base, adapter) across tasks: HELM's mean win rate and, per task, the raw headline value, Δ vs base and tier."""

    base: str
    adapter: str
    method: str | None
    rank: int | None
    mean_win_rate: float | None
    values: dict[str, MetricValue] = field(default_factory=dict)  # task -> headline value with its interval
    deltas: dict[str, float] = field(default_factory=dict)  # task -> headline minus the base row's
    tiers: dict[str, int] = field(default_factory=dict)  # task -> significance tier on the headline
    n_examples: dict[str, int | None] = field(default_factory=dict)
    method_label: str = ""
    name: str = ""
    incomplete: bool = False


# ------------------------------------------------------------------------------------- reading


def resolve_runs(store: Store, runs: Sequence[str] | None) -> list[str] | None:
    """Full run ids for the given ids or prefixes; None (or none given) means every run in the store."""
    if not runs:
        return None
    return [str(store.run(run_id)["run_id"]) for run_id in runs]


def chosen_cells(store: Store, runs: Sequence[str] | None = None) -> list[CellRow]:
    """One cell per (task, base, adapter) over the chosen runs (all runs when None)."""
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
    return list(chosen.values())


def example_scores(store: Store, cells: Sequence[CellRow]) -> ExampleScores:
    return {cell.cell_id: store.example_scores(cell.cell_id) for cell in cells if cell.status == "done"}


def collect_rows(store: Store, runs: Sequence[str] | None = None, scores: ExampleScores | None = None) -> list[LeaderboardRow]:
    """One row per (task, base, adapter) over the chosen runs (all runs when None)."""
    cells = chosen_cells(store, runs)
    scores = example_scores(store, cells) if scores is None else scores
    run_status = {str(run["run_id"]): str(run["status"]) for run in store.runs()}
    return [_row(store, cell, scores.get(cell.cell_id, {}), run_status.get(cell.run_id)) for cell in cells]


def _honest_metrics(stored: dict[str, MetricValue], scores: dict[str, dict[str, float]]) -> tuple[dict[str, MetricValue], dict[str, IntervalKind]]:
    """Stored values with Wilson intervals for proportions, and which kind of interval each has."""
    rows = list(scores.values())
    metrics = honest_all(stored, rows, KNOWN_PROPORTIONS) if rows else dict(stored)
    kinds: dict[str, IntervalKind] = {}
    for name, value in metrics.items():
        values = [row[name] for row in rows if name in row]
        kinds[name] = interval_kind(value.value, values) if len(values) == len(rows) and rows else "bootstrap"
    return metrics, kinds


def _flags(store: Store, cell: CellRow, metrics: dict[str, MetricValue]) -> tuple[Flag, ...]:
    predictions = store.cell_predictions(cell.cell_id)
    gold = gold_labels(cell.task, cell.split, [p.example_id for p in predictions]) if predictions else None
    return tuple(degenerate_flags([p.prediction for p in predictions], gold, metrics, show_text=not task_is_private(cell.task)))


def _cost(store: Store, cell: CellRow) -> tuple[dict[str, Any], str]:
    """Latency and throughput of the cell: its isolated cost profile when one was measured, else the
    timing inside its (possibly shared, mixed-adapter) batches, which is per batch, not per adapter."""
    timing = store.timing(cell.cell_id) or {}
    profile = store.cell_cost_profile(cell.cell_id)
    if profile is None:
        return timing, "shared batch"
    return {
        **timing,
        "latency_p50": profile.get("latency_p50"),
        "latency_p95": profile.get("latency_p95"),
        "examples_per_s": profile.get("throughput_examples_per_s"),
        "generated_tokens_per_s": profile.get("throughput_tokens_per_s"),
    }, "isolated"


def _row(store: Store, cell: CellRow, scores: dict[str, dict[str, float]], run_status: str | None) -> LeaderboardRow:
    timing, cost_source = _cost(store, cell)
    done = cell.status == "done"
    metrics, kinds = _honest_metrics(store.metrics(cell.cell_id), scores) if done else ({}, {})
    is_base = cell.adapter is None
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
        metrics=metrics,
        latency_p50=_number(timing.get("latency_p50")),
        latency_p95=_number(timing.get("latency_p95")),
        tokens_per_s=_number(timing.get("generated_tokens_per_s")),
        examples_per_s=_number(timing.get("examples_per_s")),
        peak_memory_bytes=_integer(timing.get("peak_memory_bytes")),
        mfu=_number(timing.get("mfu")),
        method_label=method_label(None if is_base else cell.method, cell.adapter_path, cell.settings),
        description=base_description(cell.settings.get("output_type"), cell.base) if is_base else None,
        interval_kinds=kinds,
        flags=_flags(store, cell, metrics) if done else (),
        run_status=run_status,
        shared_batch_seconds=_number(timing.get("wall_seconds")),
        cost_source=cost_source,
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


def task_boards(
    rows: Sequence[LeaderboardRow], scores: ExampleScores | None = None, corpus: CorpusSource | None = None
) -> list[TaskBoard]:
    """One board per task; with per-example scores, the headline metric's tiers and pairwise tests.

    With `corpus`, a corpus headline (field F1, BLEU, MCC) is tested on its corpus values instead of
    the mean of its per-example scores (see significance.py).
    """
    by_task: dict[str, list[LeaderboardRow]] = {}
    for row in rows:
        by_task.setdefault(row.task, []).append(row)
    boards = []
    for task in sorted(by_task):
        task_rows = sorted(by_task[task], key=row_sort_key)
        names = metric_order(name for row in task_rows for name in row.metrics)
        board = TaskBoard(task, names, task_rows)
        board.best = best_values(board)
        lookup = corpus_lookup(board, corpus)
        stats = lookup if isinstance(lookup, CellStats) else None
        board.significance = headline_significance(board, scores or {}, stats)
        board.notes = board_notes(board)
        if isinstance(lookup, StatsUnavailable):
            board.notes.append(
                f"The pairwise tests and tiers of {board.headline} compare per-example means, not the corpus value"
                f" this board prints: {lookup.reason}."
            )
        boards.append(board)
    return boards


def finished_rows(board: TaskBoard, metric: str) -> list[LeaderboardRow]:
    return [row for row in board.rows if row.status == "done" and row.value(metric) is not None]


def corpus_lookup(board: TaskBoard, corpus: CorpusSource | None) -> CellStats | StatsUnavailable | None:
    """The headline's corpus statistics per finished cell, if the headline is a corpus metric."""
    metric = board.headline
    if corpus is None or metric is None:
        return None
    done = finished_rows(board, metric)
    return corpus(board.task, metric, {row.cell_id: row.split for row in done}) if done else None


def headline_significance(board: TaskBoard, scores: ExampleScores, stats: CellStats | None = None) -> Significance | None:
    metric = board.headline
    if metric is None:
        return None
    done = finished_rows(board, metric)
    values = {row.key: float(row.value(metric)) for row in done}  # type: ignore[arg-type]
    per_example = {
        row.key: {example: s[metric] for example, s in scores.get(row.cell_id, {}).items() if metric in s} for row in done
    }
    if stats is None:
        return significance(metric, values, per_example)
    by_row = {row.key: stats.by_cell[row.cell_id] for row in done}
    return significance(metric, values, per_example, corpus=CorpusStats(by_row, stats.value_of))


def board_notes(board: TaskBoard) -> list[str]:
    """Sentences a reader needs before comparing the rows of this board."""
    notes = []
    done = [row for row in board.rows if row.status == "done"]
    sizes = sorted({row.n_examples for row in done if row.n_examples is not None})
    if len(sizes) > 1 or (board.significance is not None and not board.significance.same_examples):
        notes.append(
            "Rows were scored on different example sets (n = " + ", ".join(map(str, sizes)) + "): their values are"
            " not directly comparable; the paired tests use only the examples both rows share."
        )
    if board.several_bases:
        notes.append("Rows of several base models share this board; names are qualified by their base.")
    if any(row.incomplete for row in board.rows):
        notes.append("Rows marked incomplete did not finish (or their run was interrupted): they are not final results.")
    return notes


def best_values(board: TaskBoard) -> dict[str, set[tuple[str, str]]]:
    """For each cost or timing column with a direction, the rows (of finished cells) that hold its best value.

    Metric columns get significance tiers instead (significance.py): a lone best point value over
    overlapping intervals would claim more than the data shows. Timing columns are only compared
    between rows with an isolated cost profile: numbers from shared batches rank batch membership.
    """
    directions: dict[str, Direction] = {c.key: c.direction for c in (*COST_COLUMNS, *TIMING_COLUMNS) if c.direction}
    timing = {c.key for c in TIMING_COLUMNS}
    best: dict[str, set[tuple[str, str]]] = {}
    done = [row for row in board.rows if row.status == "done"]
    for column, direction in directions.items():
        rows = [row for row in done if row.cost_source == "isolated"] if column in timing else done
        values = [(row.value(column), row.key) for row in rows]
        present = [(value, key) for value, key in values if value is not None]
        if len(present) < 2:  # a single value is not "the best" of anything
            continue
        target = max(v for v, _ in present) if direction == "higher" else min(v for v, _ in present)
        if direction == "higher" and target <= 0:
            continue  # no star on "0.0 tokens/s"
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
        wins = sum(_win(board, key, value, k, other) for k, other in scored if k != key)
        rates[key] = wins / (len(scored) - 1)
    return rates


def _win(board: TaskBoard, key: tuple[str, str], value: float, other_key: tuple[str, str], other: float) -> float:
    """1 when `key` beats `other_key`, 0.5 for a tie; with a paired test, only a significant difference wins."""
    tested = board.significance.pair(key, other_key) if board.significance else None
    if tested is not None:
        if tested.p_adjusted >= board.significance.alpha:  # type: ignore[union-attr]
            return 0.5
        return 1.0 if tested.delta > 0 else 0.0
    return 1.0 if value > other else 0.5 if value == other else 0.0


def overall(boards: Sequence[TaskBoard]) -> list[OverallRow]:
    """The cross-task table, best mean win rate first: raw headline values, Δ vs base and tiers per task."""
    facts: dict[tuple[str, str], LeaderboardRow] = {}
    rates: dict[tuple[str, str], list[float]] = {}
    per_task: dict[tuple[str, str], dict[str, LeaderboardRow]] = {}
    tiers: dict[tuple[str, str], dict[str, int]] = {}
    for board in boards:
        for row in board.rows:
            facts.setdefault(row.key, row)
            per_task.setdefault(row.key, {})[board.task] = row
            tier = board.tier(row)
            if tier is not None:
                tiers.setdefault(row.key, {})[board.task] = tier
        for key, rate in win_rates(board).items():
            rates.setdefault(key, []).append(rate)
    several_bases = len({key[0] for key in facts}) > 1
    boards_by_task = {board.task: board for board in boards}
    rows = []
    for key, row in facts.items():
        cells = per_task[key]
        values = {task: r.metrics[b.headline] for task, r in cells.items()
                  if (b := boards_by_task[task]).headline and b.headline in r.metrics}  # fmt: skip
        deltas = {task: d for task, r in cells.items()
                  if (h := boards_by_task[task].headline) and (d := boards_by_task[task].delta(r, h)) is not None}  # fmt: skip
        rows.append(OverallRow(
            base=key[0], adapter=key[1], method=row.method, rank=row.rank,
            mean_win_rate=sum(rates[key]) / len(rates[key]) if rates.get(key) else None,
            values=values, deltas=deltas, tiers=tiers.get(key, {}),
            n_examples={task: r.n_examples for task, r in cells.items()},
            method_label=row.method_name, name=display_name(key[0], key[1], several_bases),
            incomplete=any(r.incomplete for r in cells.values()),
        ))  # fmt: skip
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


CSV_FACTS = ("task", "split", "base", "adapter", "method", "method_name", "rank", "trainable_params", "adapter_bytes",
             "status", "incomplete", "error", "n_examples")  # fmt: skip
CSV_TIMING = ("cost_source", "latency_p50", "latency_p95", "tokens_per_s", "examples_per_s", "shared_batch_seconds", "peak_memory_bytes",
              "mfu", "run_id", "cell_id")  # fmt: skip
CSV_METRIC_SUFFIXES = ("", "_low", "_high", "_interval", "_delta_vs_base")


def to_csv(boards: Sequence[TaskBoard]) -> str:
    """Wide CSV: one line per (task, base, adapter); each metric as <name>, _low, _high, _interval, _delta_vs_base;
    the headline's tier, the Holm-adjusted p against the best row, and the degenerate-result flags."""
    metrics = metric_order(name for board in boards for name in board.metric_names)
    header = [*CSV_FACTS, "headline", "tier", "p_vs_best", "flags",
              *(f"{m}{suffix}" for m in metrics for suffix in CSV_METRIC_SUFFIXES), *CSV_TIMING]  # fmt: skip
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for board in boards:
        for row in board.rows:
            facts = [getattr(row, name) for name in CSV_FACTS]
            versus_best = board.versus(row, board.leader())
            tested = [board.headline, board.tier(row), versus_best.p_adjusted if versus_best else None,
                      "; ".join(flag.text for flag in row.flags)]  # fmt: skip
            values: list[object] = []
            for name in metrics:
                value = row.metrics.get(name)
                values += [value.value, value.low, value.high, row.interval_kinds.get(name, "bootstrap"),
                           board.delta(row, name)] if value else [""] * len(CSV_METRIC_SUFFIXES)  # fmt: skip
            line = (*facts, *tested, *values, *(getattr(row, name) for name in CSV_TIMING))
            writer.writerow([_csv_cell(v) for v in line])
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


# The two sentences the pages and the markdown export show on how rows are compared.
SIGNIFICANCE_NOTES = (
    "Tier 1 holds the row with the best headline value and every row a paired test on the same examples cannot "
    "tell apart from it: McNemar's exact test when per-example scores are 0/1 (accuracy, json_valid), a paired "
    "bootstrap of the corpus value (field F1, BLEU, MCC recomputed on each resample) or of the mean difference "
    "otherwise, Holm-corrected at α = 0.05; tier 2 repeats this among the rest.",
    "Intervals are 95%: Wilson for proportions, which never collapse at 0 or 1, and percentile bootstrap otherwise, "
    "marked ⚠ when fewer than 30 examples make them too narrow to trust.",
)

def _markdown_metric(row: LeaderboardRow, name: str) -> str:
    text = format_metric(row.metrics.get(name))
    return text + " ⚠" if row.interval_warning(name) and name in row.metrics else text


def _markdown_flags(row: LeaderboardRow) -> str:
    marks = ([row.description] if row.description else []) + [f"⚑ {flag.text}" for flag in row.flags]
    marks += ["incomplete"] if row.incomplete else []
    return "; ".join(marks)


def to_markdown(boards: Sequence[TaskBoard], overall_rows: Sequence[OverallRow], max_metrics: int = 4) -> str:
    """For pull-request comments: the overall table, then one table per task (headline metrics only)."""
    lines = ["## Leaderboard", "", " ".join(SIGNIFICANCE_NOTES), ""]
    if overall_rows:
        tasks = [board.task for board in boards]
        lines += ["| adapter | method | rank | mean win rate | " + " | ".join(map(_md, tasks)) + " |"]
        lines += ["|" + " --- |" * (4 + len(tasks))]
        for row in overall_rows:
            cells = []
            for task in tasks:
                value, tier = row.values.get(task), row.tiers.get(task)
                cell = format_number(value.value) if value else "–"
                cells.append(cell + (f" (tier {tier}, n={row.n_examples.get(task)})" if tier else ""))
            lines.append(
                f"| {_md(row.name)} | {_md(row.method_label or '–')} | {row.rank or '–'} | "
                f"{format_number(row.mean_win_rate, 2)} | " + " | ".join(cells) + " |"
            )
        lines.append("")
    for board in boards:
        lines += _markdown_board(board, board.metric_names[:max_metrics])
    return "\n".join(lines)


def _markdown_board(board: TaskBoard, metrics: Sequence[str]) -> list[str]:
    lines = [f"### {_md(board.task)}", "", *(f"> {_md(note)}" for note in board.notes), ""] if board.notes else [f"### {_md(board.task)}", ""]
    lines.append("| tier | adapter | method | rank | n | " + " | ".join(metrics) + " | latency p50 (s) | status | notes |")
    lines.append("|" + " --- |" * (8 + len(metrics)))
    for row in board.rows:
        cells = [_markdown_metric(row, name) for name in metrics]
        status = row.status if not row.error else f"{row.status}: {row.error}"
        lines.append(
            f"| {board.tier(row) or '–'} | {_md(board.name(row))} | {_md(row.method_name)} | {row.rank or '–'} | "
            f"{row.n_examples if row.n_examples is not None else '–'} | " + " | ".join(cells)
            + f" | {format_number(row.latency_p50)} | {_md(status)} | {_md(_markdown_flags(row))} |"
        )
    return [*lines, ""]


def build(store: Store, runs: Sequence[str] | None = None) -> tuple[list[TaskBoard], list[OverallRow]]:
    """The task boards and the overall table of the chosen runs (corpus headlines tested as corpus values)."""
    scores = example_scores(store, chosen_cells(store, runs))

    def corpus(task: str, metric: str, cells: Mapping[int, str]) -> CellStats | StatsUnavailable | None:
        return headline_stats(store, task, metric, cells)

    boards = task_boards(collect_rows(store, runs, scores), scores, corpus)
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
