"""The job store on both engines: SQLite (a file) and PostgreSQL (a real server on loopback).

Every test runs against each store; the PostgreSQL ones use the session's server
(``postgres_server`` in conftest.py) and a new database per test.
"""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from aiprod_pipelines.server.store import (
    CANCELLED,
    LEASE_LOST,
    JobStore,
    NewJob,
    SQLiteJobStore,
    StoreError,
    open_store,
)
from aiprod_pipelines.server.store.schema import VERSION_TABLE, migrations

pytestmark = pytest.mark.integration

TTL = 3600.0


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty database of each engine."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def store(database: str, tmp_path: Path) -> Iterator[JobStore]:
    opened = open_store(database, tmp_path)
    opened.migrate()
    yield opened
    opened.close()


def new(job_id: str, **options: object) -> NewJob:
    return NewJob(id=job_id, request={"prompt": job_id, "seed": 1}, **options)  # type: ignore[arg-type]


def test_migrations_are_versioned_and_applied_once(database: str, tmp_path: Path) -> None:
    store = open_store(database, tmp_path)
    try:
        assert store.schema_version() == 0
        names = [migration.name for migration in migrations(store.engine)]
        assert names[0] == "0001_jobs"
        assert store.migrate() == names
        assert store.migrate() == []
        assert store.schema_version() == len(names)
        again = open_store(database, tmp_path)  # a second replica starting
        assert again.migrate() == []
        again.close()
    finally:
        store.close()


def test_a_schema_newer_than_the_code_is_refused(database: str, tmp_path: Path) -> None:
    store = open_store(database, tmp_path)
    store.migrate()
    store.close()
    newer = len(migrations(store.engine)) + 1
    insert = f"INSERT INTO {VERSION_TABLE} (version, name, applied_at) VALUES ({newer}, 'x', 0)"
    if store.engine == "sqlite":
        with sqlite3.connect(database.removeprefix("sqlite:///")) as db:
            db.execute(insert)
    else:
        with psycopg.connect(database) as db:
            db.execute(insert.replace(", 0)", ", now())"))
    reopened = open_store(database, tmp_path)
    try:
        with pytest.raises(StoreError, match=f"schema version {newer}, newer than this server"):
            reopened.migrate()
    finally:
        reopened.close()


def test_submit_admits_under_the_limit_and_by_idempotency_key(store: JobStore) -> None:
    first = store.submit(new("a", idempotency_key="k", request_hash="h"), queue_size=2)
    assert (first.outcome, first.queued) == ("created", 0)
    assert first.job is not None
    assert (first.job.status, first.job.queue_position, first.job.request["prompt"]) == (
        "queued",
        1,
        "a",
    )
    assert store.submit(new("b"), queue_size=2).outcome == "created"
    full = store.submit(new("c"), queue_size=2)
    assert (full.outcome, full.job, full.queued) == ("full", None, 2)
    replay = store.submit(new("d", idempotency_key="k", request_hash="h"), queue_size=2)
    assert (replay.outcome, replay.job.id if replay.job else None) == ("existing", "a")
    other = store.submit(new("e", idempotency_key="k", request_hash="other"), queue_size=2)
    assert (other.outcome, other.job.id if other.job else None) == ("conflict", "a")
    assert store.counts()["queued"] == 2
    assert store.get("c") is None


def test_claims_take_the_oldest_job_once_with_its_image_data(store: JobStore) -> None:
    images = [{"frame": 0, "size": 3}]
    store.submit(new("old", images=images, image_data=["AAAA"]), queue_size=10)
    store.submit(new("new"), queue_size=10)
    claimed = store.claim("w/0", lease_seconds=30)
    assert claimed is not None
    assert (claimed.id, claimed.status, claimed.attempts) == ("old", "running", 1)
    assert (claimed.images, claimed.image_data, claimed.worker_id) == (images, ["AAAA"], "w/0")
    assert (claimed.lease_expires_at - claimed.started_at).total_seconds() == pytest.approx(30)
    assert store.get("old").image_data is None  # only a claim loads it
    assert store.claim("w/1", lease_seconds=30).id == "new"
    assert store.claim("w/2", lease_seconds=30) is None


