"""The Ray executor: base groups run on Ray workers; the driver alone writes the store.

How the work is cut and carried (the README's "Scaling plan" has the 1,000-adapter picture):

* Unit of work: one base with a group of its adapters, run by the unchanged `GroupRunner`, so each
  worker loads its base once. A run with many adapters is split into at most one group per worker
  slot (a GPU, else a CPU), `ceil(adapters / slots)` adapters each; the base row rides with the first
  group. More groups mean more base loads, fewer mean idle workers: one per slot balances the two.
* Worker side: `GroupRunner` writes to a `RemoteStore`. Its writes become `StoreOp`s that a Ray
  generator task (`num_returns="streaming"`) yields to the driver as they happen; its reads are
  answered from a snapshot the driver shipped (every stored prediction of the run's tasks made by
  the base or by one of the group's adapters, selected by adapter file hash, which the driver can
  compute without loading a model), the stored timings of the run's cells, and what the worker
  itself wrote. Cell ids are the worker's
  own; the driver maps them to store ids when it applies the `upsert_cell` that made them.
* Driver: applies the ops in order to the SQLite store (its one writer), draws the progress bars.
* Faults: a group whose worker dies (or raises anything but a user error) is submitted once more,
  with a fresh snapshot, so predictions streamed before the crash are not computed again; a second
  failure fails the group's cells with the reason. A user error (HarnessError) stops the run, as
  it does locally.
* Cache: before submitting, the driver drops every cell already done in this run with the same
  adapter weights and all its predictions stored; a second identical run sends no work at all.
  A base changed in place under the same name is not detected by this check (only a worker can
  hash a base); the prediction keys, computed on the worker, still catch it for every cell sent.

Ray is an optional extra (`pip install harness[ray]`) and is imported lazily.
"""

from __future__ import annotations

import json
import math
import os
import queue
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.errors import HarnessError, first_line
from harness.run.adapter_checks import WEIGHT_FILES, sha256_file
from harness.run.cells import BASE_LABEL, CellOutcome, Progress, cell_key, record_failed_cell
from harness.spec import AdapterSpec, RunSpec, stable_hash
from harness.store import Prediction, Store

# Environment a worker needs to find data, caches and task folders (a remote node has its own).
FORWARDED_ENV = ("HARNESS_DATA_DIR", "HARNESS_CACHE", "HARNESS_TASKS_PATH", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE",
                 "HF_HOME")
ATTEMPTS = 2  # the first try and one retry
STREAM_BATCH = 256  # ops per streamed message at most


# ---------------------------------------------------------------- messages worker -> driver


@dataclass(frozen=True)
class StoreOp:
    """One Store write made by a worker. `cell` is the worker's own cell id (None for none)."""

    method: str
    cell: int | None
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProgressStart:
    bar: int
    description: str
    total: int


@dataclass(frozen=True)
class ProgressAdvance:
    bar: int
    n: int


@dataclass(frozen=True)
class GroupDone:
    outcomes: list[CellOutcome]


@dataclass(frozen=True)
class GroupFailed:
    reason: str
    user_error: bool  # a HarnessError: the run stops, as with the local executor


Message = StoreOp | ProgressStart | ProgressAdvance | GroupDone | GroupFailed
# The writes GroupRunner (and the lm-eval bridge) make; the driver applies nothing else.
WRITES = frozenset(
    {"set_cell_examples", "add_prediction", "set_metrics", "set_example_scores", "set_timing", "set_cell_status", "set_spectra", "set_cost_profile"}
)


@dataclass(frozen=True)
class Snapshot:
    """What a worker may read: stored predictions it may reuse, and the stored timing of the run's cells."""

    predictions: list[tuple[str, str, Prediction]]  # (key, task, prediction)
    timings: dict[str, dict[str, Any]]  # cell_key -> timing summary


# ---------------------------------------------------------------- worker side


