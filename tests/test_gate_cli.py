"""`harness gate` end to end on a tiny model: runs what is missing, prints the verdict, writes JUnit/JSON."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from helpers_models import adapter_factory, single_thread, tiny_llama  # noqa: F401
from helpers_tasks import CLS_TASK, GEN_TASK, make_task


def gate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", "gate", *args], capture_output=True, text=True, timeout=600)


def test_identical_candidate_passes_and_writes_reports(tiny_llama, adapter_factory, tmp_path: Path) -> None:
    tasks = tmp_path / "tasks"
    make_task(tasks, GEN_TASK, 12)
    make_task(tasks, CLS_TASK, 10)
    adapter = adapter_factory(tiny_llama, "causal", "lora", seed=1)
    junit, verdict = tmp_path / "gate.xml", tmp_path / "gate.json"
    result = gate(
        "--task", "tiny_gen,tiny_cls", "--candidate", str(adapter), "--baseline", str(adapter), "--model", str(tiny_llama),
        "--store", str(tmp_path / "s.sqlite"), "--junit", str(junit), "--json", str(verdict),
        "--include-path", str(tasks),
    )
    assert result.returncode == 0, result.stderr
    assert "| task | metric | baseline | candidate |" in result.stdout
    payload = json.loads(verdict.read_text())
    assert payload["verdict"] == "no regression"
    assert {row["task"] for row in payload["rows"]} == {"tiny_gen", "tiny_cls"}
    assert all(row["delta"] == 0 for row in payload["rows"])
    suite = ET.parse(junit).getroot()
    assert len(list(suite.iter("testcase"))) == len(payload["rows"])
    assert not list(suite.iter("failure"))


def test_unknown_candidate_is_an_error(tiny_llama, tmp_path: Path) -> None:
    result = gate("--task", "hcm_qa", "--candidate", str(tmp_path / "nope"), "--baseline", "base", "--model", str(tiny_llama),
                  "--store", str(tmp_path / "s.sqlite"))
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr
