"""Apply the job store's migrations: ``python -m aiprod_pipelines.server.store.migrate``.

The store is the server's: the PostgreSQL database of ``AIPROD_DATABASE_URL``, or, when it
is unset, the SQLite file in the server's videos folder (``<paths.outputs>/server`` of
the configuration). ``aiprod-serve`` applies the same migrations at start-up; this runs
them ahead of a rollout (``deploy/scripts/migrate.sh --database``). ``--check`` applies
nothing and exits 1 while migrations are pending.

Exit status: 0 up to date (after applying, without ``--check``); 1 migrations pending
(``--check``); 2 the configuration or the store cannot be used (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from aiprod_core.config import database_url, load_config
from aiprod_core.errors import AiprodError
from aiprod_pipelines.server.store import JobStore, open_store
from aiprod_pipelines.server.store.schema import migrations, pending

PROG = "python -m aiprod_pipelines.server.store.migrate"
EXIT_PENDING = 1
EXIT_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Apply the server's job store migrations (AIPROD_DATABASE_URL, or the "
        "SQLite file in the videos folder when it is unset).",
    )
    parser.add_argument(
        "--env", help="configuration environment (default: $AIPROD_ENV or development)"
    )
    parser.add_argument(
        "--check", action="store_true", help="apply nothing; exit 1 when migrations are pending"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def _open(env: str | None) -> JobStore:
    url = database_url()
    folder = Path()
    if url is None:  # the SQLite default lives in the videos folder of the configuration
        config = load_config(env=env)
        folder = config.resolve(config.paths.outputs) / "server"
    return open_store(url, folder)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        store = _open(args.env)
        try:
            before = store.schema_version()
            known = migrations(store.engine)
            todo = pending(store.engine, set(range(1, before + 1)), store.url)
            applied = [] if args.check else store.migrate()
            version = store.schema_version()
        finally:
            store.close()
    except AiprodError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    left = [migration.name for migration in todo] if args.check else []
    if args.json:
        report = {"store": store.url, "engine": store.engine, "version": version,
                  "latest": len(known), "applied": applied, "pending": left}  # fmt: skip
        print(json.dumps(report))
    elif left:
        print(f"job store {store.url}: schema version {version}; pending: {', '.join(left)}")
    elif applied:
        print(f"job store {store.url}: applied {', '.join(applied)}; schema version {version}")
    else:
        print(f"job store {store.url}: up to date (schema version {version})")
    return EXIT_PENDING if left else 0


if __name__ == "__main__":
    raise SystemExit(main())
