"""Dataset statistics, middle frames, colour statistics and contact sheets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFont

from aiprod_trainer import ManifestRecord, load_manifest, write_manifest
from aiprod_trainer.data.contact_sheet import (
    SheetLayout,
    contact_sheet,
    line_height,
    wrap_caption,
    write_contact_sheet,
)
from aiprod_trainer.data.dataset_stats import Summary, color_stats, manifest_stats, middle_frames
from aiprod_trainer.data.synthetic import PALETTE, dominant_colors, render_clip, sample_clip
from aiprod_trainer.data.synthetic_dataset import SyntheticSettings, write_synthetic_dataset


def record(media: str, caption: str = "a clip", **shape: float) -> ManifestRecord:
    values = {"width": 32, "height": 32, "frames": 9, "fps": 8.0, **shape}
    return ManifestRecord(media=media, caption=caption, **values)  # type: ignore[arg-type]


def test_manifest_stats_counts_and_summaries(tmp_path: Path) -> None:
    records = [
        record("a.mp4", "a red circle", frames=9, fps=8.0),
        record("b.mp4", "a red circle", frames=17, fps=8.0),
        record("c.mp4", "two words", width=64, frames=24, fps=23.976),
    ]
    manifest = load_manifest(write_manifest(records, tmp_path / "m.jsonl"))

    stats = manifest_stats(manifest)

    assert stats["records"] == 3
    assert stats["buckets"] == {"32x32x9": 1, "32x32x17": 1, "64x32x24": 1}
    assert stats["duration_s"] == {
        "min": 1.001,
        "mean": round((1.125 + 2.125 + 24 / 23.976) / 3, 4),
        "max": 2.125,
    }
    assert stats["fps"] == {"8": 2, "23.976": 1}
    assert stats["caption_words"] == {"min": 2, "mean": round(8 / 3, 4), "max": 3}
    assert stats["caption_chars"] == {"min": 9, "mean": round(33 / 3, 4), "max": 12}
    assert stats["distinct_captions"] == 2


def test_stats_of_an_empty_manifest(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("", encoding="utf-8")
    stats = manifest_stats(load_manifest(path))
    assert stats["records"] == 0
    assert stats["duration_s"] is None
    assert stats["buckets"] == {}
    assert Summary.of([]) is None


def test_middle_frames_decode_the_middle_and_list_unreadable_clips(tmp_path: Path) -> None:
    write_synthetic_dataset(tmp_path, SyntheticSettings(count=3, frames=7, seed=4))
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 100)
    manifest_path = tmp_path / "manifest.jsonl"
    records = [*load_manifest(manifest_path).records, record("broken.mp4", frames=7)]
    records.append(record("missing.mp4", frames=7))
    manifest = load_manifest(write_manifest(records, manifest_path))

    frames, unreadable = middle_frames(manifest, manifest.records)

    assert [frame.record.media for frame in frames] == [r.media for r in records[:3]]
    for index, frame in enumerate(frames):
        clip = sample_clip(4, index)
        expected = render_clip(clip, width=32, height=32, frames=7)[3]
        assert frame.pixels.shape == (32, 32, 3)
        assert np.abs(frame.pixels.astype(int) - expected).mean() < 8
        assert set(dominant_colors(frame.pixels)) == {clip.color, clip.background}
    assert [item.media for item in unreadable] == ["broken.mp4", "missing.mp4"]
    assert "not a readable video" in unreadable[0].reason or "decoding" in unreadable[0].reason
    assert unreadable[1].to_dict() == {
        "media": "missing.mp4",
        "reason": f"{tmp_path / 'missing.mp4'}: no such file; expected a video file",
    }


def test_color_stats() -> None:
    red = np.zeros((2, 2, 3), dtype=np.uint8)
    red[..., 0] = 200
    blue = np.zeros((2, 2, 3), dtype=np.uint8)
    blue[..., 2] = 100
    stats = color_stats([red, blue])
    assert stats == {
        "frames": 2,
        "mean_rgb": [100.0, 0.0, 50.0],
        "std_rgb": [100.0, 0.0, 50.0],
        "mean_brightness": round((0.299 * 200 + 0.114 * 100) / 2, 2),
    }
    assert color_stats([]) is None


# --- contact sheets ---------------------------------------------------------------------


def solid(color: str, width: int = 32, height: int = 32) -> np.ndarray:
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[...] = PALETTE[color]
    return frame


def test_layout_size_and_tile_positions() -> None:
    layout = SheetLayout(
        count=5, columns=2, tile_width=100, tile_height=50, caption_height=30, padding=10
    )
    assert layout.rows == 3
    assert layout.size == (2 * 100 + 3 * 10, 3 * 80 + 4 * 10)
    assert layout.tile_origin(0) == (10, 10)
    assert layout.tile_origin(3) == (120, 100)
    assert layout.tile_origin(4) == (10, 190)


def test_contact_sheet_places_each_frame_with_its_caption() -> None:
    colors = ["red", "green", "blue", "yellow", "magenta"]
    frames = [solid(color) for color in colors]
    captions = [f"a {color} frame" for color in colors]

    sheet = contact_sheet(frames, captions, columns=3, tile_width=64, padding=4)

    lines = line_height(ImageFont.load_default())
    cell = 64 + 3 * lines
    assert sheet.size == (3 * 64 + 4 * 4, 2 * cell + 3 * 4)
    pixels = np.asarray(sheet)
    for index, color in enumerate(colors):
        row, column = divmod(index, 3)
        x = 4 + column * (64 + 4)
        y = 4 + row * (cell + 4)
        tile = pixels[y : y + 64, x : x + 64]
        assert (tile == PALETTE[color]).all()
        caption_area = pixels[y + 64 : y + cell, x : x + 64]
        assert caption_area.min() < 128, "the caption is drawn under the tile"
    assert (pixels[:4, :] == 255).all()


def test_contact_sheet_scales_non_square_frames_and_uses_fewer_columns() -> None:
    sheet = contact_sheet([solid("red", 48, 24)], ["wide"], columns=4, tile_width=96, padding=0)
    caption = 3 * line_height(ImageFont.load_default())
    assert sheet.size == (96, 48 + caption)
    assert (np.asarray(sheet)[:48] == PALETTE["red"]).all()


def test_downscaled_tiles_keep_their_colour() -> None:
    sheet = contact_sheet([solid("green", 320, 160)], ["big"], tile_width=80, padding=0)
    assert (np.asarray(sheet)[:40] == PALETTE["green"]).all()


@pytest.mark.parametrize(
    ("frames", "captions", "kwargs", "message"),
    [
        ([], [], {}, "frames: expected at least one frame"),
        ([solid("red")], [], {}, "captions: expected one per frame"),
        ([solid("red")[..., 0]], ["x"], {}, r"frames\[0\]: expected an RGB frame"),
        ([solid("red")], ["x"], {"columns": 0}, "columns: expected an integer >= 1"),
        ([solid("red")], ["x"], {"padding": -1}, "padding: expected an integer >= 0"),
    ],
)
def test_contact_sheet_rejects_bad_input(
    frames: list[np.ndarray], captions: list[str], kwargs: dict[str, int], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        contact_sheet(frames, captions, **kwargs)


def test_wrap_caption_keeps_words_and_cuts_overflow() -> None:
    font = ImageFont.load_default()
    text = "a magenta triangle moving right on a white background"
    lines = wrap_caption(text, font, 80, max_lines=10)
    assert " ".join(lines) == text
    assert all(font.getlength(line) <= 80 for line in lines)
    assert len(lines) > 1

    cut = wrap_caption(text, font, 80, max_lines=2)
    assert len(cut) == 2
    assert cut[-1].endswith("...")
    assert font.getlength(cut[-1]) <= 80

    long_word = wrap_caption("x" * 200, font, 40, max_lines=3)
    assert len(long_word) == 1
    assert font.getlength(long_word[0]) <= 40
    assert wrap_caption("", font, 40, max_lines=3) == []
    assert long_word[0].endswith("...")
    assert wrap_caption("word", font, 1, max_lines=1) == []


def test_write_contact_sheet_saves_a_png(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "sheet.png"
    image = write_contact_sheet(target, [solid("cyan")], ["cyan"], tile_width=32, padding=2)
    with Image.open(target) as saved:
        assert saved.format == "PNG"
        assert saved.size == image.size
        assert saved.getpixel((2, 2)) == PALETTE["cyan"]
    assert [path.name for path in target.parent.iterdir()] == ["sheet.png"]
