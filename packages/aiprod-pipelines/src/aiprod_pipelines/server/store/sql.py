"""The job store's logic in SQL that SQLite and PostgreSQL both run.

Each method is one transaction. An engine supplies the transaction
(:meth:`SqlJobStore._transaction`), its clock, how it stores JSON and times, and the
locks: SQLite takes the database's write lock for every transaction that writes
(``BEGIN IMMEDIATE``), so what it reads before writing cannot change underneath it, while
reads see one snapshot without blocking anyone (``BEGIN``, WAL mode); PostgreSQL locks
the rows it reads for update (``FOR UPDATE``), skips rows another worker holds when
claiming (``FOR UPDATE SKIP LOCKED``) and serialises submissions with an advisory lock,
so the queue limit and idempotency keys hold across replicas.
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from aiprod_pipelines.server.schemas import JOB_STATES, JobState
from aiprod_pipelines.server.store.base import (
    CANCELLED,
    LEASE_LOST,
    Admission,
    Job,
    NewJob,
    TouchOutcome,
)
from aiprod_pipelines.server.store.schema import VERSION_TABLE, pending

Row = Mapping[str, Any]
COLUMNS = (
    "seq", "id", "state", "request", "images", "created_at", "started_at", "finished_at",
    "expires_at", "progress", "error", "video_key", "video_removed", "idempotency_key",
    "request_hash", "webhook_url", "worker_id", "lease_expires_at", "attempts",
    "cancel_requested", "delete_requested",
)  # fmt: skip
_SELECT = ", ".join(f"j.{column}" for column in COLUMNS)
#: 1-based position of a queued job among queued jobs (NULL for the others).
_QUEUE_POSITION = (
    "CASE WHEN j.state = 'queued' THEN (SELECT count(*) FROM aiprod_jobs q "
    "WHERE q.state = 'queued' AND q.seq <= j.seq) END AS queue_position"
)
SELECT_JOB = f"SELECT {_SELECT}, {_QUEUE_POSITION} FROM aiprod_jobs j"
SELECT_ROW = f"SELECT {_SELECT} FROM aiprod_jobs j"
SELECT_CLAIMED = f"SELECT {_SELECT}, j.image_data FROM aiprod_jobs j"
#: Ids per statement in ``IN (...)`` lists (SQLite allows 999 parameters in old builds).
CHUNK = 500
#: "No limit" for LIMIT ... OFFSET, in both dialects.
NO_LIMIT = 2**62


class Transaction(abc.ABC):
    """One open transaction: statements with ``%s`` placeholders."""

    @abc.abstractmethod
    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run a query; its rows."""

    @abc.abstractmethod
    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; the number of rows it changed."""


class SqlJobStore(abc.ABC):
    """:class:`~aiprod_pipelines.server.store.base.JobStore` over a SQL database."""

    engine: str
    url: str
    #: Appended to a SELECT of rows the transaction will update.
    for_update: str = ""
    #: Appended to the SELECT that claims a queued job.
    for_claim: str = ""

    # ----------------------------------------------------------------- engine hooks
    @abc.abstractmethod
    def _transaction(self, *, write: bool = True) -> AbstractContextManager[Transaction]:
        """A transaction, committed when the block ends without an exception; one that
        only reads (``write=False``) never waits for, nor blocks, writers on SQLite."""

    @abc.abstractmethod
    def _now(self, tx: Transaction) -> Any:
        """The store's current time, in its own representation."""

    @abc.abstractmethod
    def _after(self, moment: Any, seconds: float) -> Any:
        """``moment`` plus ``seconds``, in the store's representation."""

    @abc.abstractmethod
    def _time(self, value: Any) -> datetime | None:
        """A stored time as an aware UTC datetime."""

    @abc.abstractmethod
    def _json(self, value: Any) -> Any:
        """A JSON value as the store keeps it."""

    @abc.abstractmethod
    def _from_json(self, value: Any) -> Any:
        """A stored JSON value as Python data."""

    @abc.abstractmethod
    def _lock_submissions(self, tx: Transaction) -> None:
        """Serialise submissions across processes, until the transaction ends."""

    @abc.abstractmethod
    def _lock_migrations(self, tx: Transaction) -> None:
        """Serialise migrations across processes, until the transaction ends."""

    @abc.abstractmethod
    def _apply(self, tx: Transaction, sql: str) -> None:
        """Run the statements of one migration file."""

    @abc.abstractmethod
    def _table_exists(self, tx: Transaction, name: str) -> bool: ...

    #: The SQL type of a time column.
    time_type: str = "REAL"

    @abc.abstractmethod
    def close(self) -> None: ...

    # ------------------------------------------------------------------- migrations
    def migrate(self) -> list[str]:
        with self._transaction() as tx:
            self._lock_migrations(tx)
            tx.run(
                f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version INTEGER PRIMARY KEY, "
                f"name TEXT NOT NULL, applied_at {self.time_type} NOT NULL)"
            )
            applied = {
                int(row["version"]) for row in tx.rows(f"SELECT version FROM {VERSION_TABLE}")
            }
            todo = pending(self.engine, applied, self.url)
            for migration in todo:
                self._apply(tx, migration.sql)
                tx.run(
                    f"INSERT INTO {VERSION_TABLE} (version, name, applied_at) VALUES (%s, %s, %s)",
                    (migration.version, migration.name, self._now(tx)),
                )
        return [migration.name for migration in todo]

    def schema_version(self) -> int:
        with self._transaction(write=False) as tx:
            if not self._table_exists(tx, VERSION_TABLE):
                return 0
            found = tx.rows(f"SELECT max(version) AS v FROM {VERSION_TABLE}")
        return int(found[0]["v"] or 0)

    # ----------------------------------------------------------------- rows and jobs
    def _job(self, row: Row, *, image_data: bool = False) -> Job:
        keys = row.keys()
        position = row["queue_position"] if "queue_position" in keys else None
        return Job(
            id=row["id"],
            seq=int(row["seq"]),
            status=row["state"],
            request=self._from_json(row["request"]),
            images=self._from_json(row["images"]),
            created_at=self._time(row["created_at"]),  # type: ignore[arg-type]
            started_at=self._time(row["started_at"]),
            finished_at=self._time(row["finished_at"]),
            expires_at=self._time(row["expires_at"]),
            progress=float(row["progress"]),
            error=row["error"],
            video_key=row["video_key"],
            video_removed=bool(row["video_removed"]),
            idempotency_key=row["idempotency_key"],
            request_hash=row["request_hash"],
            webhook_url=row["webhook_url"],
            worker_id=row["worker_id"],
            lease_expires_at=self._time(row["lease_expires_at"]),
            attempts=int(row["attempts"]),
            cancel_requested=bool(row["cancel_requested"]),
            delete_requested=bool(row["delete_requested"]),
            queue_position=None if position is None else int(position),
            image_data=self._from_json(row["image_data"]) if image_data else None,
        )

    def _one(
        self, tx: Transaction, where: str, params: Sequence[Any], lock: str = ""
    ) -> Job | None:
        found = tx.rows(f"{SELECT_ROW} WHERE {where}{lock}", params)
        return self._job(found[0]) if found else None

    def _with_position(self, tx: Transaction, job_id: str) -> Job | None:
        found = tx.rows(f"{SELECT_JOB} WHERE j.id = %s", (job_id,))
        return self._job(found[0]) if found else None

    # ------------------------------------------------------------------------ reads
    def get(self, job_id: str) -> Job | None:
        with self._transaction(write=False) as tx:
            return self._with_position(tx, job_id)

    def page(
        self, *, limit: int, status: JobState | None = None, before: int | None = None
    ) -> list[Job]:
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        if status is not None:
            where.append("j.state = %s")
            params.append(status)
        if before is not None:
            where.append("j.seq < %s")
            params.append(before)
        sql = f"{SELECT_JOB} WHERE {' AND '.join(where)} ORDER BY j.seq DESC LIMIT %s"
        with self._transaction(write=False) as tx:
            return [self._job(row) for row in tx.rows(sql, (*params, limit))]

    def counts(self) -> dict[JobState, int]:
        counts: dict[JobState, int] = dict.fromkeys(JOB_STATES, 0)
        with self._transaction(write=False) as tx:
            for row in tx.rows("SELECT state, count(*) AS n FROM aiprod_jobs GROUP BY state"):
                counts[row["state"]] = int(row["n"])
        return counts

    def existing(self, job_ids: Collection[str]) -> set[str]:
        found: set[str] = set()
        with self._transaction(write=False) as tx:
            for chunk in _chunks(job_ids):
                marks = ", ".join(["%s"] * len(chunk))
                rows = tx.rows(f"SELECT id FROM aiprod_jobs WHERE id IN ({marks})", chunk)
                found.update(row["id"] for row in rows)
        return found

    def expired(self, limit: int) -> list[Job]:
        with self._transaction(write=False) as tx:
            now = self._now(tx)
            rows = tx.rows(
                f"{SELECT_ROW} WHERE j.expires_at IS NOT NULL AND j.expires_at <= %s "
                "ORDER BY j.expires_at, j.seq LIMIT %s",
                (now, limit),
            )
        return [self._job(row) for row in rows]

    def videos_over_limit(self, keep: int) -> list[Job]:
        with self._transaction(write=False) as tx:
            rows = tx.rows(
                f"{SELECT_ROW} WHERE j.state = 'succeeded' AND j.video_key IS NOT NULL "
                "AND j.video_removed = %s ORDER BY j.finished_at DESC, j.seq DESC "
                "LIMIT %s OFFSET %s",
                (False, NO_LIMIT, keep),
            )
        return [self._job(row) for row in reversed(rows)]

    # ----------------------------------------------------------------------- writes
    def submit(self, job: NewJob, *, queue_size: int) -> Admission:
        with self._transaction() as tx:
            self._lock_submissions(tx)
            queued = int(
                tx.rows("SELECT count(*) AS n FROM aiprod_jobs WHERE state = 'queued'")[0]["n"]
            )
            if job.idempotency_key is not None:
                key = (job.idempotency_key,)
                found = tx.rows(f"{SELECT_JOB} WHERE j.idempotency_key = %s", key)
                if found:
                    earlier = self._job(found[0])
                    same = earlier.request_hash == job.request_hash
                    return Admission("existing" if same else "conflict", earlier, queued)
            if queued >= queue_size:
                return Admission("full", None, queued)
            tx.run(
                "INSERT INTO aiprod_jobs (id, state, request, images, image_data, created_at, "
                "idempotency_key, request_hash, webhook_url) "
                "VALUES (%s, 'queued', %s, %s, %s, %s, %s, %s, %s)",
                (
                    job.id,
                    self._json(job.request),
                    self._json(job.images),
                    self._json(job.image_data) if job.image_data else None,
                    self._now(tx),
                    job.idempotency_key,
                    job.request_hash,
                    job.webhook_url,
                ),
            )
            created = self._with_position(tx, job.id)
        assert created is not None  # inserted in this transaction
        return Admission("created", created, queued)

    def claim(self, worker_id: str, lease_seconds: float) -> Job | None:
        with self._transaction() as tx:
            found = tx.rows(
                "SELECT seq FROM aiprod_jobs WHERE state = 'queued' ORDER BY seq LIMIT 1"
                + self.for_claim
            )
            if not found:
                return None
            seq = found[0]["seq"]
            now = self._now(tx)
            tx.run(
                "UPDATE aiprod_jobs SET state = 'running', worker_id = %s, started_at = %s, "
                "progress = 0, lease_expires_at = %s, attempts = attempts + 1 WHERE seq = %s",
                (worker_id, now, self._after(now, lease_seconds), seq),
            )
            rows = tx.rows(f"{SELECT_CLAIMED} WHERE j.seq = %s", (seq,))
        return self._job(rows[0], image_data=True)

    def touch(
        self, job_id: str, worker_id: str, progress: float, lease_seconds: float
    ) -> TouchOutcome:
        with self._transaction() as tx:
            held = "id = %s AND worker_id = %s AND state = 'running'"
            changed = tx.run(
                f"UPDATE aiprod_jobs SET progress = %s, lease_expires_at = %s WHERE {held}",
                (progress, self._after(self._now(tx), lease_seconds), job_id, worker_id),
            )
            if not changed:
                return "lost"
            flag = tx.rows("SELECT cancel_requested FROM aiprod_jobs WHERE id = %s", (job_id,))
        return "cancel" if flag and flag[0]["cancel_requested"] else "ok"

    def finish(
        self,
        job_id: str,
        worker_id: str,
        *,
        status: JobState,
        error: str | None,
        video_key: str | None,
        ttl_seconds: float,
    ) -> Job | None:
        with self._transaction() as tx:
            held = "j.id = %s AND j.worker_id = %s AND j.state = 'running'"
            job = self._one(tx, held, (job_id, worker_id), self.for_update)
            if job is None:
                return None
            if job.cancel_requested and status == "succeeded":
                status, error = "cancelled", CANCELLED
            kept = video_key if status == "succeeded" else None
            self._end(tx, job_id, status, error, kept, ttl_seconds)
            return self._one(tx, "j.id = %s", (job_id,))

    def _end(
        self,
        tx: Transaction,
        job_id: str,
        status: JobState,
        error: str | None,
        video_key: str | None,
        ttl_seconds: float,
    ) -> None:
        now = self._now(tx)
        tx.run(
            "UPDATE aiprod_jobs SET state = %s, error = %s, video_key = %s, finished_at = %s, "
            "expires_at = %s, lease_expires_at = NULL, image_data = NULL, "
            "progress = CASE WHEN %s THEN 1.0 ELSE progress END WHERE id = %s",
            (
                status,
                error,
                video_key,
                now,
                self._after(now, ttl_seconds),
                status == "succeeded",
                job_id,
            ),
        )

    def cancel(self, job_id: str, ttl_seconds: float) -> tuple[Job | None, bool]:
        with self._transaction() as tx:
            job = self._one(tx, "j.id = %s", (job_id,), self.for_update)
            if job is None:
                return None, False
            if job.status in ("queued", "running"):
                tx.run("UPDATE aiprod_jobs SET cancel_requested = %s WHERE id = %s", (True, job_id))
            if job.status == "queued":
                self._end(tx, job_id, "cancelled", CANCELLED, None, ttl_seconds)
            return self._with_position(tx, job_id), job.status == "queued"

    def delete(self, job_id: str) -> tuple[Job | None, bool]:
        with self._transaction() as tx:
            job = self._one(tx, "j.id = %s", (job_id,), self.for_update)
            if job is None:
                return None, False
            if job.status == "running":
                tx.run(
                    "UPDATE aiprod_jobs SET cancel_requested = %s, delete_requested = %s "
                    "WHERE id = %s",
                    (True, True, job_id),
                )
                return self._one(tx, "j.id = %s", (job_id,)), False
            tx.run("DELETE FROM aiprod_jobs WHERE id = %s", (job_id,))
            return job, True

    def remove(self, job_ids: Collection[str]) -> None:
        with self._transaction() as tx:
            for chunk in _chunks(job_ids):
                marks = ", ".join(["%s"] * len(chunk))
                tx.run(f"DELETE FROM aiprod_jobs WHERE id IN ({marks})", chunk)

    def mark_removed(self, job_ids: Collection[str]) -> None:
        with self._transaction() as tx:
            for chunk in _chunks(job_ids):
                marks = ", ".join(["%s"] * len(chunk))
                tx.run(
                    f"UPDATE aiprod_jobs SET video_removed = %s WHERE id IN ({marks})",
                    (True, *chunk),
                )

    def recover_expired(self, *, max_attempts: int, ttl_seconds: float) -> list[Job]:
        with self._transaction() as tx:
            now = self._now(tx)
            lapsed = tx.rows(
                f"{SELECT_ROW} WHERE j.state = 'running' AND j.lease_expires_at < %s "
                f"ORDER BY j.seq{self.for_claim}",
                (now,),
            )
            changed = []
            for job in (self._job(row) for row in lapsed):
                if job.cancel_requested:
                    self._end(tx, job.id, "cancelled", CANCELLED, None, ttl_seconds)
                elif job.attempts < max_attempts:
                    tx.run(
                        "UPDATE aiprod_jobs SET state = 'queued', worker_id = NULL, "
                        "lease_expires_at = NULL, started_at = NULL, progress = 0 WHERE id = %s",
                        (job.id,),
                    )
                else:
                    self._end(tx, job.id, "failed", LEASE_LOST, None, ttl_seconds)
                changed.append(job.id)
            now_jobs = [self._one(tx, "j.id = %s", (job_id,)) for job_id in changed]
            return [job for job in now_jobs if job is not None]


def _chunks(ids: Collection[str]) -> Iterator[list[str]]:
    items = list(ids)
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]
