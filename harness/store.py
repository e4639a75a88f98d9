"""The results store: SQLite in WAL mode, one file, written as predictions are made.

Tables
- runs:        one row per `harness run` (its spec, when, status, and the pid, host and heartbeat of
               the process running it, so a killed run shows as "interrupted")
- cells:       one row per (run, base, adapter, task): settings, status, error, adapter facts
- predictions: one row per example answer, keyed by a content hash (see `prediction_key`);
               INSERT OR IGNORE makes a resumed run unable to double an example
- metrics:     corpus value and 95% interval per cell and metric key
- example_scores: per-example scores per cell (for the paired regression gate and drill-down)
- timings:     per cell, the timing summary as JSON
- spectra:     per adapter weights hash, per layer diagnostics as JSON
- cost_profiles: per (base, adapter, task, settings, probe) the adapter's cost measured alone
               (harness.run.cost_profile); the base model's adapter_hash is ''

Only the process that owns the store writes to it (executors stream results back to the driver).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.metrics.base import MetricValue
from harness.spec import stable_hash

DEFAULT_STORE = Path(".harness") / "results.sqlite"
# A running process beats every HEARTBEAT_SECONDS; a run silent for STALE_SECONDS is taken for dead
# (the only test possible for a run on another host, where its pid means nothing).
HEARTBEAT_SECONDS = 5.0
STALE_SECONDS = 120.0
# Columns added after the first release: older stores gain them on open.
MIGRATIONS = {"runs": (("pid", "INTEGER"), ("host", "TEXT"), ("heartbeat", "REAL"))}

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    finished REAL,
    status TEXT NOT NULL,
    spec_json TEXT NOT NULL,
    pid INTEGER,
    host TEXT,
    heartbeat REAL
);
CREATE TABLE IF NOT EXISTS cells (
    cell_id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    cell_key TEXT NOT NULL,
    base TEXT NOT NULL,
    base_hash TEXT,
    adapter TEXT,
    adapter_path TEXT,
    adapter_hash TEXT,
    method TEXT,
    rank INTEGER,
    trainable_params INTEGER,
    adapter_bytes INTEGER,
    task TEXT NOT NULL,
    split TEXT NOT NULL,
    settings_json TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    n_examples INTEGER,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    UNIQUE (run_id, cell_key)
);
CREATE TABLE IF NOT EXISTS predictions (
    key TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    example_id TEXT NOT NULL,
    base_hash TEXT NOT NULL,
    adapter_hash TEXT,
    prediction TEXT NOT NULL,
    details_json TEXT,
    prompt_tokens INTEGER,
    new_tokens INTEGER,
    seconds REAL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS cell_examples (
    cell_id INTEGER NOT NULL REFERENCES cells(cell_id),
    position INTEGER NOT NULL,
    example_id TEXT NOT NULL,
    prediction_key TEXT NOT NULL,
    PRIMARY KEY (cell_id, position)
);
CREATE TABLE IF NOT EXISTS metrics (
    cell_id INTEGER NOT NULL REFERENCES cells(cell_id),
    name TEXT NOT NULL,
    value REAL,
    low REAL,
    high REAL,
    PRIMARY KEY (cell_id, name)
);
CREATE TABLE IF NOT EXISTS example_scores (
    cell_id INTEGER NOT NULL REFERENCES cells(cell_id),
    example_id TEXT NOT NULL,
    scores_json TEXT NOT NULL,
    PRIMARY KEY (cell_id, example_id)
);
CREATE TABLE IF NOT EXISTS timings (
    cell_id INTEGER PRIMARY KEY REFERENCES cells(cell_id),
    summary_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS spectra (
    adapter_hash TEXT NOT NULL,
    layer TEXT NOT NULL,
    record_json TEXT NOT NULL,
    PRIMARY KEY (adapter_hash, layer)
);
CREATE INDEX IF NOT EXISTS cells_by_task ON cells(task, adapter);
CREATE TABLE IF NOT EXISTS cost_profiles (
    base_hash TEXT NOT NULL,
    adapter_hash TEXT NOT NULL,
    task TEXT NOT NULL,
    settings_json TEXT NOT NULL,
    probe_key TEXT NOT NULL,
    profile_json TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (base_hash, adapter_hash, task, settings_json, probe_key)
);
"""


def store_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """--store PATH, else HARNESS_STORE, else .harness/results.sqlite in the working folder."""
    value = explicit or os.environ.get("HARNESS_STORE") or DEFAULT_STORE
    return Path(value).expanduser()


