"""Where finished videos live: a local folder, or object storage named by a URL.

    storage = open_storage(settings.output_dir)                   # <outputs>/server/<id>.mp4
    storage = open_storage("s3://bucket/videos", storage_options={"endpoint_url": ...})
    key = storage.write(job_id, frames, fps=24)                     # "<job id>.mp4"
    with storage.open(key) as video:                                # read in chunks
        chunk = video.read(1 << 16)

A video is stored under its *key*, a plain file name (``<job id>.mp4``). Readers never see a
partial video: :class:`LocalStorage` writes a temporary file beside the target and renames
it (:func:`aiprod_pipelines.video_io.write_video`); :class:`FsspecStorage` encodes to a
local temporary file and uploads it in one ``put_file``, and an object store publishes an
object only when its upload completes (an S3 PUT or multipart upload, a GCS upload).

Object storage goes through fsspec (``s3://`` with s3fs, ``gs://`` with gcsfs, both in
``aiprod-pipelines[server]``; ``memory://`` for tests). Credentials are the platform's
standard ones, never configuration: ``AWS_*`` variables or an instance / workload identity
for S3, Application Default Credentials for GCS. ``serving.output_storage_options`` passes
non-secret options such as ``endpoint_url`` of an S3-compatible server.
"""

from __future__ import annotations

import importlib
import posixpath
import re
import secrets
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO, Final, Protocol, cast, runtime_checkable

from aiprod_core.errors import AiprodError
from aiprod_pipelines.video_io import write_video

SUFFIX: Final = ".mp4"
#: Bytes fetched per ranged read from object storage while a download streams.
DEFAULT_BLOCK_SIZE: Final = 4 << 20
#: What to install for object storage.
SERVER_EXTRA: Final = 'pip install "aiprod-pipelines[server]"'
#: The package behind each object-storage protocol that the server extra installs.
PROTOCOL_PACKAGES: Final = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs"}
#: Name prefix of the hidden object or file that checks a store is writable (removed at once).
PROBE_PREFIX: Final = ".aiprod-write-check-"
#: A key: a file name of letters, digits, '.', '_' and '-', not hidden, no '..'.
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
_URL = re.compile(r"(?P<protocol>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>.*)", re.DOTALL)


class StorageSetupError(AiprodError):
    """The video storage cannot be used as configured (bad URL, missing package, no access)."""


class StorageError(AiprodError, OSError):
    """A storage operation failed; the message names the store and the key."""


class VideoNotFound(AiprodError, FileNotFoundError):
    """No video is stored under the key (never written, or deleted)."""


@runtime_checkable
class VideoStorage(Protocol):
    """The store of finished videos that every server replica shares."""

    url: str  # where videos live, for logs and messages

    def write(self, job_id: str, frames: Any, fps: int) -> str:
        """Encode ``frames`` as an mp4, store it whole or not at all; return its key."""
        ...

    def open(self, key: str) -> BinaryIO:
        """A binary file object to read the video in chunks; :class:`VideoNotFound` if none."""
        ...

    def size(self, key: str) -> int:
        """The video's size in bytes; :class:`VideoNotFound` if none."""
        ...

    def delete(self, key: str) -> None:
        """Delete the video; nothing happens when there is none."""
        ...

    def keys(self) -> list[str]:
        """The keys of the stored videos, sorted."""
        ...


def check_key(key: str) -> str:
    """``key`` if it is a plain file name, else ValueError (no '/', '\\\\', '..', hidden names)."""
    if not isinstance(key, str) or not _KEY.fullmatch(key) or ".." in key:
        shown = repr(key)[:80]
        raise ValueError(
            f"invalid video key {shown}: expected a file name of letters, digits, '.', '_' "
            "and '-' (no path separators, no '..', not starting with '.')"
        )
    return key


def video_key(job_id: str) -> str:
    """The key a job's video is stored under: ``<job id>.mp4``."""
    return check_key(f"{job_id}{SUFFIX}")


def _is_video_name(name: str) -> bool:
    return name.endswith(SUFFIX) and _KEY.fullmatch(name) is not None and ".." not in name


