"""Killing `harness serve` mid-run fails the remaining endpoint cells with one sentence; the rerun resumes."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from helpers_models import adapter_factory, single_thread, tiny_llama  # noqa: F401
from helpers_serve import free_port, server_env, start_server, stop_server
from helpers_tasks import GEN_TASK, make_task, task_body

EXAMPLES = 30


def stored_predictions(store: Path) -> int:
    if not store.exists():
        return 0
    with sqlite3.connect(store, timeout=30) as connection:
        try:
            return int(connection.execute("SELECT COUNT(*) FROM predictions").fetchone()[0])
        except sqlite3.OperationalError:  # the run has not made its tables yet
            return 0


def endpoint_run(url: str, tasks: Path, store: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "harness.cli", "run", "--endpoint", url, "--task", "resume_gen", "--adapter", "a1",
               "--concurrency", "1", "--retries", "1", "--store", str(store), "--include-path", str(tasks)]
    return subprocess.Popen(command, env=server_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def results(store: Path) -> list[dict]:
    files = sorted((store.parent / "runs").glob("*/results.json"))
    return json.loads(files[0].read_text())["cells"]


def test_killed_server_fails_remaining_cells_and_rerun_resumes(tiny_llama, adapter_factory, tmp_path) -> None:
    tasks = make_task(tmp_path / "tasks", task_body(GEN_TASK, name="resume_gen"), EXAMPLES)
    adapter = adapter_factory(tiny_llama, "causal", "lora", seed=21)
    port = free_port()
    # a long collection window makes each lone request take >= 0.15 s, so the kill lands mid-run
    args = ["--model", str(tiny_llama), "--adapter", f"a1={adapter}", "--batch-window-ms", "150"]
    server = start_server(args, port, None, tmp_path / "server1.log")
    url = f"http://127.0.0.1:{port}/v1"
    store = tmp_path / "store" / "results.sqlite"
    run = endpoint_run(url, tasks, store)
    try:
        deadline = time.monotonic() + 240
        while stored_predictions(store) < 5 and time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.05)
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=30)
        output, _ = run.communicate(timeout=300)
    finally:
        stop_server(server)
    before = stored_predictions(store)
    assert run.returncode == 1, output
    assert 5 <= before < 2 * EXAMPLES
    cells = results(store)
    assert all(cell["status"] == "failed" for cell in cells)
    for cell in cells:
        assert f"Endpoint {url} did not answer (connection refused) after 2 tries; start the server and re-run to resume." in cell["error"]

    server = start_server(args, port, None, tmp_path / "server2.log")
    try:
        rerun = endpoint_run(url, tasks, store)
        output, _ = rerun.communicate(timeout=600)
    finally:
        stop_server(server)
    assert rerun.returncode == 0, output
    cells = results(store)
    assert [cell["status"] for cell in cells] == ["done", "done"]
    assert sum(cell["computed"] for cell in cells) == 2 * EXAMPLES - before  # nothing made twice, nothing lost
    assert stored_predictions(store) == 2 * EXAMPLES
