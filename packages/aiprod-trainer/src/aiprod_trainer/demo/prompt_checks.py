"""The demo's checks of what a prompt says about motion and shape, as numbers that pass or fail.

Both read the shape from its *mask*: the pixels of a frame that are the prompt's shape
colour beyond doubt, closer to it than :func:`~aiprod_trainer.data.synthetic.palette_radius`
(as :func:`~aiprod_trainer.demo.evidence.color_check` counts them).

- :func:`motion_check`: the mask's centroid in the last frame that has one, minus the
  centroid in the first, as a fraction of the frame's width (left, right) or height (up,
  down; y points down, so "up" is a negative y). It passes when the centroid moved at
  least ``min_travel`` (default 0.10) in the direction the prompt names. Synthetic clips
  travel 0.30 to 0.50 of the axis (:data:`~aiprod_trainer.data.synthetic.TRAVEL_RANGE`), so 0.10
  is a third of the shortest true travel, yet 3 pixels of a 32-pixel frame: more than
  the noise along a still shape's edge moves its centroid.
- :func:`shape_check`: every frame whose mask's largest 8-connected part has at least
  :data:`MIN_SHAPE_PIXELS` pixels votes circle, square or triangle; it passes when the
  prompt's shape gets more votes than each other shape. A frame's vote comes from seven
  numbers of its mask (:data:`SHAPE_FEATURES`: how much of its bounding box it fills, about
  0.79 for a circle, 1 for a square, 0.5 for a triangle; how low its area sits, as a
  triangle's apex points up; its normalised spread and vertical skew; how full its top and
  bottom rows are; its height over width), classified by the nearest class mean under the
  pooled covariance (linear discriminant analysis). The classifier is fitted on
  :data:`FIT_CLIPS` synthetic clips rendered at the checked frames' size, sharp and through
  :func:`box_blur` (the blurred edges of a decoded video), from the fixed seed
  :data:`FIT_SEED`; each fit is cached for the process. On other clips at 32x32 it names
  the shape in every sharp frame and in about 98 % of blurred ones; at 16x16, where the
  shapes are 5 to 7 pixels, blurred frames drop to about 65 %.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from aiprod_core.problems import clip
from aiprod_trainer.data.synthetic import (
    PALETTE,
    SHAPES,
    CaptionParts,
    Motion,
    Shape,
    palette_radius,
    parse_caption,
    render_clip,
    sample_clip,
)

#: The smallest frame side :func:`shape_check` works at: below it shapes are a few pixels.
MIN_SIDE = 16
#: A frame votes in :func:`shape_check` only when its shape's mask has this many pixels.
MIN_SHAPE_PIXELS = 6
#: What the shape classifier reads from a mask (see the module docstring).
SHAPE_FEATURES = ("fill", "low_mass", "spread", "skew", "top_row", "bottom_row", "aspect")
#: The shape classifier is fitted on this many clips (3 frames each, sharp and blurred) ...
FIT_CLIPS = 64
#: ... drawn with :func:`~aiprod_trainer.data.synthetic.sample_clip` from this seed.
FIT_SEED = 7_919

_AXES: dict[str, tuple[int, float]] = {  # motion -> (axis of the centroid, sign of travel)
    "left": (0, -1.0),
    "right": (0, 1.0),
    "up": (1, -1.0),
    "down": (1, 1.0),
}

BoolMasks = npt.NDArray[np.bool_]
Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class MotionCheck:
    """Where a clip's shape went against where its prompt says (see the module docstring).

    ``centroids``: the mask's centre per frame as fractions ``(x, y)`` of the width and
    height, None where a frame shows no pixel of the shape colour. ``along``: the travel in
    the prompt's direction, a fraction of that axis (negative: the opposite way); ``across``:
    the travel on the other axis (positive: right or down). Both None with fewer than two
    frames showing the shape.
    """

    prompt: str
    color: str
    direction: Motion
    centroids: tuple[tuple[float, float] | None, ...]
    along: float | None
    across: float | None
    min_travel: float

    @property
    def passed(self) -> bool:
        return self.along is not None and self.along >= self.min_travel

    @property
    def reason(self) -> str | None:
        """Why the check could not measure any travel (None when it could)."""
        if self.along is not None:
            return None
        shown = sum(centroid is not None for centroid in self.centroids)
        return (
            f"the {self.color} shape shows in {shown} of {len(self.centroids)} frames; "
            "at least 2 are needed to measure its travel"
        )

    def describe(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        if self.along is None or self.across is None:
            return f"{self.prompt!r}: {self.reason} [{verdict}]"
        axis = "width" if _AXES[self.direction][0] == 0 else "height"
        return (
            f"{self.prompt!r}: the {self.color} shape moved {self.along:+.2f} of the {axis} "
            f"{self.direction} ({self.across:+.2f} across), {self.min_travel:.2f} required "
            f"[{verdict}]"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "color": self.color,
            "direction": self.direction,
            "centroids": [None if c is None else list(c) for c in self.centroids],
            "along": self.along,
            "across": self.across,
            "min_travel": self.min_travel,
            "reason": self.reason,
            "passed": self.passed,
        }


def motion_check(
    frames: npt.NDArray[np.uint8], prompt: str, *, min_travel: float = 0.10
) -> MotionCheck:
    """Measure how far the shape of ``frames`` (uint8 ``(F, H, W, 3)``) moved the way
    ``prompt`` (a synthetic caption) says; ``min_travel`` is the fraction it must move.

    Raises:
        ValueError: ``frames`` is not a uint8 RGB video, ``prompt`` not a synthetic
            caption, or ``min_travel`` not a fraction in (0, 1].
    """
    parts = _parse_prompt(prompt)
    video = _video(frames)
    if isinstance(min_travel, bool) or not 0 < min_travel <= 1:
        raise ValueError(f"min_travel: expected a fraction 0 < value <= 1, got {min_travel!r}")
    masks = _color_masks(video, parts.color)
    height, width = video.shape[1:3]
    xs = (np.arange(width) + 0.5) / width
    ys = (np.arange(height) + 0.5) / height
    centroids: list[tuple[float, float] | None] = []
    for mask in masks:
        count = int(mask.sum())
        if count == 0:
            centroids.append(None)
            continue
        x = float((mask.sum(axis=0) * xs).sum() / count)
        y = float((mask.sum(axis=1) * ys).sum() / count)
        centroids.append((x, y))
    shown = [centroid for centroid in centroids if centroid is not None]
    along = across = None
    if len(shown) >= 2:
        axis, sign = _AXES[parts.motion]
        moved = (shown[-1][0] - shown[0][0], shown[-1][1] - shown[0][1])
        # + 0.0 turns a -0.0 (a still shape moving 'left') into 0.0.
        along, across = sign * moved[axis] + 0.0, moved[1 - axis] + 0.0
    return MotionCheck(
        prompt, parts.color, parts.motion, tuple(centroids), along, across, float(min_travel)
    )


@dataclass(frozen=True)
class ShapeCheck:
    """Which shape a clip's frames show against the prompt's (see the module docstring).

    ``votes``: for every shape, how many of the ``frames`` frames were classified as it.
    """

    prompt: str
    color: str
    expected: Shape
    votes: dict[str, int]
    frames: int

    @property
    def found(self) -> Shape | None:
        """The shape with the most votes; None with no votes or a tie for the most."""
        most = max(self.votes.values())
        winners = [shape for shape in SHAPES if self.votes[shape] == most]
        return winners[0] if most > 0 and len(winners) == 1 else None

    @property
    def passed(self) -> bool:
        return self.found == self.expected

    @property
    def reason(self) -> str | None:
        """Why no shape was found (None when one was)."""
        if self.found is not None:
            return None
        if not any(self.votes.values()):
            return (
                f"no frame of {self.frames} shows {MIN_SHAPE_PIXELS} or more connected "
                f"{self.color} pixels"
            )
        return "the vote is tied"

    def describe(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        votes = ", ".join(f"{shape} {self.votes[shape]}" for shape in SHAPES)
        found = self.found or f"nothing ({self.reason})"
        return (
            f"{self.prompt!r}: frames voted {votes} of {self.frames}; found {found}, "
            f"expected {self.expected} [{verdict}]"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "color": self.color,
            "expected": self.expected,
            "votes": dict(self.votes),
            "frames": self.frames,
            "found": self.found,
            "reason": self.reason,
            "passed": self.passed,
        }


def shape_check(frames: npt.NDArray[np.uint8], prompt: str) -> ShapeCheck:
    """Classify the shape of ``frames`` (uint8 ``(F, H, W, 3)``, each side at least
    :data:`MIN_SIDE`) frame by frame and compare the vote with ``prompt``'s shape.

    Raises:
        ValueError: ``frames`` is not a uint8 RGB video of that size, or ``prompt`` not a
            synthetic caption.
    """
    parts = _parse_prompt(prompt)
    video = _video(frames)
    height, width = video.shape[1:3]
    if min(height, width) < MIN_SIDE:
        raise ValueError(
            f"frames: expected frames at least {MIN_SIDE}x{MIN_SIDE} to tell shapes apart, "
            f"got {width}x{height}"
        )
    shapes = classify_shapes(_color_masks(video, parts.color))
    votes: dict[str, int] = {shape: sum(found == shape for found in shapes) for shape in SHAPES}
    return ShapeCheck(prompt, parts.color, parts.shape, votes, len(video))


def classify_shapes(masks: BoolMasks) -> list[Shape | None]:
    """The shape each mask ``(N, H, W)`` shows (None where it has too few pixels), read from
    its largest 8-connected part by the classifier fitted at ``(H, W)``."""
    masks = largest_components(np.asarray(masks, dtype=bool))
    usable = masks.sum(axis=(1, 2)) >= MIN_SHAPE_PIXELS
    found: list[Shape | None] = [None] * len(masks)
    if usable.any():
        classifier = _classifier(*masks.shape[1:3])
        for index, label in zip(
            np.flatnonzero(usable), classifier.predict(masks[usable]), strict=True
        ):
            found[int(index)] = SHAPES[int(label)]
    return found


def box_blur(frames: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Each pixel of ``frames`` (``(..., H, W, C)`` uint8) replaced by the mean of its 3x3
    neighbourhood (edges repeated), rounded back to uint8."""
    pixels = np.asarray(frames, dtype=np.float64)
    height, width = pixels.shape[-3:-1]
    pad = [(0, 0)] * (pixels.ndim - 3) + [(1, 1), (1, 1), (0, 0)]
    padded = np.pad(pixels, pad, mode="edge")
    total = sum(
        padded[..., dy : dy + height, dx : dx + width, :] for dy in range(3) for dx in range(3)
    )
    return np.clip(np.rint(total / 9), 0, 255).astype(np.uint8)


