"""Video storage: keys, a local folder and fsspec's memory:// store behave the same way."""

from __future__ import annotations

import importlib
import posixpath
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import fsspec
import numpy as np
import pytest

from aiprod_pipelines.server.storage import (
    SERVER_EXTRA,
    FsspecStorage,
    LocalStorage,
    StorageError,
    StorageSetupError,
    VideoNotFound,
    VideoStorage,
    check_key,
    open_storage,
    video_key,
)
from aiprod_pipelines.video_io import VideoIOError, read_video, write_video

FPS = 8
#: fsspec's protocol -> class table (fsspec.registry is its read-only view); tests remove
#: entries to make a protocol's package look uninstalled, and add a test filesystem.
FSSPEC_REGISTRY = importlib.import_module("fsspec.registry")._registry


def noisy_frames(seed: int = 0, count: int = 6) -> np.ndarray:
    """uint8 (count, 48, 64, 3) noise: tens of kilobytes as H.264, many read chunks."""
    return np.random.default_rng(seed).integers(0, 256, (count, 48, 64, 3), dtype=np.uint8)


def mp4_bytes(tmp_path: Path, frames: np.ndarray) -> bytes:
    """The bytes the video writer gives for ``frames`` (the same frames give the same bytes)."""
    path = write_video(tmp_path / f"expected-{uuid.uuid4().hex}.mp4", frames, fps=FPS)
    return path.read_bytes()


def read_in_chunks(storage: VideoStorage, key: str, chunk: int = 4096) -> tuple[bytes, int]:
    """The stored bytes read ``chunk`` at a time, and how many reads returned data."""
    parts = []
    with storage.open(key) as handle:
        while block := handle.read(chunk):
            assert len(block) <= chunk
            parts.append(block)
    return b"".join(parts), len(parts)


@pytest.fixture
def memory_url() -> Iterator[str]:
    """A fresh memory:// root (the memory filesystem is shared by the whole process)."""
    root = f"memory://videos-{uuid.uuid4().hex}"
    yield root
    fs = fsspec.filesystem("memory")
    if fs.exists(root):
        fs.rm(root, recursive=True)


@pytest.fixture(params=["local", "memory"])
def storage(request: pytest.FixtureRequest, tmp_path: Path, memory_url: str) -> VideoStorage:
    if request.param == "local":
        return open_storage(tmp_path / "videos")
    return open_storage(memory_url, staging_dir=tmp_path / "staging")


# -- keys -------------------------------------------------------------------------------


def test_video_key_is_the_job_id_with_the_mp4_suffix() -> None:
    assert video_key("0123abcd") == "0123abcd.mp4"
    assert check_key("a-b_c.1.mp4") == "a-b_c.1.mp4"


@pytest.mark.parametrize(
    "key",
    ["", "../x.mp4", "a/b.mp4", "a\\b.mp4", ".hidden.mp4", "..", "a..mp4", "/abs.mp4", "x y.mp4"],
)
def test_keys_that_could_leave_the_store_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match=r"invalid video key.*no path separators, no '\.\.'"):
        check_key(key)


def test_a_job_id_with_a_separator_gives_no_key() -> None:
    with pytest.raises(ValueError, match=r"invalid video key '\.\./etc\.mp4'"):
        video_key("../etc")


# -- the same behaviour from every store ------------------------------------------------


