"""Per-adapter cost profiles: measured alone on a probe set, stored once, shown by the report."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers_models import adapter_factory, single_thread, tiny_llama  # noqa: F401
from helpers_tasks import CLS_TASK, GEN_TASK, make_task

from harness.run import cost_profile
from harness.report.leaderboard import collect_rows
from harness.run.matrix import execute
from harness.spec import ModelSpec, RunSpec
from harness.store import Store
from harness.zoo.adapters import resolve_adapters


@pytest.fixture()
def tasks_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "tasks"
    # the sizes test_runner uses: a task's rows module is imported once per process, so other sizes here
    # would leak into the runner tests that follow in the same session
    make_task(folder, GEN_TASK, 12)
    make_task(folder, CLS_TASK, 10)
    monkeypatch.setenv("HARNESS_TASKS_PATH", str(folder))
    return folder


def _spec(model: Path, adapters: list[Path], **extra: object) -> RunSpec:
    return RunSpec(tasks=("tiny_gen", "tiny_cls"), model=ModelSpec(name=str(model)),
                   adapters=tuple(resolve_adapters(adapters)), batch_size=3, **extra)  # type: ignore[arg-type]


def test_each_adapter_gets_its_own_profile_once(tiny_llama, adapter_factory, tasks_dir, tmp_path, monkeypatch) -> None:
    one = adapter_factory(tiny_llama, "causal", "lora", seed=1)
    two = adapter_factory(tiny_llama, "causal", "lora", seed=2)
    store = Store(tmp_path / "s.sqlite")
    streams: dict[str, list[int]] = {}  # description -> [total, advanced]

    def progress(description: str, total: int):
        streams[description] = [total, 0]
        return lambda n: streams[description].__setitem__(1, streams[description][1] + n)

    first = execute(_spec(tiny_llama, [one, two], limit=6), store, progress=progress)
    # profiling is reported (minutes with many adapters before the first prediction), one step per adapter
    assert streams["tiny_gen: cost profiles"] == [3, 3] and streams["tiny_cls: cost profiles"] == [3, 3]
    profiles = {(o.task, o.adapter): store.cell_cost_profile(o.cell_id) for o in first.outcomes}
    assert len(profiles) == 6 and all(p is not None for p in profiles.values())  # base + 2 adapters, 2 tasks
    for (task, _), profile in profiles.items():
        assert 0 < profile["latency_p50"] <= profile["latency_p95"]
        assert profile["throughput_examples_per_s"] > 0 and profile["batch_size"] == 3
        assert profile["probe_prompts"] == cost_profile.PROBE_PROMPTS and profile["timer"] == "cpu"
        assert (profile["throughput_tokens_per_s"] is None) == (task == "tiny_cls")

    def measured_again(*args: object, **kwargs: object) -> None:
        raise AssertionError("a stored cost profile was measured again")

    monkeypatch.setattr(cost_profile, "measure", measured_again)
    streams.clear()
    again = execute(_spec(tiny_llama, [one, two], limit=6).model_copy(update={"batch_size": 2}), store, progress=progress)
    assert [o.status for o in again.outcomes] == ["done"] * 6
    assert not any("cost profiles" in description for description in streams)  # nothing left to measure

    rows = collect_rows(store, [again.run_id])
    assert {row.cost_source for row in rows} == {"isolated"}
    gen = {row.adapter: row for row in rows if row.task == "tiny_gen"}
    assert gen["base"].latency_p50 == profiles[("tiny_gen", "base")]["latency_p50"]


def test_no_cost_profile_flag_measures_nothing(tiny_llama, adapter_factory, tasks_dir, tmp_path) -> None:
    adapter = adapter_factory(tiny_llama, "causal", "lora", seed=1)
    store = Store(tmp_path / "s.sqlite")
    result = execute(_spec(tiny_llama, [adapter], cost_profile=False, limit=2), store)
    assert all(store.cell_cost_profile(o.cell_id) is None for o in result.outcomes)
    assert {row.cost_source for row in collect_rows(store)} == {"shared batch"}
