"""Resolution buckets: labels, exact grouping, and the nearest-bucket rule."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from fractions import Fraction

import pytest

from aiprod_trainer import Bucket, ManifestRecord, assign_buckets, group_by_bucket, nearest_bucket

MakeRecord = Callable[..., ManifestRecord]


# --- Bucket ----------------------------------------------------------------------------


def test_bucket_label_and_derived_values() -> None:
    bucket = Bucket(768, 512, 49)

    assert bucket.label == "768x512x49"
    assert str(bucket) == "768x512x49"
    assert bucket.aspect_ratio == Fraction(3, 2)
    assert bucket.area == 393_216


def test_bucket_is_frozen_and_hashable() -> None:
    bucket = Bucket(512, 512, 25)

    with pytest.raises(AttributeError):
        bucket.width = 1  # type: ignore[misc]
    assert {bucket, Bucket(512, 512, 25)} == {Bucket(512, 512, 25)}


def test_buckets_sort_by_width_then_height_then_frames() -> None:
    buckets = [
        Bucket(768, 512, 49),
        Bucket(512, 768, 49),
        Bucket(512, 512, 97),
        Bucket(512, 512, 25),
    ]

    assert [bucket.label for bucket in sorted(buckets)] == [
        "512x512x25",
        "512x512x97",
        "512x768x49",
        "768x512x49",
    ]


@pytest.mark.parametrize(
    ("label", "expected"),
    [("768x512x49", Bucket(768, 512, 49)), (" 1X2x3 ", Bucket(1, 2, 3))],
)
def test_parse_label(label: str, expected: Bucket) -> None:
    assert Bucket.parse(label) == expected


@pytest.mark.parametrize("label", ["768x512", "768x512x49x2", "axbxc", "768x-512x49", ""])
def test_parse_rejects_a_malformed_label(label: str) -> None:
    with pytest.raises(ValueError, match="expected a label WIDTHxHEIGHTxFRAMES") as caught:
        Bucket.parse(label)
    assert repr(label) in str(caught.value)


def test_parse_rejects_a_zero_dimension() -> None:
    with pytest.raises(ValueError, match=r"bucket frames: expected an integer > 0, got 0"):
        Bucket.parse("768x512x0")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ((0, 512, 49), "bucket width: expected an integer > 0, got 0"),
        ((768, -1, 49), "bucket height: expected an integer > 0, got -1"),
        ((768, 512, 4.5), "bucket frames: expected an integer > 0, got 4.5"),
        ((True, 512, 49), "bucket width: expected an integer > 0, got True"),
    ],
)
def test_bucket_rejects_non_positive_or_non_integer_values(
    values: tuple[object, object, object], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        Bucket(*values)  # type: ignore[arg-type]
    assert str(caught.value) == message


def test_bucket_of_a_record(make_record: MakeRecord) -> None:
    assert Bucket.of(make_record(width=640, height=360, frames=121)) == Bucket(640, 360, 121)


# --- exact grouping --------------------------------------------------------------------


def test_group_by_bucket_sorts_buckets_and_keeps_record_order(make_record: MakeRecord) -> None:
    a = make_record(media="a", width=768, height=512, frames=49)
    b = make_record(media="b", width=512, height=512, frames=25)
    c = make_record(media="c", width=768, height=512, frames=49)
    d = make_record(media="d", width=768, height=512, frames=97)

    groups = group_by_bucket([a, b, c, d])

    assert list(groups) == [Bucket(512, 512, 25), Bucket(768, 512, 49), Bucket(768, 512, 97)]
    assert groups[Bucket(768, 512, 49)] == [a, c]
    assert groups[Bucket(512, 512, 25)] == [b]
    assert groups[Bucket(768, 512, 97)] == [d]


def test_group_by_bucket_of_nothing_is_empty() -> None:
    assert group_by_bucket([]) == {}


# --- nearest bucket --------------------------------------------------------------------

ALLOWED = [
    Bucket(768, 512, 49),  # 3:2 landscape
    Bucket(512, 768, 49),  # 2:3 portrait
    Bucket(512, 512, 49),  # 1:1 small
    Bucket(1024, 1024, 49),  # 1:1 large
    Bucket(1024, 1024, 97),  # 1:1 large, long
]


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        # exact match
        (Bucket(768, 512, 49), Bucket(768, 512, 49)),
        # aspect ratio decides first: 16:9 is nearer 3:2 than 1:1, despite the larger area
        (Bucket(1920, 1080, 49), Bucket(768, 512, 49)),
        # 9:16 is nearest the portrait bucket
        (Bucket(1080, 1920, 49), Bucket(512, 768, 49)),
        # square: area decides between the two 1:1 sizes (600x600 is nearer 512 than 1024)
        (Bucket(600, 600, 49), Bucket(512, 512, 49)),
        (Bucket(900, 900, 49), Bucket(1024, 1024, 49)),
        # same aspect and area: frame count decides
        (Bucket(1024, 1024, 90), Bucket(1024, 1024, 97)),
        (Bucket(1024, 1024, 60), Bucket(1024, 1024, 49)),
    ],
)
def test_nearest_bucket(shape: Bucket, expected: Bucket) -> None:
    assert nearest_bucket(shape, ALLOWED) == expected


def test_aspect_ratio_outranks_area_and_frames() -> None:
    allowed = [Bucket(1000, 1000, 10), Bucket(200, 100, 99)]

    # 2:1 with area 20000 and 99 frames: the 1:1 bucket has the wrong shape,
    # the 2:1 bucket matches the aspect ratio exactly
    assert nearest_bucket(Bucket(200, 100, 10), allowed) == Bucket(200, 100, 99)


def test_aspect_distance_is_symmetric_so_a_tie_goes_to_the_smaller_bucket() -> None:
    wide = Bucket(1024, 512, 49)  # 2:1, 2x wider than square
    tall = Bucket(512, 1024, 49)  # 1:2, 2x taller than square

    assert nearest_bucket(Bucket(724, 724, 49), [wide, tall]) == tall
    assert nearest_bucket(Bucket(724, 724, 49), [tall, wide]) == tall


def test_area_tie_goes_to_the_smaller_bucket() -> None:
    # 200x200 has area 40000: 100x100 is 4x smaller and 400x400 is 4x larger
    small, large = Bucket(100, 100, 9), Bucket(400, 400, 9)

    assert nearest_bucket(Bucket(200, 200, 9), [large, small]) == small


def test_frame_tie_goes_to_fewer_frames() -> None:
    short, long = Bucket(512, 512, 41), Bucket(512, 512, 57)

    assert nearest_bucket(Bucket(512, 512, 49), [long, short]) == short


def test_result_does_not_depend_on_the_order_of_allowed_buckets() -> None:
    shapes = [
        Bucket(w, h, f) for w, h, f in itertools.product([300, 700, 1500], [300, 900], [1, 60])
    ]
    expected = [nearest_bucket(shape, ALLOWED) for shape in shapes]

    for order in itertools.permutations(ALLOWED):
        assert [nearest_bucket(shape, order) for shape in shapes] == expected


def test_nearest_bucket_of_a_record(make_record: MakeRecord) -> None:
    record = make_record(width=1280, height=720, frames=50)

    assert nearest_bucket(record, ALLOWED) == Bucket(768, 512, 49)


def test_nearest_bucket_needs_at_least_one_allowed_bucket() -> None:
    with pytest.raises(ValueError, match="allowed buckets: expected at least one bucket, got none"):
        nearest_bucket(Bucket(1, 1, 1), [])


# --- assigning records -----------------------------------------------------------------


def test_assign_buckets_groups_records_by_their_nearest_bucket(make_record: MakeRecord) -> None:
    landscape = make_record(media="landscape", width=1920, height=1080, frames=49)
    portrait = make_record(media="portrait", width=720, height=1280, frames=49)
    small_square = make_record(media="small", width=480, height=480, frames=30)
    wide = make_record(media="wide", width=1280, height=720, frames=49)

    groups = assign_buckets([landscape, portrait, small_square, wide], iter(ALLOWED))

    assert groups == {
        Bucket(512, 512, 49): [small_square],
        Bucket(512, 768, 49): [portrait],
        Bucket(768, 512, 49): [landscape, wide],
    }
    assert list(groups) == sorted(groups)


def test_assign_buckets_needs_at_least_one_allowed_bucket(make_record: MakeRecord) -> None:
    with pytest.raises(ValueError, match="expected at least one bucket"):
        assign_buckets([make_record()], [])
