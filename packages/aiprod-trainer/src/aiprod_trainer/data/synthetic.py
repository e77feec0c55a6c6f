"""Synthetic clips: coloured shapes moving over a solid background, with their captions.

A clip is described by a :class:`ShapeClip`: a shape (circle, square, triangle) of one
palette colour moving left, right, up or down over a background of another palette colour.
Its caption names all four, ``"a red circle moving left on a blue background"``, and
:func:`parse_caption` reads such a caption back, so a generated video can be checked
against its prompt: :func:`dominant_colors` ranks the palette colours covering a frame.

Everything is deterministic: :func:`sample_clip` draws clip ``index`` from its own random
stream seeded by ``(seed, index)``, so clip 7 of seed 0 is the same however many clips are
made, and :func:`render_clip` is pure numpy.

Combinations can be held out of training: :func:`held_out_combinations` picks a spread of
(colour, shape, motion, background) combinations, and a :class:`SyntheticSpace` given them
as ``held_out`` never draws them (a clip that would be one is redrawn from the others, so
with nothing held out every clip is the same as without the option).

    clip = sample_clip(seed=0, index=0)
    frames = render_clip(clip, width=32, height=32, frames=9)  # uint8 (9, 32, 32, 3)
    clip.caption  # 'a green square moving up on a magenta background'
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, cast

import numpy as np
import numpy.typing as npt

Shape = Literal["circle", "square", "triangle"]
Motion = Literal["left", "right", "up", "down"]
RGB = tuple[int, int, int]
Uint8Frames = npt.NDArray[np.uint8]

#: Named colours with well separated RGB values (every pair differs by >= 150 in some
#: channel), so nearest-colour classification survives lossy video compression.
PALETTE: Mapping[str, RGB] = {
    "red": (220, 30, 30),
    "green": (30, 180, 50),
    "blue": (30, 40, 220),
    "yellow": (240, 220, 30),
    "magenta": (220, 40, 220),
    "cyan": (30, 200, 220),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
SHAPES: tuple[Shape, ...] = ("circle", "square", "triangle")
MOTIONS: tuple[Motion, ...] = ("left", "right", "up", "down")

#: The shape's size (circle diameter, square side, triangle base and height) as a fraction
#: of the frame's shorter side, and how far it travels as a fraction of the axis it moves on.
EXTENT_RANGE = (0.30, 0.45)
TRAVEL_RANGE = (0.30, 0.50)

_HELD_OUT_STREAM = 0x48454C44  # seeds held_out_combinations' shuffle apart from the clips'

_CAPTION = re.compile(
    r"a (?P<color>[a-z]+) (?P<shape>[a-z]+) moving (?P<motion>[a-z]+) "
    r"on a (?P<background>[a-z]+) background"
)


@dataclass(frozen=True)
class ShapeClip:
    """One synthetic clip, independent of resolution: positions are fractions of the frame.

    The shape's centre moves in a straight line from ``start`` to ``end`` (``(x, y)``, 0..1,
    y pointing down) and stays wholly inside the frame, so the caption is true of every frame.
    """

    shape: Shape
    color: str
    background: str
    motion: Motion
    extent: float
    start: tuple[float, float]
    end: tuple[float, float]

    @property
    def caption(self) -> str:
        """``"a <color> <shape> moving <motion> on a <background> background"``."""
        return caption_for(self.color, self.shape, self.motion, self.background)


@dataclass(frozen=True)
class CaptionParts:
    """What a synthetic caption names."""

    color: str
    shape: Shape
    motion: Motion
    background: str

    @property
    def caption(self) -> str:
        """The caption naming these parts (see :func:`caption_for`)."""
        return caption_for(self.color, self.shape, self.motion, self.background)


@dataclass(frozen=True)
class SyntheticSpace:
    """The choices clips are drawn from; every default is the full set.

    ``held_out``: combinations :func:`sample_clip` never draws (see the module docstring);
    at least one combination of the space must stay drawable.

    ``centre_jitter``: where the shape's path lies. None: anywhere it fits in the frame.
    A fraction ``j`` of the frame (0 to 0.5): the path's midpoint is the frame's centre
    moved by up to ``j`` on each axis (then moved in as far as the shape must be to stay
    inside), so where the shape is in each frame follows from the caption's motion, give or
    take ``j``.
    """

    colors: tuple[str, ...] = tuple(PALETTE)
    shapes: tuple[Shape, ...] = SHAPES
    motions: tuple[Motion, ...] = MOTIONS
    held_out: tuple[CaptionParts, ...] = ()
    centre_jitter: float | None = None

    def __post_init__(self) -> None:
        jitter = self.centre_jitter
        if jitter is not None and (
            isinstance(jitter, bool)
            or not isinstance(jitter, int | float)
            or not 0 <= jitter <= 0.5
        ):
            raise ValueError(
                f"centre_jitter: expected None or a fraction of the frame from 0 to 0.5, "
                f"got {jitter!r}"
            )
        _check_choices("colors", self.colors, tuple(PALETTE), minimum=2)
        _check_choices("shapes", self.shapes, SHAPES, minimum=1)
        _check_choices("motions", self.motions, MOTIONS, minimum=1)
        for number, parts in enumerate(self.held_out, start=1):
            _check_parts(f"held_out[{number}]", parts)
        if self.held_out and not _drawable(self):
            raise ValueError(
                f"held_out: all {len(_combinations(self))} combinations of the space are "
                "held out; hold out fewer or widen colors, shapes or motions"
            )


def _check_parts(name: str, parts: object) -> None:
    if not isinstance(parts, CaptionParts):
        raise ValueError(
            f"{name}: expected CaptionParts (e.g. parse_caption(...)), got {type(parts).__name__}"
        )
    for field, value, known in (
        ("color", parts.color, tuple(PALETTE)),
        ("shape", parts.shape, SHAPES),
        ("motion", parts.motion, MOTIONS),
        ("background", parts.background, tuple(PALETTE)),
    ):
        if value not in known:
            raise ValueError(
                f"{name}: unknown {field} {value!r}; expected one of {', '.join(known)}"
            )


def _combinations(space: SyntheticSpace) -> list[CaptionParts]:
    """Every combination :func:`sample_clip` can draw from ``space``, held out or not, in
    its drawing order (a shape or motion listed twice is listed twice, as it is drawn twice
    as often)."""
    colors = list(dict.fromkeys(space.colors))
    return [
        CaptionParts(color, shape, motion, background)
        for shape, motion, color in itertools.product(space.shapes, space.motions, colors)
        for background in colors
        if background != color
    ]


@functools.lru_cache(maxsize=16)
def _drawable(space: SyntheticSpace) -> tuple[CaptionParts, ...]:
    """The combinations of ``space`` that are not held out."""
    held_out = set(space.held_out)
    return tuple(parts for parts in _combinations(space) if parts not in held_out)


def _check_choices(name: str, chosen: Sequence[str], known: Sequence[str], *, minimum: int) -> None:
    unknown = [value for value in chosen if value not in known]
    if unknown:
        raise ValueError(
            f"{name}: unknown {', '.join(repr(value) for value in unknown)}; "
            f"expected names from {', '.join(known)}"
        )
    if len(set(chosen)) < minimum:
        raise ValueError(
            f"{name}: expected at least {minimum} different name{'s' if minimum > 1 else ''} "
            f"from {', '.join(known)}, got {len(set(chosen))}"
        )


def caption_for(color: str, shape: str, motion: str, background: str) -> str:
    """The caption of a clip: ``"a red circle moving left on a blue background"``."""
    return f"a {color} {shape} moving {motion} on a {background} background"


def parse_caption(caption: str) -> CaptionParts:
    """Read back what a caption made by :func:`caption_for` names.

    Raises:
        ValueError: the caption does not follow the template or names an unknown colour,
            shape or motion.
    """
    match = _CAPTION.fullmatch(caption.strip().lower())
    if match is None:
        raise ValueError(
            f"caption {caption!r}: expected 'a <color> <shape> moving <direction> on a "
            "<color> background'"
        )
    parts = match.groupdict()
    for field, known in (
        ("color", PALETTE),
        ("background", PALETTE),
        ("shape", SHAPES),
        ("motion", MOTIONS),
    ):
        if parts[field] not in known:
            raise ValueError(
                f"caption {caption!r}: unknown {field} {parts[field]!r}; expected one of "
                f"{', '.join(known)}"
            )
    return CaptionParts(
        color=parts["color"],
        shape=cast(Shape, parts["shape"]),
        motion=cast(Motion, parts["motion"]),
        background=parts["background"],
    )


def sample_clip(seed: int, index: int, space: SyntheticSpace | None = None) -> ShapeClip:
    """Draw clip ``index`` of the dataset made with ``seed``; the same arguments, the same clip.

    A draw that lands on a held-out combination is replaced by one drawn uniformly from the
    combinations left (so those are drawn as often as each other), from the same stream.
    """
    space = space or SyntheticSpace()
    rng = np.random.default_rng([seed, index])
    colors = list(dict.fromkeys(space.colors))
    shape = space.shapes[int(rng.integers(len(space.shapes)))]
    motion = space.motions[int(rng.integers(len(space.motions)))]
    color = colors.pop(int(rng.integers(len(colors))))
    background = colors[int(rng.integers(len(colors)))]
    if space.held_out and CaptionParts(color, shape, motion, background) in space.held_out:
        drawable = _drawable(space)
        parts = drawable[int(rng.integers(len(drawable)))]
        color, shape, motion, background = parts.color, parts.shape, parts.motion, parts.background
    extent = float(rng.uniform(*EXTENT_RANGE))
    travel = float(rng.uniform(*TRAVEL_RANGE))
    # Along the motion axis the centre must stay travel/2 + extent/2 from both edges;
    # across it, extent/2. Extents are fractions of the shorter side, so they are at most
    # that fraction of either axis.
    margin = travel / 2 + extent / 2
    if space.centre_jitter is None:
        middle = float(rng.uniform(margin, 1 - margin))
        across = float(rng.uniform(extent / 2, 1 - extent / 2))
    else:
        jitter = space.centre_jitter
        middle = float(np.clip(0.5 + rng.uniform(-jitter, jitter), margin, 1 - margin))
        across = float(np.clip(0.5 + rng.uniform(-jitter, jitter), extent / 2, 1 - extent / 2))
    sign = -1.0 if motion in ("left", "up") else 1.0
    first, last = middle - sign * travel / 2, middle + sign * travel / 2
    if motion in ("left", "right"):
        start, end = (first, across), (last, across)
    else:
        start, end = (across, first), (across, last)
    return ShapeClip(shape, color, background, motion, extent, start, end)


def held_out_combinations(
    count: int = 32,
    seed: int = 0,
    *,
    exclude: Iterable[str] = (),
    space: SyntheticSpace | None = None,
) -> tuple[CaptionParts, ...]:
    """Pick ``count`` combinations of ``space`` to hold out of training, spread evenly.

    The combinations are visited in an order shuffled by ``seed`` and picked one at a time,
    each time the one whose colour, shape, motion, background and shape-motion pair have been
    picked least so far (relative to how many of each there are), so every colour, shape and
    motion is held out about equally often. ``exclude`` (captions, e.g. the prompts a demo
    shows as seen in training) are never picked. The same arguments give the same picks.

    Raises:
        ValueError: ``count`` is not an integer from 1 to the number of combinations left
            after ``exclude``, or an ``exclude`` entry is not a synthetic caption.
    """
    space = space or SyntheticSpace()
    excluded = {parse_caption(caption) for caption in exclude}
    candidates = sorted(set(_combinations(space)) - excluded, key=lambda parts: parts.caption)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= len(candidates):
        raise ValueError(
            f"count: expected an integer from 1 to {len(candidates)} (the combinations left "
            f"after {len(excluded)} excluded), got {count!r}"
        )
    # A stream of its own: (seed, index) streams draw the clips.
    order = np.random.default_rng([seed, _HELD_OUT_STREAM]).permutation(len(candidates))
    candidates = [candidates[int(position)] for position in order]
    keys: list[Callable[[CaptionParts], object]] = [
        lambda parts: parts.color,
        lambda parts: parts.shape,
        lambda parts: parts.motion,
        lambda parts: parts.background,
        lambda parts: (parts.shape, parts.motion),
    ]
    # For every key: which of its values each candidate has, and how often each was picked.
    codes, picked = [], []
    for key in keys:
        values = sorted({key(parts) for parts in candidates}, key=repr)
        codes.append(np.array([values.index(key(parts)) for parts in candidates]))
        picked.append(np.zeros(len(values)))
    available = np.ones(len(candidates), dtype=bool)
    chosen: list[CaptionParts] = []
    for _ in range(count):
        # A value's picks relative to its share (count / number of values), summed over keys.
        load = sum(counts[code] * len(counts) for code, counts in zip(codes, picked, strict=True))
        best = int(np.argmin(np.where(available, load, np.inf)))
        available[best] = False
        chosen.append(candidates[best])
        for code, counts in zip(codes, picked, strict=True):
            counts[code[best]] += 1
    return tuple(chosen)


def render_clip(clip: ShapeClip, *, width: int, height: int, frames: int) -> Uint8Frames:
    """Draw ``clip`` as uint8 RGB frames ``(frames, height, width, 3)``.

    Raises:
        ValueError: a size or the frame count is not a positive integer.
    """
    for name, value in (("width", width), ("height", height), ("frames", frames)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name}: expected an integer > 0, got {value!r}")
    video = np.empty((frames, height, width, 3), dtype=np.uint8)
    video[...] = np.asarray(PALETTE[clip.background], dtype=np.uint8)
    xs = (np.arange(width) + 0.5)[None, :]
    ys = (np.arange(height) + 0.5)[:, None]
    size = clip.extent * min(width, height)
    for index in range(frames):
        t = index / (frames - 1) if frames > 1 else 0.5
        cx = (clip.start[0] + (clip.end[0] - clip.start[0]) * t) * width
        cy = (clip.start[1] + (clip.end[1] - clip.start[1]) * t) * height
        mask = _shape_mask(clip.shape, xs - cx, ys - cy, size / 2)
        video[index][mask] = PALETTE[clip.color]
    return video


def _shape_mask(
    shape: Shape, dx: npt.NDArray[np.floating], dy: npt.NDArray[np.floating], half: float
) -> npt.NDArray[np.bool_]:
    """Pixels inside ``shape`` centred at the origin; ``half`` is half its extent."""
    if shape == "circle":
        return np.asarray(dx**2 + dy**2 <= half**2)
    if shape == "square":
        return np.asarray((np.abs(dx) <= half) & (np.abs(dy) <= half))
    # An isosceles triangle pointing up: apex at (0, -half), base from -half to half at +half.
    depth = (dy + half) / 2  # 0 at the apex, half at the base
    return np.asarray((dy >= -half) & (dy <= half) & (np.abs(dx) <= depth))


def palette_radius(palette: Mapping[str, RGB] = PALETTE) -> float:
    """Half the smallest RGB distance between two palette colours.

    A pixel closer than this to a palette colour is nearer to it than to any other, so it
    is that colour beyond doubt; pixels farther from every colour (edge blends, compression
    ringing) are ambiguous. For :data:`PALETTE` it is 80 (blue and cyan are 160 apart).
    """
    colors = np.asarray(list(palette.values()), dtype=np.float64)
    if len(colors) < 2:
        raise ValueError(f"palette: expected at least 2 colours, got {len(colors)}")
    distances = np.sqrt(((colors[:, None, :] - colors[None, :, :]) ** 2).sum(axis=2))
    return float(distances[np.triu_indices(len(colors), k=1)].min() / 2)


def classify_pixels(
    frame: npt.NDArray[np.uint8],
    palette: Mapping[str, RGB] = PALETTE,
    *,
    max_distance: float | None = None,
) -> dict[str, int]:
    """How many pixels of an RGB frame ``(H, W, 3)`` lie nearest each palette colour.

    With ``max_distance``, only pixels closer than that to their nearest colour are counted
    (pass :func:`palette_radius` to count only unambiguous pixels).
    """
    names = list(palette)
    colors = np.asarray([palette[name] for name in names], dtype=np.int32)
    pixels = np.asarray(frame, dtype=np.int32).reshape(-1, 3)
    distances = ((pixels[:, None, :] - colors[None, :, :]) ** 2).sum(axis=2)
    nearest = distances.argmin(axis=1)
    if max_distance is not None:
        nearest = nearest[distances.min(axis=1) < max_distance**2]
    counts = np.bincount(nearest, minlength=len(names))
    return {name: int(count) for name, count in zip(names, counts, strict=True)}


def dominant_colors(
    frame: npt.NDArray[np.uint8], top: int = 2, palette: Mapping[str, RGB] = PALETTE
) -> list[str]:
    """The ``top`` palette colours covering most of ``frame``, most pixels first.

    Ties go to the colour listed first in ``palette``; colours no pixel is nearest to are
    left out, so fewer than ``top`` names may come back.
    """
    counts = classify_pixels(frame, palette)
    ranked = sorted(counts, key=lambda name: -counts[name])
    return [name for name in ranked[:top] if counts[name] > 0]


def caption_colors_match(frame: npt.NDArray[np.uint8], caption: str) -> bool:
    """Whether the two colours a synthetic caption names are the frame's two dominant ones."""
    parts = parse_caption(caption)
    return set(dominant_colors(frame, top=2)) == {parts.color, parts.background}
