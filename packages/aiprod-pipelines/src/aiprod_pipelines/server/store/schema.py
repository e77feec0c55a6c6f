"""Versioned schema migrations: ``migrations/<engine>/NNNN_<name>.sql``, applied in order.

Each database records the migrations it has in ``aiprod_schema_version`` (version, name,
time applied). A store applies the missing ones at start-up, each in its own transaction
together with its ``aiprod_schema_version`` row, under a lock that makes replicas starting
together apply each migration once (``BEGIN IMMEDIATE`` for SQLite, an advisory lock for
PostgreSQL). A database whose schema is newer than this code is refused: an older server
must not write to tables it does not know.

A new migration is a new file with the next number, for both engines; a released file
never changes.
"""

from __future__ import annotations

import dataclasses
import re
import sqlite3
from importlib import resources

from aiprod_pipelines.server.store.base import StoreError

#: The table that records applied migrations.
VERSION_TABLE = "aiprod_schema_version"
ENGINES = ("sqlite", "postgresql")
_FILE = re.compile(r"(?P<version>[0-9]{4})_(?P<name>[a-z0-9_]+)\.sql")


@dataclasses.dataclass(frozen=True)
class Migration:
    """One schema change: ``0001_jobs`` is version 1."""

    version: int
    name: str
    sql: str


def migrations(engine: str) -> list[Migration]:
    """The migrations of ``engine``, by version; their numbers run 1, 2, 3, ... without gaps."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
    folder = resources.files("aiprod_pipelines.server.store") / "migrations" / engine
    found = []
    for entry in folder.iterdir():
        match = _FILE.fullmatch(entry.name)
        if match is not None:
            name = entry.name.removesuffix(".sql")
            found.append(Migration(int(match["version"]), name, entry.read_text("utf-8")))
    found.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"{engine} migrations must be numbered 1..n, got {versions}")
    return found


def pending(engine: str, applied: set[int], where: str) -> list[Migration]:
    """The migrations of ``engine`` not in ``applied``; StoreError for an unknown version."""
    known = migrations(engine)
    newest = known[-1].version if known else 0
    unknown = sorted(version for version in applied if version > newest)
    if unknown:
        raise StoreError(
            f"job store {where} has schema version {unknown[-1]}, newer than this server knows "
            f"({newest}); run the aiprod-pipelines release that migrated it, or a newer one"
        )
    return [migration for migration in known if migration.version not in applied]


def sqlite_statements(sql: str) -> list[str]:
    """The statements of a SQLite script, one string each (comments and blanks dropped)."""
    statements = []
    current = ""
    for line in sql.splitlines(keepends=True):
        if not current and (not line.strip() or line.lstrip().startswith("--")):
            continue
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        raise ValueError(f"incomplete SQL statement at the end of a migration: {current[:80]!r}")
    return statements
