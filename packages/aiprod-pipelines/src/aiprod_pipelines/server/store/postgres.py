"""The shared job store: PostgreSQL through psycopg 3, for several server replicas.

Every replica accepts, lists and serves every job. Workers claim the oldest queued job
with ``SELECT ... FOR UPDATE SKIP LOCKED`` inside the claiming transaction, so two workers
never get the same job and neither waits for the other; submissions take a transaction-
level advisory lock, so ``serving.queue_size`` and idempotency keys hold across replicas.
Times (created, started, leases, expiry) are the database's ``now()``: one clock for all.

Connections come from a small pool (psycopg_pool) that checks a connection before handing
it out, so a restarted database costs the requests in flight a 503, not the replica.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from aiprod_pipelines.server.store.base import StoreError
from aiprod_pipelines.server.store.sql import Row, SqlJobStore, Transaction

#: Connections one replica holds at most (workers, the lease keeper and HTTP requests share them).
DEFAULT_POOL_SIZE = 10
#: Seconds to wait for the server when connecting, and for a free pooled connection.
CONNECT_TIMEOUT_S = 10
POOL_WAIT_S = 30.0
#: Advisory lock keys (arbitrary constants, "aiprod" in ASCII plus a suffix).
SUBMIT_LOCK = 0x616970726F6401
MIGRATE_LOCK = 0x616970726F6402


def display_url(url: str) -> str:
    """``url`` without its password (and other options), for logs and messages."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error:
        return "postgresql://(a URL that cannot be parsed)"
    user = params.get("user")
    host = params.get("host") or "localhost"
    port = params.get("port")
    where = f"{user}@{host}" if user else str(host)
    return f"postgresql://{where}{f':{port}' if port else ''}/{params.get('dbname') or ''}"


class _PgTransaction(Transaction):
    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        self.connection = connection

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self.connection.execute(sql, tuple(params) or None).fetchall()

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self.connection.execute(sql, tuple(params) or None).rowcount


class PostgresJobStore(SqlJobStore):
    """Jobs in a PostgreSQL database named by ``url`` (``postgresql://user:pw@host/db``)."""

    engine = "postgresql"
    time_type = "TIMESTAMPTZ"
    for_update = " FOR UPDATE"
    for_claim = " FOR UPDATE SKIP LOCKED"

    def __init__(self, url: str, *, pool_size: int = DEFAULT_POOL_SIZE) -> None:
        self.url = display_url(url)
        options = {"row_factory": dict_row, "connect_timeout": CONNECT_TIMEOUT_S}
        try:  # one direct connection first: its error says why (refused, password, ...)
            with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S):
                pass
        except psycopg.Error as exc:
            raise StoreError(
                f"job store {self.url} (AIPROD_DATABASE_URL): cannot connect: {_reason(exc)}"
            ) from None
        self._pool: ConnectionPool[Any] = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs=options,
            timeout=POOL_WAIT_S,
            check=ConnectionPool.check_connection,
            name="aiprod-jobs",
            open=False,
        )
        try:
            self._pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        except psycopg.Error as exc:
            self._pool.close()
            raise StoreError(
                f"job store {self.url}: cannot open connections: {_reason(exc)}"
            ) from None

    @contextmanager
    def _transaction(self, *, write: bool = True) -> Iterator[Transaction]:
        try:
            with self._pool.connection() as connection:
                yield _PgTransaction(connection)
        except psycopg.Error as exc:
            raise StoreError(f"job store {self.url}: {_reason(exc)}") from exc

    def _now(self, tx: Transaction) -> datetime:
        moment: datetime = tx.rows("SELECT now() AS now")[0]["now"]
        return moment

    def _after(self, moment: Any, seconds: float) -> datetime:
        later: datetime = moment + timedelta(seconds=seconds)
        return later

    def _time(self, value: Any) -> datetime | None:
        return None if value is None else value.astimezone(UTC)

    def _json(self, value: Any) -> Jsonb:
        return Jsonb(value)

    def _from_json(self, value: Any) -> Any:
        return value

    def _lock_submissions(self, tx: Transaction) -> None:
        tx.run("SELECT pg_advisory_xact_lock(%s)", (SUBMIT_LOCK,))

    def _lock_migrations(self, tx: Transaction) -> None:
        tx.run("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))

    def _apply(self, tx: Transaction, sql: str) -> None:
        tx.run(sql)  # no parameters: sent as one simple query, several statements allowed

    def _table_exists(self, tx: Transaction, name: str) -> bool:
        return bool(tx.rows("SELECT to_regclass(%s) IS NOT NULL AS found", (name,))[0]["found"])

    def close(self) -> None:
        self._pool.close()


def _reason(exc: BaseException) -> str:
    """The first line of a driver error (libpq's messages run over several lines)."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]