def largest_components(masks: BoolMasks) -> BoolMasks:
    """Each mask of ``(N, H, W)`` reduced to its largest 8-connected part (of parts the same
    size, the one whose last pixel comes first in reading order); empty masks stay empty."""
    count, height, width = masks.shape
    # Every pixel starts with its own label and takes the largest label around it until
    # nothing changes: each part ends labelled by its last pixel. Labels never cross frames.
    labels = np.where(masks, np.arange(1, masks.size + 1).reshape(masks.shape), 0)
    for _ in range(height * width):
        grown = np.where(masks, _max_3x3(labels), 0)
        if np.array_equal(grown, labels):
            break
        labels = grown
    sizes = np.bincount(labels.ravel(), minlength=masks.size + 1)[1:].reshape(count, -1)
    best = sizes.argmax(axis=1) + 1 + np.arange(count) * height * width
    return np.asarray((labels == best[:, None, None]) & masks)


def shape_features(masks: BoolMasks) -> Floats:
    """:data:`SHAPE_FEATURES` of each non-empty mask of ``(N, H, W)``, as ``(N, 7)``."""
    count, height, width = masks.shape
    weights = masks.astype(np.float64)
    area = weights.sum(axis=(1, 2))
    rows, columns = np.asarray(masks.any(axis=2)), np.asarray(masks.any(axis=1))
    top = rows.argmax(axis=1)
    bottom = height - 1 - rows[:, ::-1].argmax(axis=1)
    left = columns.argmax(axis=1)
    right = width - 1 - columns[:, ::-1].argmax(axis=1)
    box_height, box_width = bottom - top + 1, right - left + 1
    ys = np.arange(height, dtype=np.float64)[None, :, None]
    xs = np.arange(width, dtype=np.float64)[None, None, :]
    cy = (weights * ys).sum(axis=(1, 2)) / area
    cx = (weights * xs).sum(axis=(1, 2)) / area
    dy, dx = ys - cy[:, None, None], xs - cx[:, None, None]

    def moment(p: int, q: int) -> Floats:
        """The central moment mu_pq, normalised to be independent of the mask's size."""
        mu = (weights * dx**p * dy**q).sum(axis=(1, 2))
        return np.asarray(mu / area ** (1 + (p + q) / 2))

    frames = np.arange(count)
    return np.stack(
        [
            area / (box_height * box_width),
            (cy - (top + bottom) / 2) / box_height,
            moment(2, 0) + moment(0, 2),
            moment(0, 3),
            weights[frames, top].sum(axis=1) / box_width,
            weights[frames, bottom].sum(axis=1) / box_width,
            box_height / box_width,
        ],
        axis=1,
    )


