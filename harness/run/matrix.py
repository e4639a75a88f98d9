"""Plans the (base x adapter x task) matrix, picks the executor and writes the run's results file.

`base_groups` splits a RunSpec into the bases to load (the base as asked, and its 4-bit form for QLoRA
adapters); each group is the unit of work an executor hands out (locally, or to a Ray worker).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.data import load_examples
from harness.errors import HarnessError
from harness.registry import task_registry
from harness.run.cells import Progress, RunResult
from harness.run.heartbeat import Heartbeat
from harness.spec import AdapterSpec, RunSpec, TaskSpec, stable_hash
from harness.store import Store


def run_id_for(spec: RunSpec) -> str:
    """A run is named by its arguments (as in HELM): the same command resumes the same run."""
    return stable_hash(spec.model_dump(mode="json"))[:12]


def resolve_tasks(spec: RunSpec, include_paths: Sequence[Path] = ()) -> list[Any]:
    """Our TaskSpecs, and an lm_eval_bridge.LmEvalTask for each `lm_eval:NAME` (run by lm-eval's evaluator)."""
    from harness.interop.lm_eval_tasks import is_lm_eval_name, resolve_lm_eval_task

    registry = task_registry(include_paths)
    return [resolve_lm_eval_task(name, include_paths) if is_lm_eval_name(name) else registry.get(name) for name in spec.tasks]


def execute(
    spec: RunSpec,
    store: Store,
    include_paths: Sequence[Path] = (),
    progress: Progress | None = None,
    results_dir: Path | None = None,
    executor: str = "local",
    ray_address: str | None = None,
) -> RunResult:
    """Run the whole matrix of a RunSpec with the chosen executor and write the results file."""
    tasks = resolve_tasks(spec, include_paths)
    for task in tasks:  # fail fast on bad data or templates, before any model is loaded
        if isinstance(task, TaskSpec):
            load_examples(task, limit=1)
    run_id = run_id_for(spec)
    store.start_run(run_id, spec.model_dump(mode="json"))
    runner = make_executor(executor, ray_address)
    try:
        with Heartbeat(store, run_id):
            outcomes = [o for group in base_groups(spec) for o in runner.run(group, run_id, tasks, store, progress)]
    except BaseException as error:  # Ctrl-C or a crash: the same command resumes it
        store.finish_run(run_id, "interrupted" if isinstance(error, KeyboardInterrupt) else "failed")
        raise
    store.finish_run(run_id, "done" if all(o.status == "done" for o in outcomes) else "failed")
    result = RunResult(run_id, outcomes)
    result.results_file = write_results(result, spec, results_dir or store.path.parent / "runs")
    return result


def trained_in_4bit(adapter: AdapterSpec) -> bool:
    """QLoRA adapters say so in their card: they are evaluated on the 4-bit base they were trained on."""
    card = Path(adapter.path) / "card.json"
    try:  # a missing or unreadable folder is the runner's to report (as that adapter's failed cells)
        return card.is_file() and bool(json.loads(card.read_text(encoding="utf-8")).get("load_in_4bit", False))
    except (OSError, json.JSONDecodeError):
        return False


def base_groups(spec: RunSpec) -> list[RunSpec]:
    """One RunSpec per base to load: the base as asked, and its 4-bit form for QLoRA adapters."""
    if spec.model.load_in_4bit:
        return [spec]
    quantized = tuple(a for a in spec.adapters if trained_in_4bit(a))
    if not quantized:
        return [spec]
    plain = spec.model_copy(update={"adapters": tuple(a for a in spec.adapters if a not in quantized)})
    four_bit = spec.model_copy(
        update={"adapters": quantized, "include_base": False, "model": spec.model.model_copy(update={"load_in_4bit": True})}
    )
    return [group for group in (plain, four_bit) if group.adapters or group.include_base]


def make_executor(name: str, ray_address: str | None = None) -> Any:
    """'local' runs the base group in this process; 'ray' hands groups to Ray workers (harness[ray])."""
    if name == "ray":
        from harness.run.executors.ray import RayExecutor

        return RayExecutor(address=ray_address)
    if name != "local":
        raise HarnessError(f"Unknown executor '{name}'; choose 'local' or 'ray'.")
    from harness.run.executors.local import LocalExecutor

    return LocalExecutor()


def write_results(result: RunResult, spec: RunSpec, folder: Path) -> Path:
    path = folder / result.run_id / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "run_id": result.run_id,
        "spec": spec.model_dump(mode="json"),
        "cells": [outcome.__dict__ for outcome in result.outcomes],
    }
    path.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
    return path