class RemoteStore:
    """The Store methods GroupRunner calls, for a worker: writes go out as ops, reads come from a snapshot."""

    def __init__(self, snapshot: Snapshot, emit: Callable[[Message], None]) -> None:
        self.path = Path("ray-worker")  # GroupRunner never reads it; kept for Store's shape
        self._emit = emit
        self._predictions: dict[str, Prediction] = {key: prediction for key, _, prediction in snapshot.predictions}
        self._timings = dict(snapshot.timings)
        self._cells: dict[tuple[str, str], int] = {}
        self._cell_keys: dict[int, str] = {}
        self._examples: dict[int, list[str]] = {}

    def upsert_cell(self, run_id: str, cell_key: str, fields: Mapping[str, Any]) -> int:
        cell = self._cells.setdefault((run_id, cell_key), len(self._cells) + 1)
        self._cell_keys[cell] = cell_key
        self._emit(StoreOp("upsert_cell", cell, (run_id, cell_key, dict(fields))))
        return cell

    def timing(self, cell_id: int) -> dict[str, Any] | None:
        """The stored timing of a cell whose predictions were all cached (kept, not recomputed)."""
        return self._timings.get(self._cell_keys.get(cell_id, ""))

    def set_cell_examples(self, cell_id: int, pairs: Sequence[tuple[str, str]]) -> None:
        self._examples[cell_id] = [key for _, key in pairs]
        self._emit(StoreOp("set_cell_examples", cell_id, (list(pairs),)))

    def existing_keys(self, keys: Iterable[str]) -> set[str]:
        return {key for key in keys if key in self._predictions}

    def add_prediction(self, prediction: Prediction, *, task: str, base_hash: str, adapter_hash: str | None) -> None:
        self._predictions.setdefault(prediction.key, prediction)
        self._emit(StoreOp("add_prediction", None, (prediction,), {"task": task, "base_hash": base_hash, "adapter_hash": adapter_hash}))

    def cell_predictions(self, cell_id: int) -> list[Prediction]:
        keys = self._examples.get(cell_id, [])
        return [self._predictions[key] for key in keys if key in self._predictions]

    def set_metrics(self, cell_id: int, values: Mapping[str, Any]) -> None:
        self._emit(StoreOp("set_metrics", cell_id, (dict(values),)))

    def set_example_scores(self, cell_id: int, scores: Sequence[tuple[str, Mapping[str, float]]]) -> None:
        self._emit(StoreOp("set_example_scores", cell_id, ([(example, dict(values)) for example, values in scores],)))

    def set_timing(self, cell_id: int, summary: Mapping[str, Any]) -> None:
        self._emit(StoreOp("set_timing", cell_id, (dict(summary),)))

    def set_cell_status(self, cell_id: int, status: str, error: str | None = None) -> None:
        self._emit(StoreOp("set_cell_status", cell_id, (status, error)))

    def set_spectra(self, adapter_hash: str, records: Sequence[Mapping[str, Any]]) -> None:
        self._emit(StoreOp("set_spectra", None, (adapter_hash, [dict(record) for record in records])))

    # Reads the snapshot does not carry: answered "nothing stored", so the worker measures again and the
    # driver's write replaces the same row (spectra and cost profiles are keyed by content, not by run).
    def earlier_timing(self, cell_id: int) -> dict[str, Any] | None:
        return None

    def spectra(self, adapter_hash: str) -> list[dict[str, Any]]:
        return []

    def cost_profile(self, base_hash: str, adapter_hash: str | None, task: str, settings: Mapping[str, Any], probe_key: str) -> None:
        return None

    def set_cost_profile(
        self, base_hash: str, adapter_hash: str | None, task: str, settings: Mapping[str, Any], probe_key: str, profile: Mapping[str, Any]
    ) -> None:
        self._emit(StoreOp("set_cost_profile", None, (base_hash, adapter_hash, task, dict(settings), probe_key, dict(profile))))


def _remote_progress(emit: Callable[[Message], None]) -> Progress:
    bars = iter(range(1, 1 << 30))

    def start(description: str, total: int) -> Callable[[int], None]:
        bar = next(bars)
        emit(ProgressStart(bar, description, total))
        return lambda n: emit(ProgressAdvance(bar, n))

    return start


def run_group_streaming(work: GroupWork, snapshot: Snapshot) -> Iterator[list[Message]]:
    """The body of the Ray generator task: run GroupRunner in a thread, yield its messages in batches."""
    from harness.run.runner import GroupRunner

    _limit_threads()
    messages: queue.Queue[Message] = queue.Queue()
    store = RemoteStore(snapshot, messages.put)

    def work_thread() -> None:
        try:
            outcomes = GroupRunner(work.spec, work.run_id, store, _remote_progress(messages.put)).run(list(work.tasks))  # type: ignore[arg-type]
            messages.put(GroupDone(outcomes))
        except HarnessError as error:
            messages.put(GroupFailed(str(error), user_error=True))
        except BaseException as error:  # noqa: BLE001 - any crash becomes the group's reason
            messages.put(GroupFailed(f"{type(error).__name__}: {error} ({_last_frame(error)})", user_error=False))

    threading.Thread(target=work_thread, name="harness-group", daemon=True).start()
    while True:
        batch = [messages.get()]
        while len(batch) < STREAM_BATCH and not isinstance(batch[-1], (GroupDone, GroupFailed)):
            try:
                batch.append(messages.get_nowait())
            except queue.Empty:
                break
        yield batch
        if isinstance(batch[-1], (GroupDone, GroupFailed)):
            return