@dataclass(frozen=True)
class _Classifier:
    """Class means and the inverse pooled covariance of :data:`SHAPE_FEATURES`."""

    means: Floats
    precision: Floats

    def predict(self, masks: BoolMasks) -> npt.NDArray[np.intp]:
        offsets = shape_features(masks)[:, None, :] - self.means[None, :, :]
        distances = np.einsum("nki,ij,nkj->nk", offsets, self.precision, offsets)
        return np.asarray(distances.argmin(axis=1))


@functools.lru_cache(maxsize=8)
def _classifier(height: int, width: int) -> _Classifier:
    """Fit the shape classifier on synthetic clips rendered at ``height`` x ``width``."""
    clips = [sample_clip(FIT_SEED, index) for index in range(FIT_CLIPS)]
    sharp = np.stack([render_clip(c, width=width, height=height, frames=3) for c in clips])
    colors = np.asarray([PALETTE[c.color] for c in clips], dtype=np.int32)
    labels = np.repeat([SHAPES.index(c.shape) for c in clips], 3)
    masks, targets = [], []
    for video in (sharp, box_blur(sharp)):
        distance = ((video.astype(np.int32) - colors[:, None, None, None, :]) ** 2).sum(axis=-1)
        mask = largest_components((distance < palette_radius() ** 2).reshape(-1, height, width))
        usable = mask.sum(axis=(1, 2)) >= MIN_SHAPE_PIXELS
        masks.append(mask[usable])
        targets.append(labels[usable])
    features = shape_features(np.concatenate(masks))
    target = np.concatenate(targets)
    means = np.stack([features[target == label].mean(axis=0) for label in range(len(SHAPES))])
    centred = features - means[target]
    covariance = centred.T @ centred / max(1, len(features) - len(SHAPES))
    # A feature constant within every class (rare, on tiny frames) must not make it singular.
    covariance += np.diag(1e-3 * np.diag(covariance) + 1e-12)
    return _Classifier(means, np.linalg.inv(covariance))


