"""Reliability: killed runs, concurrent runs, bad adapters and task files, NaN weights, cached re-runs.

The process tests start real `harness run` processes on a tiny random model and check the store
afterwards: no prediction lost or doubled, `PRAGMA integrity_check` ok. They wait on the store, never
on the clock, and each runs three times so a flaky one shows.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers_models import adapter_factory, tiny_llama  # noqa: F401
from helpers_tasks import GEN_TASK, make_task, task_body

from harness.errors import HarnessError
from harness.gate.inputs import require_done
from harness.registry import task_registry
from harness.run import loading
from harness.run.adapter_host import AdapterHost
from harness.run.matrix import execute
from harness.spec import ModelSpec, RunSpec
from harness.store import Store
from harness.zoo.adapters import resolve_adapters

EXAMPLES = 40
REL_TASK = task_body(GEN_TASK, name="rel_gen", max_new_tokens="12")


@pytest.fixture(scope="module")
def tasks_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("rel_tasks")
    make_task(folder, REL_TASK, EXAMPLES)
    return folder


def harness_run(model: Path, adapter: Path, tasks: Path, store: Path) -> subprocess.Popen[str]:
    """A real `harness run` process (this interpreter, so it runs the code under test), one example per batch."""
    command = [sys.executable, "-m", "harness.cli", "run", "--task", "rel_gen", "--model", str(model), "--adapter", str(adapter),
               "--include-path", str(tasks), "--store", str(store), "--batch-size", "1"]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def stored_predictions(path: Path) -> int:
    try:
        with sqlite3.connect(path, timeout=30) as connection:
            return int(connection.execute("SELECT COUNT(*) FROM predictions").fetchone()[0])
    except sqlite3.OperationalError:  # the run has not created its tables yet
        return 0


def wait_for_predictions(path: Path, process: subprocess.Popen[str], at_least: int) -> int:
    """Poll the store (not the clock) until the run has stored `at_least` predictions."""
    while (count := stored_predictions(path)) < at_least:
        if process.poll() is not None:
            raise AssertionError(f"the run ended before storing {at_least} predictions: {process.stderr.read() if process.stderr else ''}")
        time.sleep(0.02)
    return count


def check_store(path: Path, expected: int) -> None:
    """Every planned prediction is stored exactly once, and SQLite finds the file sound."""
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert connection.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM predictions").fetchone() == (expected, expected)
        missing = connection.execute(
            "SELECT COUNT(*) FROM cell_examples e LEFT JOIN predictions p ON p.key = e.prediction_key WHERE p.key IS NULL"
        ).fetchone()[0]
        assert missing == 0
        per_cell = connection.execute("SELECT COUNT(*) FROM cell_examples GROUP BY cell_id").fetchall()
        assert [count for (count,) in per_cell] == [EXAMPLES, EXAMPLES]


@pytest.mark.parametrize("attempt", range(3))
def test_kill_9_mid_run_shows_interrupted_and_resumes_without_loss(attempt, tiny_llama, adapter_factory, tasks_dir, tmp_path) -> None:
    adapter = adapter_factory(tiny_llama, "causal", "lora", seed=1)
    store_path = tmp_path / "s.sqlite"
    first = harness_run(tiny_llama, adapter, tasks_dir, store_path)
    wait_for_predictions(store_path, first, at_least=3)
    first.send_signal(signal.SIGKILL)
    first.wait()  # reaped: its pid no longer exists
    store = Store(store_path)
    (run,) = store.runs()
    assert store.run_status(run["run_id"]) == "interrupted"
    progress = store.run_progress(run["run_id"])
    assert 3 <= progress.predictions < progress.planned == 2 * EXAMPLES
    running = [cell for cell in store.cells(run_id=run["run_id"]) if cell.status == "running"]
    with pytest.raises(HarnessError, match="is incomplete: run .* was interrupted"):
        require_done(store, running[0])

    again = harness_run(tiny_llama, adapter, tasks_dir, store_path)
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err
    assert "[progress] rel_gen: 2 cells: started" in err and "finished" in err  # plain lines: stdout is not a terminal
    assert store.run_status(run["run_id"]) == "done"
    assert all(cell.status == "done" for cell in store.cells(run_id=run["run_id"]))
    check_store(store_path, 2 * EXAMPLES)


@pytest.mark.parametrize("attempt", range(3))
def test_two_concurrent_runs_on_one_store(attempt, tiny_llama, adapter_factory, tasks_dir, tmp_path) -> None:
    adapter = adapter_factory(tiny_llama, "causal", "lora", seed=1)
    store_path = tmp_path / "s.sqlite"
    runs = [harness_run(tiny_llama, adapter, tasks_dir, store_path) for _ in range(2)]
    results = [run.communicate(timeout=600) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err for _, err in results]
    check_store(store_path, 2 * EXAMPLES)
    store = Store(store_path)
    assert [store.run_status(row["run_id"]) for row in store.runs()] == ["done"]


OPEN_STORES = """
import sys, time
from harness.errors import HarnessError
from harness.store import Store
start, folder, count = float(sys.argv[1]), sys.argv[2], int(sys.argv[3])
time.sleep(max(0.0, start - time.time()))
for i in range(count):
    try:
        Store(f"{folder}/s{i}.sqlite").connection.close()
    except HarnessError as error:
        print(error)
