"""`harness gate` end to end on a tiny model: runs what is missing, prints the verdict, writes JUnit/JSON."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from helpers_models import adapter_factory, single_thread, tiny_llama  # noqa: F401
from helpers_tasks import CLS_TASK, GEN_TASK, make_task


def gate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", "gate", *args], capture_output=True, text=True, timeout=600)


def test_two_adapters_are_gated_and_reports_written(tiny_llama, adapter_factory, tmp_path: Path) -> None:
    tasks = tmp_path / "tasks"
    make_task(tasks, GEN_TASK, 12)
    make_task(tasks, CLS_TASK, 10)
    old, new = adapter_factory(tiny_llama, "causal", "lora", seed=1), adapter_factory(tiny_llama, "causal", "lora", seed=2)
    junit, verdict = tmp_path / "gate.xml", tmp_path / "gate.json"
    result = gate(
        "--task", "tiny_gen,tiny_cls", "--candidate", str(new), "--baseline", str(old), "--model", str(tiny_llama),
        "--store", str(tmp_path / "s.sqlite"), "--junit", str(junit), "--json", str(verdict),
        "--include-path", str(tasks),
    )
    assert result.returncode in (0, 1), result.stderr
    assert "| task | metric | baseline | candidate |" in result.stdout
    payload = json.loads(verdict.read_text())
    assert result.returncode == (1 if payload["verdict"] == "regression" else 0)
    assert {row["task"] for row in payload["rows"]} == {"tiny_gen", "tiny_cls"}
    suite = ET.parse(junit).getroot()
    assert len(list(suite.iter("testcase"))) == len(payload["rows"])
    regressions = [row for row in payload["rows"] if row["verdict"] == "regression"]
    assert len(list(suite.iter("failure"))) == len(regressions)
    # the same adapter on both sides, or a copy of its weights elsewhere: a gate that always passes is refused
    same = gate("--task", "tiny_gen", "--candidate", str(old), "--baseline", str(old), "--model", str(tiny_llama),
                "--store", str(tmp_path / "s.sqlite"), "--include-path", str(tasks))
    assert same.returncode == 2 and "name two different adapters" in same.stderr and "Traceback" not in same.stderr
    copy = tmp_path / "copy_of_old"
    shutil.copytree(old, copy)
    copied = gate("--task", "tiny_gen", "--candidate", str(copy), "--baseline", str(old), "--model", str(tiny_llama),
                  "--store", str(tmp_path / "s.sqlite"), "--include-path", str(tasks))
    assert copied.returncode == 2 and "are the same adapter weights" in copied.stderr, copied.stderr


def test_unknown_candidate_is_an_error(tiny_llama, tmp_path: Path) -> None:
    result = gate("--task", "hcm_qa", "--candidate", str(tmp_path / "nope"), "--baseline", "base", "--model", str(tiny_llama),
                  "--store", str(tmp_path / "s.sqlite"))
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr
