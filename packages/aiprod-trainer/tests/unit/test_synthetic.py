"""Synthetic shape clips: captions, deterministic sampling, held-out combinations,
rendering, colour checks, files."""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiprod_core.documents import DocumentError
from aiprod_pipelines.video_io import read_video
from aiprod_trainer import load_manifest
from aiprod_trainer.data.synthetic import (
    MOTIONS,
    PALETTE,
    SHAPES,
    CaptionParts,
    ShapeClip,
    SyntheticSpace,
    caption_colors_match,
    caption_for,
    classify_pixels,
    dominant_colors,
    held_out_combinations,
    palette_radius,
    parse_caption,
    render_clip,
    sample_clip,
)
from aiprod_trainer.data.synthetic_dataset import (
    HELD_OUT_NAME,
    SyntheticSettings,
    read_held_out,
    write_synthetic_dataset,
)

DEMO_PROMPTS = (
    caption_for("red", "circle", "left", "blue"),
    caption_for("yellow", "square", "right", "black"),
    caption_for("white", "triangle", "up", "green"),
    caption_for("cyan", "circle", "down", "magenta"),
)

# --- palette and captions ---------------------------------------------------------------


def test_palette_colours_are_far_apart() -> None:
    for first, second in itertools.combinations(PALETTE, 2):
        gap = max(abs(a - b) for a, b in zip(PALETTE[first], PALETTE[second], strict=True))
        assert gap >= 150, f"{first} and {second} differ by only {gap} in every channel"


def test_caption_names_colour_shape_motion_and_background() -> None:
    assert caption_for("red", "circle", "left", "blue") == (
        "a red circle moving left on a blue background"
    )


def test_every_caption_parses_back() -> None:
    for color, shape, motion, background in itertools.product(PALETTE, SHAPES, MOTIONS, PALETTE):
        parts = parse_caption(caption_for(color, shape, motion, background))
        assert (parts.color, parts.shape, parts.motion, parts.background) == (
            color,
            shape,
            motion,
            background,
        )


def test_parse_caption_ignores_case_and_surrounding_space() -> None:
    parts = parse_caption("  A Green Square moving UP on a white background ")
    assert (parts.color, parts.shape, parts.motion, parts.background) == (
        "green",
        "square",
        "up",
        "white",
    )


@pytest.mark.parametrize(
    ("caption", "message"),
    [
        ("a red fox in snow", "expected 'a <color> <shape> moving"),
        ("a pink circle moving left on a blue background", "unknown color 'pink'"),
        ("a red circle moving left on a grey background", "unknown background 'grey'"),
        ("a red star moving left on a blue background", "unknown shape 'star'"),
        ("a red circle moving sideways on a blue background", "unknown motion 'sideways'"),
    ],
)
def test_parse_caption_rejects_other_text(caption: str, message: str) -> None:
    with pytest.raises(ValueError, match="caption") as info:
        parse_caption(caption)
    assert message in str(info.value)


# --- sampling ---------------------------------------------------------------------------


def test_sampling_is_deterministic_and_depends_on_seed_and_index() -> None:
    assert sample_clip(3, 5) == sample_clip(3, 5)
    clips = {sample_clip(seed, index) for seed in range(3) for index in range(20)}
    assert len(clips) == 60


def test_known_clip_is_stable_across_versions() -> None:
    """Datasets made earlier stay reproducible: pin one clip's caption."""
    assert sample_clip(0, 0).caption == "a magenta triangle moving up on a green background"


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), index=st.integers(0, 10_000))
def test_sampled_clip_stays_inside_the_frame_and_has_two_colours(seed: int, index: int) -> None:
    clip = sample_clip(seed, index)
    assert clip.color != clip.background
    assert clip.shape in SHAPES
    assert clip.motion in MOTIONS
    half = clip.extent / 2
    for x, y in (clip.start, clip.end):
        assert half <= x <= 1 - half
        assert half <= y <= 1 - half
    dx, dy = clip.end[0] - clip.start[0], clip.end[1] - clip.start[1]
    direction = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
    assert (np.sign(dx), np.sign(dy)) == direction[clip.motion]


