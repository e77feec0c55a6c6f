"""A dataset folder end to end: media files on disk, manifest written, read back, bucketed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from aiprod_trainer import (
    Bucket,
    ManifestError,
    assign_buckets,
    group_by_bucket,
    load_manifest,
    write_manifest,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def dataset(tmp_path: Path, fixtures_dir: Path) -> Path:
    """A copy of the valid fixture manifest next to a (tiny) file for each media path."""
    root = tmp_path / "dataset"
    root.mkdir()
    manifest = root / "train.jsonl"
    shutil.copy(fixtures_dir / "valid.jsonl", manifest)
    for record in load_manifest(manifest):
        media = root / record.media
        media.parent.mkdir(parents=True, exist_ok=True)
        media.write_bytes(b"\x00\x00\x00\x18ftypmp42")
    return manifest


def test_dataset_loads_with_media_checked_and_groups_into_buckets(dataset: Path) -> None:
    manifest = load_manifest(dataset, check_media=True)

    counts = {bucket.label: len(records) for bucket, records in group_by_bucket(manifest).items()}
    assert counts == {"1024x1024x1": 1, "512x512x25": 1, "512x768x97": 1, "768x512x49": 2}
    assert all(manifest.media_path(record).is_file() for record in manifest)


def test_dataset_records_map_onto_training_buckets(dataset: Path) -> None:
    manifest = load_manifest(dataset, check_media=True)
    allowed = [Bucket.parse(label) for label in ("768x512x49", "512x768x49", "512x512x25")]

    groups = assign_buckets(manifest, allowed)

    assert {bucket.label: [r.media for r in records] for bucket, records in groups.items()} == {
        "512x512x25": ["images/terrace.png", "clips/rain.mp4"],
        "512x768x49": ["clips/dancer.mp4"],
        "768x512x49": ["clips/fox.mp4", "clips/harbour.mp4"],
    }


def test_filtered_manifest_written_beside_the_media_loads_back(dataset: Path) -> None:
    manifest = load_manifest(dataset)
    landscape = [record for record in manifest if record.width > record.height]

    subset = write_manifest(landscape, dataset.with_name("landscape.jsonl"))

    reloaded = load_manifest(subset, check_media=True)
    assert [record.media for record in reloaded] == ["clips/fox.mp4", "clips/harbour.mp4"]


def test_deleting_a_media_file_is_caught_by_the_media_check(dataset: Path) -> None:
    (dataset.parent / "clips" / "rain.mp4").unlink()

    with pytest.raises(ManifestError) as caught:
        load_manifest(dataset, check_media=True)

    assert [(issue.line, issue.field) for issue in caught.value.issues] == [(6, "media")]
    assert len(load_manifest(dataset)) == 5
