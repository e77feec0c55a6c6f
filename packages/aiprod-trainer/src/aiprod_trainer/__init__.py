"""AIPROD trainer: dataset manifests and resolution buckets (training loops come later)."""

from __future__ import annotations

from aiprod_trainer.buckets import Bucket, assign_buckets, group_by_bucket, nearest_bucket
from aiprod_trainer.manifest import (
    Manifest,
    ManifestRecord,
    load_manifest,
    resolve_media,
    write_manifest,
)
from aiprod_trainer.manifest_errors import ManifestError, ManifestFileError, ManifestIssue

__all__ = [
    "Bucket",
    "Manifest",
    "ManifestError",
    "ManifestFileError",
    "ManifestIssue",
    "ManifestRecord",
    "assign_buckets",
    "group_by_bucket",
    "load_manifest",
    "nearest_bucket",
    "resolve_media",
    "write_manifest",
]
