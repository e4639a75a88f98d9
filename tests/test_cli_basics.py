"""The CLI end to end in a subprocess: exit codes, one-sentence errors, --include-path, score."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest


def harness(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def write_task(folder: Path, body: str) -> Path:
    task_dir = folder / "mini_qa"
    task_dir.mkdir(parents=True)
    (task_dir / "task.yaml").write_text(body, encoding="utf-8")
    return folder


MINI_TASK = """
name: mini_qa
dataset:
  format: python
  python: "rows.py:load_split"
fields: {id: id, inputs: [question], references: [answer]}
prompts: {default: "Q: {question}\\nA:"}
generation: {max_new_tokens: 8, stop: ["\\n"]}
metrics: [bleu]
"""

MINI_ROWS = '''
def load_split(split, data_dir):
    return [
        {"id": "a", "question": "Capital of France?", "answer": "Paris is the capital of France."},
        {"id": "b", "question": "Largest ocean?", "answer": "The Pacific is the largest ocean."},
    ]
'''


def test_help_is_fast() -> None:
    started = time.perf_counter()
    result = harness("--help")
    assert result.returncode == 0 and "run" in result.stdout
    # not a timed assertion on speed: this checks that --help does not import torch
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, harness.cli; print('torch' in sys.modules, 'transformers' in sys.modules)"],
        capture_output=True, text=True,
    )
    assert probe.stdout.strip() == "False False"
    assert time.perf_counter() - started < 60


def test_unknown_task_suggests_nearest(tmp_path: Path) -> None:
    result = harness("tasks", "show", "resume_jsn")
    assert result.returncode == 2
    assert "Did you mean 'resume_json'?" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_task_yaml_names_file_and_field(tmp_path: Path) -> None:
    folder = write_task(tmp_path, MINI_TASK.replace("max_new_tokens: 8", "max_new_tokens: -3"))
    result = harness("tasks", "show", "mini_qa", "--include-path", str(folder))
    assert result.returncode == 2
    assert "task.yaml" in result.stderr and "generation.max_new_tokens" in result.stderr
    assert "greater than or equal to 1" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_yaml_field_is_refused(tmp_path: Path) -> None:
    folder = write_task(tmp_path, MINI_TASK + "metircs_typo: [bleu]\n")
    result = harness("tasks", "show", "mini_qa", "--include-path", str(folder))
    assert result.returncode == 2 and "metircs_typo" in result.stderr


def test_duplicate_task_is_refused(tmp_path: Path) -> None:
    folder = write_task(tmp_path, MINI_TASK.replace("name: mini_qa", "name: hcm_qa"))
    result = harness("tasks", "--include-path", str(folder))
    assert result.returncode == 2 and "defined twice" in result.stderr


def test_score_predictions_from_include_path_task(tmp_path: Path) -> None:
    folder = write_task(tmp_path, MINI_TASK)
    (folder / "mini_qa" / "rows.py").write_text(MINI_ROWS, encoding="utf-8")
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text(
        json.dumps({"id": "a", "prediction": "Paris is the capital of France."}) + "\n"
        + json.dumps({"id": "b", "prediction": "The Atlantic is an ocean."}) + "\n",
        encoding="utf-8",
    )
    result = harness("score", "--task", "mini_qa", "--predictions", str(predictions), "--per-example", "--include-path", str(folder))
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["n"] == 2
    assert 0 < payload["metrics"]["bleu"]["value"] < 100
    per_example = {row["id"]: row for row in payload["per_example"]}
    assert per_example["a"]["sentence_bleu"] == pytest.approx(1.0)
    assert per_example["b"]["sentence_bleu"] < 0.5


def test_score_rejects_unknown_ids(tmp_path: Path) -> None:
    predictions = tmp_path / "p.jsonl"
    predictions.write_text(json.dumps({"id": "nope", "prediction": "x"}) + "\n", encoding="utf-8")
    result = harness("score", "--task", "hcm_qa", "--predictions", str(predictions))
    assert result.returncode == 2 and "not in this split" in result.stderr


def test_score_classification_by_label_name(tmp_path: Path) -> None:
    from harness.data import load_examples
    from harness.registry import task_registry

    examples = load_examples(task_registry().get("glue_rte"), limit=10)
    predictions = tmp_path / "p.jsonl"
    # RTE's choices are " yes" (label 0) and " no" (label 1): answer every example correctly by name
    names = ["yes", "no"]
    predictions.write_text("".join(json.dumps({"id": e.id, "prediction": names[e.label]}) + "\n" for e in examples), encoding="utf-8")
    result = harness("score", "--task", "glue_rte", "--predictions", str(predictions))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["metrics"]["accuracy"]["value"] == 1.0


def test_bad_train_option_is_one_sentence() -> None:
    result = harness("train", "--recipe", "lora_r8", "--task", "glue_sst2", "--precision", "fp16")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: Option --precision: Input should be 'auto', 'fp32' or 'bf16'; got 'fp16'."


def test_an_out_of_range_option_is_a_usage_error_not_a_traceback() -> None:
    result = harness("run", "--task", "resume_json", "--batch-size", "0")
    assert result.returncode == 2
    assert "Invalid value for '--batch-size'" in result.stderr and "Traceback" not in result.stderr