def test_sampling_draws_only_from_the_space() -> None:
    space = SyntheticSpace(colors=("red", "blue"), shapes=("square",), motions=("down",))
    clips = [sample_clip(1, index, space) for index in range(30)]
    assert {clip.shape for clip in clips} == {"square"}
    assert {clip.motion for clip in clips} == {"down"}
    assert {(clip.color, clip.background) for clip in clips} == {("red", "blue"), ("blue", "red")}


def test_sampling_covers_every_choice() -> None:
    clips = [sample_clip(0, index) for index in range(400)]
    assert {clip.shape for clip in clips} == set(SHAPES)
    assert {clip.motion for clip in clips} == set(MOTIONS)
    assert {clip.color for clip in clips} == set(PALETTE)
    assert {clip.background for clip in clips} == set(PALETTE)


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), index=st.integers(0, 10_000))
def test_centred_paths_pass_near_the_centre_and_keep_the_clip_otherwise(
    seed: int, index: int
) -> None:
    anywhere = sample_clip(seed, index)
    centred = sample_clip(seed, index, SyntheticSpace(centre_jitter=0.05))
    assert dataclasses.replace(centred, start=anywhere.start, end=anywhere.end) == anywhere
    middle = np.add(centred.start, centred.end) / 2
    assert np.abs(middle - 0.5).max() <= 0.05 + 1e-9
    half = centred.extent / 2
    for point in (centred.start, centred.end):
        assert min(point) >= half - 1e-9
        assert max(point) <= 1 - half + 1e-9
    # the motion alone says where the shape starts: right of the centre when moving left
    axis = 0 if centred.motion in ("left", "right") else 1
    sign = 1 if centred.motion in ("left", "up") else -1
    assert sign * (centred.start[axis] - 0.5) > 0.15 - 0.05


def test_without_jitter_every_path_goes_through_the_centre() -> None:
    for index in range(20):
        clip = sample_clip(0, index, SyntheticSpace(centre_jitter=0.0))
        assert np.add(clip.start, clip.end) / 2 == pytest.approx((0.5, 0.5))


@pytest.mark.parametrize("jitter", [-0.1, 0.6, True, "0.1", float("nan")])
def test_space_rejects_a_bad_centre_jitter(jitter: object) -> None:
    with pytest.raises(ValueError, match="centre_jitter: expected None or a fraction"):
        SyntheticSpace(centre_jitter=jitter)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"colors": ("red", "pink")}, "colors: unknown 'pink'"),
        ({"colors": ("red", "red")}, "colors: expected at least 2 different names"),
        ({"shapes": ()}, "shapes: expected at least 1 different name "),
        ({"motions": ("sideways",)}, "motions: unknown 'sideways'"),
    ],
)
def test_space_rejects_unknown_or_too_few_names(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match="expected") as info:
        SyntheticSpace(**kwargs)  # type: ignore[arg-type]
    assert message in str(info.value)


# --- held-out combinations -------------------------------------------------------------


def parts_of(clip: ShapeClip) -> CaptionParts:
    return CaptionParts(clip.color, clip.shape, clip.motion, clip.background)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_held_out_combinations_are_spread_and_never_a_demo_prompt(seed: int) -> None:
    held = held_out_combinations(32, seed, exclude=DEMO_PROMPTS)
    assert len(held) == len(set(held)) == 32
    assert not {parts.caption for parts in held} & set(DEMO_PROMPTS)
    assert all(parts.color != parts.background for parts in held)
    colors = Counter(parts.color for parts in held)
    backgrounds = Counter(parts.background for parts in held)
    shapes = Counter(parts.shape for parts in held)
    motions = Counter(parts.motion for parts in held)
    assert set(colors) == set(backgrounds) == set(PALETTE)
    assert 3 <= min(colors.values()) <= max(colors.values()) <= 5
    assert 3 <= min(backgrounds.values()) <= max(backgrounds.values()) <= 5
    assert set(shapes) == set(SHAPES)
    assert 10 <= min(shapes.values()) <= max(shapes.values()) <= 12
    assert set(motions) == set(MOTIONS)
    assert 7 <= min(motions.values()) <= max(motions.values()) <= 9
    assert {(parts.shape, parts.motion) for parts in held} == set(
        itertools.product(SHAPES, MOTIONS)
    )


