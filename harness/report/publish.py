"""`harness publish`: the small, reviewable files a reference leaderboard is committed as.

    leaderboard.md / .csv / .json, leaderboard.schema.json, spectral_quality.md, domain_shift.md   (export.write_exports)
    manifest.json   what the leaderboard was built from: the runs with their dates and specs; per row
                    the base and adapter weights hashes, the adapter's folder and hashes of the examples
                    and prediction keys it was scored on; per task its definition's hash and its split's
                    size and content hash; package versions and the git commit of the working folder

No prediction, input or reference text goes into any of them: private tasks hold real people's data and
the datasets' licences forbid copying them into a repository (the data appear only as hashes).
`harness report --from leaderboard.json` rebuilds the HTML from these files.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import platform
import subprocess
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from harness.errors import HarnessError
from harness.report import domain_shift, spectral_quality
from harness.report.export import SCHEMA_VERSION, portable_path, write_exports, write_text
from harness.report.leaderboard import TaskBoard, build, resolve_runs
from harness.spec import stable_hash
from harness.store import Store

MANIFEST = "manifest.json"
PACKAGES = ("harness", "torch", "transformers", "peft")


class RunManifest(BaseModel):
    run_id: str
    status: str
    created: str = Field(description="ISO 8601, UTC")
    finished: str | None
    spec: dict[str, Any] = Field(description="the run's spec as stored (tasks, model, limit, batch size, prompt...), adapter paths relative")


class CellManifest(BaseModel):
    task: str
    split: str
    base: str
    adapter: str
    run_id: str
    cell_id: int
    status: str
    base_hash: str | None = Field(description="sha256 of the base model's weights")
    adapter_hash: str | None = Field(description="sha256 of the adapter's weight files")
    adapter_path: str | None
    n_examples: int | None
    examples_sha256: str | None = Field(description="sha256 of the cell's example ids in order, one per line")
    prediction_keys_sha256: str | None = Field(
        description="sha256 of its prediction keys in order (each key hashes base and adapter weights, task, example, prompt and settings)"
    )
    settings: dict[str, Any] = Field(description="prompt name, generation settings, seed, dtype: what the keys hashed besides weights and data")


class TaskManifest(BaseModel):
    task: str
    split: str
    private: bool | None = Field(description="null: the task is not in this checkout's registry")
    definition_sha256: str | None = Field(description="the task definition's content hash in this checkout, at publish time")
    split_size: int | None = Field(description="examples in the split as read at publish time (null: data not readable here)")
    split_sha256: str | None = Field(description="sha256 of the split's examples as the harness reads them, at publish time")


class Manifest(BaseModel):
    """manifest.json: what a published leaderboard was built from."""

    leaderboard_schema_version: int = SCHEMA_VERSION
    written: str = Field(description="when these files were written, ISO 8601, UTC")
    git_commit: str | None = Field(description="HEAD of the working folder's repository (null: not a git checkout)")
    git_dirty: bool | None = Field(description="tracked files differed from that commit when these files were written")
    versions: dict[str, str | None] = Field(description="python and package versions of the environment that wrote these files")
    runs: list[RunManifest]
    tasks: list[TaskManifest]
    cells: list[CellManifest]


def publish(store: Store, out: Path, runs: Sequence[str] | None = None, root: Path | None = None) -> list[Path]:
    """Write the committable files of the leaderboard of `runs` (all runs when None) into `out`."""
    out, root = Path(out), (root or Path.cwd())
    # before anything is written: publishing into the checkout's own reports/ must not make it "dirty"
    git = git_state(root)
    run_ids = resolve_runs(store, runs)
    boards, overall_rows = build(store, run_ids)
    if not boards:
        raise HarnessError(f"Results store '{store.path}' holds no cells yet; run `harness run` first, then `harness publish`.")
    run_list = run_ids or [str(run["run_id"]) for run in store.runs()]
    correlations = {board.task: spectral_quality.task_correlations(store, board) for board in boards}
    written = write_exports(out, boards, overall_rows, run_list, correlations, root, domain_shift.board_shifts(store, boards))
    manifest = build_manifest(store, boards, run_list, root, git)
    return [*written, write_text(out / MANIFEST, manifest.model_dump_json(indent=2) + "\n")]


def build_manifest(store: Store, boards: Sequence[TaskBoard], runs: Sequence[str], root: Path,
                   git: tuple[str | None, bool | None]) -> Manifest:
    """`git`: (commit, dirty) of `root` as it was before the export was written."""
    commit, dirty = git
    return Manifest(
        written=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        git_commit=commit, git_dirty=dirty, versions=package_versions(),
        runs=[_run_manifest(store, run_id, root) for run_id in runs],
        tasks=[task_manifest(board.task, board.rows[0].split) for board in boards if board.rows],
        cells=[_cell_manifest(store, row.cell_id, row.adapter, root) for board in boards for row in board.rows],
    )  # fmt: skip


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).isoformat(timespec="seconds")


def _run_manifest(store: Store, run_id: str, root: Path) -> RunManifest:
    row = store.run(run_id)
    return RunManifest(
        run_id=row["run_id"], status=store.run_status(row["run_id"]), created=_iso(row["created"]) or "",
        finished=_iso(row["finished"]), spec=portable_spec(json.loads(row["spec_json"]), root),
    )  # fmt: skip


def portable_spec(spec: dict[str, Any], root: Path) -> dict[str, Any]:
    """The stored spec with the adapter folders and a local base model's folder relative to `root`."""
    found = dict(spec)
    if isinstance(found.get("adapters"), list):
        found["adapters"] = [
            {**adapter, "path": portable_path(adapter.get("path"), root)} if isinstance(adapter, dict) else adapter
            for adapter in found["adapters"]
        ]
    if isinstance(found.get("model"), dict) and isinstance(found["model"].get("name"), str):
        found["model"] = {**found["model"], "name": portable_path(found["model"]["name"], root)}
    return found


