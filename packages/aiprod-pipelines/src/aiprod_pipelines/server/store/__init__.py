"""Durable jobs: SQLite by default (no setup), PostgreSQL for several replicas.

    store = open_store(database_url(), settings.output_dir)   # AIPROD_DATABASE_URL or SQLite
    store.migrate()                                            # versioned, at start-up

``AIPROD_DATABASE_URL`` unset: one SQLite file, ``<videos folder>/jobs.sqlite3``, for one
replica (or several processes on one host). Set to ``postgresql://user:password@host/db``:
every replica shares the jobs. The URL holds a password, so it is a secret read from the
environment (``aiprod_core.config.database_url``), never from configuration files.
"""

from __future__ import annotations

from pathlib import Path

from aiprod_pipelines.server.store.base import (
    CANCELLED,
    LEASE_LOST,
    MAX_ATTEMPTS,
    Admission,
    Job,
    JobStore,
    NewJob,
    StoreError,
    request_hash,
)
from aiprod_pipelines.server.store.sqlite import FILE_NAME, SQLiteJobStore

__all__ = [
    "CANCELLED",
    "FILE_NAME",
    "LEASE_LOST",
    "MAX_ATTEMPTS",
    "Admission",
    "Job",
    "JobStore",
    "NewJob",
    "SQLiteJobStore",
    "StoreError",
    "open_store",
    "request_hash",
]

POSTGRES_SCHEMES = ("postgresql", "postgres")
SQLITE_PREFIX = "sqlite:///"


def open_store(database_url: str | None, folder: Path) -> JobStore:
    """The job store of ``database_url`` (None: SQLite in ``folder``); not migrated yet.

    ``postgresql://`` (or ``postgres://``) URLs open PostgreSQL, ``sqlite:///<path>`` a
    SQLite file elsewhere. The URL is never echoed: it may hold a password.

    Raises:
        StoreError: an unknown scheme, or a database that cannot be reached or opened.
    """
    if database_url is None:
        return SQLiteJobStore(folder / FILE_NAME)
    scheme = database_url.partition("://")[0].lower() if "://" in database_url else ""
    if scheme in POSTGRES_SCHEMES:
        # Imported here: psycopg is only needed when a PostgreSQL URL is given.
        try:
            from aiprod_pipelines.server.store.postgres import PostgresJobStore
        except ImportError as exc:
            raise StoreError(
                f"AIPROD_DATABASE_URL names PostgreSQL, which needs the {exc.name or 'psycopg'} "
                "package; install it with pip install 'aiprod-pipelines[server]'"
            ) from exc
        return PostgresJobStore(database_url)
    if database_url.startswith(SQLITE_PREFIX) and len(database_url) > len(SQLITE_PREFIX):
        return SQLiteJobStore(Path(database_url[len(SQLITE_PREFIX) :]))
    shown = f"a URL of scheme {scheme[:20]!r}" if scheme else "a value that is not a URL"
    raise StoreError(
        f"AIPROD_DATABASE_URL: expected postgresql://user:password@host:5432/database (or "
        f"sqlite:///path/to/jobs.sqlite3; unset: SQLite in {folder}), got {shown}"
    )