def prediction_key(
    *,
    base_hash: str,
    adapter_hash: str | None,
    task_hash: str,
    example_id: str,
    prompt: str,
    settings: Mapping[str, Any],
    prompt_version: int,
) -> str:
    """The content hash that names one prediction.

    Unlike lm-evaluation-harness's request cache, the weights of the base and of the adapter are
    part of the key, so two adapters never share an answer.
    """
    return stable_hash(
        {
            "base": base_hash,
            "adapter": adapter_hash,
            "task": task_hash,
            "example": example_id,
            "prompt": prompt,
            "settings": dict(settings),
            "prompt_version": prompt_version,
        }
    )


def run_is_alive(host: str | None, pid: int | None, heartbeat: float | None, now: float | None = None) -> bool:
    """A run is alive while its heartbeat is fresh and, on this host, its process exists."""
    if heartbeat is None or pid is None:  # a store from before liveness was recorded: trust its status
        return True
    if (now or time.time()) - heartbeat > STALE_SECONDS:
        return False
    if host == socket.gethostname():
        try:
            os.kill(pid, 0)  # signal 0 only asks whether the process exists
        except ProcessLookupError:
            return False
        except PermissionError:  # it exists, under another user
            return True
    return True


@dataclass(frozen=True)
class RunProgress:
    cells_done: int
    cells: int
    predictions: int
    planned: int

    def __str__(self) -> str:
        return f"{self.cells_done}/{self.cells} cells done, {self.predictions}/{self.planned} predictions stored"


@dataclass(frozen=True)
class Prediction:
    key: str
    example_id: str
    prediction: str
    details: dict[str, Any]
    prompt_tokens: int
    new_tokens: int
    seconds: float


@dataclass(frozen=True)
class CellRow:
    cell_id: int
    run_id: str
    base: str
    base_hash: str | None
    adapter: str | None
    adapter_path: str | None
    adapter_hash: str | None
    method: str | None
    rank: int | None
    trainable_params: int | None
    adapter_bytes: int | None
    task: str
    split: str
    settings: dict[str, Any]
    status: str
    error: str | None
    n_examples: int | None

    @property
    def label(self) -> str:
        return self.adapter or "base"


BUSY_TIMEOUT_S = 30.0


def use_wal(connection: sqlite3.Connection, timeout_s: float = BUSY_TIMEOUT_S) -> None:
    """Switch the store to WAL, waiting for other processes as every other statement does.

    Two runs that open the same new store at once both switch it to WAL, and SQLite answers the loser
    "database is locked" at once, without consulting the busy timeout (seen in 12 of 240 racing opens);
    so retry with backoff until the same timeout has passed.
    """
    deadline = time.monotonic() + timeout_s
    delay = 0.005
    while True:
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(2 * delay, 0.25)


