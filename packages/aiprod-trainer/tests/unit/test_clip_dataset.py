"""ClipDataset: real video files in, float [3, F, H, W] clips in [-1, 1] of the record's shape."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aiprod_pipelines.video_io import write_video
from aiprod_trainer import ManifestError, ManifestRecord, write_manifest
from aiprod_trainer.data.clip_dataset import ClipDataset, ClipError, frames_to_clip, load_clip

RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 255, 0)


def solid(colour: tuple[int, int, int], frames: int, height: int, width: int) -> np.ndarray:
    return np.broadcast_to(np.array(colour, dtype=np.uint8), (frames, height, width, 3)).copy()


@pytest.fixture
def red_clip(tmp_path: Path) -> Path:
    """A real H.264 mp4: 7 red frames of 32x24."""
    return write_video(tmp_path / "clips" / "red.mp4", solid(RED, 7, 24, 32), fps=8)


def test_dataset_reads_resizes_and_crops_a_real_mp4(
    tmp_path: Path, red_clip: Path, make_record: Callable[..., ManifestRecord]
) -> None:
    records = [
        make_record(media="clips/red.mp4", width=16, height=16, frames=5, fps=8),
        make_record(media=str(red_clip.with_name("same.mp4")), width=32, height=24, frames=7),
    ]
    red_clip.with_name("same.mp4").write_bytes(red_clip.read_bytes())
    dataset = ClipDataset(write_manifest(records, tmp_path / "train.jsonl"))
    assert len(dataset) == 2

    clip = dataset[0]
    assert clip.shape == (3, 5, 16, 16)
    assert clip.dtype == torch.float32
    assert clip.min() >= -1.0
    assert clip.max() <= 1.0
    means = clip.mean(dim=(1, 2, 3))
    assert means[0] > 0.9
    assert means[1] < -0.9
    assert means[2] < -0.9
    assert dataset[1].shape == (3, 7, 24, 32)


def test_keep_in_memory_decodes_each_clip_once_and_hands_out_copies(
    tmp_path: Path,
    red_clip: Path,
    make_record: Callable[..., ManifestRecord],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    record = make_record(media="clips/red.mp4", width=16, height=16, frames=5, fps=8)
    manifest = write_manifest([record], tmp_path / "train.jsonl")
    reads: list[Path] = []

    def counting_load(path: Path, record: ManifestRecord) -> torch.Tensor:
        reads.append(path)
        return load_clip(path, record)

    monkeypatch.setattr("aiprod_trainer.data.clip_dataset.load_clip", counting_load)
    kept = ClipDataset(manifest, keep_in_memory=True)
    first = kept[0]
    first.fill_(0.0)  # changing an item must not change what is kept
    second = kept[0]
    assert len(reads) == 1
    assert torch.equal(second, ClipDataset(manifest)[0])
    assert second.mean(dim=(1, 2, 3))[0] > 0.9
    assert len(reads) == 2  # the dataset without keep_in_memory decodes every time
    plain = ClipDataset(manifest)
    plain[0]
    plain[0]
    assert len(reads) == 4


def test_cover_resize_then_center_crop_is_exact_for_known_pixels() -> None:
    frames = solid(BLUE, 2, 16, 32)
    frames[:, :, 8:24] = RED  # a red middle between blue side bands
    clip = frames_to_clip(frames, width=16, height=16)
    assert clip.shape == (3, 2, 16, 16)
    assert torch.equal(clip[0], torch.ones(2, 16, 16))
    assert torch.equal(clip[2], -torch.ones(2, 16, 16))

    wide = frames_to_clip(frames, width=8, height=4)  # scale 1/4: 8x4 exactly, nothing cropped
    assert wide.shape == (3, 2, 4, 8)
    assert wide[0, :, :, 3:5].min() > 0.9
    assert wide[2, :, :, 0].min() > 0.9

    up = frames_to_clip(solid(GREEN, 1, 4, 4), width=8, height=12)  # upscaled, then cropped
    assert up.shape == (3, 1, 12, 8)
    assert torch.allclose(up[1], torch.ones(1, 12, 8))


def test_still_image_is_a_one_frame_clip(
    tmp_path: Path, make_record: Callable[..., ManifestRecord]
) -> None:
    image = tmp_path / "still.png"
    Image.fromarray(solid(GREEN, 1, 8, 8)[0]).save(image)
    clip = load_clip(image, make_record(media="still.png", width=4, height=4, frames=1))
    assert clip.shape == (3, 1, 4, 4)
    assert torch.equal(clip[1], torch.ones(1, 4, 4))


def test_too_few_frames_names_the_file(
    red_clip: Path, make_record: Callable[..., ManifestRecord]
) -> None:
    with pytest.raises(
        ClipError, match="has 7 frames; its manifest record expects at least 9"
    ) as error:
        load_clip(red_clip, make_record(media="red.mp4", width=16, height=16, frames=9))
    assert str(red_clip) in str(error.value)


def test_unreadable_video_names_the_file(
    tmp_path: Path, make_record: Callable[..., ManifestRecord]
) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    with pytest.raises(ClipError, match="cannot read") as error:
        load_clip(broken, make_record(media="broken.mp4", width=16, height=16, frames=5))
    assert str(broken) in str(error.value)


def test_missing_media_is_a_manifest_error(
    tmp_path: Path, make_record: Callable[..., ManifestRecord]
) -> None:
    path = write_manifest([make_record(media="gone.mp4")], tmp_path / "train.jsonl")
    with pytest.raises(ManifestError, match=r"gone\.mp4"):
        ClipDataset(path)
