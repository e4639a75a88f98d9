"""Shared test set-up: the data mirror, an offline hub, a private results store per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HARNESS_DATA_DIR", str((PROJECT.parent / "shared" / "data").resolve()))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


@pytest.fixture()
def store_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "results.sqlite"
    monkeypatch.setenv("HARNESS_STORE", str(path))
    return path


@pytest.fixture()
def data_dir() -> Path:
    return Path(os.environ["HARNESS_DATA_DIR"])
