"""The cells of a run: what one (task x variant) cell is, its outcome, and recording a failed one.

Every part of `run/` (the group runner, the executors, the lm-eval bridge) speaks these types, so
they live below all of them and import nothing of theirs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.spec import AdapterSpec, TaskSpec, stable_hash
from harness.store import Store

BASE_LABEL = "base"

Progress = Callable[[str, int], Callable[[int], None]]  # (description, total) -> advance(n)


@dataclass(frozen=True)
class CellPlan:
    """One cell: a task on the base (adapter None) or on one adapter."""

    task: TaskSpec
    adapter: AdapterSpec | None

    @property
    def label(self) -> str:
        return self.adapter.name if self.adapter else BASE_LABEL


@dataclass
class CellOutcome:
    cell_id: int
    task: str
    adapter: str
    status: str
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, Any] = field(default_factory=dict)
    computed: int = 0  # predictions made by a model in this run (0 when all came from the store)


@dataclass
class RunResult:
    run_id: str
    outcomes: list[CellOutcome]
    results_file: Path | None = None

    @property
    def failed(self) -> list[CellOutcome]:
        return [outcome for outcome in self.outcomes if outcome.status != "done"]


def cell_key(task_name: str, label: str) -> str:
    """A cell's key within its run: the same task and variant resume the same cell."""
    return stable_hash([task_name, label])


def record_failed_cell(store: Store, run_id: str, base_name: str, task: Any, adapter: AdapterSpec | None, error: str) -> CellOutcome:
    """Store one cell as failed with its reason; the rest of the matrix goes on."""
    label = adapter.name if adapter else BASE_LABEL
    fields = {
        "base": base_name,
        "adapter": adapter.name if adapter else None,
        "adapter_path": str(adapter.path) if adapter else None,
        "task": task.name,
        "split": getattr(task, "eval_split", "") or "",
        "settings_json": {},
        "status": "failed",
        "error": error,
    }
    cell_id = store.upsert_cell(run_id, cell_key(task.name, label), fields)
    return CellOutcome(cell_id, task.name, label, "failed", error)


def folder_bytes(path: Path) -> int:
    """Bytes of an adapter's weight files (what loading it reads)."""
    return sum(file.stat().st_size for file in path.iterdir() if file.is_file() and file.suffix in (".safetensors", ".bin"))