def _color_masks(video: npt.NDArray[np.uint8], color: str) -> BoolMasks:
    """The pixels of each frame that are ``color`` beyond doubt (closer than the palette
    radius, so nearer it than any other palette colour)."""
    target = np.asarray(PALETTE[color], dtype=np.int32)
    distance = ((video.astype(np.int32) - target) ** 2).sum(axis=-1)
    return np.asarray(distance < palette_radius() ** 2)


def _parse_prompt(prompt: str) -> CaptionParts:
    if not isinstance(prompt, str):
        raise ValueError(f"prompt: expected a synthetic caption, got {type(prompt).__name__}")
    try:
        return parse_caption(prompt)
    except ValueError as exc:
        raise ValueError(f"prompt: {clip(str(exc), 300)}") from None


def _video(frames: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    video = np.asarray(frames)
    if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != np.uint8 or video.size == 0:
        raise ValueError(
            "frames: expected a uint8 RGB video (frames, height, width, 3), got "
            f"{video.dtype} of shape {video.shape}"
        )
    return video


def _max_3x3(labels: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The largest value in each pixel's 3x3 neighbourhood, per frame (outside counts 0)."""
    padded = np.pad(labels, ((0, 0), (1, 1), (1, 1)))
    rows = np.maximum(np.maximum(padded[:, :, :-2], padded[:, :, 1:-1]), padded[:, :, 2:])
    return np.maximum(np.maximum(rows[:, :-2], rows[:, 1:-1]), rows[:, 2:])