def test_held_out_combinations_are_deterministic_and_depend_on_the_seed() -> None:
    first = held_out_combinations(32, 5, exclude=DEMO_PROMPTS)
    assert first == held_out_combinations(32, 5, exclude=DEMO_PROMPTS)
    assert first != held_out_combinations(32, 6, exclude=DEMO_PROMPTS)
    assert held_out_combinations(4, 5, exclude=DEMO_PROMPTS) == first[:4]


def test_held_out_combinations_stay_inside_the_space() -> None:
    space = SyntheticSpace(colors=("red", "blue", "green"), shapes=("square",))
    held = held_out_combinations(24, 0, space=space)  # 3 x 2 colour pairs x 4 motions: all
    assert {parts.shape for parts in held} == {"square"}
    assert len(set(held)) == 24
    with pytest.raises(ValueError, match="count: expected an integer from 1 to 23"):
        held_out_combinations(
            24, 0, space=space, exclude=[caption_for("red", "square", "up", "blue")]
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"count": 0}, "count: expected an integer from 1 to 672"),
        ({"count": 673}, "count: expected an integer from 1 to 672"),
        ({"count": True}, "count: expected an integer"),
        ({"exclude": ["a cat"]}, "caption 'a cat': expected"),
    ],
)
def test_held_out_combinations_reject_bad_arguments(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match="expected") as info:
        held_out_combinations(**kwargs)  # type: ignore[arg-type]
    assert message in str(info.value)


def test_sampling_never_draws_a_held_out_combination_and_keeps_the_other_clips() -> None:
    held = held_out_combinations(32, 0, exclude=DEMO_PROMPTS)
    space = SyntheticSpace(held_out=held)
    redrawn = 0
    for index in range(600):
        before, after = sample_clip(0, index), sample_clip(0, index, space)
        assert parts_of(after) not in held
        if parts_of(before) in held:
            redrawn += 1
            assert after.color != after.background
        else:
            assert after == before
    assert redrawn > 10  # 32 of 672 combinations: about 29 of 600 clips


def test_held_out_combinations_are_redrawn_from_those_left() -> None:
    space = SyntheticSpace(colors=("red", "blue"), shapes=("square",), motions=("down",))
    keep, drop = (
        CaptionParts("red", "square", "down", "blue"),
        CaptionParts("blue", "square", "down", "red"),
    )
    held = SyntheticSpace(
        colors=space.colors, shapes=space.shapes, motions=space.motions, held_out=(drop,)
    )
    assert {parts_of(sample_clip(1, index, held)) for index in range(30)} == {keep}
    assert {parts_of(sample_clip(1, index, space)) for index in range(30)} == {keep, drop}


@pytest.mark.parametrize(
    ("held_out", "message"),
    [
        (("a red circle moving left on a blue background",), "held_out[1]: expected CaptionParts"),
        ((CaptionParts("pink", "circle", "left", "blue"),), "held_out[1]: unknown color 'pink'"),
        ((CaptionParts("red", "star", "left", "blue"),), "held_out[1]: unknown shape 'star'"),  # type: ignore[arg-type]
    ],
)
def test_space_rejects_held_out_entries_that_are_not_combinations(
    held_out: tuple[object, ...], message: str
) -> None:
    with pytest.raises(ValueError, match="held_out") as info:
        SyntheticSpace(held_out=held_out)  # type: ignore[arg-type]
    assert message in str(info.value)


def test_space_rejects_holding_out_everything() -> None:
    both = (
        CaptionParts("red", "square", "down", "blue"),
        CaptionParts("blue", "square", "down", "red"),
    )
    with pytest.raises(ValueError, match="held_out: all 2 combinations of the space are held out"):
        SyntheticSpace(colors=("red", "blue"), shapes=("square",), motions=("down",), held_out=both)