def test_write_stores_the_encoded_video_whole(storage: VideoStorage, tmp_path: Path) -> None:
    frames = noisy_frames()
    key = storage.write("job1", frames, FPS)
    expected = mp4_bytes(tmp_path, frames)
    assert key == "job1.mp4"
    assert storage.keys() == ["job1.mp4"]
    assert storage.size(key) == len(expected) > 10_000
    data, reads = read_in_chunks(storage, key)
    assert data == expected
    assert reads == -(-len(expected) // 4096)
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(data)
    decoded, fps, _ = read_video(copy)
    assert decoded.shape == frames.shape
    assert fps == FPS


def test_keys_are_sorted_and_rewriting_a_job_replaces_its_video(storage: VideoStorage) -> None:
    for job_id in ("b", "a", "c"):
        storage.write(job_id, noisy_frames(seed=1, count=2), FPS)
    assert storage.keys() == ["a.mp4", "b.mp4", "c.mp4"]
    first = storage.size("a.mp4")
    storage.write("a", noisy_frames(seed=2, count=5), FPS)
    assert storage.keys() == ["a.mp4", "b.mp4", "c.mp4"]
    assert storage.size("a.mp4") > first


def test_delete_is_idempotent_and_only_touches_its_key(storage: VideoStorage) -> None:
    storage.write("keep", noisy_frames(count=2), FPS)
    storage.write("drop", noisy_frames(count=2), FPS)
    storage.delete("drop.mp4")
    storage.delete("drop.mp4")
    storage.delete("never-written.mp4")
    assert storage.keys() == ["keep.mp4"]


def test_a_missing_key_is_video_not_found(storage: VideoStorage) -> None:
    for read in (storage.open, storage.size):
        with pytest.raises(VideoNotFound, match=r"no video gone\.mp4 in "):
            read("gone.mp4")
    with pytest.raises(FileNotFoundError):  # what callers that predate the storage catch
        storage.open("gone.mp4")


def test_an_empty_store_has_no_keys(storage: VideoStorage) -> None:
    assert storage.keys() == []


@pytest.mark.parametrize("method", ["open", "size", "delete"])
def test_every_operation_refuses_a_path_as_key(storage: VideoStorage, method: str) -> None:
    with pytest.raises(ValueError, match=r"invalid video key '\.\./outside\.mp4'"):
        getattr(storage, method)("../outside.mp4")


def test_frames_the_writer_refuses_store_nothing(storage: VideoStorage) -> None:
    with pytest.raises(VideoIOError, match="fps must be positive"):
        storage.write("bad", noisy_frames(count=2), 0)
    assert storage.keys() == []


def test_both_stores_satisfy_the_protocol(storage: VideoStorage) -> None:
    assert isinstance(storage, VideoStorage)
    assert storage.url


# -- local folder -----------------------------------------------------------------------


def test_local_keys_ignore_temp_files_and_other_files(
    tmp_path: Path, leftovers: Callable[[Path], list[str]]
) -> None:
    storage = LocalStorage(tmp_path)
    storage.write("job", noisy_frames(count=2), FPS)
    assert leftovers(tmp_path) == []
    (tmp_path / ".job2.mp4.0123456789ab.tmp").write_bytes(b"half")
    (tmp_path / "notes.txt").write_text("not a video")
    (tmp_path / "folder.mp4").mkdir()
    assert storage.keys() == ["job.mp4"]
    assert storage.path("job.mp4") == tmp_path / "job.mp4"


def test_local_storage_of_a_missing_folder_is_empty_until_written(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "a" / "b")
    assert storage.keys() == []
    storage.write("job", noisy_frames(count=2), FPS)
    assert (tmp_path / "a" / "b" / "job.mp4").is_file()


def test_local_check_creates_the_folder_or_names_why_not(tmp_path: Path) -> None:
    LocalStorage(tmp_path / "new").check()
    assert (tmp_path / "new").is_dir()
    assert list((tmp_path / "new").iterdir()) == []  # the probe is gone
    (tmp_path / "file").write_text("")
    with pytest.raises(StorageSetupError, match=r"videos folder .*file is not writable"):
        LocalStorage(tmp_path / "file").check()


# -- fsspec -----------------------------------------------------------------------------


def test_fsspec_write_leaves_nothing_in_the_staging_folder(tmp_path: Path, memory_url: str) -> None:
    staging = tmp_path / "staging"
    storage = FsspecStorage(memory_url, staging_dir=staging)
    storage.write("job", noisy_frames(count=2), FPS)
    assert list(staging.iterdir()) == []


def test_a_failed_upload_publishes_nothing(
    tmp_path: Path, memory_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = FsspecStorage(memory_url, staging_dir=tmp_path / "staging")

    def refuse(lpath: str, rpath: str, **kwargs: object) -> None:
        raise PermissionError(f"access denied to {rpath}")

    monkeypatch.setattr(storage.fs, "put_file", refuse)
    with pytest.raises(
        StorageError, match=rf"cannot upload job\.mp4 to {memory_url}: access denied"
    ):
        storage.write("job", noisy_frames(count=2), FPS)
    assert storage.keys() == []
    assert list((tmp_path / "staging").iterdir()) == []


def test_fsspec_failures_name_the_store(memory_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = FsspecStorage(memory_url)

    def broken(*args: object, **kwargs: object) -> None:
        raise ConnectionError("connection reset")

    for name in ("open", "info", "rm_file", "ls"):
        monkeypatch.setattr(storage.fs, name, broken)
    with pytest.raises(StorageError, match=rf"cannot read job\.mp4 from {memory_url}"):
        storage.open("job.mp4")
    with pytest.raises(StorageError, match=rf"cannot read the size of job\.mp4 in {memory_url}"):
        storage.size("job.mp4")
    with pytest.raises(StorageError, match=rf"cannot delete job\.mp4 from {memory_url}"):
        storage.delete("job.mp4")
    with pytest.raises(StorageError, match=rf"cannot list {memory_url}: connection reset"):
        storage.keys()
    with pytest.raises(StorageSetupError, match=r"check serving\.output_url"):
        storage.check()


def test_fsspec_keys_skip_other_objects_under_the_prefix(memory_url: str) -> None:
    storage = FsspecStorage(memory_url)
    storage.write("job", noisy_frames(count=2), FPS)
    storage.fs.pipe(f"{storage.root}/notes.txt", b"x")
    storage.fs.pipe(f"{storage.root}/nested/other.mp4", b"x")
    storage.fs.pipe(f"{storage.root}/folder.mp4/inner", b"x")
    assert storage.keys() == ["job.mp4"]
    with pytest.raises(VideoNotFound, match=r"no video folder\.mp4 in "):
        storage.size("folder.mp4")
    storage.check()
    names = sorted(posixpath.basename(p) for p in storage.fs.find(storage.root))
    assert names == ["inner", "job.mp4", "notes.txt", "other.mp4"]  # the check's probe is gone


def test_block_size_must_be_positive(memory_url: str) -> None:
    with pytest.raises(ValueError, match="block_size must be >= 1, got 0"):
        FsspecStorage(memory_url, block_size=0)


# -- choosing a store -------------------------------------------------------------------


def test_open_storage_picks_the_class_from_the_url(tmp_path: Path, memory_url: str) -> None:
    assert isinstance(open_storage(tmp_path), LocalStorage)
    relative = open_storage("outputs/server")
    assert isinstance(relative, LocalStorage)
    assert relative.folder == Path("outputs/server")
    by_url = open_storage(f"file://{tmp_path}/videos")
    assert isinstance(by_url, LocalStorage)
    assert by_url.folder == tmp_path / "videos"
    memory = open_storage(memory_url + "/")
    assert isinstance(memory, FsspecStorage)
    assert memory.url == memory_url
    assert repr(memory) == f"FsspecStorage({memory_url!r})"
    assert repr(by_url) == f"LocalStorage({str(tmp_path / 'videos')!r})"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("nope://bucket/x", r"unknown protocol 'nope'; expected s3://<bucket>\[/<prefix>\]"),
        ("s3://", r"names no bucket or folder; expected s3://<bucket>"),
        ("gs:///", r"names no bucket or folder; expected gs://<bucket>"),
        ("://bucket", r"expected <protocol>://<bucket>\[/<prefix>\]"),
    ],
)
def test_bad_urls_get_one_clear_error(url: str, message: str) -> None:
    with pytest.raises(StorageSetupError, match=message):
        open_storage(url)


@pytest.mark.parametrize(("url", "package"), [("s3://bucket/videos", "s3fs"), ("gs://b", "gcsfs")])
def test_a_missing_package_names_the_extra(
    url: str, package: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, package, None)  # importing it now fails
    for protocol in ("s3", "s3a", "gs", "gcs"):
        monkeypatch.delitem(FSSPEC_REGISTRY, protocol, raising=False)
    with pytest.raises(StorageSetupError) as caught:
        open_storage(url)
    assert str(caught.value) == (
        f"output URL {url!r}: the {url.split(':')[0]}:// protocol needs the {package} package, "
        f"which is not installed; install it with {SERVER_EXTRA}"
    )


def test_a_missing_package_of_another_protocol_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "adlfs", None)
    monkeypatch.delitem(FSSPEC_REGISTRY, "abfs", raising=False)
    with pytest.raises(StorageSetupError, match=r"the abfs:// protocol needs .*Install adlfs"):
        open_storage("abfs://container/videos")


class StrictFileSystem(fsspec.AbstractFileSystem):
    """A filesystem whose constructor refuses options it does not know."""

    protocol = "aiprod-strict"

    def __init__(self, *, known: int = 0) -> None:
        super().__init__()


def test_options_the_filesystem_refuses_are_a_setup_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(FSSPEC_REGISTRY, "aiprod-strict", StrictFileSystem)
    assert isinstance(
        open_storage("aiprod-strict://x", storage_options={"known": 1}), FsspecStorage
    )
    with pytest.raises(StorageSetupError, match=r"output URL 'aiprod-strict://x': cannot open it"):
        open_storage("aiprod-strict://x", storage_options={"no_such_option": 1})
