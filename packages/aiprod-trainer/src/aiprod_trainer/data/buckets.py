"""Resolution buckets: group clips by shape so a batch holds clips of one size.

A :class:`Bucket` is a ``width x height x frames`` shape, labelled ``"768x512x49"``.
:func:`group_by_bucket` groups records by their exact shape; :func:`nearest_bucket` and
:func:`assign_buckets` map each record onto the closest of a fixed list of allowed buckets,
which is what data preparation resizes and trims clips to.

Nearest-bucket rule, compared in this order (the first difference decides):

1. **aspect ratio** -- the smallest ratio between the record's and the bucket's width/height
   (``max(a/b, b/a)``), so 2:1 and 1:2 are equally far from 1:1 and cropping stays minimal;
2. **area** -- the smallest ratio between the pixel counts (``max(A/B, B/A)``);
3. **frame count** -- the smallest absolute difference in frames;
4. a full tie goes to the smaller bucket (ordered by width, height, frames): shrinking and
   trimming a clip loses less than upscaling it or inventing frames.

Ratios are exact fractions, so ties are real ties and the result never depends on float
rounding or on the order the allowed buckets are given in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol, TypeVar

_LABEL = re.compile(r"\s*(\d+)\s*x\s*(\d+)\s*x\s*(\d+)\s*", re.IGNORECASE)


class Shaped(Protocol):
    """Anything with a video shape: a manifest record or a bucket."""

    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...

    @property
    def frames(self) -> int: ...


ShapedT = TypeVar("ShapedT", bound=Shaped)


@dataclass(frozen=True, order=True)
class Bucket:
    """A clip shape: width and height in pixels and a frame count, all positive."""

    width: int
    height: int
    frames: int

    def __post_init__(self) -> None:
        for name in ("width", "height", "frames"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"bucket {name}: expected an integer > 0, got {value!r}")

    @classmethod
    def of(cls, shape: Shaped) -> Bucket:
        """The bucket with exactly ``shape``'s width, height and frames."""
        return cls(shape.width, shape.height, shape.frames)

    @classmethod
    def parse(cls, label: str) -> Bucket:
        """Read a label such as ``"768x512x49"`` (width x height x frames)."""
        match = _LABEL.fullmatch(label)
        if match is None:
            raise ValueError(
                f"bucket: expected a label WIDTHxHEIGHTxFRAMES such as '768x512x49', got {label!r}"
            )
        width, height, frames = (int(group) for group in match.groups())
        return cls(width, height, frames)

    @property
    def label(self) -> str:
        """``"WxHxF"``, e.g. ``"768x512x49"``."""
        return f"{self.width}x{self.height}x{self.frames}"

    @property
    def aspect_ratio(self) -> Fraction:
        """Width over height, exactly."""
        return Fraction(self.width, self.height)

    @property
    def area(self) -> int:
        """Pixels per frame."""
        return self.width * self.height

    def __str__(self) -> str:
        return self.label


def group_by_bucket(records: Iterable[ShapedT]) -> dict[Bucket, list[ShapedT]]:
    """Group records by their exact shape; buckets sorted, records kept in input order."""
    groups: dict[Bucket, list[ShapedT]] = {}
    for record in records:
        groups.setdefault(Bucket.of(record), []).append(record)
    return {bucket: groups[bucket] for bucket in sorted(groups)}


def nearest_bucket(shape: Shaped, allowed: Iterable[Bucket]) -> Bucket:
    """The allowed bucket closest to ``shape`` by the rule in this module's docstring.

    Raises:
        ValueError: ``allowed`` is empty.
    """
    return _nearest(shape, _candidates(allowed))


def assign_buckets(
    records: Iterable[ShapedT], allowed: Iterable[Bucket]
) -> dict[Bucket, list[ShapedT]]:
    """Map each record to its nearest allowed bucket.

    Returns only buckets that received a record, sorted; records keep their input order.

    Raises:
        ValueError: ``allowed`` is empty.
    """
    candidates = _candidates(allowed)
    groups: dict[Bucket, list[ShapedT]] = {}
    for record in records:
        groups.setdefault(_nearest(record, candidates), []).append(record)
    return {bucket: groups[bucket] for bucket in sorted(groups)}


def _candidates(allowed: Iterable[Bucket]) -> list[Bucket]:
    candidates = sorted(set(allowed))
    if not candidates:
        raise ValueError("allowed buckets: expected at least one bucket, got none")
    return candidates


def _nearest(shape: Shaped, candidates: list[Bucket]) -> Bucket:
    """``min`` keeps the first of equal keys, and candidates are sorted: ties go to the smaller."""
    aspect = Fraction(shape.width, shape.height)
    area = Fraction(shape.width * shape.height)

    def distance(bucket: Bucket) -> tuple[Fraction, Fraction, int]:
        return (
            _ratio_distance(aspect, bucket.aspect_ratio),
            _ratio_distance(area, Fraction(bucket.area)),
            abs(shape.frames - bucket.frames),
        )

    return min(candidates, key=distance)


def _ratio_distance(a: Fraction, b: Fraction) -> Fraction:
    """How many times larger the larger of two positive values is (1 when equal)."""
    return max(a / b, b / a)
