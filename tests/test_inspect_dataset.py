"""scripts/data/inspect_dataset.py: statistics, colour statistics and the contact-sheet PNG."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

from aiprod_trainer import ManifestRecord, load_manifest, write_manifest
from aiprod_trainer.data.synthetic import PALETTE, SyntheticSpace, sample_clip
from aiprod_trainer.data.synthetic_dataset import SyntheticSettings, write_synthetic_dataset


@pytest.fixture
def script(load_script: Callable[[str], ModuleType]) -> ModuleType:
    return load_script("data/inspect_dataset.py")


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """Six synthetic 32x32x9 clips at 8 fps (seed 2); returns the manifest path."""
    write_synthetic_dataset(tmp_path / "data", SyntheticSettings(count=6, seed=2))
    return tmp_path / "data" / "manifest.jsonl"


def test_text_statistics(
    script: ModuleType, dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert script.main([str(dataset)]) == 0

    out, err = capsys.readouterr()
    assert out.splitlines()[:6] == [
        f"{dataset}: 6 records",
        "  buckets: 32x32x9: 6",
        "  duration: min 1.125 s, mean 1.125 s, max 1.125 s",
        "  fps: 8: 6",
        "  caption words: min 9, mean 9, max 9",
        "  distinct captions: 6",
    ]
    assert err == ""


def test_json_statistics_with_colours_and_a_contact_sheet(
    script: ModuleType, dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sheet = tmp_path / "sheet.png"
    args = [str(dataset), "--json", "--colors", "--sheet", str(sheet), "--columns", "4"]

    assert script.main([*args, "--tile-width", "96", "--quiet"]) == 0

    stats = json.loads(capsys.readouterr().out)
    assert stats["records"] == 6
    assert stats["buckets"] == {"32x32x9": 6}
    assert stats["fps"] == {"8": 6}
    assert stats["unreadable"] == []
    assert stats["colors"]["frames"] == 6
    assert all(0 <= value <= 255 for value in stats["colors"]["mean_rgb"])
    with Image.open(sheet) as image:
        assert image.format == "PNG"
        width, height = image.size
        pixels = np.asarray(image.convert("RGB"))
    assert width == 4 * 96 + 5 * 8  # four columns of 96 px tiles, 8 px padding around them
    assert height > 2 * 96 + 3 * 8  # two rows of square tiles, plus caption lines
    assert stats["sheet"] == {"path": str(sheet), "width": width, "height": height, "tiles": 6}
    # each tile's corner shows its clip's background colour (the shape stays in the middle)
    row_height = (height - 3 * 8) // 2
    for index in range(6):
        row, column = divmod(index, 4)
        x, y = 8 + column * (96 + 8), 8 + row * (row_height + 8)
        corner = pixels[y + 1, x + 1].astype(int)
        background = np.asarray(PALETTE[sample_clip(2, index).background])
        assert np.abs(corner - background).max() < 40, index


def test_colour_statistics_of_known_frames(
    script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_synthetic_dataset(
        tmp_path, SyntheticSettings(count=4, seed=0, space=SyntheticSpace(colors=("red", "blue")))
    )

    assert script.main([str(tmp_path / "manifest.jsonl"), "--colors", "--quiet", "--json"]) == 0

    stats = json.loads(capsys.readouterr().out)
    assert "sheet" not in stats
    red, green, blue = stats["colors"]["mean_rgb"]
    assert green < 60  # only red and blue pixels
    assert red > 60
    assert blue > 60


def test_sheet_shows_at_most_max_tiles(
    script: ModuleType, dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sheet = tmp_path / "sheet.png"
    args = [str(dataset), "--sheet", str(sheet), "--max-tiles", "2", "--tile-width", "64"]

    assert script.main([*args, "--quiet"]) == 0

    out = capsys.readouterr().out
    with Image.open(sheet) as image:
        assert image.width == 2 * 64 + 3 * 8
        assert (
            out.splitlines()[-1]
            == f"contact sheet: {sheet} ({image.width}x{image.height}, 2 clips)"
        )


def test_unreadable_clips_are_listed_and_exit_1(
    script: ModuleType, dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (dataset.parent / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 cut short")
    records = [
        *load_manifest(dataset).records,
        ManifestRecord(
            media="broken.mp4", caption="broken", width=32, height=32, frames=9, fps=8.0
        ),
    ]
    write_manifest(records, dataset)
    sheet = tmp_path / "sheet.png"

    assert script.main([str(dataset), "--colors", "--sheet", str(sheet)]) == 1

    out, err = capsys.readouterr()
    assert "could not decode 1:" in out
    assert "  broken.mp4: " in out
    assert "colours (6 middle frames)" in out
    assert "7/7" in err  # the progress bar went through every clip
    assert sheet.is_file()


def test_sheet_with_no_decodable_clip_exits_1(
    script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write_manifest(
        [ManifestRecord(media="gone.mp4", caption="gone", width=8, height=8, frames=1, fps=1.0)],
        tmp_path / "m.jsonl",
    )
    sheet = tmp_path / "sheet.png"

    assert script.main([str(manifest), "--sheet", str(sheet), "--quiet"]) == 1

    out, err = capsys.readouterr()
    assert "no clip to draw; the sheet was not written" in err
    assert out.startswith(f"{manifest}: 1 record\n")
    assert "  gone.mp4: " in out
    assert not sheet.exists()


def test_sheet_path_that_is_a_folder_exits_2(
    script: ModuleType, dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert script.main([str(dataset), "--sheet", str(tmp_path), "--quiet"]) == 2
    assert "it is a folder" in capsys.readouterr().err


def test_empty_manifest_has_no_summaries(
    script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "empty.jsonl"
    manifest.write_text("", encoding="utf-8")

    assert script.main([str(manifest)]) == 0

    out = capsys.readouterr().out
    assert "  buckets: -" in out
    assert "  duration: -" in out
    assert "  fps: -" in out


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "manifest not found"), ("{oops\n", "m.jsonl:1: ")],
)
def test_bad_manifest_exits_2(
    script: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str | None,
    message: str,
) -> None:
    manifest = tmp_path / "m.jsonl"
    if content is not None:
        manifest.write_text(content, encoding="utf-8")

    assert script.main([str(manifest)]) == 2

    out, err = capsys.readouterr()
    assert out == ""
    assert message in err


def test_max_tiles_must_be_positive(
    script: ModuleType, dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        script.main([str(dataset), "--max-tiles", "0"])
    assert info.value.code == 2
    assert "expected an integer >= 1, got 0" in capsys.readouterr().err
