"""The committed reference leaderboard: leaderboard.json round trip, `harness publish`, `harness report --from`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from helpers_report import RUN_ID, DemoRun, add_constant_private_cell, build_demo_store

from harness.errors import HarnessError
from harness.report import domain_shift, spectral_quality
from harness.report.export import (
    SCHEMA_VERSION,
    LeaderboardExport,
    boards_from_export,
    correlations_from_export,
    export_model,
    portable_path,
    read_export,
    shifts_from_export,
    to_json,
)
from harness.report.leaderboard import build
from harness.report.publish import git_state
from harness.report.site import task_page, write_report, write_report_from_export

REPO = Path(__file__).resolve().parent.parent
PUBLISHED = {"leaderboard.md", "leaderboard.csv", "leaderboard.json", "leaderboard.schema.json", "spectral_quality.md", "domain_shift.md",
             "manifest.json"}


def harness(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


@dataclass(frozen=True)
class Published:
    demo: DemoRun
    secret: str  # the constant private prediction
    folder: Path  # the working folder publish and report --from ran in (the demo's adapters lie under it)
    reference: Path  # what `harness publish` wrote
    from_export: Path  # the HTML `harness report --from` rebuilt
    from_store: Path  # the HTML `harness report` wrote from the store


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoRun, str]:
    folder = tmp_path_factory.mktemp("export")
    run = build_demo_store(folder / "results.sqlite", folder / "adapters")
    return run, add_constant_private_cell(run)


@pytest.fixture(scope="module")
def published(demo: tuple[DemoRun, str], tmp_path_factory: pytest.TempPathFactory) -> Published:
    run, secret = demo
    folder = run.adapters_dir.parent  # commands run here, so adapter paths are committed relative to it
    result = harness("publish", "--store", str(run.store.path), "--out", "reports", cwd=folder)
    assert result.returncode == 0, result.stderr
    result = harness("report", "--from", "reports/leaderboard.json", "--out", "reports/html", cwd=folder)
    assert result.returncode == 0, result.stderr
    from_store = write_report(run.store, tmp_path_factory.mktemp("store") / "html").parent
    return Published(run, secret, folder, folder / "reports", folder / "reports" / "html", from_store)


# ------------------------------------------------------------------------------ the round trip


def test_boards_round_trip_through_the_export(demo: tuple[DemoRun, str]) -> None:
    store = demo[0].store
    boards, overall_rows = build(store)
    correlations = {board.task: spectral_quality.task_correlations(store, board) for board in boards}
    # the demo holds what must survive: a failed row, flags of both kinds, tiers, pairs, correlations
    assert {flag.kind for board in boards for row in board.rows for flag in row.flags} == {"constant", "majority"}
    assert any(row.status == "failed" for board in boards for row in board.rows)
    assert any(found.rho is not None for found in correlations["resume_json"])
    shifts = domain_shift.board_shifts(store, boards)
    assert shifts["resume_json_real"]  # resume_json_real shifts from resume_json: its gaps travel too
    export = LeaderboardExport.model_validate_json(to_json(export_model(boards, overall_rows, [RUN_ID], correlations, shifts=shifts)))
    rebuilt, rebuilt_overall = boards_from_export(export)
    assert [board.task for board in rebuilt] == [board.task for board in boards]
    for board, again in zip(boards, rebuilt):
        assert again.rows == board.rows  # every field: metrics, intervals and their kinds, flags, costs, statuses
        assert again.significance == board.significance  # metric, order, tiers, every pair with p and Holm p
        assert board.significance is not None and board.significance.pairs
        assert (again.metric_names, again.best, again.notes) == (board.metric_names, board.best, board.notes)
    assert rebuilt_overall == overall_rows
    assert correlations_from_export(export) == correlations
    assert shifts_from_export(export) == shifts


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


# ------------------------------------------------------------------------------ harness publish


def test_publish_writes_only_the_small_files_with_a_manifest(published: Published) -> None:
    written = {path.name for path in published.reference.iterdir() if path.is_file()}
    assert written == PUBLISHED
    manifest = json.loads((published.reference / "manifest.json").read_text(encoding="utf-8"))
    (run,) = manifest["runs"]
    assert run["run_id"] == RUN_ID and run["spec"]["tasks"] == ["resume_json", "glue_sst2", "resume_json_real"]
    assert datetime.fromisoformat(run["created"]) <= datetime.fromisoformat(run["finished"]) <= datetime.fromisoformat(manifest["written"])
    assert set(manifest["versions"]) == {"python", "harness", "torch", "transformers", "peft"} and manifest["versions"]["harness"]
    assert manifest["git_commit"] is None  # the demo's folder is no git checkout
    export = read_export(published.reference / "leaderboard.json")
    assert len(manifest["cells"]) == sum(len(task.rows) for task in export.tasks) == 6 + 3 + 3
    r8 = next(c for c in manifest["cells"] if c["task"] == "glue_sst2" and c["adapter"] == "lora_r8")
    assert r8["base_hash"] == "base-hash" and r8["adapter_hash"] == "hash-lora_r8" and r8["adapter_path"] == "adapters/lora_r8"
    assert re.fullmatch(r"[0-9a-f]{64}", r8["examples_sha256"]) and r8["n_examples"] == 6
    tasks = {task["task"]: task for task in manifest["tasks"]}
    assert tasks["resume_json_real"]["private"] is True and tasks["glue_sst2"]["split_size"] > 6
    assert re.fullmatch(r"[0-9a-f]{64}", tasks["glue_sst2"]["split_sha256"])


def test_publish_writes_no_prediction_text_of_a_private_task(published: Published) -> None:
    secrets = [*published.demo.private_texts, published.secret, published.secret[:30]]
    # neither the committed files nor either HTML report: the constant-output flag used to quote it
    for folder in (published.reference, published.from_export, published.from_store):
        for path in folder.rglob("*"):
            if path.is_file() and path.suffix in (".html", ".csv", ".json", ".md"):
                text = path.read_text(encoding="utf-8")
                for secret in secrets:
                    assert secret not in text, f"{path} holds real people's data"
    export = read_export(published.reference / "leaderboard.json")
    real = next(task for task in export.tasks if task.task == "resume_json_real")
    constant = next(row for row in real.rows if row.adapter == "lora_r8").flags
    assert [flag.kind for flag in constant] == ["constant"] and "the task is private" in constant[0].text


def test_git_state_names_the_checkout_commit(tmp_path: Path) -> None:
    commit, dirty = git_state(REPO)
    assert commit is None or (re.fullmatch(r"[0-9a-f]{40}", commit) and isinstance(dirty, bool))
    assert git_state(tmp_path) == (None, None) or commit is None  # tmp is no checkout (unless the repo has none)


def test_republishing_into_the_checkout_keeps_the_manifest_clean(demo: tuple[DemoRun, str], tmp_path: Path) -> None:
    """The manifest records the checkout as it was before publish rewrote its own tracked files."""
    from harness.report.publish import publish

    run, _ = demo
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q"], cwd=checkout, check=True)
    publish(run.store, checkout / "reports", root=checkout)
    # commit an older reference (other figures): the next publish rewrites tracked files with new ones
    (checkout / "reports" / "leaderboard.csv").write_text("older figures\n", encoding="utf-8")
    subprocess.run(["git", "add", "reports"], cwd=checkout, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "reference"], cwd=checkout, check=True)
    publish(run.store, checkout / "reports", root=checkout)
    manifest = json.loads((checkout / "reports" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["git_dirty"] is False and re.fullmatch(r"[0-9a-f]{40}", manifest["git_commit"])
    (checkout / "reports" / "leaderboard.md").write_text("edited by hand\n", encoding="utf-8")
    publish(run.store, checkout / "reports", root=checkout)
    assert json.loads((checkout / "reports" / "manifest.json").read_text(encoding="utf-8"))["git_dirty"] is True


# ------------------------------------------------------------------------------ harness report --from


def _table(page: Path, table_id: str) -> str:
    """One table of a page, without the drill-down column, whitespace folded."""
    found = re.search(rf'<table[^>]* id="{table_id}".*?</table>', page.read_text(encoding="utf-8"), re.S)
    assert found, f"{page} has no table {table_id}"
    table = re.sub(r'<th class="pin-right">examples</th>|<td class="pin-right">.*?</td>', "", found.group(0), flags=re.S)
    return re.sub(r"\s+", " ", table)


def test_report_from_the_export_shows_the_store_built_tables(published: Published) -> None:
    rebuilt, original = published.from_export, published.from_store
    for table in ("overall", "tasks"):
        assert _table(rebuilt / "index.html", table) == _table(original / "index.html", table)
    for task in ("resume_json", "glue_sst2", "resume_json_real"):
        leaderboard = _table(rebuilt / task_page(task), "leaderboard")
        assert leaderboard == _table(original / task_page(task), "leaderboard")
        assert _table(rebuilt / task_page(task), "pairwise") == _table(original / task_page(task), "pairwise")
        assert re.search(r"<b>\d\.\d{3}</b>", leaderboard)  # the metric values themselves, not only the layout
    spectral = (rebuilt / task_page("resume_json")).read_text(encoding="utf-8")
    assert "Do spectral diagnostics predict" in spectral and "stable rank" in spectral
    for name in ("leaderboard.csv", "leaderboard.md", "spectral_quality.md", "leaderboard.json"):
        assert (rebuilt / name).read_text(encoding="utf-8") == (published.reference / name).read_text(encoding="utf-8"), name


def test_report_from_the_export_links_only_pages_it_wrote(published: Published) -> None:
    rebuilt = published.from_export
    assert not (rebuilt / "examples").exists()
    assert len(list((rebuilt / "adapters").glob("*.html"))) == 6
    for page in rebuilt.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert 'class="drill"' not in text
        for link in re.findall(r'(?:href|src)="([^"#]+)"', text):
            if not link.startswith(("data:", "http")):
                assert (page.parent / link).resolve().is_file(), f"{page.name} links {link}, which was not written"
    # the committed adapter path is relative, and the folder is there: the card's facts and loss curves show
    adapter = next((rebuilt / "adapters").glob("smollm2-135m--lora_r8-*.html")).read_text(encoding="utf-8")
    assert "Rebuilt from leaderboard.json alone" in (rebuilt / "index.html").read_text(encoding="utf-8")
    assert "<code>adapters/lora_r8</code>" in adapter and "card: final dev loss" in adapter and 'id="fig-adapter-training"' in adapter


def test_report_refuses_to_overwrite_a_published_reference(published: Published, tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="published reference"):
        write_report(published.demo.store, published.reference)
    with pytest.raises(HarnessError, match="published reference"):
        write_report_from_export(published.reference / "leaderboard.json", published.reference)
    result = harness("report", "--from", str(published.reference / "leaderboard.json"), "--runs", RUN_ID, cwd=tmp_path)
    assert result.returncode == 2 and "drop --runs and --store" in result.stderr