def test_touch_renews_the_holders_lease_and_reports_cancels(store: JobStore) -> None:
    store.submit(new("a"), queue_size=10)
    claimed = store.claim("w/0", lease_seconds=5)
    assert store.touch("a", "w/0", 0.5, lease_seconds=60) == "ok"
    touched = store.get("a")
    assert touched.progress == 0.5
    assert touched.lease_expires_at > claimed.lease_expires_at
    assert store.touch("a", "intruder/0", 0.9, lease_seconds=60) == "lost"
    job, ended = store.cancel("a", TTL)
    assert (job.status, job.cancel_requested, ended) == ("running", True, False)
    assert store.touch("a", "w/0", 0.6, lease_seconds=60) == "cancel"


def test_finish_ends_only_a_job_its_worker_holds(store: JobStore) -> None:
    store.submit(new("a"), queue_size=10)
    store.claim("w/0", lease_seconds=30)
    assert (
        store.finish(
            "a", "other/0", status="succeeded", error=None, video_key="a.mp4", ttl_seconds=TTL
        )
        is None
    )
    done = store.finish(
        "a", "w/0", status="succeeded", error=None, video_key="a.mp4", ttl_seconds=TTL
    )
    assert (done.status, done.video_key, done.progress, done.error) == (
        "succeeded",
        "a.mp4",
        1.0,
        None,
    )
    assert (done.expires_at - done.finished_at).total_seconds() == pytest.approx(TTL)
    assert done.lease_expires_at is None
    again = store.finish("a", "w/0", status="failed", error="late", video_key=None, ttl_seconds=TTL)
    assert again is None
    assert store.get("a").status == "succeeded"


def test_a_success_after_a_cancel_request_ends_cancelled(store: JobStore) -> None:
    store.submit(new("a"), queue_size=10)
    store.claim("w/0", lease_seconds=30)
    store.cancel("a", TTL)
    done = store.finish(
        "a", "w/0", status="succeeded", error=None, video_key="a.mp4", ttl_seconds=TTL
    )
    assert (done.status, done.error, done.video_key) == ("cancelled", CANCELLED, None)


def test_cancel_ends_a_queued_job_and_leaves_finished_ones(store: JobStore) -> None:
    store.submit(new("a"), queue_size=10)
    job, ended = store.cancel("a", TTL)
    assert (job.status, job.error, ended) == ("cancelled", CANCELLED, True)
    assert store.claim("w/0", lease_seconds=30) is None
    job, ended = store.cancel("a", TTL)
    assert (job.status, ended) == ("cancelled", False)
    assert store.cancel("missing", TTL) == (None, False)


def test_delete_removes_idle_jobs_and_marks_running_ones(store: JobStore) -> None:
    store.submit(new("idle"), queue_size=10)
    store.submit(new("busy"), queue_size=10)
    store.claim("w/0", lease_seconds=30)  # "idle" is the oldest: it runs
    job, gone = store.delete("busy")
    assert (job.id, job.status, gone) == ("busy", "queued", True)
    job, gone = store.delete("idle")
    assert (job.status, job.cancel_requested, job.delete_requested, gone) == (
        "running",
        True,
        True,
        False,
    )
    store.remove(["idle"])
    assert store.get("idle") is None
    assert store.delete("idle") == (None, False)


def test_lapsed_leases_are_requeued_once_then_failed(store: JobStore) -> None:
    store.submit(new("a"), queue_size=10)
    store.submit(new("stop"), queue_size=10)
    store.claim("dead/0", lease_seconds=0.05)
    store.claim("dead/1", lease_seconds=0.05)
    store.cancel("stop", TTL)
    time.sleep(0.1)
    changed = {job.id: job for job in store.recover_expired(max_attempts=2, ttl_seconds=TTL)}
    assert (changed["a"].status, changed["a"].worker_id, changed["a"].attempts) == (
        "queued",
        None,
        1,
    )
    assert (changed["stop"].status, changed["stop"].error) == ("cancelled", CANCELLED)
    assert store.recover_expired(max_attempts=2, ttl_seconds=TTL) == []
    assert store.claim("dead/2", lease_seconds=0.05).attempts == 2
    time.sleep(0.1)
    (failed,) = store.recover_expired(max_attempts=2, ttl_seconds=TTL)
    assert (failed.status, failed.error) == ("failed", LEASE_LOST)


