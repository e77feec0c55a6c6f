"""Images in a request body: strict base64, bounded bytes and pixels, frames in the video."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from aiprod_core.config import ServingConfig
from aiprod_core.errors import AiprodError
from aiprod_core.models.configs import GenerationDefaults
from aiprod_pipelines.pipelines.request import InvalidRequestError
from aiprod_pipelines.server.images import (
    MAX_IMAGE_BYTES,
    MAX_IMAGE_DATA_CHARS,
    MAX_IMAGE_PIXELS,
    ImageDataError,
    check_image_data,
    decode_image_data,
)
from aiprod_pipelines.server.schemas import field_problems, request_model, resolved_problems
from aiprod_pipelines.server.testing import SyntheticVideoGenerator

SERVING = ServingConfig(default_model="m", max_frames=17)
DEFAULTS = GenerationDefaults(width=32, height=32, frames=9, fps=8)


def encoded(image: Image.Image, format: str = "PNG") -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return base64.b64encode(buffer.getvalue()).decode()


def png_header_only(width: int, height: int) -> str:
    """A PNG whose header declares ``width x height`` but whose pixel data is a few bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    return base64.b64encode(b"\x89PNG\r\n\x1a\n" + body).decode()


RED = encoded(Image.new("RGB", (40, 30), (220, 20, 20)))


def test_a_png_is_checked_from_its_header_and_decoded_later() -> None:
    header = check_image_data(RED)
    assert (header.format, header.width, header.height) == ("PNG", 40, 30)
    assert header.size == len(base64.b64decode(RED))
    pixels = decode_image_data(RED)
    assert pixels.shape == (30, 40, 3)
    assert pixels.dtype == np.uint8
    assert np.all(pixels == [220, 20, 20])


def test_a_jpeg_and_images_with_alpha_or_a_palette_become_rgb() -> None:
    jpeg = encoded(Image.new("RGB", (16, 8), (20, 20, 220)), "JPEG")
    assert check_image_data(jpeg).format == "JPEG"
    assert np.abs(decode_image_data(jpeg).astype(int) - [20, 20, 220]).max() < 8
    rgba = encoded(Image.new("RGBA", (4, 4), (0, 200, 0, 10)))
    assert np.all(decode_image_data(rgba) == [0, 200, 0])
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 250, 250, 0])
    palette.info["transparency"] = 0
    assert np.all(decode_image_data(encoded(palette)) == [250, 250, 0])


