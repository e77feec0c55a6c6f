"""Write a synthetic dataset to disk: shape clips as MP4 files plus their manifests.

Layout of the output folder::

    clips/clip_00000.mp4 ...   one H.264 file per clip
    manifest.jsonl             every clip
    train.jsonl, val.jsonl     with a validation fraction: the split (val = the last clips);
                               without one, split files left by an earlier run are removed
    held_out.json              with held-out combinations (``settings.space.held_out``):
                               their captions, none of which any clip has; without any, a
                               file left by an earlier run is removed

Clip ``i`` depends only on the seed and ``i`` (see :func:`aiprod_trainer.data.synthetic.sample_clip`),
so the same arguments write files that decode to the same frames with the same captions.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from aiprod_core.atomic import atomic_write_text
from aiprod_core.documents import DocumentError, Limits, read_mapping
from aiprod_core.problems import clip
from aiprod_pipelines.video_io import write_mp4
from aiprod_trainer.data.manifest import ManifestRecord, write_manifest
from aiprod_trainer.data.synthetic import SyntheticSpace, parse_caption, render_clip, sample_clip

CLIPS_DIR = "clips"
MANIFEST_NAME = "manifest.jsonl"
TRAIN_NAME = "train.jsonl"
VAL_NAME = "val.jsonl"
HELD_OUT_NAME = "held_out.json"
#: x264 quality: visually lossless and widely playable; chroma subsampling is the main loss.
DEFAULT_CRF = 10
#: A held-out file lists at most 672 captions (every combination): well inside these.
_HELD_OUT_LIMITS = Limits(max_bytes=1024 * 1024, max_depth=4, max_nodes=10_000)

Progress = Callable[[range], Iterable[int]]


@dataclass(frozen=True)
class SyntheticSettings:
    """How many clips of which shape to make, and from which seed.

    ``space`` is what clips are drawn from, including the combinations held out of them.
    """

    count: int
    width: int = 32
    height: int = 32
    frames: int = 9
    fps: float = 8.0
    seed: int = 0
    val_fraction: float = 0.0
    crf: int = DEFAULT_CRF
    space: SyntheticSpace = field(default_factory=SyntheticSpace)

    def __post_init__(self) -> None:
        for name in ("count", "width", "height", "frames"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}: expected an integer > 0, got {value!r}")
        if self.width % 2 or self.height % 2:
            raise ValueError(
                f"size: expected an even width and height (H.264 yuv420p), got "
                f"{self.width}x{self.height}"
            )
        if isinstance(self.crf, bool) or not isinstance(self.crf, int) or not 0 <= self.crf <= 51:
            raise ValueError(f"crf: expected an integer 0..51, got {self.crf!r}")
        if not self.fps > 0:
            raise ValueError(f"fps: expected a number > 0, got {self.fps!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction: expected 0 <= value < 1, got {self.val_fraction!r}")
        if self.val_fraction > 0 and self.count < 2:
            raise ValueError(
                f"val_fraction: expected a count of at least 2 to hold out validation clips, "
                f"got count {self.count}"
            )

    @property
    def val_count(self) -> int:
        """Clips held out for validation: the fraction rounded half up, at least 1, never all."""
        if self.val_fraction == 0:
            return 0
        return min(self.count - 1, max(1, math.floor(self.count * self.val_fraction + 0.5)))


@dataclass(frozen=True)
class SyntheticDataset:
    """What :func:`write_synthetic_dataset` wrote; ``held_out``: the captions no clip has."""

    output: Path
    records: tuple[ManifestRecord, ...]
    manifests: dict[str, Path]
    train: int
    val: int
    held_out: tuple[str, ...] = ()


def write_synthetic_dataset(
    output: Path, settings: SyntheticSettings, *, progress: Progress = iter
) -> SyntheticDataset:
    """Render and encode ``settings.count`` clips into ``output`` and write the manifests.

    ``progress`` wraps the iteration over clip indices (pass a tqdm factory for a bar).

    Raises:
        VideoIOError: a clip cannot be written.
    """
    records: list[ManifestRecord] = []
    for index in progress(range(settings.count)):
        clip = sample_clip(settings.seed, index, settings.space)
        pixels = render_clip(
            clip, width=settings.width, height=settings.height, frames=settings.frames
        )
        media = f"{CLIPS_DIR}/clip_{index:05d}.mp4"
        write_mp4(
            output / media,
            pixels,
            fps=settings.fps,
            crf=settings.crf,
            odd_size="error",
            deterministic=True,
        )
        records.append(
            ManifestRecord(
                media=media,
                caption=clip.caption,
                width=settings.width,
                height=settings.height,
                frames=settings.frames,
                fps=float(settings.fps),
            )
        )
    manifests = {"all": write_manifest(records, output / MANIFEST_NAME)}
    split = settings.count - settings.val_count
    if settings.val_count:
        manifests["train"] = write_manifest(records[:split], output / TRAIN_NAME)
        manifests["val"] = write_manifest(records[split:], output / VAL_NAME)
    else:
        for name in (TRAIN_NAME, VAL_NAME):
            (output / name).unlink(missing_ok=True)
    held_out = tuple(parts.caption for parts in settings.space.held_out)
    if held_out:
        atomic_write_text(output / HELD_OUT_NAME, json.dumps({"held_out": held_out}, indent=2))
    else:
        (output / HELD_OUT_NAME).unlink(missing_ok=True)
    return SyntheticDataset(
        output=output,
        records=tuple(records),
        manifests=manifests,
        train=split,
        val=settings.val_count,
        held_out=held_out,
    )


def read_held_out(output: Path) -> tuple[str, ...]:
    """The held-out captions a dataset in ``output`` records (none when it has no file).

    Raises:
        DocumentError: the file is unreadable or not what :func:`write_synthetic_dataset`
            writes.
    """
    path = output / HELD_OUT_NAME
    if not path.exists():
        return ()
    data = read_mapping(path, "json", limits=_HELD_OUT_LIMITS)
    captions = data.get("held_out")
    if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
        raise DocumentError(f'{path}: expected {{"held_out": [captions]}}; write the dataset again')
    for caption in captions:
        try:
            parse_caption(caption)
        except ValueError:
            raise DocumentError(
                f"{path}: {clip(repr(caption), 80)} is not a synthetic caption; "
                "write the dataset again"
            ) from None
    return tuple(captions)
