"""A run's heartbeat: a daemon thread that stamps the run's row every few seconds while it works.

`harness runs` and the gate tell a live run from a killed one by this stamp (and, on the same host,
by the pid). The thread has its own connection: SQLite connections are not shared across threads.
"""

from __future__ import annotations

import sqlite3
import threading
from types import TracebackType

from harness.store import HEARTBEAT_SECONDS, Store


class Heartbeat:
    """`with Heartbeat(store, run_id):` keeps the run's heartbeat fresh until the block ends."""

    def __init__(self, store: Store, run_id: str, interval_seconds: float = HEARTBEAT_SECONDS) -> None:
        self.path = store.path
        self.run_id = run_id
        self.interval_seconds = interval_seconds
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def _loop(self) -> None:
        store = Store(self.path)
        try:
            while not self._stopping.wait(self.interval_seconds):
                try:
                    store.beat(self.run_id)
                except sqlite3.OperationalError:  # the store is busy past its timeout: beat next time
                    continue
        finally:
            store.close()

    def __enter__(self) -> Heartbeat:
        self._thread = threading.Thread(target=self._loop, name="harness-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