"""


def test_processes_opening_the_same_new_stores_at_once_all_succeed(tmp_path) -> None:
    """Four processes open the same 100 new stores in the same order at the same moment. Switching a new
    file to WAL answered one of them 'database is locked' without waiting (1 test run in 5 failed)."""
    start = time.time() + 3.0  # every process imported and waiting by then
    command = [sys.executable, "-c", OPEN_STORES, str(start), str(tmp_path), "100"]
    children = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent)
                for _ in range(4)]
    outputs = [child.communicate(timeout=300) for child in children]
    assert [child.returncode for child in children] == [0] * 4, [err for _, err in outputs]
    assert [out for out, _ in outputs] == [""] * 4
    for i in range(100):
        connection = sqlite3.connect(tmp_path / f"s{i}.sqlite")
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        connection.close()


def test_prune_removes_an_interrupted_run_but_keeps_its_predictions(tmp_path) -> None:
    store = Store(tmp_path / "s.sqlite")
    store.start_run("dead", {"tasks": ["t"]})
    store.start_run("alive", {"tasks": ["t"]})
    # a run whose process is gone: a pid that cannot exist and a heartbeat from long ago
    store.connection.execute("UPDATE runs SET pid=?, heartbeat=heartbeat-3600 WHERE run_id='dead'", (2**22 + 1,))
    cell = store.upsert_cell("dead", "c", {"base": "b", "task": "t", "split": "test", "settings_json": {}, "status": "running"})
    store.set_cell_examples(cell, [("e0", "k0")])
    from harness.store import Prediction

    store.add_prediction(Prediction("k0", "e0", "x", {}, 1, 1, 0.1), task="t", base_hash="h", adapter_hash=None)
    assert store.run_status("dead") == "interrupted" and store.run_status("alive") == "running"
    assert store.prune_interrupted() == ["dead"]
    assert [row["run_id"] for row in store.runs()] == ["alive"] and store.cells(run_id="dead") == []
    assert store.existing_keys(["k0"]) == {"k0"}


def test_an_old_store_gains_the_liveness_columns(tmp_path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, created REAL NOT NULL, finished REAL, status TEXT NOT NULL, spec_json TEXT NOT NULL)")
        connection.execute("INSERT INTO runs VALUES ('old', 1.0, NULL, 'running', '{}')")
    store = Store(path)
    columns = {row[1] for row in store.connection.execute("PRAGMA table_info(runs)")}
    assert {"pid", "host", "heartbeat"} <= columns
    assert store.run_status("old") == "running"  # nothing recorded to judge by: its status stands


def spec_for(model: Path, adapters: list[Path], **update) -> RunSpec:
    return RunSpec(tasks=("rel_gen",), model=ModelSpec(name=str(model)), adapters=tuple(resolve_adapters(adapters, keep_bad=True)),
                   limit=4, batch_size=4, **update)


def test_nan_weights_fail_their_cells_naming_the_tensor(tiny_llama, adapter_factory, tasks_dir, tmp_path, monkeypatch) -> None:
    import shutil

    from safetensors.torch import load_file, save_file

    monkeypatch.setenv("HARNESS_TASKS_PATH", str(tasks_dir))
    good = adapter_factory(tiny_llama, "causal", "lora", seed=1)
    bad = tmp_path / "nan_lora"
    shutil.copytree(adapter_factory(tiny_llama, "causal", "lora", seed=2), bad)
    tensors = load_file(str(bad / "adapter_model.safetensors"))
    name = sorted(tensors)[0]
    tensors[name][0, 0] = float("nan")
    save_file(tensors, str(bad / "adapter_model.safetensors"))
    result = execute(spec_for(tiny_llama, [good, bad]), Store(tmp_path / "s.sqlite"))
    status = {o.adapter: (o.status, o.error or "") for o in result.outcomes}
    assert status["base"][0] == status[resolve_adapters([good])[0].name][0] == "done"
    bad_status, error = status["nan_lora"]
    assert bad_status == "failed" and f"tensor '{name}'" in error and "non-finite" in error


def test_non_finite_probe_logits_fail_the_cell(tiny_llama, adapter_factory, tasks_dir, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HARNESS_TASKS_PATH", str(tasks_dir))
    monkeypatch.setattr(AdapterHost, "probe", lambda self, name, prompts: float("nan"))  # fault injection
    adapter = adapter_factory(tiny_llama, "causal", "lora", seed=1)
    result = execute(spec_for(tiny_llama, [adapter]), Store(tmp_path / "s.sqlite"))
    failed = [o for o in result.outcomes if o.status == "failed"]
    assert len(failed) == 1 and "non-finite logits" in (failed[0].error or "")


def test_bad_adapter_paths_fail_their_own_cells_and_the_rest_runs(tiny_llama, adapter_factory, tasks_dir, tmp_path) -> None:
    good = adapter_factory(tiny_llama, "causal", "lora", seed=1)
    empty = tmp_path / "empty"
    empty.mkdir()
    not_a_folder = tmp_path / "weights.txt"
    not_a_folder.write_text("x")
    command = [sys.executable, "-m", "harness.cli", "run", "--task", "rel_gen", "--model", str(tiny_llama), "--limit", "2",
               "--include-path", str(tasks_dir), "--store", str(tmp_path / "s.sqlite")]
    for path in (tmp_path / "missing", empty, good, not_a_folder):
        command += ["--adapter", str(path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stderr
    assert "3 of 5 cells failed:" in result.stderr
    for name, reason in (("missing", "does not exist"), ("empty", "holds no adapter_config.json"), ("weights.txt", "is a file, not an adapter folder")):
        assert any(line.startswith(f"  rel_gen / {name}: ") and reason in line for line in result.stderr.splitlines()), (name, result.stderr)
    store = Store(tmp_path / "s.sqlite")
    assert sorted(c.label for c in store.cells(status="done")) == sorted(["base", resolve_adapters([good])[0].name])


def test_a_cached_rerun_loads_no_weights(tiny_llama, adapter_factory, tasks_dir, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HARNESS_TASKS_PATH", str(tasks_dir))
    spec = spec_for(tiny_llama, [adapter_factory(tiny_llama, "causal", "lora", seed=1)])
    store = Store(tmp_path / "s.sqlite")
    first = execute(spec, store)

    def no_load(*args, **kwargs):
        raise AssertionError("the base was loaded although every prediction is stored")

    monkeypatch.setattr(loading, "load_base", no_load)  # the runner imports it from there when it loads
    again = execute(spec, store)
    assert [o.status for o in again.outcomes] == ["done", "done"] and sum(o.computed for o in again.outcomes) == 0
    assert [o.metrics for o in again.outcomes] == [o.metrics for o in first.outcomes]
    # one more example: its keys are not all stored, so the model path runs (and is refused here)
    with pytest.raises(AssertionError, match="the base was loaded"):
        execute(spec.model_copy(update={"limit": 5}), store)


def test_a_cached_rerun_imports_neither_torch_nor_transformers_nor_peft(tiny_llama, adapter_factory, tasks_dir, tmp_path) -> None:
    """Importing torch or transformers costs more than the rest of a cached re-run: a plain prompt needs no
    tokenizer, and a CPU device needs no torch to name its dtype."""
    store = tmp_path / "s.sqlite"
    adapter = adapter_factory(tiny_llama, "causal", "lora", seed=1)
    first = harness_run(tiny_llama, adapter, tasks_dir, store)
    assert first.wait(timeout=600) == 0, first.stderr.read() if first.stderr else ""
    script = (
        "import sys; from harness.cli import main; sys.argv = sys.argv[1:]\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    assert exit.code in (0, None), exit.code\n"
        "print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))"
    )
    command = [sys.executable, "-c", script, "harness", "run", "--task", "rel_gen", "--model", str(tiny_llama), "--adapter", str(adapter),
               "--include-path", str(tasks_dir), "--store", str(store), "--batch-size", "1", "--device", "cpu"]
    again = subprocess.run(command, capture_output=True, text=True, timeout=600, env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines()[-1] == "[]"


def test_a_bad_task_file_fails_only_its_task(tmp_path) -> None:
    broken = tmp_path / "tasks" / "broken"
    broken.mkdir(parents=True)
    (broken / "task.yaml").write_text("name: broken\nprompts: {default: [unclosed\n", encoding="utf-8")
    registry = task_registry([tmp_path / "tasks"])
    assert registry.get("hcm_qa").name == "hcm_qa"  # the built-ins stay usable
    assert "broken" not in registry.names()
    with pytest.raises(HarnessError, match=r"task.yaml' is not valid YAML at line \d+"):
        registry.get("broken")


def test_unknown_peft_type_is_blamed_on_the_adapter(tmp_path) -> None:
    import json

    from harness.errors import CellError
    from harness.run.adapter_checks import check_peft_type

    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "FANCY_NEW", "r": 4}))
    spec = resolve_adapters([tmp_path])[0]
    with pytest.raises(CellError, match="unknown peft_type 'FANCY_NEW'.*upgrade PEFT"):
        check_peft_type(spec, tmp_path / "adapter_config.json")


def test_jsonl_errors_keep_their_detail(tmp_path) -> None:
    from harness.data import read_jsonl

    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n{"a": "bad\tvalue"}\n', encoding="utf-8")
    with pytest.raises(HarnessError, match=r"Line 2 of .* \(Invalid control character at: column \d+\)"):
        read_jsonl(path)


def test_split_sizes_come_from_the_manifest_once_counted(tasks_dir, tmp_path, monkeypatch) -> None:
    from harness import data

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    task = task_registry([tasks_dir]).get("rel_gen")
    assert data.split_sizes(task) == {"test": EXAMPLES}
    data.forget_examples()  # only the manifest can answer now

    def no_parse(*args, **kwargs):
        raise AssertionError("a split was read although its size is in the manifest")

    monkeypatch.setattr(data, "load_rows", no_parse)
    assert data.split_sizes(task) == {"test": EXAMPLES}
