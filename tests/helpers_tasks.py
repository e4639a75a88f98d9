"""Tiny tasks for end-to-end tests: a generation task and a two-choice task over random word strings.

`make_task(folder, GEN_TASK, count)` writes `<folder>/<name>/task.yaml` and a `rows.py` loader;
`task_body(GEN_TASK, name=...)` renames a task so several test modules can use their own.
"""

from __future__ import annotations

import re
from pathlib import Path

WORDS = "the quick brown fox jumps over lazy dog resume name email phone skills museum city history".split()

GEN_TASK = """
name: tiny_gen
dataset: {format: python, python: "rows.py:load_split"}
fields: {id: id, inputs: [text], references: [answer]}
prompts: {default: "{text} ->"}
generation: {max_new_tokens: 12, stop: ["."]}
metrics: [bleu]
"""

CLS_TASK = """
name: tiny_cls
dataset: {format: python, python: "rows.py:load_split"}
fields: {id: id, inputs: [text], label: label}
output_type: multiple_choice
prompts: {default: "{text} ? answer:"}
choices: [" no", " yes"]
metrics: [accuracy]
"""

ROWS = '''
import random

WORDS = {words!r}

def load_split(split, data_dir):
    rng = random.Random(7)
    rows = []
    for index in range({count}):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 14)))
        rows.append({{"id": f"ex{{index:03d}}", "text": text, "answer": " ".join(text.split()[:3]), "label": index % 2}})
    return rows
'''


def make_task(folder: Path, body: str, count: int) -> Path:
    name = body.split("name: ")[1].split()[0]
    task_dir = folder / name
    task_dir.mkdir(parents=True, exist_ok=True)
    (task_dir / "task.yaml").write_text(body, encoding="utf-8")
    (task_dir / "rows.py").write_text(ROWS.format(words=WORDS, count=count), encoding="utf-8")
    return folder


def task_body(body: str, name: str | None = None, **replacements: str) -> str:
    """A task YAML with another name and/or some settings replaced (e.g. max_new_tokens="16")."""
    current = body.split("name: ")[1].split()[0]
    if name:
        body = body.replace(f"name: {current}", f"name: {name}")
    for key, value in replacements.items():
        body = re.sub(rf"{key}: [^,}}\n]+", f"{key}: {value}", body)
    return body
