"""The default executor: every base group runs in this process, one after another."""

from __future__ import annotations

from collections.abc import Sequence

from harness.run.cells import CellOutcome, Progress
from harness.run.runner import GroupRunner
from harness.spec import RunSpec, TaskSpec
from harness.store import Store


class LocalExecutor:
    def run(self, spec: RunSpec, run_id: str, tasks: Sequence[TaskSpec], store: Store, progress: Progress | None) -> list[CellOutcome]:
        return GroupRunner(spec, run_id, store, progress).run(tasks)
