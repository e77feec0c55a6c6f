"""Videos in S3: a real S3-compatible server (moto's server mode) on loopback, through s3fs.

The server runs in a thread of the test process for the module; each test gets its own
bucket. Credentials are dummy values in the standard AWS_* variables, the endpoint comes
from the storage options, as an operator's ``serving.output_storage_options`` would give it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import numpy as np
import pytest
from moto.server import ThreadedMotoServer

from aiprod_pipelines.server.retention import delete_expired
from aiprod_pipelines.server.storage import (
    FsspecStorage,
    StorageSetupError,
    VideoNotFound,
    open_storage,
)
from aiprod_pipelines.video_io import read_video, write_video

pytestmark = pytest.mark.integration

FPS = 8
REGION = "us-east-1"
BLOCK = 4096  # small ranged reads, so that streaming a clip takes several requests


def noisy_frames(seed: int = 0, count: int = 6) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 48, 64, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of an S3-compatible server on 127.0.0.1 (a free port), with dummy credentials."""
    empty = tmp_path_factory.mktemp("aws") / "none"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": str(empty),  # no profile of the machine running the tests
            "AWS_SHARED_CREDENTIALS_FILE": str(empty),
            "AWS_EC2_METADATA_DISABLED": "true",
        }.items():
            patch.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
            patch.delenv(name, raising=False)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            yield f"http://{host}:{port}"
        finally:
            server.stop()


@pytest.fixture
def bucket(endpoint: str) -> str:
    name = f"videos-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, region_name=REGION).create_bucket(Bucket=name)
    return name


def s3_storage(url: str, endpoint: str, tmp_path: Path) -> FsspecStorage:
    """A store of its own, as another process would have: no filesystem or listing shared."""
    options = {"endpoint_url": endpoint, "skip_instance_cache": True}
    storage = open_storage(url, storage_options=options, staging_dir=tmp_path / "staging")
    assert isinstance(storage, FsspecStorage)
    storage.block_size = BLOCK
    return storage


def test_a_video_round_trips_through_s3_in_chunks(
    endpoint: str, bucket: str, tmp_path: Path
) -> None:
    storage = s3_storage(f"s3://{bucket}/jobs/", endpoint, tmp_path)
    storage.check()
    frames = noisy_frames()
    key = storage.write("job1", frames, FPS)
    expected = write_video(tmp_path / "expected.mp4", frames, fps=FPS).read_bytes()
    assert key == "job1.mp4"
    assert storage.url == f"s3://{bucket}/jobs"
    assert storage.keys() == ["job1.mp4"]
    assert storage.size(key) == len(expected) > 4 * BLOCK
    assert list((tmp_path / "staging").iterdir()) == []

    parts = []
    with storage.open(key) as handle:
        first = handle.read(1024)
        # streamed: the first read fetched one block ahead, not the whole object
        assert handle.cache.total_requested_bytes <= 1024 + BLOCK < len(expected)
        parts.append(first)
        while block := handle.read(1024):
            parts.append(block)
        assert handle.cache.miss_count >= len(expected) // (1024 + BLOCK)
    data = b"".join(parts)
    assert data == expected
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(data)
    decoded, fps, _ = read_video(copy)
    assert decoded.shape == frames.shape
    assert fps == FPS

    info = boto3.client("s3", endpoint_url=endpoint, region_name=REGION).head_object(
        Bucket=bucket, Key="jobs/job1.mp4"
    )
    assert info["ContentType"] == "video/mp4"
    assert info["ContentLength"] == len(expected)


def test_another_replica_sees_what_one_wrote(endpoint: str, bucket: str, tmp_path: Path) -> None:
    writer = s3_storage(f"s3://{bucket}/shared", endpoint, tmp_path / "a")
    reader = s3_storage(f"s3://{bucket}/shared", endpoint, tmp_path / "b")
    assert reader.keys() == []  # a listing cached before the write must not hide it
    writer.write("job", noisy_frames(count=2), FPS)
    assert reader.keys() == ["job.mp4"]
    assert reader.size("job.mp4") == writer.size("job.mp4")
    with reader.open("job.mp4") as handle:
        assert handle.read(12)[4:8] == b"ftyp"
    writer.delete("job.mp4")
    with pytest.raises(VideoNotFound, match=rf"no video job\.mp4 in s3://{bucket}/shared"):
        reader.size("job.mp4")
    assert reader.keys() == []


def test_prefixes_keep_stores_apart(endpoint: str, bucket: str, tmp_path: Path) -> None:
    first = s3_storage(f"s3://{bucket}/a", endpoint, tmp_path)
    second = s3_storage(f"s3://{bucket}/b", endpoint, tmp_path)
    whole_bucket = s3_storage(f"s3://{bucket}", endpoint, tmp_path)
    first.write("one", noisy_frames(count=2), FPS)
    second.write("two", noisy_frames(count=2), FPS)
    whole_bucket.write("three", noisy_frames(count=2), FPS)
    assert first.keys() == ["one.mp4"]
    assert second.keys() == ["two.mp4"]
    assert whole_bucket.keys() == ["three.mp4"]  # objects under prefixes are not its videos
    second.delete("one.mp4")  # not in this store: nothing happens
    assert first.keys() == ["one.mp4"]


def test_delete_and_missing_keys(endpoint: str, bucket: str, tmp_path: Path) -> None:
    storage = s3_storage(f"s3://{bucket}/videos", endpoint, tmp_path)
    storage.write("job", noisy_frames(count=2), FPS)
    storage.delete("job.mp4")
    storage.delete("job.mp4")
    assert storage.keys() == []
    for read in (storage.open, storage.size):
        with pytest.raises(VideoNotFound, match=rf"no video job\.mp4 in s3://{bucket}/videos"):
            read("job.mp4")


def test_retention_deletes_expired_videos_from_s3(
    endpoint: str, bucket: str, tmp_path: Path
) -> None:
    storage = s3_storage(f"s3://{bucket}/videos", endpoint, tmp_path)
    for job_id in ("old", "new"):
        storage.write(job_id, noisy_frames(count=2), FPS)
    now = datetime.now(UTC)
    expiry = {"old.mp4": now - timedelta(seconds=1), "new.mp4": now + timedelta(hours=1)}
    assert delete_expired(storage, expiry, now=now) == ["old.mp4"]
    assert storage.keys() == ["new.mp4"]


def test_check_fails_at_start_up_for_a_missing_bucket(endpoint: str, tmp_path: Path) -> None:
    storage = s3_storage("s3://no-such-bucket/videos", endpoint, tmp_path)
    with pytest.raises(
        StorageSetupError,
        match=r"cannot list, write and delete videos in s3://no-such-bucket/videos \(",
    ):
        storage.check()


def test_check_fails_at_start_up_for_options_s3fs_refuses(
    endpoint: str, bucket: str, tmp_path: Path
) -> None:
    storage = open_storage(
        f"s3://{bucket}/videos", storage_options={"endpoint_url": endpoint, "no_such_option": 1}
    )
    with pytest.raises(StorageSetupError, match=r"no_such_option.*check serving\.output_url"):
        storage.check()


def test_check_leaves_no_probe_behind(endpoint: str, bucket: str, tmp_path: Path) -> None:
    storage = s3_storage(f"s3://{bucket}/videos", endpoint, tmp_path)
    storage.check()
    listing = boto3.client("s3", endpoint_url=endpoint, region_name=REGION).list_objects_v2(
        Bucket=bucket
    )
    assert listing["KeyCount"] == 0
