"""Normalising numpy arrays and tensor-like objects to uint8 (T, H, W, C) frames."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from aiprod_pipelines.video_io import MODEL_VALUE_RANGE, VideoIOError, to_uint8_frames
from aiprod_pipelines.video_io.frames import as_numpy, pad_to_even, to_rgb


class FakeTensor:
    """Quacks like a torch tensor: detach() -> cpu() -> numpy(), recording the calls."""

    def __init__(self, array: np.ndarray, *, numpy_supports_dtype: bool = True) -> None:
        self.array = array
        self.numpy_supports_dtype = numpy_supports_dtype
        self.calls: list[str] = []

    def detach(self) -> FakeTensor:
        self.calls.append("detach")
        return self

    def cpu(self) -> FakeTensor:
        self.calls.append("cpu")
        return self

    def float(self) -> FakeTensor:
        self.calls.append("float")
        return FakeTensor(self.array.astype(np.float32))

    def numpy(self) -> np.ndarray:
        self.calls.append("numpy")
        if not self.numpy_supports_dtype:
            raise TypeError("Got unsupported ScalarType BFloat16")
        return self.array


def test_model_value_range_is_minus_one_to_one() -> None:
    assert MODEL_VALUE_RANGE == (-1.0, 1.0)


def test_uint8_thwc_passes_through_unchanged() -> None:
    video = np.arange(2 * 3 * 4 * 3, dtype=np.uint8).reshape(2, 3, 4, 3)
    frames = to_uint8_frames(video)
    np.testing.assert_array_equal(frames, video)
    assert frames.dtype == np.uint8
    assert frames.flags.c_contiguous


def test_float_model_range_maps_to_full_uint8_range() -> None:
    video = np.array([-1.0, -0.5, 0.0, 0.5, 1.0], dtype=np.float32).reshape(1, 1, 5, 1)
    frames = to_uint8_frames(video)
    assert frames[0, 0, :, 0].tolist() == [0, 64, 128, 191, 255]


def test_float_zero_one_range_when_asked() -> None:
    video = np.array([0.0, 0.25, 1.0], dtype=np.float64).reshape(1, 1, 3, 1)
    frames = to_uint8_frames(video, value_range=(0.0, 1.0))
    assert frames[0, 0, :, 0].tolist() == [0, 64, 255]


def test_float_values_outside_range_are_clipped() -> None:
    video = np.array([-3.0, 1.2, 7.0], dtype=np.float16).reshape(1, 1, 3, 1)
    assert to_uint8_frames(video)[0, 0, :, 0].tolist() == [0, 255, 255]


VIDEO_SHAPES = st.tuples(
    st.integers(1, 3), st.integers(1, 5), st.integers(1, 5), st.sampled_from([1, 3, 4])
)


@given(
    pixels=hnp.arrays(np.uint8, VIDEO_SHAPES),
    value_range=st.sampled_from([(-1.0, 1.0), (0.0, 1.0), (-0.5, 2.0)]),
)
def test_uint8_to_float_range_and_back_is_lossless(
    pixels: np.ndarray, value_range: tuple[float, float]
) -> None:
    low, high = value_range
    as_float = pixels.astype(np.float32) / 255 * (high - low) + low
    np.testing.assert_array_equal(to_uint8_frames(as_float, value_range=value_range), pixels)


@pytest.mark.parametrize(
    ("layout", "shape"),
    [("THWC", (2, 3, 5, 4)), ("TCHW", (2, 4, 3, 5)), ("CTHW", (4, 2, 3, 5))],
)
def test_layouts_become_thwc(layout: str, shape: tuple[int, ...]) -> None:
    thwc = np.random.default_rng(0).integers(0, 256, (2, 3, 5, 4), dtype=np.uint8)
    order = {"THWC": (0, 1, 2, 3), "TCHW": (0, 3, 1, 2), "CTHW": (3, 0, 1, 2)}[layout]
    video = thwc.transpose(order)
    assert video.shape == shape
    np.testing.assert_array_equal(to_uint8_frames(video, layout=layout), thwc)


def test_tensor_like_is_detached_moved_to_cpu_and_converted() -> None:
    tensor = FakeTensor(np.zeros((1, 2, 2, 3), dtype=np.float32))
    frames = to_uint8_frames(tensor)
    assert tensor.calls == ["detach", "cpu", "numpy"]
    assert frames.shape == (1, 2, 2, 3)
    assert (frames == 128).all()


def test_tensor_dtype_numpy_lacks_is_converted_to_float() -> None:
    tensor = FakeTensor(np.ones((1, 2, 2, 1), dtype=np.float32), numpy_supports_dtype=False)
    frames = to_uint8_frames(tensor)
    assert "float" in tensor.calls
    assert (frames == 255).all()


def test_detach_without_cpu_is_still_accepted() -> None:
    class DetachOnly:
        def detach(self) -> DetachOnly:
            return self

        def numpy(self) -> np.ndarray:
            return np.full((1, 1, 1, 3), 7, dtype=np.uint8)

    assert as_numpy(DetachOnly()).tolist() == [[[[7, 7, 7]]]]


def test_real_torch_tensor_channels_first() -> None:
    torch = pytest.importorskip("torch")
    tensor = torch.linspace(-1, 1, 2 * 3 * 4 * 5, requires_grad=True).reshape(2, 3, 4, 5)
    frames = to_uint8_frames(tensor, layout="TCHW")
    assert frames.shape == (2, 4, 5, 3)
    assert frames.min() == 0
    assert frames.max() == 255
    half = to_uint8_frames(tensor.to(torch.bfloat16), layout="TCHW")
    assert np.abs(half.astype(int) - frames.astype(int)).max() <= 2


@pytest.mark.parametrize("shape", [(4, 4, 3), (1, 2, 4, 4, 3), ()])
def test_wrong_ndim_is_rejected(shape: tuple[int, ...]) -> None:
    with pytest.raises(
        VideoIOError, match=re.escape(f"expected a 4-D video in layout THWC, got shape {shape}")
    ):
        to_uint8_frames(np.zeros(shape, dtype=np.uint8))


def test_wrong_channel_count_hints_at_layout() -> None:
    with pytest.raises(VideoIOError, match=r"1, 3 or 4 channels.*\(2, 3, 8, 8\).*layout='TCHW'"):
        to_uint8_frames(np.zeros((2, 3, 8, 8), dtype=np.uint8))


def test_wrong_channel_count_in_channels_first_layout() -> None:
    with pytest.raises(VideoIOError, match=r"1, 3 or 4 channels in layout TCHW") as info:
        to_uint8_frames(np.zeros((2, 5, 8, 8), dtype=np.uint8), layout="TCHW")
    assert "pass layout" not in str(info.value)


def test_unknown_layout() -> None:
    with pytest.raises(VideoIOError, match=r"unknown layout 'HWC'"):
        to_uint8_frames(np.zeros((1, 2, 2, 3), dtype=np.uint8), layout="HWC")  # type: ignore[arg-type]


@pytest.mark.parametrize("shape", [(0, 4, 4, 3), (2, 0, 4, 3), (2, 4, 0, 3)])
def test_empty_video_is_rejected(shape: tuple[int, ...]) -> None:
    with pytest.raises(VideoIOError, match=r"the video is empty"):
        to_uint8_frames(np.zeros(shape, dtype=np.uint8))


@pytest.mark.parametrize("dtype", [np.int16, np.int64, np.uint16, np.bool_, np.complex64])
def test_other_dtypes_are_rejected(dtype: type) -> None:
    with pytest.raises(VideoIOError, match=r"unsupported dtype .*; expected uint8 or a float"):
        to_uint8_frames(np.zeros((1, 2, 2, 3), dtype=dtype))


def test_nan_is_rejected_and_names_the_target() -> None:
    video = np.zeros((1, 2, 2, 3), dtype=np.float32)
    video[0, 1, 1, 2] = np.nan
    with pytest.raises(VideoIOError, match=r"cannot write out\.mp4: the video contains NaN"):
        to_uint8_frames(video, target="out.mp4")


def test_infinity_is_rejected() -> None:
    video = np.full((1, 2, 2, 3), np.inf, dtype=np.float32)
    with pytest.raises(VideoIOError, match=r"invalid video: the video contains infinite values"):
        to_uint8_frames(video)


@pytest.mark.parametrize("value_range", [(1.0, -1.0), (0.0, 0.0), (0.0, float("inf"))])
def test_bad_value_range_is_rejected(value_range: tuple[float, float]) -> None:
    with pytest.raises(VideoIOError, match=r"value_range must be two finite numbers"):
        to_uint8_frames(np.zeros((1, 2, 2, 3), dtype=np.float32), value_range=value_range)


def test_to_rgb_repeats_grey_and_drops_alpha() -> None:
    grey = np.arange(4, dtype=np.uint8).reshape(1, 2, 2, 1)
    rgb = to_rgb(grey)
    assert rgb.shape == (1, 2, 2, 3)
    assert (rgb == grey).all()
    rgba = np.arange(16, dtype=np.uint8).reshape(1, 2, 2, 4)
    np.testing.assert_array_equal(to_rgb(rgba), rgba[..., :3])
    three = np.zeros((1, 2, 2, 3), dtype=np.uint8)
    assert to_rgb(three) is three


def test_pad_to_even_repeats_last_row_and_column() -> None:
    frames = np.arange(3 * 5, dtype=np.uint8).reshape(1, 3, 5, 1)
    padded = pad_to_even(frames)
    assert padded.shape == (1, 4, 6, 1)
    np.testing.assert_array_equal(padded[0, :3, :5], frames[0])
    np.testing.assert_array_equal(padded[0, 3, :5], frames[0, 2])
    np.testing.assert_array_equal(padded[0, :3, 5], frames[0, :, 4])
    even = np.zeros((1, 2, 4, 3), dtype=np.uint8)
    assert pad_to_even(even) is even
