"""Choosing and checking ``aiprod-generate``'s output before any model is loaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aiprod_pipelines.cli.outputs import (
    MAX_STEM,
    OutputError,
    OutputTarget,
    check_frame_rate,
    check_output,
    choose_output,
    default_output,
    write_output,
)


def choose(output: Path | None, format: str | None = None) -> OutputTarget:
    return choose_output(output, format, outputs_folder=Path("outs"), prompt="A cat!", seed=3)


@pytest.mark.parametrize(
    ("prompt", "name"),
    [
        ("A red circle, moving LEFT!", "a-red-circle-moving-left-seed7.mp4"),
        ("???", "video-seed7.mp4"),
        ("x" * 100, "x" * MAX_STEM + "-seed7.mp4"),
        ("word " * 20, ("word-" * 10)[:MAX_STEM].strip("-") + "-seed7.mp4"),
    ],
)
def test_default_output_is_named_after_prompt_and_seed(prompt: str, name: str) -> None:
    assert default_output(Path("outs"), prompt, 7, "mp4") == Path("outs") / name


def test_default_output_follows_format() -> None:
    assert choose(None) == OutputTarget(Path("outs/a-cat-seed3.mp4"), "mp4", default=True)
    assert choose(None, "gif") == OutputTarget(Path("outs/a-cat-seed3.gif"), "gif", default=True)
    assert choose(None, "png") == OutputTarget(Path("outs/a-cat-seed3"), "png", default=True)


@pytest.mark.parametrize(
    ("output", "format", "expected"),
    [
        ("clip.mp4", None, "mp4"),
        ("clip.MP4", None, "mp4"),
        ("clip.gif", None, "gif"),
        ("frames", None, "png"),
        ("frames/", None, "png"),
        ("clip.gif", "gif", "gif"),
        ("frames", "png", "png"),
        ("frames.v2", "png", "png"),
        ("clip", "mp4", "mp4"),
    ],
)
def test_format_from_suffix_or_flag(output: str, format: str | None, expected: str) -> None:
    assert choose(Path(output), format) == OutputTarget(Path(output), expected)


@pytest.mark.fault("cli")
def test_unsupported_suffix_names_the_flags_and_the_choices() -> None:
    with pytest.raises(OutputError) as raised:
        choose(Path("clip.avi"))

    assert str(raised.value) == (
        "-o/--output clip.avi: unsupported suffix '.avi'; expected .mp4, .gif, or a path "
        "without a suffix for a folder of PNG frames, or choose the format with --format "
        "(mp4, gif, png)"
    )


def test_suffix_contradicting_format_is_refused() -> None:
    with pytest.raises(OutputError, match=r"suffix '\.gif' says gif but --format is mp4"):
        choose(Path("clip.gif"), "mp4")


def test_missing_output_passes_the_check(tmp_path: Path) -> None:
    check_output(OutputTarget(tmp_path / "new" / "a.mp4", "mp4"), fps=24, overwrite=False)


@pytest.mark.fault("files", guards_data=True)
@pytest.mark.parametrize("output", ["a.mp4", "new/deeper/a.mp4", "frames"])
def test_the_folder_probe_leaves_nothing_behind(tmp_path: Path, output: str) -> None:
    (tmp_path / "kept.txt").write_text("kept")
    target = OutputTarget(tmp_path / output, "png" if output == "frames" else "mp4")
    check_output(target, fps=24, overwrite=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.txt"]
    assert (tmp_path / "kept.txt").read_text() == "kept"


@pytest.mark.fault("files")
@pytest.mark.parametrize("below", ["x.mp4", "sub/x.mp4"])
def test_a_file_where_the_folder_should_be_is_refused(tmp_path: Path, below: str) -> None:
    file = tmp_path / "README.md"
    file.write_text("not a folder")
    output = file / below

    with pytest.raises(OutputError) as raised:
        check_output(OutputTarget(output, "mp4"), fps=24, overwrite=False)

    assert str(raised.value) == (
        f"-o/--output {output}: {file} exists and is not a folder; choose an output path "
        "inside a folder"
    )
    assert file.read_text() == "not a folder"


@pytest.mark.fault("files")
@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
@pytest.mark.parametrize(
    ("output", "action"), [("/proc/x.mp4", "write"), ("/proc/a/b/x.mp4", "create a folder")]
)
def test_a_folder_that_cannot_be_written_is_refused(output: str, action: str) -> None:
    with pytest.raises(OutputError) as raised:
        check_output(OutputTarget(Path(output), "mp4"), fps=24, overwrite=False)

    message = str(raised.value)
    assert message.startswith(f"-o/--output {output}: cannot {action} in /proc (")
    assert message.endswith("); choose a writable folder")


@pytest.mark.fault("files")
def test_the_default_output_is_named_as_such(tmp_path: Path) -> None:
    file = tmp_path / "outputs"
    file.write_text("a file where paths.outputs should be")
    target = choose_output(None, None, outputs_folder=file, prompt="a cat", seed=1)

    with pytest.raises(OutputError) as raised:
        check_output(target, fps=24, overwrite=False)

    assert str(raised.value).startswith(
        f"the default output {file / 'a-cat-seed1.mp4'} (in paths.outputs; choose one with "
        f"-o/--output): {file} exists and is not a folder"
    )


@pytest.mark.parametrize("format", ["mp4", "gif", "png"])
def test_existing_output_is_refused_without_overwrite(tmp_path: Path, format: str) -> None:
    path = tmp_path / "taken"
    path.mkdir() if format == "png" else path.write_bytes(b"x")

    with pytest.raises(OutputError, match="already exists; pass --overwrite"):
        check_output(OutputTarget(path, format), fps=24, overwrite=False)


def test_dangling_symlink_counts_as_existing(tmp_path: Path) -> None:
    link = tmp_path / "link.mp4"
    link.symlink_to(tmp_path / "nowhere.mp4")

    with pytest.raises(OutputError, match="already exists"):
        check_output(OutputTarget(link, "mp4"), fps=24, overwrite=False)


def test_overwrite_needs_the_right_kind_of_target(tmp_path: Path) -> None:
    folder = tmp_path / "clip.mp4"
    folder.mkdir()
    with pytest.raises(OutputError, match=r"is a folder; expected a mp4 file path"):
        check_output(OutputTarget(folder, "mp4"), fps=24, overwrite=True)

    file = tmp_path / "frames"
    file.write_bytes(b"x")
    with pytest.raises(OutputError, match="is a file; PNG frames need a folder path"):
        check_output(OutputTarget(file, "png"), fps=24, overwrite=True)


def test_overwrite_replaces_only_a_folder_of_frames(tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "frame_00000.png").write_bytes(b"x")
    check_output(OutputTarget(frames, "png"), fps=24, overwrite=True)

    (frames / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError, match=r"holds files other than PNG frames \(notes.txt\)"):
        check_output(OutputTarget(frames, "png"), fps=24, overwrite=True)


def test_gif_fps_beyond_what_gif_stores_is_refused_early(tmp_path: Path) -> None:
    target = OutputTarget(tmp_path / "a.gif", "gif")
    check_output(target, fps=50, overwrite=False)

    with pytest.raises(OutputError, match=r"^--fps 60: .*fps must be between"):
        check_output(target, fps=60, overwrite=False)


def test_the_frame_rate_waits_for_the_model_when_fps_is_not_given(tmp_path: Path) -> None:
    target = OutputTarget(tmp_path / "a.gif", "gif")
    check_output(target, fps=None, overwrite=False)  # the path only: fps comes from the model

    with pytest.raises(OutputError, match=r"^--fps 60: .*fps must be between"):
        check_frame_rate(target, 60)
    check_frame_rate(OutputTarget(tmp_path / "a.mp4", "mp4"), 60)


def test_write_output_rechecks_the_target(tmp_path: Path) -> None:
    frames = np.zeros((3, 8, 8, 3), dtype=np.uint8)
    target = OutputTarget(tmp_path / "a.gif", "gif")

    assert write_output(target, frames, fps=10, overwrite=False) == target.path
    with pytest.raises(OutputError, match="already exists"):
        write_output(target, frames, fps=10, overwrite=False)
    assert write_output(target, frames, fps=10, overwrite=True) == target.path