# --- rendering --------------------------------------------------------------------------


def centred(shape: str, motion: str = "right", extent: float = 0.5) -> ShapeClip:
    return ShapeClip(shape, "red", "blue", motion, extent, (0.25, 0.5), (0.75, 0.5))  # type: ignore[arg-type]


def shape_pixels(frame: np.ndarray, color: str = "red") -> np.ndarray:
    return np.all(frame == np.asarray(PALETTE[color], dtype=np.uint8), axis=-1)


def test_render_shape_dtype_and_background() -> None:
    video = render_clip(sample_clip(0, 1), width=48, height=32, frames=5)
    assert video.shape == (5, 32, 48, 3)
    assert video.dtype == np.uint8
    clip = sample_clip(0, 1)
    colours = {tuple(pixel) for pixel in video.reshape(-1, 3)}
    assert colours == {PALETTE[clip.color], PALETTE[clip.background]}


@pytest.mark.parametrize(
    ("shape", "area"),
    [("circle", np.pi * 16**2), ("square", 32**2), ("triangle", 32**2 / 2)],
)
def test_shapes_cover_their_geometric_area(shape: str, area: float) -> None:
    frame = render_clip(centred(shape, extent=0.5), width=64, height=64, frames=1)[0]
    assert shape_pixels(frame).sum() == pytest.approx(area, rel=0.08)


def test_triangle_points_up() -> None:
    frame = render_clip(centred("triangle", extent=0.5), width=64, height=64, frames=1)[0]
    widths = shape_pixels(frame).sum(axis=1)
    rows = np.flatnonzero(widths)
    assert widths[rows[0]] < widths[rows[-1]]


@pytest.mark.parametrize("motion", MOTIONS)
def test_shape_moves_in_the_captioned_direction(motion: str) -> None:
    clip = next(c for i in range(200) if (c := sample_clip(2, i)).motion == motion)
    video = render_clip(clip, width=32, height=32, frames=9)
    centres = []
    for frame in video:
        ys, xs = np.nonzero(shape_pixels(frame, clip.color))
        centres.append((xs.mean(), ys.mean()))
    (x0, y0), (x1, y1) = centres[0], centres[-1]
    moved = {"left": x0 - x1, "right": x1 - x0, "up": y0 - y1, "down": y1 - y0}
    assert moved[motion] > 4
    sideways = abs(y1 - y0) if motion in ("left", "right") else abs(x1 - x0)
    assert sideways < 1


def test_single_frame_clip_shows_the_middle_position() -> None:
    frame = render_clip(centred("square", extent=0.25), width=32, height=32, frames=1)[0]
    ys, xs = np.nonzero(shape_pixels(frame))
    assert (xs.mean(), ys.mean()) == pytest.approx((15.5, 15.5))


@pytest.mark.parametrize("bad", [0, -3, True, 2.5])
def test_render_rejects_bad_sizes(bad: object) -> None:
    with pytest.raises(ValueError, match="frames: expected an integer > 0"):
        render_clip(sample_clip(0, 0), width=8, height=8, frames=bad)  # type: ignore[arg-type]


# --- colour checks ----------------------------------------------------------------------


def test_classify_and_dominant_colours_of_a_rendered_frame() -> None:
    frame = render_clip(centred("square", extent=0.5), width=32, height=32, frames=1)[0]
    counts = classify_pixels(frame)
    assert counts["red"] == 256
    assert counts["blue"] == 1024 - 256
    assert sum(counts.values()) == 1024
    assert dominant_colors(frame) == ["blue", "red"]
    assert dominant_colors(frame, top=1) == ["blue"]
    assert dominant_colors(frame, top=5) == ["blue", "red"]  # colours with no pixel are left out


