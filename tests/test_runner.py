"""The run engine end to end on tiny random models: cache, resume after SIGKILL, bad adapters."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers_models import adapter_factory, single_thread, tiny_bert, tiny_llama, tiny_t5  # noqa: F401
from helpers_tasks import CLS_TASK, GEN_TASK, make_task

from harness.run import engine
from harness.zoo.adapters import resolve_adapters
from harness.run.matrix import execute
from harness.spec import ModelSpec, RunSpec
from harness.store import Store

@pytest.fixture()
def tasks_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "tasks"
    make_task(folder, GEN_TASK, 12)
    make_task(folder, CLS_TASK, 10)
    monkeypatch.setenv("HARNESS_TASKS_PATH", str(folder))
    return folder


def broken_adapter(good: Path, tmp_path: Path) -> Path:
    broken = tmp_path / "broken_lora"
    broken.mkdir()
    (broken / "adapter_config.json").write_text((good / "adapter_config.json").read_text())
    (broken / "adapter_model.safetensors").write_bytes(b"this is not a safetensors file")
    return broken


def run_spec(model: Path, adapters: list[Path], tasks: tuple[str, ...], **extra) -> RunSpec:
    return RunSpec(tasks=tasks, model=ModelSpec(name=str(model)), adapters=tuple(resolve_adapters(adapters)), **extra)


def test_matrix_with_a_broken_adapter_finishes_the_others(tiny_llama, adapter_factory, tasks_dir, tmp_path) -> None:
    good_a = adapter_factory(tiny_llama, "causal", "lora", seed=1)
    good_b = adapter_factory(tiny_llama, "causal", "lora", seed=2)
    broken = broken_adapter(good_a, tmp_path)
    store = Store(tmp_path / "s.sqlite")
    spec = run_spec(tiny_llama, [good_a, good_b, broken], ("tiny_gen", "tiny_cls"), batch_size=4)
    result = execute(spec, store)
    by_cell = {(o.task, o.adapter): o for o in result.outcomes}
    assert len(by_cell) == 2 * 4
    failed = [o for o in result.outcomes if o.status == "failed"]
    assert {o.adapter for o in failed} == {"broken_lora"}
    assert all("broken_lora" in (o.error or "") for o in failed)
    done = [o for o in result.outcomes if o.status == "done"]
    assert len(done) == 6
    assert all("bleu" in o.metrics for o in done if o.task == "tiny_gen")
    assert all(0.0 <= o.metrics["accuracy"]["value"] <= 1.0 for o in done if o.task == "tiny_cls")
    assert result.results_file is not None and result.results_file.is_file()


def test_second_identical_run_makes_no_model_call(tiny_llama, adapter_factory, tasks_dir, tmp_path, monkeypatch) -> None:
    adapter = adapter_factory(tiny_llama, "causal", "lora", seed=1)
    store = Store(tmp_path / "s.sqlite")
    spec = run_spec(tiny_llama, [adapter], ("tiny_gen", "tiny_cls"), batch_size=4)
    first = execute(spec, store)
    assert sum(o.computed for o in first.outcomes) == 2 * (12 + 10)
    generation = [o for o in first.outcomes if o.task == "tiny_gen"]
    for outcome in generation:
        timing = store.timing(outcome.cell_id)
        assert timing["examples"] == 12 and timing["generated_tokens"] > 0
        assert timing["peak_memory_bytes"] > 0 and timing["memory_kind"] in ("rss", "cuda")
        assert 0 < timing["latency_p50"] <= timing["latency_p95"]
        assert timing["flops"] > 0 and timing["mfu"] is not None and timing["mfu"] > 0
    # base and adapter shared the mixed batches: their shares of the stream add up to one
    assert sum(store.timing(o.cell_id)["share_of_stream"] for o in generation) == pytest.approx(1.0)

    def no_model_call(*args, **kwargs):
        raise AssertionError("the engine was called although every prediction is cached")

    for name in ("generate_until", "multiple_choice", "classify"):
        monkeypatch.setattr(engine, name, no_model_call)
    second = execute(spec, store)
    assert [o.status for o in second.outcomes] == ["done"] * 4
    assert sum(o.computed for o in second.outcomes) == 0
    assert [o.metrics for o in second.outcomes] == [o.metrics for o in first.outcomes]
    # another run (batch size is not part of a prediction's key) is served from the cache too, and its
    # cells show the timing of the run that made their answers
    third = execute(spec.model_copy(update={"batch_size": 2}), store)
    assert third.run_id != first.run_id and sum(o.computed for o in third.outcomes) == 0
    assert [store.timing(o.cell_id) for o in third.outcomes] == [store.timing(o.cell_id) for o in first.outcomes]
    assert store.count_predictions() == 2 * (12 + 10)


def test_changed_adapter_weights_are_not_served_from_cache(tiny_llama, adapter_factory, tasks_dir, tmp_path) -> None:
    store = Store(tmp_path / "s.sqlite")
    one = adapter_factory(tiny_llama, "causal", "lora", seed=1)
    two = adapter_factory(tiny_llama, "causal", "lora", seed=3)
    execute(run_spec(tiny_llama, [one], ("tiny_gen",), include_base=False), store)
    second = execute(run_spec(tiny_llama, [two], ("tiny_gen",), include_base=False), store)
    assert second.outcomes[0].computed == 12  # same folder name pattern, other weights: all recomputed


def test_seq2seq_and_encoder_paths(tiny_t5, tiny_bert, adapter_factory, tasks_dir, tmp_path) -> None:
    store = Store(tmp_path / "s.sqlite")
    t5_adapter = adapter_factory(tiny_t5, "seq2seq", "lora", seed=1)
    t5 = execute(run_spec(tiny_t5, [t5_adapter], ("tiny_gen",), batch_size=4), store)
    assert [o.status for o in t5.outcomes] == ["done", "done"]
    bert_adapter = adapter_factory(tiny_bert, "encoder", "lora", seed=1)
    bert = execute(run_spec(tiny_bert, [bert_adapter], ("tiny_cls",), batch_size=4), store)
    assert [o.status for o in bert.outcomes] == ["done", "done"]
    assert store.cells(task="tiny_cls")[0].settings["output_type"] == "classify"


def count_predictions(path: Path) -> int:
    try:
        with sqlite3.connect(path, timeout=5) as connection:
            return connection.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_sigkill_mid_run_then_resume_gives_one_prediction_per_example(tiny_llama, adapter_factory, tmp_path) -> None:
    tasks = tmp_path / "tasks"
    make_task(tasks, GEN_TASK.replace("max_new_tokens: 12", "max_new_tokens: 16").replace('stop: ["."]', "stop: []"), 40)
    adapter = adapter_factory(tiny_llama, "causal", "lora", seed=1)
    store_path = tmp_path / "kill.sqlite"
    command = [sys.executable, "-m", "harness.cli", "run", "--task", "tiny_gen", "--model", str(tiny_llama),
               "--adapter", str(adapter), "--batch-size", "1", "--store", str(store_path), "--include-path", str(tasks)]
    environment = {**os.environ, "HARNESS_TASKS_PATH": ""}
    process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while count_predictions(store_path) < 8 and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before it could be killed; make it longer"
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = count_predictions(store_path)
    assert 8 <= killed_at < 80

    resumed = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    with sqlite3.connect(store_path) as connection:
        rows = connection.execute("SELECT adapter_hash, example_id, COUNT(*) FROM predictions GROUP BY adapter_hash, example_id").fetchall()
    assert len(rows) == 2 * 40  # base and adapter, every example
    assert all(count == 1 for _, _, count in rows)
    store = Store(store_path)
    cells = store.cells()
    assert [cell.status for cell in cells] == ["done", "done"]
    assert all(len(store.cell_predictions(cell.cell_id)) == 40 for cell in cells)


def test_spectral_run_stores_per_layer_diagnostics(tiny_llama, adapter_factory, tasks_dir, tmp_path) -> None:
    adapter = adapter_factory(tiny_llama, "causal", "lora", seed=1)
    store = Store(tmp_path / "s.sqlite")
    result = execute(run_spec(tiny_llama, [adapter], ("tiny_cls",), spectral=True, limit=2), store)
    cell = next(c for c in store.cells(run_id=result.run_id) if c.adapter)
    records = store.spectra(cell.adapter_hash)
    layers = [r for r in records if r["record"] == "layer"]
    assert len(layers) == 4  # q_proj and v_proj of two layers
    assert all(r["relative_update"] > 0 and r["kind"] == "lowrank-exact" for r in layers)
    assert [r for r in records if r["record"] == "summary"][0]["median_stable_rank"] > 0


def test_diagnose_cli_prints_a_table(tiny_llama, adapter_factory) -> None:
    adapter = adapter_factory(tiny_llama, "causal", "lora", seed=1)
    result = subprocess.run([sys.executable, "-m", "harness.cli", "diagnose", "--adapter", str(adapter), "--model", str(tiny_llama)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "median stable rank" in result.stdout and "q_proj" in result.stdout


def test_cli_exits_1_when_a_cell_failed(tiny_llama, adapter_factory, tmp_path) -> None:
    tasks = make_task(tmp_path / "tasks", CLS_TASK, 4)
    broken = broken_adapter(adapter_factory(tiny_llama, "causal", "lora", seed=1), tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "--task", "tiny_cls", "--model", str(tiny_llama), "--adapter", str(broken),
         "--store", str(tmp_path / "s.sqlite"), "--include-path", str(tasks)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 1, result.stderr
    assert "broken_lora" in result.stdout and "failed" in result.stdout