class Store:
    """A connection to the results store. Each write is its own short transaction."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = store_path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            use_wal(self.connection)
            # NORMAL in WAL mode survives a process kill (only an OS crash can lose the last commits).
            self.connection.execute("PRAGMA synchronous=NORMAL")
            self.connection.executescript(SCHEMA)
            self._migrate()
        except sqlite3.DatabaseError as error:
            raise HarnessError(f"Results store '{self.path}' cannot be opened ({error}); pass another --store PATH.")
        self.connection.row_factory = sqlite3.Row

    def close(self) -> None:
        self.connection.close()

    def _migrate(self) -> None:
        """Add the columns a store made by an older harness lacks (ALTER TABLE ADD COLUMN keeps its rows)."""
        for table, columns in MIGRATIONS.items():
            have = {row[1] for row in self.connection.execute(f"PRAGMA table_info({table})")}
            for name, kind in columns:
                if name not in have:
                    try:
                        self.connection.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
                    except sqlite3.OperationalError as error:  # another process added it first
                        if "duplicate column" not in str(error):
                            raise

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.connection.execute("BEGIN IMMEDIATE")
        try:
            yield self.connection
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
        self.connection.execute("COMMIT")

    # runs ---------------------------------------------------------------------------------
    def start_run(self, run_id: str, spec: Mapping[str, Any]) -> None:
        now = time.time()
        self.connection.execute(
            "INSERT INTO runs (run_id, created, status, spec_json, pid, host, heartbeat) VALUES (?, ?, 'running', ?, ?, ?, ?)"
            " ON CONFLICT(run_id) DO UPDATE SET status='running', finished=NULL, pid=excluded.pid, host=excluded.host,"
            " heartbeat=excluded.heartbeat",
            (run_id, now, json.dumps(spec, default=str), os.getpid(), socket.gethostname(), now),
        )

    def beat(self, run_id: str) -> None:
        """The running process is alive (called every HEARTBEAT_SECONDS by run.heartbeat)."""
        self.connection.execute("UPDATE runs SET heartbeat=? WHERE run_id=? AND status='running'", (time.time(), run_id))

    def finish_run(self, run_id: str, status: str) -> None:
        self.connection.execute("UPDATE runs SET status=?, finished=? WHERE run_id=?", (status, time.time(), run_id))

    def runs(self) -> list[sqlite3.Row]:
        return list(self.connection.execute("SELECT * FROM runs ORDER BY created DESC"))

    def run(self, run_id: str) -> sqlite3.Row:
        rows = list(self.connection.execute("SELECT * FROM runs WHERE run_id LIKE ? ORDER BY created DESC", (run_id + "%",)))
        if not rows:
            raise HarnessError(f"No run '{run_id}' in store '{self.path}'; `harness runs` lists them.")
        return rows[0]

    def run_status(self, run_id: str) -> str:
        """'running', 'done', 'failed', or 'interrupted' when the process that ran it is gone."""
        row = self.run(run_id)
        if row["status"] != "running":
            return str(row["status"])
        return "running" if run_is_alive(row["host"], row["pid"], row["heartbeat"]) else "interrupted"

    def run_progress(self, run_id: str) -> RunProgress:
        """How far a run got: cells done, and predictions stored of those its cells planned."""
        cells = self.cells(run_id=run_id)
        planned, stored = self.connection.execute(
            "SELECT COUNT(*), COUNT(p.key) FROM cell_examples e JOIN cells c ON c.cell_id = e.cell_id"
            " LEFT JOIN predictions p ON p.key = e.prediction_key WHERE c.run_id=?",
            (run_id,),
        ).fetchone()
        return RunProgress(sum(c.status == "done" for c in cells), len(cells), int(stored), int(planned))

    def prune_interrupted(self) -> list[str]:
        """Delete interrupted runs and their cells; their predictions stay (a later run reuses them)."""
        gone = [row["run_id"] for row in self.runs() if self.run_status(row["run_id"]) == "interrupted"]
        with self.transaction() as connection:
            for run_id in gone:
                cells = "SELECT cell_id FROM cells WHERE run_id=?"
                for table in ("cell_examples", "metrics", "example_scores", "timings"):
                    connection.execute(f"DELETE FROM {table} WHERE cell_id IN ({cells})", (run_id,))
                connection.execute("DELETE FROM cells WHERE run_id=?", (run_id,))
                connection.execute("DELETE FROM runs WHERE run_id=?", (run_id,))
        return gone

    # cells --------------------------------------------------------------------------------
    def upsert_cell(self, run_id: str, cell_key: str, fields: Mapping[str, Any]) -> int:
        now = time.time()
        columns = ["run_id", "cell_key", *fields.keys(), "created", "updated"]
        values = [run_id, cell_key, *(_db_value(v) for v in fields.values()), now, now]
        updates = ", ".join(f"{name}=excluded.{name}" for name in [*fields.keys(), "updated"])
        self.connection.execute(
            f"INSERT INTO cells ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
            f" ON CONFLICT(run_id, cell_key) DO UPDATE SET {updates}",
            values,
        )
        row = self.connection.execute("SELECT cell_id FROM cells WHERE run_id=? AND cell_key=?", (run_id, cell_key)).fetchone()
        return int(row["cell_id"])

    def set_cell_status(self, cell_id: int, status: str, error: str | None = None) -> None:
        self.connection.execute(
            "UPDATE cells SET status=?, error=?, updated=? WHERE cell_id=?", (status, error, time.time(), cell_id)
        )

    def cells(self, run_id: str | None = None, task: str | None = None, status: str | None = None) -> list[CellRow]:
        query, params = "SELECT * FROM cells WHERE 1=1", []
        for column, value in (("run_id", run_id), ("task", task), ("status", status)):
            if value is not None:
                query += f" AND {column}=?"
                params.append(value)
        return [_cell_row(row) for row in self.connection.execute(query + " ORDER BY cell_id", params)]

    def cell(self, cell_id: int) -> CellRow:
        row = self.connection.execute("SELECT * FROM cells WHERE cell_id=?", (cell_id,)).fetchone()
        if row is None:
            raise HarnessError(f"No cell {cell_id} in store '{self.path}'.")
        return _cell_row(row)

    def set_cell_examples(self, cell_id: int, pairs: Sequence[tuple[str, str]]) -> None:
        with self.transaction() as connection:
            connection.execute("DELETE FROM cell_examples WHERE cell_id=?", (cell_id,))
            connection.executemany(
                "INSERT INTO cell_examples (cell_id, position, example_id, prediction_key) VALUES (?, ?, ?, ?)",
                [(cell_id, position, example_id, key) for position, (example_id, key) in enumerate(pairs)],
            )

    def cell_example_keys(self, cell_id: int) -> list[tuple[str, str]]:
        """(example id, prediction key) of each example the cell planned, in order: what it was scored on,
        without reading any prediction text."""
        rows = self.connection.execute(
            "SELECT example_id, prediction_key FROM cell_examples WHERE cell_id=? ORDER BY position", (cell_id,)
        )
        return [(row["example_id"], row["prediction_key"]) for row in rows]

    # predictions --------------------------------------------------------------------------
    def existing_keys(self, keys: Iterable[str]) -> set[str]:
        keys = list(keys)
        found: set[str] = set()
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            rows = self.connection.execute(
                f"SELECT key FROM predictions WHERE key IN ({', '.join('?' * len(chunk))})", chunk
            )
            found.update(row["key"] for row in rows)
        return found

    def add_prediction(
        self, prediction: Prediction, *, task: str, base_hash: str, adapter_hash: str | None
    ) -> None:
        """Written the moment it is made: a killed run loses nothing it already returned."""
        self.connection.execute(
            "INSERT OR IGNORE INTO predictions (key, task, example_id, base_hash, adapter_hash, prediction,"
            " details_json, prompt_tokens, new_tokens, seconds, created) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                prediction.key,
                task,
                prediction.example_id,
                base_hash,
                adapter_hash,
                prediction.prediction,
                json.dumps(prediction.details),
                prediction.prompt_tokens,
                prediction.new_tokens,
                prediction.seconds,
                time.time(),
            ),
        )

    def cell_predictions(self, cell_id: int) -> list[Prediction]:
        rows = self.connection.execute(
            "SELECT p.* FROM cell_examples c JOIN predictions p ON p.key = c.prediction_key"
            " WHERE c.cell_id=? ORDER BY c.position",
            (cell_id,),
        )
        return [_prediction(row) for row in rows]

    def count_predictions(self) -> int:
        return int(self.connection.execute("SELECT COUNT(*) FROM predictions").fetchone()[0])

    # metrics, scores, timings, spectra ----------------------------------------------------
    def set_metrics(self, cell_id: int, values: Mapping[str, MetricValue]) -> None:
        with self.transaction() as connection:
            connection.execute("DELETE FROM metrics WHERE cell_id=?", (cell_id,))
            connection.executemany(
                "INSERT INTO metrics (cell_id, name, value, low, high) VALUES (?, ?, ?, ?, ?)",
                [(cell_id, name, value.value, value.low, value.high) for name, value in values.items()],
            )

    def metrics(self, cell_id: int) -> dict[str, MetricValue]:
        rows = self.connection.execute("SELECT * FROM metrics WHERE cell_id=? ORDER BY name", (cell_id,))
        return {row["name"]: MetricValue(row["value"], row["low"], row["high"]) for row in rows}

    def set_example_scores(self, cell_id: int, scores: Sequence[tuple[str, Mapping[str, float]]]) -> None:
        with self.transaction() as connection:
            connection.execute("DELETE FROM example_scores WHERE cell_id=?", (cell_id,))
            connection.executemany(
                "INSERT INTO example_scores (cell_id, example_id, scores_json) VALUES (?, ?, ?)",
                [(cell_id, example_id, json.dumps(dict(values))) for example_id, values in scores],
            )

    def example_scores(self, cell_id: int) -> dict[str, dict[str, float]]:
        rows = self.connection.execute("SELECT * FROM example_scores WHERE cell_id=?", (cell_id,))
        return {row["example_id"]: json.loads(row["scores_json"]) for row in rows}

    def set_timing(self, cell_id: int, summary: Mapping[str, Any]) -> None:
        self.connection.execute(
            "INSERT OR REPLACE INTO timings (cell_id, summary_json) VALUES (?, ?)", (cell_id, json.dumps(summary, default=str))
        )

    def earlier_timing(self, cell_id: int) -> dict[str, Any] | None:
        """Timing of the newest other cell that measured the same work (same task, weights and settings).

        A cell served wholly from the cache measured nothing itself; it shows when its answers were made.
        """
        row = self.connection.execute(
            "SELECT t.summary_json FROM cells c JOIN cells o ON o.task = c.task AND o.base_hash IS c.base_hash"
            " AND o.adapter_hash IS c.adapter_hash AND o.settings_json = c.settings_json AND o.cell_id != c.cell_id"
            " JOIN timings t ON t.cell_id = o.cell_id WHERE c.cell_id = ? AND t.summary_json != '{}'"
            " ORDER BY o.updated DESC LIMIT 1",
            (cell_id,),
        ).fetchone()
        return json.loads(row["summary_json"]) if row else None

    def timing(self, cell_id: int) -> dict[str, Any] | None:
        row = self.connection.execute("SELECT summary_json FROM timings WHERE cell_id=?", (cell_id,)).fetchone()
        return json.loads(row["summary_json"]) if row else None

    def set_spectra(self, adapter_hash: str, records: Sequence[Mapping[str, Any]]) -> None:
        """Per-layer records of one adapter's weights (harness.diagnostics.spectral_output.to_records), replacing older ones."""
        with self.transaction() as connection:
            connection.execute("DELETE FROM spectra WHERE adapter_hash=?", (adapter_hash,))
            connection.executemany(
                "INSERT INTO spectra (adapter_hash, layer, record_json) VALUES (?, ?, ?)",
                [(adapter_hash, _spectrum_key(index, record), json.dumps(record, default=float)) for index, record in enumerate(records)],
            )

    def spectra(self, adapter_hash: str) -> list[dict[str, Any]]:
        rows = self.connection.execute("SELECT record_json FROM spectra WHERE adapter_hash=? ORDER BY layer", (adapter_hash,))
        return [json.loads(row["record_json"]) for row in rows]


    # cost profiles ------------------------------------------------------------------------
    def set_cost_profile(
        self, base_hash: str, adapter_hash: str | None, task: str, settings: Mapping[str, Any], probe_key: str,
        profile: Mapping[str, Any],
    ) -> None:
        self.connection.execute(
            "INSERT OR REPLACE INTO cost_profiles (base_hash, adapter_hash, task, settings_json, probe_key, profile_json, created)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (base_hash, adapter_hash or "", task, _db_value(dict(settings)), probe_key, json.dumps(dict(profile)), time.time()),
        )

    def cost_profile(
        self, base_hash: str, adapter_hash: str | None, task: str, settings: Mapping[str, Any], probe_key: str
    ) -> dict[str, Any] | None:
        row = self.connection.execute(
            "SELECT profile_json FROM cost_profiles WHERE base_hash=? AND adapter_hash=? AND task=? AND settings_json=?"
            " AND probe_key=?",
            (base_hash, adapter_hash or "", task, _db_value(dict(settings)), probe_key),
        ).fetchone()
        return json.loads(row["profile_json"]) if row else None

    def cell_cost_profile(self, cell_id: int) -> dict[str, Any] | None:
        """The newest cost profile measured for a cell's weights, task and settings (any probe)."""
        row = self.connection.execute(
            "SELECT p.profile_json FROM cells c JOIN cost_profiles p ON p.base_hash = c.base_hash"
            " AND p.adapter_hash = COALESCE(c.adapter_hash, '') AND p.task = c.task AND p.settings_json = c.settings_json"
            " WHERE c.cell_id = ? ORDER BY p.created DESC LIMIT 1",
            (cell_id,),
        ).fetchone()
        return json.loads(row["profile_json"]) if row else None


