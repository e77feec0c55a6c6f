"""AIPROD trainer: datasets (``data/``), training runs (``training/``) and the demo (``demo/``).

The training entry points live in ``aiprod_trainer.cli`` (``aiprod-train CONFIG.yaml``) and
``aiprod_trainer.training.trainer``; the manifest and bucket API below is exported here for
scripts and tests.
"""

from __future__ import annotations

from aiprod_trainer.data.buckets import Bucket, assign_buckets, group_by_bucket, nearest_bucket
from aiprod_trainer.data.manifest import (
    Manifest,
    ManifestRecord,
    load_manifest,
    resolve_media,
    write_manifest,
)
from aiprod_trainer.data.manifest_errors import ManifestError, ManifestFileError, ManifestIssue

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
