"""The Ray executor on a local Ray instance: same stored results as the local executor, cache, retry."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import ray
from helpers_models import adapter_factory, tiny_llama  # noqa: F401

from harness.zoo.adapters import resolve_adapters
from harness.run.executors import ray as ray_executor
from harness.errors import HarnessError
from harness.run.matrix import execute, make_executor
from harness.spec import ModelSpec, RunSpec
from harness.store import Prediction, Store
from helpers_tasks import CLS_TASK as TINY_CLS
from helpers_tasks import GEN_TASK as TINY_GEN
from helpers_tasks import make_task, task_body

GEN_TASK = task_body(TINY_GEN, name="ray_gen", max_new_tokens="10")
CLS_TASK = task_body(TINY_CLS, name="ray_cls")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture()
def tasks_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "tasks"
    make_task(folder, GEN_TASK, 6)
    make_task(folder, CLS_TASK, 6)
    monkeypatch.setenv("HARNESS_TASKS_PATH", str(folder))  # forwarded to the workers
    return folder


def spec_for(model: Path, adapters: list[Path]) -> RunSpec:
    return RunSpec(tasks=("ray_gen", "ray_cls"), model=ModelSpec(name=str(model)), adapters=tuple(resolve_adapters(adapters)), batch_size=4)


def stored(store: Store, run_id: str) -> dict[tuple[str, str], tuple[list[str], dict[str, tuple[float, float, float]], str]]:
    """(task, label) -> (prediction texts, metrics, status): what both executors must agree on."""
    result = {}
    for cell in store.cells(run_id=run_id):
        texts = [p.prediction for p in store.cell_predictions(cell.cell_id)]
        metrics = {name: (v.value, v.low, v.high) for name, v in store.metrics(cell.cell_id).items()}
        result[(cell.task, cell.label)] = (texts, metrics, cell.status)
    return result


def test_ray_run_stores_what_the_local_run_stores_and_caches(local_ray, tiny_llama, adapter_factory, tasks_dir, tmp_path, monkeypatch) -> None:
    adapters = [adapter_factory(tiny_llama, "causal", "lora", seed=1), adapter_factory(tiny_llama, "causal", "lora", seed=2)]
    spec = spec_for(tiny_llama, adapters)
    local_store, ray_store = Store(tmp_path / "local.sqlite"), Store(tmp_path / "ray.sqlite")
    local = execute(spec, local_store)
    remote = execute(spec, ray_store, executor="ray")
    assert [o.status for o in remote.outcomes] == ["done"] * 6
    expected = stored(local_store, local.run_id)
    assert len(expected) == 6 and all(len(texts) == 6 for texts, _, _ in expected.values())
    assert stored(ray_store, remote.run_id) == expected
    assert ray_store.count_predictions() == local_store.count_predictions() == 2 * 3 * 6

    def no_work(*args, **kwargs):
        raise AssertionError("work was sent to Ray although every cell is stored")

    monkeypatch.setattr(ray_executor.RayExecutor, "_on_ray", no_work)
    again = execute(spec, ray_store, executor="ray")
    assert [o.status for o in again.outcomes] == ["done"] * 6 and sum(o.computed for o in again.outcomes) == 0
    assert {(o.task, o.adapter): o.metrics for o in again.outcomes} == {(o.task, o.adapter): o.metrics for o in remote.outcomes}


def crash_once_after_a_prediction(marker: Path):
    """A group body that dies (os._exit) after streaming its first prediction, once across all workers.

    Defined as a closure so Ray pickles it by value: the worker runs it without importing this test.
    """
    body = ray_executor.run_group_streaming

    def crashing(work, snapshot):
        for batch in body(work, snapshot):
            yield batch
            if any(getattr(m, "method", None) == "add_prediction" for m in batch):
                try:
                    with open(marker, "x"):  # exclusive create: only one worker, only once
                        pass
                except FileExistsError:
                    continue
                os._exit(1)

    return crashing


def test_a_worker_killed_mid_group_is_retried(local_ray, tiny_llama, adapter_factory, tasks_dir, tmp_path, monkeypatch) -> None:
    # one adapter, one task: one group, so the crash and its retry are the whole run
    spec = spec_for(tiny_llama, [adapter_factory(tiny_llama, "causal", "lora", seed=1)]).model_copy(update={"tasks": ("ray_gen",)})
    marker = tmp_path / "crashed"
    monkeypatch.setattr(ray_executor, "run_group_streaming", crash_once_after_a_prediction(marker))
    store, local_store = Store(tmp_path / "ray.sqlite"), Store(tmp_path / "local.sqlite")
    result = execute(spec, store, executor="ray")
    assert marker.exists(), "no worker was killed: the fault hook did not fire"
    assert [o.status for o in result.outcomes] == ["done"] * 2
    local = execute(spec, local_store)
    assert stored(store, result.run_id) == stored(local_store, local.run_id)


def test_remote_store_ops_replay_onto_the_driver_store(tmp_path) -> None:
    """Worker cell ids are its own; the driver maps them when it applies the upsert."""
    store = Store(tmp_path / "s.sqlite")
    store.start_run("r", {})
    store.upsert_cell("r", "earlier", {"base": "b", "task": "t", "split": "test", "settings_json": {}, "status": "done"})
    sent: list = []
    snapshot = ray_executor.Snapshot([("k0", "t", Prediction("k0", "e0", "cached", {}, 1, 1, 0.1))], {"c1": {"wall_seconds": 2.0}})
    remote = ray_executor.RemoteStore(snapshot, sent.append)
    cell = remote.upsert_cell("r", "c1", {"base": "b", "task": "t", "split": "test", "settings_json": {}, "status": "running"})
    remote.set_cell_examples(cell, [("e0", "k0"), ("e1", "k1")])
    assert remote.existing_keys(["k0", "k1"]) == {"k0"}
    remote.add_prediction(Prediction("k1", "e1", "new", {}, 2, 3, 0.2), task="t", base_hash="h", adapter_hash=None)
    assert [p.prediction for p in remote.cell_predictions(cell)] == ["cached", "new"]
    assert remote.timing(cell) == {"wall_seconds": 2.0}
    remote.set_cell_status(cell, "done")
    applier = ray_executor._Applier(store, None)
    for message in sent:
        applier.apply(message)
    real = applier.cells[cell]
    assert real != cell and store.cell(real).status == "done"
    assert store.existing_keys(["k0", "k1"]) == {"k1"}  # k0 came from the snapshot: the driver has it already


def test_groups_split_per_worker_slot_with_the_base_in_the_first(tiny_llama, adapter_factory) -> None:
    adapter = adapter_factory(tiny_llama, "causal", "lora", seed=1)
    spec = RunSpec(tasks=("t",), model=ModelSpec(name="m"), adapters=tuple(
        resolve_adapters([adapter])[0].model_copy(update={"name": f"a{i}"}) for i in range(5)))
    groups = ray_executor.split_groups(spec, "run", [], slots=2)
    assert [g.labels for g in groups] == [["base", "a0", "a1", "a2"], ["a3", "a4"]]
    assert ray_executor.worker_options({"CPU": 8.0}) == {"num_cpus": 1}
    assert ray_executor.worker_options({"CPU": 8.0, "GPU": 2.0}) == {"num_gpus": 1}
    with pytest.raises(HarnessError, match="Unknown executor 'spark'"):
        make_executor("spark")
