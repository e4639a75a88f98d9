"""Rows of hcm_related: hcm_qa's questions (label 1) and the unrelated questions (label 0).

The related rows keep hcm_qa's own split. The 62 unrelated questions are split with the rule
hcm_qa uses (order by sha256(id); first 70 % train, next 10 % dev, rest test), so a question never
appears in two splits.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from harness.errors import HarnessError

SPLIT_FRACTIONS = {"train": (0.0, 0.7), "dev": (0.7, 0.8), "test": (0.8, 1.0)}


def _read(path: Path) -> list[dict]:
    if not path.is_file():
        raise HarnessError(f"Data file '{path}' for task 'hcm_related' does not exist; set HARNESS_DATA_DIR to the data mirror.")
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _sha_split(rows: list[dict], split: str) -> list[dict]:
    ordered = sorted(rows, key=lambda row: hashlib.sha256(row["id"].encode()).hexdigest())
    low, high = SPLIT_FRACTIONS[split]
    return ordered[round(low * len(ordered)) : round(high * len(ordered))]


def load_split(split: str, data_dir: Path | None) -> list[dict]:
    if data_dir is None:
        raise HarnessError("Task 'hcm_related' has no public dataset: set HARNESS_DATA_DIR to the data mirror.")
    folder = data_dir / "hcm_qa"
    related = [{"id": row["id"], "question": row["question"], "label": 1} for row in _read(folder / f"{split}.jsonl")]
    unrelated = [{"id": row["id"], "question": row["question"], "label": 0} for row in _read(folder / "unrelated.jsonl")]
    return related + _sha_split(unrelated, split)