class LocalStorage:
    """Videos as files in one folder, written atomically (temp file + rename)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.url = str(self.folder)

    def __repr__(self) -> str:
        return f"LocalStorage({self.url!r})"

    def path(self, key: str) -> Path:
        """The file of ``key``."""
        return self.folder / check_key(key)

    def check(self) -> None:
        """Create the folder and make sure a file can be written there."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.folder, prefix=PROBE_PREFIX):
                pass
        except OSError as exc:
            raise StorageSetupError(f"videos folder {self.folder} is not writable: {exc}") from exc

    def write(self, job_id: str, frames: Any, fps: int) -> str:
        key = video_key(job_id)
        write_video(self.folder / key, frames, fps=fps, format="mp4")
        return key

    def open(self, key: str) -> BinaryIO:
        path = self.path(key)
        try:
            return path.open("rb")
        except FileNotFoundError:
            raise VideoNotFound(f"no video {key} in {self.url}") from None

    def size(self, key: str) -> int:
        path = self.path(key)
        try:
            return path.stat().st_size
        except FileNotFoundError:
            raise VideoNotFound(f"no video {key} in {self.url}") from None

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def keys(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted(
            p.name for p in self.folder.iterdir() if _is_video_name(p.name) and p.is_file()
        )


class FsspecStorage:
    """Videos as objects under an fsspec URL (``s3://bucket/prefix``, ``gs://...``, ...).

    Args:
        url: ``<protocol>://<bucket or root>[/<prefix>]``.
        storage_options: passed to the filesystem (e.g. ``endpoint_url`` for s3fs).
        staging_dir: where the mp4 is encoded before its upload (the system's temp folder
            by default).
        block_size: bytes per ranged read while a download streams.
    """

    def __init__(
        self,
        url: str,
        *,
        storage_options: Mapping[str, Any] | None = None,
        staging_dir: str | Path | None = None,
        block_size: int = DEFAULT_BLOCK_SIZE,
    ) -> None:
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        scheme, separator, rest = url.partition("://")
        self.url = f"{scheme}{separator}{rest.rstrip('/')}"  # s3://bucket/prefix/ -> .../prefix
        self.fs, root = _filesystem(self.url, dict(storage_options or {}))
        self.root = root.rstrip("/")
        self.staging_dir = None if staging_dir is None else Path(staging_dir)
        self.block_size = block_size

    def __repr__(self) -> str:
        return f"FsspecStorage({self.url!r})"

    def _path(self, key: str) -> str:
        return f"{self.root}/{check_key(key)}"

    def check(self) -> None:
        """List the store and write and delete a hidden probe object there, so that a wrong
        bucket, missing permissions or options the filesystem refuses fail at start-up."""
        probe = f"{self.root}/{PROBE_PREFIX}{secrets.token_hex(6)}"
        try:
            self.keys()
            self.fs.pipe_file(probe, b"")
            self.fs.rm_file(probe)
        except Exception as exc:
            raise StorageSetupError(
                f"cannot list, write and delete videos in {self.url} ({exc}); check "
                "serving.output_url, serving.output_storage_options and the credentials "
                "(AWS_* variables or workload identity for s3://, Application Default "
                "Credentials for gs://)"
            ) from exc
        finally:
            self.fs.invalidate_cache(probe)

    def write(self, job_id: str, frames: Any, fps: int) -> str:
        key = video_key(job_id)
        target = self._path(key)
        if self.staging_dir is not None:
            self.staging_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="aiprod-upload-", dir=self.staging_dir) as temp:
            local = write_video(Path(temp) / key, frames, fps=fps, format="mp4")
            try:
                self.fs.put_file(str(local), target)
            except Exception as exc:
                raise StorageError(f"cannot upload {key} to {self.url}: {exc}") from exc
        return key

    def open(self, key: str) -> BinaryIO:
        path = self._path(key)
        self.fs.invalidate_cache(path)  # another replica may have written it since a listing
        try:
            handle = self.fs.open(path, "rb", block_size=self.block_size)
        except FileNotFoundError:
            raise VideoNotFound(f"no video {key} in {self.url}") from None
        except Exception as exc:
            raise StorageError(f"cannot read {key} from {self.url}: {exc}") from exc
        return cast(BinaryIO, handle)

    def size(self, key: str) -> int:
        path = self._path(key)
        self.fs.invalidate_cache(path)
        try:
            info = self.fs.info(path)
        except FileNotFoundError:
            raise VideoNotFound(f"no video {key} in {self.url}") from None
        except Exception as exc:
            raise StorageError(f"cannot read the size of {key} in {self.url}: {exc}") from exc
        if info.get("type") != "file" or info.get("size") is None:  # a "folder" of objects
            raise VideoNotFound(f"no video {key} in {self.url}")
        return int(info["size"])

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            self.fs.rm_file(path)
        except FileNotFoundError:
            pass  # already gone: deleting is idempotent
        except Exception as exc:
            raise StorageError(f"cannot delete {key} from {self.url}: {exc}") from exc
        finally:
            self.fs.invalidate_cache(path)

    def keys(self) -> list[str]:
        self.fs.invalidate_cache(self.root)
        try:
            entries = self.fs.ls(self.root, detail=True)
        except FileNotFoundError:
            return []  # nothing written under the prefix yet
        except Exception as exc:
            raise StorageError(f"cannot list {self.url}: {exc}") from exc
        files = (entry["name"] for entry in entries if entry.get("type") == "file")
        names = (posixpath.basename(str(name).rstrip("/")) for name in files)
        return sorted(name for name in names if _is_video_name(name))


