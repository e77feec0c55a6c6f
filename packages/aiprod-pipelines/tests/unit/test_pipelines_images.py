"""The image-to-video conditioning image: accepted inputs, resize + center crop, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aiprod_pipelines.pipelines import InvalidRequestError, prepare_image
from aiprod_pipelines.pipelines.images import image_to_tensor, resize_and_crop


def columns_image(height: int, width: int) -> np.ndarray:
    """uint8 [H, W, 3]: red rises with the column index, green with the row, blue fixed."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[..., 0] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
    image[..., 1] = np.linspace(0, 255, height, dtype=np.uint8)[:, None]
    image[..., 2] = 77
    return image


def test_uint8_hwc_array_and_tensor_map_to_minus_one_one() -> None:
    pixels = np.array([[[0, 255, 51]]], dtype=np.uint8)
    for image in (pixels, torch.from_numpy(pixels)):
        tensor = image_to_tensor(image)
        assert tensor.shape == (3, 1, 1)
        assert tensor.dtype == torch.float32
        torch.testing.assert_close(tensor[:, 0, 0], torch.tensor([-1.0, 1.0, -0.6]))


def test_read_only_arrays_are_copied() -> None:
    pixels = columns_image(4, 4)
    pixels.setflags(write=False)
    assert image_to_tensor(pixels).shape == (3, 4, 4)


def test_float_chw_is_taken_in_model_range() -> None:
    image = torch.linspace(-1.0, 1.0, 12, dtype=torch.float64).reshape(3, 2, 2)
    tensor = image_to_tensor(image)
    assert tensor.dtype == torch.float32
    torch.testing.assert_close(tensor, image.float())
    nudged = image_to_tensor(np.full((3, 2, 2), 1.0005, dtype=np.float32))  # rounding slack
    assert float(nudged.max()) == 1.0


def test_png_path_is_read(tmp_path: Path) -> None:
    pixels = columns_image(6, 10)
    path = tmp_path / "first.png"
    Image.fromarray(pixels).save(path)
    for source in (path, str(path)):
        torch.testing.assert_close(image_to_tensor(source), image_to_tensor(pixels))


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((4, 4), dtype=np.uint8), r"uint8 image of shape \(4, 4\) is not supported"),
        (np.zeros((3, 4, 4), dtype=np.uint8), r"expected \[height, width, 3\] RGB pixels"),
        (torch.zeros(4, 4, 3), r"float image of shape \(4, 4, 3\) is not supported"),
        (
            torch.full((3, 2, 2), 255.0),
            r"float image values span \[255, 255\]: expected pixels in \[-1, 1\]",
        ),
        (torch.full((3, 2, 2), float("nan")), "float image values span"),
        (torch.zeros(3, 2, 2, dtype=torch.int64), "image of dtype torch.int64 is not supported"),
        ([[0, 1]], "image of type list is not supported"),
    ],
)
def test_unusable_images_are_refused_naming_the_field(image: object, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message) as info:
        image_to_tensor(image)  # type: ignore[arg-type]
    assert info.value.field == "image"


def test_unreadable_files_are_refused_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.png"
    with pytest.raises(InvalidRequestError, match=r"missing\.png") as info:
        image_to_tensor(missing)
    assert info.value.field == "image"
    with pytest.raises(InvalidRequestError, match=r"unsupported image suffix '\.bmp'"):
        image_to_tensor(tmp_path / "picture.bmp")


def test_resize_covers_then_center_crops() -> None:
    # A 4 x 12 image into 8 x 8: scaled by 2 to 8 x 24, then the middle 8 columns kept.
    image = image_to_tensor(columns_image(4, 12))
    out = resize_and_crop(image, width=8, height=8)
    assert out.shape == (3, 8, 8)
    scaled = torch.nn.functional.interpolate(
        image[None], size=(8, 24), mode="bilinear", align_corners=False, antialias=True
    )[0]
    torch.testing.assert_close(out, scaled[:, :, 8:16])


def test_same_size_is_left_alone_and_crop_is_centered() -> None:
    image = image_to_tensor(columns_image(8, 8))
    assert torch.equal(resize_and_crop(image, 8, 8), image)
    tall = torch.arange(3 * 10 * 4, dtype=torch.float32).reshape(3, 10, 4) / 120 - 1
    cropped = resize_and_crop(tall, width=4, height=6)  # no scaling needed, crop rows 2..7
    assert torch.equal(cropped, tall[:, 2:8])


def test_empty_image_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match="has no pixels"):
        resize_and_crop(torch.zeros(3, 0, 4), 8, 8)


def test_prepare_image_is_a_one_frame_video() -> None:
    video = prepare_image(columns_image(16, 32), width=16, height=8)
    assert video.shape == (1, 3, 1, 8, 16)
    assert float(video.min()) >= -1.0
    assert float(video.max()) <= 1.0
    # Red rises left to right, green top to bottom, after the resize too.
    assert bool((video[0, 0, 0, :, 1:] >= video[0, 0, 0, :, :-1]).all())
    assert bool((video[0, 1, 0, 1:, :] >= video[0, 1, 0, :-1, :]).all())
