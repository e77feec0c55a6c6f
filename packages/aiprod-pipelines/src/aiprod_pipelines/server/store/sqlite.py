"""The embedded job store: one SQLite file (``<videos folder>/jobs.sqlite3``), no setup.

The file is in WAL mode with ``synchronous=FULL``: readers never wait for the writer, and
a committed job survives a crash of the process or the host. One connection (opened on
first use) serves every thread of the process, behind a lock; each write is a
``BEGIN IMMEDIATE`` transaction, so two processes on one file (two servers on one host)
also claim each job once, waiting up to ``busy_timeout`` seconds for each other's write
lock.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiprod_pipelines.server.store.base import Job, StoreError
from aiprod_pipelines.server.store.schema import sqlite_statements
from aiprod_pipelines.server.store.sql import Row, SqlJobStore, Transaction

#: The file of the embedded store, in the server's videos folder.
FILE_NAME = "jobs.sqlite3"
#: Seconds a write waits for another process's write lock before failing.
DEFAULT_BUSY_TIMEOUT_S = 30.0


class _SqliteTransaction(Transaction):
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self.db.execute(sql.replace("%s", "?"), tuple(params)).fetchall()

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self.db.execute(sql.replace("%s", "?"), tuple(params)).rowcount


class SQLiteJobStore(SqlJobStore):
    """Jobs in one SQLite file; ``clock`` (Unix seconds) is replaceable for tests."""

    engine = "sqlite"

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT_S,
    ) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        self._clock = clock
        self._busy_timeout = busy_timeout
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._closed = False

    def _connection(self) -> sqlite3.Connection:
        """The connection, opened on first use (call with the lock held)."""
        if self._closed:
            raise StoreError(f"job store {self.path} is closed")
        if self._db is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(
                    self.path,
                    timeout=self._busy_timeout,
                    isolation_level=None,
                    check_same_thread=False,
                )
                db.row_factory = sqlite3.Row
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
            except (OSError, sqlite3.Error) as exc:
                raise StoreError(f"job store {self.path}: cannot open it: {exc}") from exc
            self._db = db
        return self._db

    @contextmanager
    def _transaction(self, *, write: bool = True) -> Iterator[Transaction]:
        with self._lock:
            db = self._connection()
            try:
                db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except sqlite3.Error as exc:
                raise StoreError(f"job store {self.path}: {exc}") from exc
            try:
                yield _SqliteTransaction(db)
            except sqlite3.Error as exc:
                db.execute("ROLLBACK")
                raise StoreError(f"job store {self.path}: {exc}") from exc
            except BaseException:
                db.execute("ROLLBACK")
                raise
            try:
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                db.execute("ROLLBACK")
                raise StoreError(f"job store {self.path}: {exc}") from exc

    def _now(self, tx: Transaction) -> float:
        return self._clock()

    def _after(self, moment: Any, seconds: float) -> float:
        return float(moment) + seconds

    def _time(self, value: Any) -> datetime | None:
        return None if value is None else datetime.fromtimestamp(float(value), UTC)

    def _json(self, value: Any) -> str:
        return json.dumps(value, separators=(",", ":"))

    def _from_json(self, value: Any) -> Any:
        return None if value is None else json.loads(value)

    def _lock_submissions(self, tx: Transaction) -> None:
        """Nothing to take: ``BEGIN IMMEDIATE`` holds the database's write lock already."""

    def _lock_migrations(self, tx: Transaction) -> None:
        """Nothing to take: ``BEGIN IMMEDIATE`` holds the database's write lock already."""

    def _apply(self, tx: Transaction, sql: str) -> None:
        for statement in sqlite_statements(sql):
            tx.run(statement)

    def _table_exists(self, tx: Transaction, name: str) -> bool:
        found = tx.rows(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = %s", (name,)
        )
        return bool(found)

    def claim(self, worker_id: str, lease_seconds: float) -> Job | None:
        # A read first: idle workers polling an empty queue never take the write lock.
        with self._lock:
            try:
                waiting = (
                    self._connection()
                    .execute("SELECT 1 FROM aiprod_jobs WHERE state = 'queued' LIMIT 1")
                    .fetchone()
                )
            except sqlite3.Error as exc:
                raise StoreError(f"job store {self.path}: {exc}") from exc
        return None if waiting is None else super().claim(worker_id, lease_seconds)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._db is not None:
                self._db.close()
                self._db = None