def _spectrum_key(index: int, record: Mapping[str, Any]) -> str:
    """Unique per record: DoRA has two rows per layer (its LoRA part and its full delta)."""
    parts = [str(record.get("record", "")), str(record.get("layer", index)), str(record.get("delta", ""))]
    return ":".join(parts)


def _db_value(value: Any) -> Any:
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str)
    return value


def _cell_row(row: sqlite3.Row) -> CellRow:
    return CellRow(
        cell_id=row["cell_id"],
        run_id=row["run_id"],
        base=row["base"],
        base_hash=row["base_hash"],
        adapter=row["adapter"],
        adapter_path=row["adapter_path"],
        adapter_hash=row["adapter_hash"],
        method=row["method"],
        rank=row["rank"],
        trainable_params=row["trainable_params"],
        adapter_bytes=row["adapter_bytes"],
        task=row["task"],
        split=row["split"],
        settings=json.loads(row["settings_json"]),
        status=row["status"],
        error=row["error"],
        n_examples=row["n_examples"],
    )


def _prediction(row: sqlite3.Row) -> Prediction:
    return Prediction(
        key=row["key"],
        example_id=row["example_id"],
        prediction=row["prediction"],
        details=json.loads(row["details_json"] or "{}"),
        prompt_tokens=row["prompt_tokens"] or 0,
        new_tokens=row["new_tokens"] or 0,
        seconds=row["seconds"] or 0.0,
    )