def test_nearest_colour_tolerates_compression_noise() -> None:
    rng = np.random.default_rng(0)
    frame = render_clip(centred("circle"), width=32, height=32, frames=1)[0]
    noisy = np.clip(frame.astype(int) + rng.integers(-40, 41, frame.shape), 0, 255).astype(np.uint8)
    assert dominant_colors(noisy) == ["blue", "red"]


def test_palette_radius_is_half_the_closest_pair() -> None:
    assert palette_radius() == pytest.approx(80.0)  # blue and cyan are 160 apart
    assert palette_radius({"black": (0, 0, 0), "white": (30, 40, 0)}) == pytest.approx(25.0)
    with pytest.raises(ValueError, match="at least 2 colours"):
        palette_radius({"black": (0, 0, 0)})


def test_max_distance_leaves_ambiguous_pixels_uncounted() -> None:
    frame = np.empty((1, 4, 3), dtype=np.uint8)
    frame[0, :2] = PALETTE["blue"]
    frame[0, 2] = (150, 90, 170)  # a blend: nearest magenta, but 99.5 from it
    frame[0, 3] = (200, 50, 50)  # a slightly off red
    every = classify_pixels(frame)
    assert (every["blue"], every["magenta"], every["red"]) == (2, 1, 1)
    sure = classify_pixels(frame, max_distance=palette_radius())
    assert (sure["blue"], sure["magenta"], sure["red"]) == (2, 0, 1)
    assert sum(sure.values()) == 3


def test_caption_colours_match_only_the_right_frame() -> None:
    frame = render_clip(centred("circle"), width=32, height=32, frames=1)[0]
    assert caption_colors_match(frame, "a red circle moving right on a blue background")
    assert caption_colors_match(frame, "a blue square moving up on a red background")
    assert not caption_colors_match(frame, "a red circle moving right on a green background")


# --- dataset files ----------------------------------------------------------------------


def test_written_dataset_decodes_to_the_rendered_clips(tmp_path: Path) -> None:
    settings_ = SyntheticSettings(count=4, width=32, height=24, frames=5, fps=10, seed=7)
    dataset = write_synthetic_dataset(tmp_path, settings_)

    manifest = load_manifest(tmp_path / "manifest.jsonl", check_media=True)
    assert [record.media for record in manifest] == [
        f"clips/clip_{index:05d}.mp4" for index in range(4)
    ]
    assert dataset.records == manifest.records
    assert (dataset.train, dataset.val) == (4, 0)
    for index, record in enumerate(manifest):
        clip = sample_clip(7, index)
        assert record.caption == clip.caption
        assert (record.width, record.height, record.frames, record.fps) == (32, 24, 5, 10.0)
        frames, fps, meta = read_video(manifest.media_path(record))
        assert frames.shape == (5, 24, 32, 3)
        assert fps == 10.0
        assert meta.codec == "h264"
        rendered = render_clip(clip, width=32, height=24, frames=5)
        assert np.abs(frames.astype(int) - rendered).mean() < 8
        assert caption_colors_match(frames[2], record.caption)


def test_validation_split_holds_out_the_last_clips(tmp_path: Path) -> None:
    dataset = write_synthetic_dataset(
        tmp_path, SyntheticSettings(count=10, val_fraction=0.25, frames=3, width=16, height=16)
    )
    train = load_manifest(tmp_path / "train.jsonl")
    val = load_manifest(tmp_path / "val.jsonl")
    assert (len(train), len(val)) == (7, 3) == (dataset.train, dataset.val)
    assert train.records + val.records == load_manifest(tmp_path / "manifest.jsonl").records
    assert set(dataset.manifests) == {"all", "train", "val"}


def test_a_run_without_split_removes_old_split_files(tmp_path: Path) -> None:
    small = {"frames": 2, "width": 16, "height": 16}
    write_synthetic_dataset(tmp_path, SyntheticSettings(count=3, val_fraction=0.5, **small))
    assert (tmp_path / "val.jsonl").is_file()
    dataset = write_synthetic_dataset(tmp_path, SyntheticSettings(count=3, **small))
    assert not (tmp_path / "train.jsonl").exists()
    assert not (tmp_path / "val.jsonl").exists()
    assert set(dataset.manifests) == {"all"}


