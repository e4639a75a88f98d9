"""The committed reference leaderboard: leaderboard.json round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers_report import RUN_ID, DemoRun, add_constant_private_cell, build_demo_store

from harness.errors import HarnessError
from harness.report import spectral_quality
from harness.report.export import (
    SCHEMA_VERSION,
    LeaderboardExport,
    boards_from_export,
    correlations_from_export,
    export_model,
    portable_path,
    read_export,
    to_json,
)
from harness.report.leaderboard import build


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoRun, str]:
    folder = tmp_path_factory.mktemp("export")
    run = build_demo_store(folder / "results.sqlite", folder / "adapters")
    return run, add_constant_private_cell(run)


# ------------------------------------------------------------------------------ the round trip


def test_boards_round_trip_through_the_export(demo: tuple[DemoRun, str]) -> None:
    store = demo[0].store
    boards, overall_rows = build(store)
    correlations = {board.task: spectral_quality.task_correlations(store, board) for board in boards}
    # the demo holds what must survive: a failed row, flags of both kinds, tiers, pairs, correlations
    assert {flag.kind for board in boards for row in board.rows for flag in row.flags} == {"constant", "majority"}
    assert any(row.status == "failed" for board in boards for row in board.rows)
    assert any(found.rho is not None for found in correlations["resume_json"])
    export = LeaderboardExport.model_validate_json(to_json(export_model(boards, overall_rows, [RUN_ID], correlations)))
    rebuilt, rebuilt_overall = boards_from_export(export)
    assert [board.task for board in rebuilt] == [board.task for board in boards]
    for board, again in zip(boards, rebuilt):
        assert again.rows == board.rows  # every field: metrics, intervals and their kinds, flags, costs, statuses
        assert again.significance == board.significance  # metric, order, tiers, every pair with p and Holm p
        assert board.significance is not None and board.significance.pairs
        assert (again.metric_names, again.best, again.notes) == (board.metric_names, board.best, board.notes)
    assert rebuilt_overall == overall_rows
    assert correlations_from_export(export) == correlations


def test_adapter_paths_under_the_working_folder_are_committed_relative(tmp_path: Path) -> None:
    inside = tmp_path / "zoo" / "lora_r8"
    assert portable_path(str(inside), tmp_path) == "zoo/lora_r8"
    assert portable_path("/elsewhere/lora_r8", tmp_path) == "/elsewhere/lora_r8"
    assert portable_path("zoo/lora_r8", tmp_path) == "zoo/lora_r8" and portable_path(None, tmp_path) is None


def test_an_export_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    old = tmp_path / "leaderboard.json"
    old.write_text(json.dumps({"schema_version": SCHEMA_VERSION - 1, "runs": [], "tasks": [], "overall": []}), encoding="utf-8")
    with pytest.raises(HarnessError, match="harness publish"):
        read_export(old)
    with pytest.raises(HarnessError, match="Cannot read"):
        read_export(tmp_path / "missing.json")