def _filesystem(url: str, options: dict[str, Any]) -> tuple[Any, str]:
    """The fsspec filesystem and root path of ``url``; StorageSetupError naming the fix."""
    match = _URL.fullmatch(url)
    if match is None:
        raise StorageSetupError(f"output URL {url!r}: expected <protocol>://<bucket>[/<prefix>]")
    protocol = match["protocol"].lower()
    if not match["rest"].strip("/"):
        raise StorageSetupError(
            f"output URL {url!r} names no bucket or folder; expected {protocol}://<bucket>[/<prefix>]"
        )
    package = PROTOCOL_PACKAGES.get(protocol)
    try:
        # Imported here: object storage is optional (the server extra), local folders are not.
        fsspec = importlib.import_module("fsspec")
        fsspec.get_filesystem_class(protocol)
    except ImportError as exc:
        if package is None:
            raise StorageSetupError(
                f"output URL {url!r}: the {protocol}:// protocol needs a package that is not "
                f"installed ({exc})"
            ) from exc
        raise StorageSetupError(
            f"output URL {url!r}: the {protocol}:// protocol needs the {package} package, which "
            f"is not installed; install it with {SERVER_EXTRA}"
        ) from exc
    except ValueError:
        raise StorageSetupError(
            f"output URL {url!r}: unknown protocol {protocol!r}; expected s3://<bucket>[/<prefix>]"
            " or gs://<bucket>[/<prefix>] (or a local folder: leave serving.output_url null)"
        ) from None
    try:
        fs, root = importlib.import_module("fsspec.core").url_to_fs(url, **options)
    except Exception as exc:
        raise StorageSetupError(f"output URL {url!r}: cannot open it ({exc})") from exc
    return fs, str(root)


def open_storage(
    url_or_folder: str | Path,
    *,
    storage_options: Mapping[str, Any] | None = None,
    staging_dir: str | Path | None = None,
) -> VideoStorage:
    """The storage named by a folder, a ``file://`` URL or an fsspec URL.

    A :class:`~pathlib.Path`, a string without ``://`` and ``file://`` URLs give a
    :class:`LocalStorage`; other URLs a :class:`FsspecStorage` (``storage_options`` go to
    its filesystem, ``staging_dir`` holds the mp4 while it uploads). Nothing is read or
    written here; call ``check()`` to find out at start-up that the store is usable.

    Raises:
        StorageSetupError: an unknown protocol, a missing package (naming what to install),
            or options the filesystem refuses.
    """
    if isinstance(url_or_folder, Path):
        return LocalStorage(url_or_folder)
    text = str(url_or_folder)
    if "://" not in text:
        return LocalStorage(Path(text))
    if text.lower().startswith("file://"):
        return LocalStorage(Path(text[len("file://") :]))
    return FsspecStorage(text, storage_options=storage_options, staging_dir=staging_dir)