def test_a_renewed_lease_is_not_taken_back(store: JobStore) -> None:
    store.submit(new("a"), queue_size=10)
    store.claim("w/0", lease_seconds=0.2)
    store.touch("a", "w/0", 0.1, lease_seconds=60)
    time.sleep(0.3)
    assert store.recover_expired(max_attempts=2, ttl_seconds=TTL) == []


def test_retention_queries(store: JobStore) -> None:
    for name in ("a", "b", "c"):
        store.submit(new(name), queue_size=10)
        store.claim("w/0", lease_seconds=30)
        store.finish(
            name, "w/0", status="succeeded", error=None, video_key=f"{name}.mp4", ttl_seconds=0.05
        )
    assert [job.id for job in store.videos_over_limit(1)] == ["a", "b"]
    store.mark_removed(["a"])
    assert [job.id for job in store.videos_over_limit(1)] == ["b"]
    assert store.get("a").video_removed
    time.sleep(0.1)
    assert [job.id for job in store.expired(2)] == ["a", "b"]
    assert store.existing(["a", "c", "zzz"]) == {"a", "c"}
    store.remove(["a", "b"])
    assert store.existing(["a", "b", "c"]) == {"c"}


def test_pages_counts_and_positions(store: JobStore) -> None:
    for name in "abcde":
        store.submit(new(name), queue_size=10)
    store.claim("w/0", lease_seconds=30)
    jobs = store.page(limit=3)
    assert [(job.id, job.queue_position) for job in jobs] == [("e", 4), ("d", 3), ("c", 2)]
    older = store.page(limit=3, before=jobs[-1].seq)
    assert [(job.id, job.queue_position) for job in older] == [("b", 1), ("a", None)]
    assert [job.id for job in store.page(limit=10, status="running")] == ["a"]
    assert store.counts() == {
        "queued": 4,
        "running": 1,
        "succeeded": 0,
        "failed": 0,
        "cancelled": 0,
    }


def test_concurrent_claims_hand_out_each_job_once(database: str, tmp_path: Path) -> None:
    """Two stores (two replicas' connections), four workers each, racing for 40 jobs."""
    stores = [open_store(database, tmp_path) for _ in range(2)]
    stores[0].migrate()
    total = 40
    for index in range(total):
        stores[index % 2].submit(new(f"job{index:02d}"), queue_size=total)
    claimed: list[str] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(store: JobStore, name: str) -> None:
        try:
            while (job := store.claim(name, lease_seconds=30)) is not None:
                with lock:
                    claimed.append(job.id)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=work, args=(stores[index % 2], f"w/{index}")) for index in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for store in stores:
        store.close()
    assert errors == []
    assert sorted(claimed) == [f"job{index:02d}" for index in range(total)]


def test_open_store_chooses_the_engine_and_never_echoes_the_url(tmp_path: Path) -> None:
    default = open_store(None, tmp_path)
    assert isinstance(default, SQLiteJobStore)
    assert default.path == tmp_path / "jobs.sqlite3"
    with pytest.raises(StoreError, match="expected postgresql://") as refused:
        open_store("mysql://user:s3cret@db/jobs", tmp_path)
    assert "s3cret" not in str(refused.value)
    assert "'mysql'" in str(refused.value)
    with pytest.raises(StoreError, match="got a value that is not a URL"):
        open_store("s3cret", tmp_path)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_postgres_is_one_clear_error(tmp_path: Path) -> None:
    port = closed_port()
    url = f"postgresql://aiprod:s3cret@127.0.0.1:{port}/jobs"
    with pytest.raises(StoreError) as refused:
        open_store(url, tmp_path)
    message = str(refused.value)
    assert message.startswith(
        f"job store postgresql://aiprod@127.0.0.1:{port}/jobs (AIPROD_DATABASE_URL): cannot connect: "
    )
    assert "s3cret" not in message
    assert "\n" not in message
