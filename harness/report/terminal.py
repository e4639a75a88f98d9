"""Terminal tables of a run's cells: metrics with 95% intervals, timing, status."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from harness.store import Store


def format_metric(value: dict[str, Any] | None) -> str:
    if not value or value.get("value") is None:
        return "-"
    return f"{value['value']:.3g}\n[{value['low']:.3g}, {value['high']:.3g}]"


def _rows_tables(title: str, rows: Sequence[dict[str, Any]]) -> list[Table]:
    """One table per task: tasks have different metrics, so a shared table would be mostly empty."""
    tables = []
    for task in dict.fromkeys(row["task"] for row in rows):
        task_rows = [row for row in rows if row["task"] == task]
        metric_names = _shown_metrics({name for row in task_rows for name in row["metrics"]})
        table = Table(title=f"{task}: {title}")
        for column in ("adapter", "status", *metric_names, "ex/s", "tok/s"):
            table.add_column(column, overflow="fold")
        for row in task_rows:
            timing = row.get("timing") or {}
            cells = [format_metric(row["metrics"].get(name)) for name in metric_names]
            status = row["status"] if not row.get("error") else f"{row['status']}: {row['error']}"
            rates = [_rate(timing.get(key)) if row["status"] == "done" else "-" for key in ("examples_per_s", "generated_tokens_per_s")]
            table.add_row(row["adapter"], status, *cells, *rates)  # a failed cell was never cached
        tables.append(table)
    return tables


MAX_COLUMNS = 5


def _shown_metrics(names: set[str]) -> list[str]:
    """At most MAX_COLUMNS metrics in a terminal: per-field details (f1_name, …) give way first.

    Every key is still in the store, results.json and the HTML report.
    """
    if len(names) > MAX_COLUMNS:
        names = {name for name in names if not name.startswith("f1_")} or names
    return sorted(names)[:MAX_COLUMNS]


def _rate(value: float | None) -> str:
    """A rate, or 'cached' when every prediction came from the store (no time was spent)."""
    return f"{value:.1f}" if value else "cached" if value is None else "-"


def print_outcomes(console: Console, outcomes: Sequence[Any]) -> None:
    rows = [
        {"task": o.task, "adapter": o.adapter, "status": o.status, "error": o.error, "metrics": o.metrics, "timing": o.timing}
        for o in outcomes
    ]
    for table in _rows_tables("value [95% bootstrap interval]", rows):
        console.print(table)


def print_stored_run(console: Console, store: Store, run_id: str) -> None:
    rows = []
    for cell in store.cells(run_id=run_id):
        metrics = {name: value.__dict__ for name, value in store.metrics(cell.cell_id).items()}
        rows.append({"task": cell.task, "adapter": cell.label, "status": cell.status, "error": cell.error, "metrics": metrics, "timing": store.timing(cell.cell_id)})
    for table in _rows_tables(f"run {run_id}", rows):
        console.print(table)