def test_progress_wrapper_sees_every_index(tmp_path: Path) -> None:
    seen: list[int] = []

    def progress(indices: range) -> list[int]:
        seen.extend(indices)
        return list(indices)

    write_synthetic_dataset(
        tmp_path, SyntheticSettings(count=3, frames=1, width=8, height=8), progress=progress
    )
    assert seen == [0, 1, 2]


@pytest.mark.parametrize(
    ("count", "fraction", "expected"),
    [(10, 0.0, 0), (10, 0.1, 1), (10, 0.01, 1), (10, 0.26, 3), (2, 0.9, 1), (100, 0.5, 50)],
)
def test_validation_count(count: int, fraction: float, expected: int) -> None:
    assert SyntheticSettings(count=count, val_fraction=fraction).val_count == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"count": 0}, "count: expected an integer > 0"),
        ({"frames": True}, "frames: expected an integer > 0"),
        ({"width": 33}, "expected an even width and height"),
        ({"fps": 0.0}, "fps: expected a number > 0"),
        ({"val_fraction": 1.0}, "val_fraction: expected 0 <= value < 1"),
        ({"count": 1, "val_fraction": 0.5}, "expected a count of at least 2"),
        ({"crf": 52}, "crf: expected an integer 0..51"),
    ],
)
def test_settings_reject_bad_values(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"count": 4, **kwargs}
    with pytest.raises(ValueError, match="expected") as info:
        SyntheticSettings(**arguments)  # type: ignore[arg-type]
    assert message in str(info.value)


def test_held_out_combinations_are_absent_from_the_clips_and_recorded(tmp_path: Path) -> None:
    small = {"frames": 2, "width": 16, "height": 16, "seed": 7}
    plain = write_synthetic_dataset(tmp_path / "plain", SyntheticSettings(count=8, **small))
    assert plain.held_out == ()
    assert not (tmp_path / "plain" / HELD_OUT_NAME).exists()
    # Hold out what clips 0 and 3 would be, and some combination the clips never are.
    held = (
        parse_caption(plain.records[0].caption),
        parse_caption(plain.records[3].caption),
        *held_out_combinations(2, 9),
    )
    settings_ = SyntheticSettings(count=8, space=SyntheticSpace(held_out=held), **small)
    dataset = write_synthetic_dataset(tmp_path / "held", settings_)

    captions = [record.caption for record in load_manifest(tmp_path / "held" / "manifest.jsonl")]
    assert not set(captions) & {parts.caption for parts in held}
    for index in (1, 2, 4, 5, 6, 7):
        if parse_caption(plain.records[index].caption) not in held:
            assert captions[index] == plain.records[index].caption
    assert dataset.held_out == tuple(parts.caption for parts in held)
    recorded = json.loads((tmp_path / "held" / HELD_OUT_NAME).read_text())
    assert recorded == {"held_out": list(dataset.held_out)}
    assert read_held_out(tmp_path / "held") == dataset.held_out
    assert read_held_out(tmp_path / "plain") == ()

    write_synthetic_dataset(tmp_path / "held", SyntheticSettings(count=2, **small))
    assert not (tmp_path / "held" / HELD_OUT_NAME).exists()


@pytest.mark.fault("files")
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "invalid JSON"),
        ('{"held_out": "a red circle"}', 'expected {"held_out": [captions]}'),
        ('["a red circle moving left on a blue background"]', "expected a mapping"),
        ('{"held_out": ["' + "x" * 5000 + '"]}', "is not a synthetic caption"),
    ],
)
def test_reading_a_damaged_held_out_file_fails_clearly(
    tmp_path: Path, text: str, message: str
) -> None:
    (tmp_path / HELD_OUT_NAME).write_text(text)
    with pytest.raises(DocumentError, match=HELD_OUT_NAME) as info:
        read_held_out(tmp_path)
    assert message in str(info.value)
    assert len(str(info.value)) < 400
