"""Collects the two sides of a regression gate from the results store.

A side is an adapter folder, a zoo name (`smollm2-135m/resume_json/lora_r16`), `base`, or a stored
cell (`cell:ID`). Adapters are evaluated first through the runner, which takes every prediction
it already has from the store, so both sides always cover exactly the same examples with the
same settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.zoo.adapters import ZOO_DIR, resolve_adapters
from harness.data import load_examples
from harness.errors import HarnessError
from harness.gate.decide import GateInput, Side
from harness.metrics import get_metric
from harness.registry import task_registry
from harness.metrics.filters import apply_filters
from harness.scoring import scoring_input
from harness.spec import AdapterSpec, RunSpec
from harness.store import CellRow, Store

BASE = "base"
CELL_PREFIX = "cell:"


@dataclass(frozen=True)
class SideRef:
    """What the user named: the base, an adapter, or one stored cell."""

    text: str
    adapter: AdapterSpec | None = None
    cell_id: int | None = None

    @property
    def is_base(self) -> bool:
        return self.adapter is None and self.cell_id is None


def parse_side(text: str, allow_pickle: bool = False) -> SideRef:
    if text == BASE:
        return SideRef(text)
    if text.startswith(CELL_PREFIX):
        try:
            return SideRef(text, cell_id=int(text[len(CELL_PREFIX):]))
        except ValueError:
            raise HarnessError(f"'{text}' is not a stored cell; write cell:ID with the number `harness show RUN` prints.")
    path = Path(text)
    if not path.exists() and (ZOO_DIR / text).exists():
        path = ZOO_DIR / text
    adapters = resolve_adapters([path], allow_pickle)
    if len(adapters) != 1:
        raise HarnessError(f"'{text}' holds {len(adapters)} adapters; the gate compares exactly one candidate with one baseline.")
    return SideRef(text, adapter=adapters[0])


def cells_to_run(refs: Sequence[SideRef]) -> tuple[list[AdapterSpec], bool]:
    """The adapters the runner must evaluate, and whether the base row is needed."""
    if len(refs) == 2 and _same_ref(*refs):
        raise HarnessError(f"Candidate and baseline are both '{refs[1].text}'; name two different adapters (a gate of a thing against itself always passes).")
    adapters: list[AdapterSpec] = []
    for ref in refs:
        if ref.adapter is not None and ref.adapter.name not in {a.name for a in adapters}:
            adapters.append(ref.adapter)
    return adapters, any(ref.is_base for ref in refs)


def require_done(store: Store, cell: CellRow) -> None:
    """A cell the gate may read: done. A cell of a killed run is "incomplete", and says how to finish it."""
    if cell.status == "done":
        return
    where = f"Cell {cell.cell_id} ({cell.task}, {cell.label})"
    if cell.status == "running" and store.run_status(cell.run_id) == "interrupted":
        raise HarnessError(
            f"{where} is incomplete: run {cell.run_id} was interrupted ({store.run_progress(cell.run_id)}); "
            "re-run the same `harness run` command to resume it, then gate again."
        )
    if cell.status == "running":
        raise HarnessError(f"{where} is still being computed by run {cell.run_id}; gate it when that run has finished.")
    raise HarnessError(f"{where} is {cell.status}, not done ({cell.error or 'no reason stored'}); re-run it first.")


def refuse_same_sides(store: Store, baseline_cell: int, candidate_cell: int) -> None:
    """A gate comparing a thing with itself always passes: a misconfigured CI job must not look green."""
    if baseline_cell == candidate_cell:
        raise HarnessError(f"Candidate and baseline are the same cell ({baseline_cell}); name two different adapters.")
    baseline, candidate = store.cell(baseline_cell), store.cell(candidate_cell)
    same_weights = baseline.base_hash == candidate.base_hash and baseline.adapter_hash == candidate.adapter_hash
    if same_weights and baseline.base_hash is not None:
        what = f"adapter weights {candidate.adapter_hash[:12]}" if candidate.adapter_hash else "base model with no adapter"
        raise HarnessError(
            f"Candidate '{candidate.label}' and baseline '{baseline.label}' are the same {what}; name two different adapters."
        )


def side_warnings(store: Store, baseline_cell: int, candidate_cell: int) -> list[str]:
    """Differences that make a comparison unfair though the gate can still run it."""
    baseline, candidate = store.cell(baseline_cell), store.cell(candidate_cell)
    warnings = []
    if baseline.split != candidate.split:
        warnings.append(f"the baseline was scored on split '{baseline.split}' and the candidate on '{candidate.split}'")
    ids = [{p.example_id for p in store.cell_predictions(cell)} for cell in (baseline_cell, candidate_cell)]
    if ids[0] != ids[1]:
        warnings.append(
            f"the two sides were scored on different example sets ({len(ids[0] - ids[1])} only in the baseline, "
            f"{len(ids[1] - ids[0])} only in the candidate); only shared examples can be compared"
        )
    changed = sorted(key for key in set(baseline.settings) | set(candidate.settings) if baseline.settings.get(key) != candidate.settings.get(key))
    if changed:
        warnings.append(f"the two sides were scored with different settings ({', '.join(changed)})")
    return [f"task '{baseline.task}': {text}" for text in warnings]


def _same_ref(first: SideRef, second: SideRef) -> bool:
    if first.is_base or second.is_base:
        return first.is_base and second.is_base
    if first.adapter is not None and second.adapter is not None:
        return first.adapter.path == second.adapter.path
    return first.cell_id is not None and first.cell_id == second.cell_id


def side_from_cell(store: Store, cell_id: int, include_paths: Sequence[Path] = ()) -> Side:
    cell = store.cell(cell_id)
    require_done(store, cell)
    task = task_registry(include_paths).get(cell.task)
    predictions = store.cell_predictions(cell_id)
    by_id = {example.id: example for example in load_examples(task, cell.split)}
    examples = [by_id[p.example_id] for p in predictions]
    # the gate judges what the leaderboard shows: the task's filtered text (filters.py)
    data = scoring_input(task, examples, [apply_filters(task.filters, p.prediction) for p in predictions])
    scores = store.example_scores(cell_id)
    return Side(
        ids=[e.id for e in examples],
        predictions=list(data.predictions),
        references=list(data.references),
        labels=list(data.labels),
        scores=[scores.get(e.id, {}) for e in examples],
    )


def gate_input(
    store: Store, task_name: str, baseline_cell: int, candidate_cell: int, keys: Sequence[str], include_paths: Sequence[Path] = ()
) -> GateInput:
    refuse_same_sides(store, baseline_cell, candidate_cell)
    task = task_registry(include_paths).get(task_name)
    metrics = [get_metric(name, task.folder) for name in task.metrics]
    return GateInput(
        task=task_name,
        metrics=metrics,
        baseline=side_from_cell(store, baseline_cell, include_paths),
        candidate=side_from_cell(store, candidate_cell, include_paths),
        keys=tuple(keys),
        do_sample=task.generation.do_sample,
    )


def evaluate_sides(
    spec: RunSpec, store: Store, include_paths: Sequence[Path] = (), progress: Any = None
) -> dict[tuple[str, str], int]:
    """Run (or fetch from the cache) every adapter cell the gate needs: (task, label) -> cell id."""
    from harness.run.matrix import execute

    result = execute(spec, store, include_paths, progress=progress)
    failed = [o for o in result.outcomes if o.status != "done"]
    if failed:
        first = failed[0]
        raise HarnessError(f"The gate could not evaluate '{first.adapter}' on '{first.task}': {first.error}")
    return {(o.task, o.adapter): o.cell_id for o in result.outcomes}


def cell_for(ref: SideRef, task: str, cells: dict[tuple[str, str], int], store: Store) -> int:
    if ref.cell_id is not None:
        stored = store.cell(ref.cell_id)
        if stored.task != task:
            raise HarnessError(f"Cell {ref.cell_id} is on task '{stored.task}', not '{task}'; name a cell of this task.")
        return ref.cell_id
    label = ref.adapter.name if ref.adapter else BASE
    return cells[(task, label)]
