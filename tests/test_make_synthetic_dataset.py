"""scripts/data/make_synthetic_dataset.py: real MP4 clips, manifests, splits, determinism."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from aiprod_pipelines.video_io import read_video
from aiprod_trainer import load_manifest
from aiprod_trainer.data.synthetic import PALETTE

CAPTION = re.compile(
    r"a (\w+) (circle|square|triangle) moving (left|right|up|down) on a (\w+) background"
)


@pytest.fixture
def script(load_script: Callable[[str], ModuleType]) -> ModuleType:
    return load_script("data/make_synthetic_dataset.py")


def nearest_palette_names(frame: np.ndarray) -> np.ndarray:
    """Each pixel's nearest palette colour name, computed here independently of the package."""
    names = np.asarray(list(PALETTE))
    colors = np.asarray(list(PALETTE.values()), dtype=int)
    distance = ((frame.astype(int)[:, :, None, :] - colors[None, None]) ** 2).sum(axis=-1)
    return names[distance.argmin(axis=-1)]


def decoded_clips(folder: Path) -> list[tuple[str, np.ndarray]]:
    manifest = load_manifest(folder / "manifest.jsonl", check_media=True)
    return [(record.caption, read_video(manifest.media_path(record))[0]) for record in manifest]


def test_writes_clips_manifests_and_a_json_summary(
    script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--count", "6", "--frames", "5", "--width", "48", "--height", "32", "--fps", "10"]
    code = script.main([*args, "--val-fraction", "0.34", "--output", str(tmp_path), "--json"])

    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["clips"] == 6
    assert (summary["train"], summary["val"]) == (4, 2)
    assert summary["manifests"] == {
        name: str(tmp_path / f"{name if name != 'all' else 'manifest'}.jsonl")
        for name in ("all", "train", "val")
    }
    assert sorted(path.name for path in (tmp_path / "clips").iterdir()) == [
        f"clip_{index:05d}.mp4" for index in range(6)
    ]
    manifest = load_manifest(tmp_path / "manifest.jsonl", check_media=True)
    for record in manifest:
        assert (record.width, record.height, record.frames, record.fps) == (48, 32, 5, 10.0)
        assert CAPTION.fullmatch(record.caption), record.caption
        frames, fps, meta = read_video(manifest.media_path(record))
        assert frames.shape == (5, 32, 48, 3)
        assert fps == 10.0
        assert meta.codec == "h264"
    train = load_manifest(tmp_path / "train.jsonl").records
    val = load_manifest(tmp_path / "val.jsonl").records
    assert train + val == manifest.records


def test_same_seed_same_clips_and_captions_other_seed_other_clips(
    script: ModuleType, tmp_path: Path
) -> None:
    for name, seed in (("first", "5"), ("second", "5"), ("other", "6")):
        assert (
            script.main(
                ["--count", "5", "--seed", seed, "--quiet", "--output", str(tmp_path / name)]
            )
            == 0
        )

    first, second, other = (decoded_clips(tmp_path / name) for name in ("first", "second", "other"))
    assert [caption for caption, _ in first] == [caption for caption, _ in second]
    for (_, a), (_, b) in zip(first, second, strict=True):
        assert np.array_equal(a, b)
    assert [caption for caption, _ in first] != [caption for caption, _ in other]


def test_captions_name_the_colours_of_the_middle_frame(script: ModuleType, tmp_path: Path) -> None:
    assert script.main(["--count", "12", "--seed", "1", "--quiet", "--output", str(tmp_path)]) == 0

    for caption, frames in decoded_clips(tmp_path):
        match = CAPTION.fullmatch(caption)
        assert match is not None
        shape_color, background = match.group(1), match.group(4)
        assert shape_color != background
        assert shape_color in PALETTE
        assert background in PALETTE
        names, counts = np.unique(
            nearest_palette_names(frames[len(frames) // 2]), return_counts=True
        )
        ranked = [str(name) for name in names[np.argsort(-counts)]]
        assert ranked[:2] == [background, shape_color], caption
        assert counts.max() / counts.sum() > 0.5  # the background covers most of the frame


def test_chosen_colours_shapes_and_motions_only(script: ModuleType, tmp_path: Path) -> None:
    args = ["--count", "10", "--colors", "red, blue", "--shapes", "circle", "--motions", "left,up"]
    assert script.main([*args, "--quiet", "--output", str(tmp_path)]) == 0

    captions = [record.caption for record in load_manifest(tmp_path / "manifest.jsonl")]
    for caption in captions:
        match = CAPTION.fullmatch(caption)
        assert match is not None
        assert {match.group(1), match.group(4)} == {"red", "blue"}
        assert match.group(2) == "circle"
        assert match.group(3) in ("left", "up")


def test_text_summary_and_progress_bar(
    script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert script.main(["--count", "3", "--val-fraction", "0.3", "--output", str(tmp_path)]) == 0

    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == f"wrote 3 clips to {tmp_path}"
    assert f"  val   {tmp_path / 'val.jsonl'}" in lines
    assert "  split: 2 train, 1 validation" in lines
    assert sum(line.startswith("  e.g. 'a ") for line in lines) == 3
    assert "3/3" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--width", "33"], "error: size: expected an even width and height"),
        (["--colors", "red,pink"], "error: colors: unknown 'pink'"),
        (
            ["--count", "1", "--val-fraction", "0.5"],
            "error: val_fraction: expected a count of at least 2",
        ),
        (["--count", "0"], "error: count: expected an integer > 0"),
        (["--crf", "99"], "error: crf: expected an integer 0..51"),
    ],
)
def test_bad_arguments_exit_2_with_one_message(
    script: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    assert script.main([*args, "--output", str(tmp_path / "out")]) == 2

    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(message)
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_unwritable_output_exits_2(
    script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("in the way", encoding="utf-8")

    assert script.main(["--count", "1", "--quiet", "--output", str(blocker)]) == 2

    assert capsys.readouterr().err.startswith("error: ")
