"""The reference leaderboard committed in reports/: readable by this checkout, about this checkout's zoo,
and rebuilt as HTML by `make report`'s command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from harness.report.export import read_export
from harness.report.site import task_page
from harness.run.adapter_checks import WEIGHT_FILES, sha256_file

REPO = Path(__file__).resolve().parent.parent
REPORTS = REPO / "reports"


def test_the_committed_export_has_this_checkouts_schema() -> None:
    """A schema change must come with a re-published reference (`harness publish`), or `make report` breaks."""
    export = read_export(REPORTS / "leaderboard.json")
    assert export.tasks and all(task.rows for task in export.tasks)


def test_every_reference_row_was_scored_with_the_committed_adapter_weights() -> None:
    """Retraining an adapter without re-evaluating it would leave a leaderboard about other weights."""
    manifest = json.loads((REPORTS / "manifest.json").read_text(encoding="utf-8"))
    adapters = [cell for cell in manifest["cells"] if cell["adapter_hash"]]
    assert adapters
    for cell in adapters:
        weights = REPO / cell["adapter_path"] / WEIGHT_FILES[0]
        assert weights.is_file(), f"{cell['adapter_path']} is in the reference but not in the zoo"
        assert sha256_file(weights) == cell["adapter_hash"], f"{cell['adapter_path']} changed since the reference was published"


def test_make_report_rebuilds_the_html_from_the_committed_files(tmp_path: Path) -> None:
    out = tmp_path / "html"
    command = [sys.executable, "-m", "harness.cli", "report", "--from", str(REPORTS / "leaderboard.json"), "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    export = read_export(REPORTS / "leaderboard.json")
    index = (out / "index.html").read_text(encoding="utf-8")
    for task in export.tasks:
        page = (out / task_page(task.task)).read_text(encoding="utf-8")
        assert task.task in index and all(row.name in page for row in task.rows)
