"""Atomic writes leave the old file (or folder) or the new one, never a partial one."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from aiprod_core import atomic
from aiprod_core.atomic import (
    RemovedPath,
    atomic_folder,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    is_temporary_name,
    remove_orphans,
    temporary_sibling,
    temporary_target,
)


class Boom(RuntimeError):
    """Stands in for any failure in the middle of a write."""


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def is_txt(entry: Path) -> bool:
    return entry.suffix == ".txt"


def disk_full(*args: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


# --- files -------------------------------------------------------------------------------


def test_temporary_sibling_is_hidden_unique_and_beside_the_target(tmp_path: Path) -> None:
    target = tmp_path / "model.safetensors"
    first, second = temporary_sibling(target), temporary_sibling(target, ".mp4")
    assert first.parent == second.parent == tmp_path
    assert first.name.startswith(".model.safetensors.")
    assert first.name.endswith(".tmp")
    assert second.name.endswith(".tmp.mp4")
    assert first.name.removesuffix(".tmp") != second.name.removesuffix(".tmp.mp4")


def test_write_text_creates_parents_and_content(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.txt"
    atomic_write_text(target, "héllo\n")
    assert target.read_bytes() == "héllo\n".encode()
    assert leftovers(target.parent) == []


def test_write_text_replaces_the_old_content(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("a much longer previous text")
    atomic_write_text(target, "short")
    assert target.read_text() == "short"


def test_replacing_keeps_the_mode(tmp_path: Path) -> None:
    target = tmp_path / "data.bin"
    target.write_bytes(b"old")
    target.chmod(0o640)
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert target.stat().st_mode & 0o777 == 0o640


def test_new_file_follows_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "f", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_failure_keeps_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    target = tmp_path / "keep.txt"
    target.write_text("previous")

    def fail(*args: object) -> None:
        raise OSError(f"{failing} failed")

    monkeypatch.setattr(os, failing, fail)
    with pytest.raises(
        OSError, match=rf"keep\.txt: cannot move the finished file into place \({failing} failed"
    ):
        atomic_write_text(target, "next")
    monkeypatch.undo()
    assert target.read_text() == "previous"
    assert leftovers(tmp_path) == []


def test_failed_rename_keeps_the_error_type_errno_and_cause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out.bin"
    refused = PermissionError(errno.EACCES, "Permission denied")

    def refuse(self: Path, other: Path) -> Path:
        raise refused

    monkeypatch.setattr(Path, "replace", refuse)
    with pytest.raises(PermissionError) as caught:
        atomic_write_bytes(target, b"x")
    monkeypatch.undo()
    assert str(caught.value) == (
        f"cannot write {target}: cannot move the finished file into place "
        "([Errno 13] Permission denied)"
    )
    assert caught.value.errno == errno.EACCES
    assert caught.value.__cause__ is refused
    assert list(tmp_path.iterdir()) == []


def test_an_error_type_that_needs_more_arguments_becomes_a_plain_oserror(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class FussyError(OSError):
        def __init__(self, code: int, text: str, extra: str) -> None:
            super().__init__(code, text)

    def fail(*args: object) -> None:
        raise FussyError(errno.EIO, "I/O error", "extra")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match=r"out\.bin: cannot move") as caught:
        atomic_write_bytes(tmp_path / "out.bin", b"x")
    monkeypatch.undo()
    assert type(caught.value) is OSError
    assert caught.value.errno == errno.EIO
    assert "cannot move the finished file into place ([Errno 5] I/O error)" in str(caught.value)


def test_interrupt_inside_atomic_path(tmp_path: Path) -> None:
    target = tmp_path / "video.mp4"
    target.write_bytes(b"good")
    seen: list[Path] = []

    def write_half_then_stop() -> None:
        with atomic_path(target, suffix=".mp4") as temp:
            seen.append(temp)
            temp.write_bytes(b"half")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_half_then_stop()
    assert seen[0].name.endswith(".tmp.mp4")
    assert seen[0].parent == tmp_path
    assert target.read_bytes() == b"good"
    assert leftovers(tmp_path) == []


def test_atomic_path_requires_the_writer_to_create_the_file(tmp_path: Path) -> None:
    target = tmp_path / "x.bin"

    def write_nothing() -> None:
        with atomic_path(target):
            return

    with pytest.raises(FileNotFoundError, match=r"x\.bin: the writer did not create the file"):
        write_nothing()
    assert not target.exists()
    assert leftovers(tmp_path) == []


def test_atomic_path_can_create_an_empty_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with atomic_path(target, create=True) as temp:
        assert temp.parent == tmp_path
        assert temp.read_bytes() == b""
        temp.write_bytes(b"new")
        assert target.read_bytes() == b"old"
    assert target.read_bytes() == b"new"
    assert leftovers(tmp_path) == []


def test_atomic_path_with_create_leaves_nothing_when_interrupted(tmp_path: Path) -> None:
    def interrupted() -> None:
        with atomic_path(tmp_path / "out.bin", create=True) as temp:
            temp.write_bytes(b"half")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_passes_the_writers_own_errors_through(tmp_path: Path) -> None:
    def failing_writer() -> None:
        with atomic_path(tmp_path / "out.bin", create=True):
            raise OSError(errno.ENOSPC, "encoder ran out of space")

    with pytest.raises(OSError, match=r"^\[Errno 28\] encoder ran out of space$"):
        failing_writer()
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_refuses_a_folder_target(tmp_path: Path) -> None:
    with (
        pytest.raises(
            IsADirectoryError, match=rf"^cannot write {tmp_path}: it is a folder; expected a file"
        ),
        atomic_path(tmp_path),
    ):
        pytest.fail("the body must not run")


def test_atomic_path_reports_a_parent_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("x")
    with pytest.raises(
        FileExistsError, match=r"blocker/out\.bin: cannot create its folder \(\[Errno 17\]"
    ):
        atomic_write_text(tmp_path / "blocker" / "out.bin", "x")
    with pytest.raises(
        NotADirectoryError, match=r"blocker/sub/out\.bin: cannot create its folder \(\[Errno 20\]"
    ):
        atomic_write_text(tmp_path / "blocker" / "sub" / "out.bin", "x")
    assert (tmp_path / "blocker").read_text() == "x"


def test_atomic_path_reports_an_unwritable_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> int:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(atomic.os, "open", refuse)
    with (
        pytest.raises(
            PermissionError,
            match=r"out\.bin: cannot create a temporary file beside it \(.*Permission denied",
        ),
        atomic_path(tmp_path / "out.bin", create=True),
    ):
        pytest.fail("the body must not run")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_folder_fsync_failure_is_tolerated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def no_folders(path: object, flags: int, *args: object) -> int:
        if Path(str(path)).is_dir():
            raise OSError("folders cannot be opened here")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", no_folders)
    atomic_write_text(tmp_path / "t.txt", "ok")
    monkeypatch.undo()
    assert (tmp_path / "t.txt").read_text() == "ok"


# --- folders -----------------------------------------------------------------------------


def write_folder(target: Path, error: BaseException | None = None) -> None:
    with atomic_folder(target, is_txt) as temp:
        (temp / "new.txt").write_text("new")
        if error is not None:
            raise error


def test_atomic_folder_creates_a_new_folder_and_its_parents(tmp_path: Path) -> None:
    target = tmp_path / "a" / "frames"
    with atomic_folder(target, is_txt) as temp:
        assert temp.parent == target.parent
        assert temp.name.startswith(".frames.")
        assert list(temp.iterdir()) == []
        (temp / "a.txt").write_text("a")
        assert not target.exists()
    assert [entry.name for entry in target.iterdir()] == ["a.txt"]
    assert leftovers(target.parent) == []


def test_atomic_folder_replaces_a_replaceable_folder(tmp_path: Path) -> None:
    target = tmp_path / "frames"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_folder(target, is_txt) as temp:
        (temp / "new.txt").write_text("new")
        (temp / "nested").mkdir()
        (temp / "nested" / "deep.txt").write_text("deep")
        assert (target / "old.txt").read_text() == "old"
    assert sorted(entry.name for entry in target.iterdir()) == ["nested", "new.txt"]
    assert (target / "nested" / "deep.txt").read_text() == "deep"
    assert leftovers(tmp_path) == []


def test_atomic_folder_fsyncs_every_file_and_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    monkeypatch.setattr(atomic, "_fsync_file", lambda path: synced.append(path.name))
    monkeypatch.setattr(atomic, "_fsync_directory", lambda path: synced.append(path.name + "/"))
    with atomic_folder(tmp_path / "frames", is_txt) as temp:
        (temp / "sub").mkdir()
        (temp / "sub" / "b.txt").write_text("b")
        (temp / "a.txt").write_text("a")
        os.mkfifo(temp / "pipe")  # neither a file nor a folder: never opened
    assert sorted(synced[:-2]) == ["a.txt", "b.txt", "sub/"]
    assert synced[-2].startswith(".frames.")
    assert synced[-1] == tmp_path.name + "/"


def test_atomic_folder_failure_keeps_the_old_folder(tmp_path: Path) -> None:
    target = tmp_path / "frames"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(Boom):
        write_folder(target, Boom())
    assert [entry.name for entry in target.iterdir()] == ["old.txt"]
    assert leftovers(tmp_path) == []


def test_atomic_folder_interrupt_leaves_nothing_when_there_was_no_folder(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        write_folder(tmp_path / "frames", KeyboardInterrupt())
    assert list(tmp_path.iterdir()) == []


def test_atomic_folder_moves_the_old_folder_back_when_the_rename_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "frames"
    target.mkdir()
    (target / "old.txt").write_text("old")
    real_replace = Path.replace
    calls: list[tuple[str, str]] = []

    def flaky_replace(self: Path, other: Path) -> Path:
        calls.append((self.name, Path(other).name))
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(self, other)

    monkeypatch.setattr(Path, "replace", flaky_replace)
    with pytest.raises(OSError, match=r"frames: cannot move") as caught:
        write_folder(target)
    monkeypatch.undo()
    assert str(caught.value) == (
        f"cannot write {target}: cannot move the finished folder into place "
        "([Errno 28] No space left on device)"
    )
    assert caught.value.errno == errno.ENOSPC
    assert len(calls) == 3
    assert calls[0][0] == "frames"
    assert calls[1] == (calls[1][0], "frames")
    assert calls[2] == (calls[0][1], "frames")
    assert (target / "old.txt").read_text() == "old"
    assert leftovers(tmp_path) == []


def test_atomic_folder_reports_a_failed_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def write_and_fail_fsync() -> None:
        with atomic_folder(tmp_path / "frames", is_txt) as temp:
            (temp / "a.txt").write_text("a")
            monkeypatch.setattr(os, "fsync", disk_full)

    with pytest.raises(OSError, match=r"frames: cannot move the finished folder into place"):
        write_and_fail_fsync()
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_atomic_folder_succeeds_when_the_old_folder_cannot_be_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "frames"
    target.mkdir()
    (target / "old.txt").write_text("old")
    real_rmtree = shutil.rmtree

    def refuse(path: Path, ignore_errors: bool = False) -> None:
        if not ignore_errors:
            raise OSError("must be called with ignore_errors")

    monkeypatch.setattr(atomic.shutil, "rmtree", refuse)
    write_folder(target)
    monkeypatch.undo()
    assert [entry.name for entry in target.iterdir()] == ["new.txt"]
    left = leftovers(tmp_path)
    assert len(left) == 1
    assert left[0].endswith(".tmp.old")
    real_rmtree(tmp_path / left[0])


def test_atomic_folder_refuses_a_folder_with_other_files(tmp_path: Path) -> None:
    target = tmp_path / "frames"
    target.mkdir()
    for name in ("keep.me", "a.txt", "z.bin", "b.dat", "c.dat"):
        (target / name).write_text("precious")
    with (
        pytest.raises(
            FileExistsError,
            match=(
                r"frames: the folder already holds files that are not replaceable "
                r"\(b\.dat, c\.dat, keep\.me\); expected an empty or new folder$"
            ),
        ),
        atomic_folder(target, is_txt),
    ):
        pytest.fail("the body must not run")
    assert (target / "keep.me").read_text() == "precious"


def test_atomic_folder_names_the_replaceable_entries(tmp_path: Path) -> None:
    target = tmp_path / "shots"
    target.mkdir()
    (target / "notes.md").write_text("keep")
    with (
        pytest.raises(FileExistsError, match=r"shots: .* files that are not frames \(notes\.md\)"),
        atomic_folder(target, is_txt, replaceable_name="frames"),
    ):
        pytest.fail("the body must not run")


def test_atomic_folder_refuses_a_file_target(tmp_path: Path) -> None:
    target = tmp_path / "frames"
    target.write_text("not a folder")
    with (
        pytest.raises(NotADirectoryError, match=r"frames: it is a file; expected a folder path$"),
        atomic_folder(target, is_txt),
    ):
        pytest.fail("the body must not run")
    assert target.read_text() == "not a folder"


def test_atomic_folder_reports_a_parent_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("x")
    with (
        pytest.raises(FileExistsError, match=r"blocker/frames: cannot create its folder"),
        atomic_folder(tmp_path / "blocker" / "frames", is_txt),
    ):
        pytest.fail("the body must not run")


def test_atomic_folder_reports_an_unwritable_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_mkdir = Path.mkdir

    def refuse_hidden(self: Path, *args: object, **kwargs: object) -> None:
        if self.name.startswith("."):
            raise PermissionError(errno.EACCES, "Permission denied")
        real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "mkdir", refuse_hidden)
    with (
        pytest.raises(
            PermissionError,
            match=r"frames: cannot create a temporary folder beside it \(.*Permission denied",
        ),
        atomic_folder(tmp_path / "new" / "frames", is_txt),
    ):
        pytest.fail("the body must not run")
    monkeypatch.undo()
    assert [entry.name for entry in tmp_path.iterdir()] == ["new"]
    assert list((tmp_path / "new").iterdir()) == []


# --- orphans of interrupted writes -------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", ".mp4", ".old", ".tmp"])
@pytest.mark.parametrize("name", ["model.safetensors", "step-00000100", "a.b c", ".hidden"])
def test_every_temporary_name_says_its_target(tmp_path: Path, name: str, suffix: str) -> None:
    temp = temporary_sibling(tmp_path / name, suffix)
    assert is_temporary_name(temp.name)
    assert temporary_target(temp.name) == name


@pytest.mark.parametrize(
    "name",
    [
        "model.safetensors",
        ".model.safetensors",
        ".model.safetensors.tmp",
        ".model.safetensors.0a1b2c3d4e.tmp",  # too few hex digits
        ".model.safetensors.0A1B2C3D4E5F.tmp",  # not lower-case
        "model.safetensors.0a1b2c3d4e5f.tmp",  # not hidden
        ".0a1b2c3d4e5f.tmp",  # no target
        ".model.safetensors.0a1b2c3d4e5f.tmpx",  # a suffix starts with a dot
    ],
)
def test_other_names_are_not_temporary(name: str) -> None:
    assert not is_temporary_name(name)
    assert temporary_target(name) is None


def orphan_file(target: Path, size: int, suffix: str = "") -> Path:
    path = temporary_sibling(target, suffix)
    path.write_bytes(b"x" * size)
    return path


@pytest.mark.fault("interrupted", guards_data=True)
def test_remove_orphans_deletes_only_owned_temporaries(tmp_path: Path) -> None:
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"finished weights")
    weights = orphan_file(model, 1000)
    sidecar = orphan_file(tmp_path / "model.safetensors.sha256", 70)
    step = temporary_sibling(tmp_path / "step-00000004")
    (step / "inner").mkdir(parents=True)
    (step / "inner" / "optimizer.safetensors").write_bytes(b"y" * 300)
    (step / "state.json").write_bytes(b"{}")
    replaced = temporary_sibling(tmp_path / "step-00000002", ".old")
    replaced.mkdir()
    (replaced / "model.safetensors").write_bytes(b"z" * 40)
    foreign = orphan_file(tmp_path / "notes.txt", 5)  # someone else's target
    hidden = tmp_path / ".settings"
    hidden.write_text("a user's hidden file")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.bin").write_bytes(b"k" * 10)
    link = temporary_sibling(tmp_path / "model.safetensors")
    link.symlink_to(outside, target_is_directory=True)

    removed = remove_orphans(
        tmp_path,
        lambda name: name.startswith(("step-", "model.safetensors")),
    )

    assert sorted(removed, key=lambda r: r.path) == sorted(
        [
            RemovedPath(weights, 1000),
            RemovedPath(sidecar, 70),
            RemovedPath(step, 302),
            RemovedPath(replaced, 40),
        ],
        key=lambda r: r.path,
    )
    assert [r.path for r in removed] == sorted(r.path for r in removed)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [model.name, foreign.name, hidden.name, "outside", link.name]
    )
    assert model.read_bytes() == b"finished weights"
    assert (outside / "keep.bin").read_bytes() == b"k" * 10
    assert remove_orphans(tmp_path, ["model.safetensors"]) == []


@pytest.mark.fault("interrupted", guards_data=True)
def test_remove_orphans_takes_a_collection_of_names(tmp_path: Path) -> None:
    kept = orphan_file(tmp_path / "report.json", 3)
    gone = orphan_file(tmp_path / "manifest.jsonl", 8)
    assert remove_orphans(tmp_path, {"manifest.jsonl"}) == [RemovedPath(gone, 8)]
    assert [p.name for p in tmp_path.iterdir()] == [kept.name]
    assert remove_orphans(tmp_path / "missing", {"manifest.jsonl"}) == []


@pytest.mark.fault("interrupted")
def test_remove_orphans_names_what_it_cannot_delete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    orphan = orphan_file(tmp_path / "model.safetensors", 4)

    def refuse(self: Path, missing_ok: bool = False) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "unlink", refuse)
    with pytest.raises(PermissionError) as info:
        remove_orphans(tmp_path, {"model.safetensors"})
    assert str(info.value).startswith(f"cannot remove {orphan}, left by an interrupted write (")
    assert info.value.errno == errno.EACCES


KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from aiprod_core.atomic import atomic_path
with atomic_path(Path(sys.argv[1]), create=True) as temp:
    temp.write_bytes(b"w" * 4096)
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.fault("interrupted", guards_data=True)
def test_a_writer_killed_mid_write_leaves_an_orphan_that_remove_orphans_deletes(
    tmp_path: Path,
) -> None:
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"the previous weights")

    killed = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, str(target)], capture_output=True, check=False
    )

    assert killed.returncode == -signal.SIGKILL
    assert target.read_bytes() == b"the previous weights"
    (orphan,) = (p for p in tmp_path.iterdir() if p != target)
    assert temporary_target(orphan.name) == "model.safetensors"
    assert remove_orphans(tmp_path, {"model.safetensors"}) == [RemovedPath(orphan, 4096)]
    assert list(tmp_path.iterdir()) == [target]
    assert target.read_bytes() == b"the previous weights"