def _cell_manifest(store: Store, cell_id: int, label: str, root: Path) -> CellManifest:
    cell = store.cell(cell_id)
    planned = store.cell_example_keys(cell_id)
    return CellManifest(
        task=cell.task, split=cell.split, base=cell.base, adapter=label, run_id=cell.run_id, cell_id=cell.cell_id,
        status=cell.status, base_hash=cell.base_hash, adapter_hash=cell.adapter_hash,
        adapter_path=portable_path(cell.adapter_path, root), n_examples=cell.n_examples,
        examples_sha256=_lines_hash(example for example, _ in planned) if planned else None,
        prediction_keys_sha256=_lines_hash(key for _, key in planned) if planned else None, settings=cell.settings,
    )  # fmt: skip


def _lines_hash(lines: Any) -> str:
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def task_manifest(task: str, split: str) -> TaskManifest:
    """The task's definition hash and its split's size and content hash in this checkout, when readable."""
    from harness.data import load_examples
    from harness.registry import task_registry

    try:
        spec = task_registry().get(task)
    except HarnessError:
        return TaskManifest(task=task, split=split, private=None, definition_sha256=None, split_size=None, split_sha256=None)
    try:
        examples = load_examples(spec, split)
    except (HarnessError, OSError):
        examples = None  # the data are not on this machine: the definition still identifies the task
    return TaskManifest(
        task=task, split=split, private=spec.private, definition_sha256=spec.content_hash(),
        split_size=len(examples) if examples is not None else None,
        split_sha256=stable_hash([e.model_dump(mode="json") for e in examples]) if examples is not None else None,
    )  # fmt: skip


def package_versions() -> dict[str, str | None]:
    """Installed versions, read from package metadata (importing torch only to ask would cost seconds)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state(folder: Path) -> tuple[str | None, bool | None]:
    """HEAD's commit and whether tracked files differ from it; (None, None) outside a git checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=30)
        if head.returncode != 0:
            return None, None
        # --no-optional-locks: reading the state must not rewrite the index of a checkout another process uses
        status = subprocess.run(["git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=no"], cwd=folder,
                                capture_output=True, text=True, timeout=30)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None, None
    return head.stdout.strip() or None, bool(status.stdout.strip()) if status.returncode == 0 else None