def truncated_png() -> str:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    raw = base64.b64decode(encoded(Image.fromarray(noise)))
    return base64.b64encode(raw[: len(raw) // 2]).decode()


@pytest.mark.fault("server")
@pytest.mark.parametrize(
    ("data", "words"),
    [
        ("not base64!", "not valid base64"),
        ("QUJD\nREVG", "not valid base64"),  # line breaks are not strict base64
        ("QUJ", "not valid base64"),  # missing padding
        ("data:image/png;base64," + RED, "not valid base64"),
        ("", "the image is empty"),
        (base64.b64encode(b"hello, not an image").decode(), "not a PNG or JPEG image"),
        (encoded(Image.new("RGB", (4, 4)), "GIF"), "not a PNG or JPEG image"),
        (encoded(Image.new("RGB", (4, 4)), "BMP"), "not a PNG or JPEG image"),
        (png_header_only(5000, 4000), f"more than {MAX_IMAGE_PIXELS} pixels (5000x4000)"),
        (png_header_only(4097, 4096), "(4097x4096)"),
        (png_header_only(100_000, 100_000), f"more than {MAX_IMAGE_PIXELS} pixels"),
        (truncated_png(), "the PNG image is truncated or corrupt"),
        ("A" * (MAX_IMAGE_DATA_CHARS + 4), f"larger than {MAX_IMAGE_BYTES} bytes"),
    ],
    ids=[
        "not-base64",
        "line-breaks",
        "no-padding",
        "data-url",
        "empty",
        "text",
        "gif",
        "bmp",
        "20-megapixels",
        "one-column-too-many",
        "decompression-bomb",
        "truncated-png",
        "too-many-bytes",
    ],
)
def test_unusable_image_data_is_refused_with_one_clear_line(data: str, words: str) -> None:
    with pytest.raises(ImageDataError) as refused:
        check_image_data(data)
    message = str(refused.value)
    assert words in message
    assert isinstance(refused.value, AiprodError)
    assert "\n" not in message
    assert len(message) < 300
    with pytest.raises(ImageDataError):  # the worker refuses it as well
        decode_image_data(data)


def truncated_jpeg() -> str:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    raw = base64.b64decode(encoded(Image.fromarray(noise), "JPEG"))
    return base64.b64encode(raw[: len(raw) // 2]).decode()


@pytest.mark.fault("server")
def test_a_truncated_jpeg_passes_the_header_check_and_fails_to_decode() -> None:
    data = truncated_jpeg()
    assert check_image_data(data).format == "JPEG"  # JPEG has no checksums to verify
    with pytest.raises(ImageDataError, match=r"^the JPEG image cannot be decoded: .*truncated"):
        decode_image_data(data)


def test_the_largest_image_fits_exactly() -> None:
    assert check_image_data(png_header_only(4096, 4096)).width == 4096  # header only: no pixels
    assert len(base64.b64encode(b"\0" * MAX_IMAGE_BYTES)) == MAX_IMAGE_DATA_CHARS


def body_problems(body: dict[str, object]) -> dict[str, str]:
    with pytest.raises(ValidationError) as invalid:
        request_model(SERVING).model_validate({"prompt": "p", **body})
    return {p.field: p.message for p in field_problems([dict(e) for e in invalid.value.errors()])}


@pytest.mark.fault("server")
def test_the_body_names_the_image_at_fault() -> None:
    found = body_problems({"images": [{"data": RED}, {"data": "%%%", "frame": 2}]})
    assert set(found) == {"images.1.data"}
    assert found["images.1.data"].startswith("not valid base64")

    assert set(body_problems({"images": [{"data": RED, "frame": -1}]})) == {"images.0.frame"}
    assert set(body_problems({"images": [{"data": RED, "colour": 1}]})) == {"images.0.colour"}
    assert set(body_problems({"images": [{"frame": 0}]})) == {"images.0.data"}
    many = body_problems({"images": [{"data": RED, "frame": n} for n in range(9)]})
    assert set(many) == {"images"}
    assert "at most 8" in many["images"]


def validated(body: dict[str, object], **synthetic: Any) -> None:
    request = request_model(SERVING).model_validate({"prompt": "p", **body})
    generator = SyntheticVideoGenerator(size_multiple=1, **synthetic)
    generator.validate(request.resolved(generator.defaults()))


def test_image_frames_within_the_video_pass() -> None:
    images = [{"data": RED}, {"data": RED, "frame": 8}]
    validated({"images": images})
    validated({"images": images, "frames": 17})
    validated({"images": [{"data": RED, "frame": n} for n in range(8)]}, frame_multiple=1)
    request = request_model(SERVING).model_validate({"prompt": "p", "images": images})
    assert resolved_problems(request.resolved(DEFAULTS), SERVING) == []


@pytest.mark.fault("server")
@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (
            {"images": [{"data": RED, "frame": 9}]},
            "images.0.frame",
            "image frame 9 is outside the video: use a frame from 0 to 8 (frames=9)",
        ),
        (
            {"frames": 5, "images": [{"data": RED}, {"data": RED, "frame": 8}]},
            "images.1.frame",
            "image frame 8 is outside the video: use a frame from 0 to 4 (frames=5)",
        ),
        (
            {"images": [{"data": RED, "frame": 4}, {"data": RED}, {"data": RED, "frame": 4}]},
            "images.2.frame",
            (
                "image frames 4 and 4 fall in the same latent frame (frames 1..4 are encoded "
                "together): use one image per group of frames"
            ),
        ),
        (
            {"images": [{"data": RED, "frame": 1}, {"data": RED, "frame": 3}]},
            "images.1.frame",
            "image frames 1 and 3 fall in the same latent frame",
        ),
    ],
    ids=["past-the-default-frames", "past-the-given-frames", "duplicate", "same-latent-frame"],
)
def test_image_frames_the_video_does_not_have_are_named(
    body: dict[str, object], field: str, message: str
) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        validated(body)
    assert refused.value.field == field
    assert str(refused.value).startswith(message)
