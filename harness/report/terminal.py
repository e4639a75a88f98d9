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
    return f"{value['value']:.3f} [{value['low']:.3f}, {value['high']:.3f}]"


def _rows_table(title: str, rows: Sequence[dict[str, Any]]) -> Table:
    metric_names = sorted({name for row in rows for name in row["metrics"]})
    table = Table(title=title)
    for column in ("task", "adapter", "status", *metric_names, "ex/s", "tok/s"):
        table.add_column(column, overflow="fold")
    for row in rows:
        timing = row.get("timing") or {}
        cells = [format_metric(row["metrics"].get(name)) for name in metric_names]
        status = row["status"] if not row.get("error") else f"{row['status']}: {row['error']}"
        table.add_row(row["task"], row["adapter"], status, *cells, _rate(timing.get("examples_per_s")), _rate(timing.get("generated_tokens_per_s")))
    return table


def _rate(value: float | None) -> str:
    return f"{value:.1f}" if value else "cached" if value is None else "-"


def print_outcomes(console: Console, outcomes: Sequence[Any]) -> None:
    rows = [
        {"task": o.task, "adapter": o.adapter, "status": o.status, "error": o.error, "metrics": o.metrics, "timing": o.timing}
        for o in outcomes
    ]
    console.print(_rows_table("results (95% bootstrap intervals)", rows))


def print_stored_run(console: Console, store: Store, run_id: str) -> None:
    rows = []
    for cell in store.cells(run_id=run_id):
        metrics = {name: value.__dict__ for name, value in store.metrics(cell.cell_id).items()}
        rows.append({"task": cell.task, "adapter": cell.label, "status": cell.status, "error": cell.error, "metrics": metrics, "timing": store.timing(cell.cell_id)})
    console.print(_rows_table(f"run {run_id}", rows))