def _limit_threads() -> None:
    """Use the CPUs Ray assigned this task, not every core of the node (other workers share them)."""
    import ray
    import torch

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    if cpus:
        torch.set_num_threads(max(1, int(cpus)))


def _last_frame(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    return f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "no traceback"


# ---------------------------------------------------------------- driver side


@dataclass(frozen=True)
class GroupWork:
    """One unit of work: a RunSpec restricted to some adapters (and maybe the base row) of one base."""

    index: int
    spec: RunSpec
    run_id: str
    tasks: tuple[Any, ...]  # TaskSpec, or lm_eval_bridge.LmEvalTask

    @property
    def labels(self) -> list[str]:
        return ([BASE_LABEL] if self.spec.include_base else []) + [adapter.name for adapter in self.spec.adapters]


def split_groups(spec: RunSpec, run_id: str, tasks: Sequence[Any], slots: int) -> list[GroupWork]:
    """At most one group per worker slot; the base row goes with the first group."""
    adapters = list(spec.adapters)
    if not adapters:
        return [GroupWork(0, spec, run_id, tuple(tasks))] if spec.include_base else []
    size = max(1, math.ceil(len(adapters) / max(1, slots)))
    chunks = [adapters[start : start + size] for start in range(0, len(adapters), size)]
    return [
        GroupWork(index, spec.model_copy(update={"adapters": tuple(chunk), "include_base": spec.include_base and index == 0}), run_id, tuple(tasks))
        for index, chunk in enumerate(chunks)
    ]


def adapter_file_hash(adapter: AdapterSpec) -> str | None:
    """sha256 of the adapter's weights file, the hash AdapterHost records; None when there is none."""
    for name in WEIGHT_FILES:
        if (Path(adapter.path) / name).is_file():
            return sha256_file(Path(adapter.path) / name)
    return None


class CachedCells:
    """Which cells of a run are already complete in the store (so no worker is sent for them)."""

    def __init__(self, store: Store, run_id: str, spec: RunSpec) -> None:
        self.store = store
        self.rows = {cell_key(row.task, row.label): row for row in store.cells(run_id=run_id)}
        self.hashes = {adapter.name: adapter_file_hash(adapter) for adapter in spec.adapters}

    def done(self, task_name: str, adapter: AdapterSpec | None) -> int | None:
        """The stored cell id when this cell is complete and made from the same adapter weights."""
        label = adapter.name if adapter else BASE_LABEL
        row = self.rows.get(cell_key(task_name, label))
        if row is None or row.status != "done" or row.n_examples is None:
            return None
        if adapter is not None and (row.adapter_hash is None or row.adapter_hash != self.hashes.get(adapter.name)):
            return None
        if len(self.store.cell_predictions(row.cell_id)) != row.n_examples:
            return None
        return row.cell_id

    def outcome(self, cell_id: int) -> CellOutcome:
        row = self.store.cell(cell_id)
        metrics = {name: {"value": v.value, "low": v.low, "high": v.high} for name, v in self.store.metrics(cell_id).items()}
        return CellOutcome(cell_id, row.task, row.label, "done", None, metrics, self.store.timing(cell_id) or {}, 0)


def prune_cached(spec: RunSpec, tasks: Sequence[Any], cached: CachedCells) -> tuple[RunSpec | None, list[CellOutcome]]:
    """The spec restricted to variants with at least one cell to compute, and the outcomes of the rest."""
    outcomes: list[CellOutcome] = []
    keep_base = False
    keep: list[AdapterSpec] = []
    for adapter in ([None] if spec.include_base else []) + list(spec.adapters):
        done = [cached.done(task.name, adapter) for task in tasks]
        if all(cell is not None for cell in done):
            outcomes += [cached.outcome(cell) for cell in done if cell is not None]
        elif adapter is None:
            keep_base = True
        else:
            keep.append(adapter)
    if not keep_base and not keep:
        return None, outcomes
    # cells of a kept variant that were done are recomputed from the snapshot (no model call)
    return spec.model_copy(update={"adapters": tuple(keep), "include_base": keep_base}), outcomes


def snapshot_for(store: Store, run_id: str, tasks: Sequence[Any], adapters: Sequence[AdapterSpec]) -> Snapshot:
    """Stored predictions a group may reuse (its tasks, made by the base or one of its adapters), and the run's timings."""
    hashes = [h for h in (adapter_file_hash(adapter) for adapter in adapters) if h]
    names = [task.name for task in tasks]
    query = (
        f"SELECT * FROM predictions WHERE task IN ({', '.join('?' * len(names))})"
        f" AND (adapter_hash IS NULL OR adapter_hash IN ({', '.join('?' * len(hashes))}))"
    )
    rows = store.connection.execute(query, [*names, *hashes])
    predictions = [(row["key"], row["task"], _row_prediction(row)) for row in rows]
    timings = {cell_key(cell.task, cell.label): store.timing(cell.cell_id) for cell in store.cells(run_id=run_id)}
    return Snapshot(predictions, {key: value for key, value in timings.items() if value is not None})


def _row_prediction(row: Any) -> Prediction:
    return Prediction(row["key"], row["example_id"], row["prediction"], json.loads(row["details_json"] or "{}"),
                      row["prompt_tokens"] or 0, row["new_tokens"] or 0, row["seconds"] or 0.0)


class _Applier:
    """Applies one group attempt's messages to the real store, translating the worker's cell ids."""

    def __init__(self, store: Store, progress: Progress | None) -> None:
        self.store = store
        self.progress = progress
        self.cells: dict[int, int] = {}
        self.bars: dict[int, Callable[[int], None]] = {}

    def apply(self, message: Message) -> None:
        if isinstance(message, StoreOp):
            self._write(message)
        elif isinstance(message, ProgressStart) and self.progress:
            self.bars[message.bar] = self.progress(message.description, message.total)
        elif isinstance(message, ProgressAdvance) and message.bar in self.bars:
            self.bars[message.bar](message.n)

    def _write(self, op: StoreOp) -> None:
        if op.method == "upsert_cell":
            self.cells[op.cell] = self.store.upsert_cell(*op.args)  # type: ignore[index]
            return
        if op.method not in WRITES:
            raise HarnessError(f"A worker sent an unknown store write '{op.method}'; driver and workers must run the same harness version.")
        args = op.args if op.cell is None else (self.cells[op.cell], *op.args)
        getattr(self.store, op.method)(*args, **op.kwargs)

    def outcomes(self, done: GroupDone) -> list[CellOutcome]:
        return [replace(outcome, cell_id=self.cells.get(outcome.cell_id, outcome.cell_id)) for outcome in done.outcomes]


@dataclass
class _Attempt:
    work: GroupWork
    number: int
    applier: _Applier
    finished: bool = False  # late messages of a finished attempt are ignored


class RayExecutor:
    """Runs base groups on a Ray cluster (a local instance when no address is given)."""

    def __init__(self, address: str | None = None, adapters_per_group: int | None = None) -> None:
        self.address = address
        self.adapters_per_group = adapters_per_group

    def run(self, spec: RunSpec, run_id: str, tasks: Sequence[Any], store: Store, progress: Progress | None) -> list[CellOutcome]:
        pending, outcomes = prune_cached(spec, tasks, CachedCells(store, run_id, spec))
        if pending is not None:  # when every cell is stored, Ray is not even started
            outcomes += self._on_ray(pending, run_id, tasks, store, progress)
        return _in_plan_order(outcomes, spec, tasks)

    def _on_ray(self, pending: RunSpec, run_id: str, tasks: Sequence[Any], store: Store, progress: Progress | None) -> list[CellOutcome]:
        ray = _import_ray()
        started_here = not ray.is_initialized()
        if started_here:
            import logging

            # worker output stays in Ray's logs: failures reach the driver as messages with their reason
            ray.init(address=self.address, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
        try:
            return self._run(ray, pending, run_id, tasks, store, progress)
        finally:
            if started_here:
                ray.shutdown()

    def _run(self, ray: Any, pending: RunSpec, run_id: str, tasks: Sequence[Any], store: Store, progress: Progress | None) -> list[CellOutcome]:
        outcomes: list[CellOutcome] = []
        options = worker_options(ray.cluster_resources())
        slots = self._slots(ray.cluster_resources(), options, len(pending.adapters))
        groups = split_groups(pending, run_id, tasks, slots)
        env = {name: os.environ[name] for name in FORWARDED_ENV if name in os.environ}
        remote = ray.remote(run_group_streaming).options(
            num_returns="streaming", max_retries=0, runtime_env={"env_vars": env}, **options
        )
        inbox: queue.Queue[tuple[_Attempt, list[Message] | BaseException]] = queue.Queue()
        running = 0
        for work in groups:
            self._submit(remote, ray, _Attempt(work, 1, _Applier(store, progress)), store, inbox)
            running += 1
        while running:
            attempt, payload = inbox.get()
            if attempt.finished:
                continue
            finished = self._handle(attempt, payload, outcomes, store)
            if finished is None:
                continue
            attempt.finished = True
            running -= 1
            if finished == "retry":
                self._submit(remote, ray, _Attempt(attempt.work, attempt.number + 1, _Applier(store, progress)), store, inbox)
                running += 1
        return outcomes

    def _slots(self, resources: Mapping[str, float], options: Mapping[str, Any], adapters: int) -> int:
        if self.adapters_per_group:
            return max(1, math.ceil(adapters / self.adapters_per_group))
        if "num_gpus" in options:
            return max(1, int(resources.get("GPU", 1)))
        return max(1, int(resources.get("CPU", 1) // options.get("num_cpus", 1)))

    def _submit(self, remote: Any, ray: Any, attempt: _Attempt, store: Store, inbox: queue.Queue[Any]) -> None:
        # A fresh snapshot per attempt: a retry reuses what the dead worker already streamed back.
        snapshot = ray.put(snapshot_for(store, attempt.work.run_id, attempt.work.tasks, attempt.work.spec.adapters))
        stream = remote.remote(attempt.work, snapshot)

        def consume() -> None:
            try:
                for ref in stream:
                    inbox.put((attempt, ray.get(ref)))
            except BaseException as error:  # noqa: BLE001 - a dead worker surfaces here
                inbox.put((attempt, error))

        threading.Thread(target=consume, name=f"harness-stream-{attempt.work.index}", daemon=True).start()

    def _handle(self, attempt: _Attempt, payload: list[Message] | BaseException, outcomes: list[CellOutcome], store: Store) -> str | None:
        """Apply one streamed batch; say 'done', 'retry' or 'failed' when the attempt ended."""
        if isinstance(payload, BaseException):
            return self._failed(attempt, f"the worker died ({type(payload).__name__}: {first_line(payload)})", outcomes, store)
        for message in payload:
            if isinstance(message, GroupDone):
                outcomes += attempt.applier.outcomes(message)
                return "done"
            if isinstance(message, GroupFailed):
                if message.user_error:
                    raise HarnessError(message.reason)
                return self._failed(attempt, message.reason, outcomes, store)
            attempt.applier.apply(message)
        return None

    def _failed(self, attempt: _Attempt, reason: str, outcomes: list[CellOutcome], store: Store) -> str:
        if attempt.number < ATTEMPTS:
            return "retry"
        outcomes += fail_group(store, attempt.work, f"Group {attempt.work.index} failed twice on Ray: {reason}")
        return "failed"


def worker_options(resources: Mapping[str, float]) -> dict[str, Any]:
    """One GPU per worker where the cluster has GPUs, one CPU otherwise."""
    return {"num_gpus": 1} if resources.get("GPU", 0) >= 1 else {"num_cpus": 1}


def fail_group(store: Store, work: GroupWork, reason: str) -> list[CellOutcome]:
    """Record every cell of a group as failed (same cell keys as GroupRunner uses)."""
    variants: list[AdapterSpec | None] = ([None] if work.spec.include_base else []) + list(work.spec.adapters)
    return [record_failed_cell(store, work.run_id, work.spec.model.name, task, adapter, reason) for task in work.tasks for adapter in variants]


def _in_plan_order(outcomes: list[CellOutcome], spec: RunSpec, tasks: Sequence[Any]) -> list[CellOutcome]:
    task_rank = {task.name: index for index, task in enumerate(tasks)}
    labels = ([BASE_LABEL] if spec.include_base else []) + [adapter.name for adapter in spec.adapters]
    label_rank = {label: index for index, label in enumerate(labels)}
    return sorted(outcomes, key=lambda o: (task_rank.get(o.task, len(task_rank)), label_rank.get(o.adapter, len(label_rank))))


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as error:
        raise HarnessError("The Ray executor needs Ray; install it with `pip install 'harness[ray]'`.") from error
    return ray
