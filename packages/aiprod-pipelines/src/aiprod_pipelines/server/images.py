"""Conditioning images in a request body: strict base64, bounded bytes and pixels.

``POST /v1/videos`` carries each image as the base64 (standard alphabet, ``=`` padded, no
line breaks, no ``data:`` prefix) of a PNG or JPEG file. While the body is validated,
:func:`check_image_data` decodes the base64 and reads only the image's header: at most
:data:`MAX_IMAGE_BYTES` decoded bytes, a PNG or JPEG, at most :data:`MAX_IMAGE_PIXELS`
pixels. So a decompression bomb (a small file that declares a huge image) is refused
before a single pixel is decoded. A PNG's chunk checksums are verified too, so a
truncated or corrupted PNG is refused at once. The pixels are decoded later, on the
worker thread that runs the job (:func:`decode_image_data`).
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from aiprod_core.errors import AiprodError

#: Largest decoded image file. Images are scaled down to the video's size anyway; 4 MiB
#: holds a full-HD PNG photo or a 4K JPEG.
MAX_IMAGE_BYTES = 4 * 1024 * 1024
#: Largest image, in pixels (16 megapixels, 4096 x 4096): about 48 MiB once decoded as RGB.
MAX_IMAGE_PIXELS = 4096 * 4096
#: Longest ``data`` string: the base64 of :data:`MAX_IMAGE_BYTES` bytes.
MAX_IMAGE_DATA_CHARS = 4 * math.ceil(MAX_IMAGE_BYTES / 3)
#: The formats accepted (Pillow's names); no other decoder ever sees a request's bytes.
IMAGE_FORMATS = ("PNG", "JPEG")

#: What Pillow raises on a broken file, besides OSError (struct.error: a short header).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error)


class ImageDataError(AiprodError, ValueError):
    """An image in a request cannot be used; the message says what was expected."""


@dataclass(frozen=True)
class ImageHeader:
    """What an image's header says: Pillow's format name, size, and the file's byte count."""

    format: str
    width: int
    height: int
    size: int


def image_bytes(data: str) -> bytes:
    """The file ``data`` encodes, checked to be strict base64 of at most MAX_IMAGE_BYTES.

    Raises:
        ImageDataError: too long, not strict base64, or empty.
    """
    if len(data) > MAX_IMAGE_DATA_CHARS:
        raise ImageDataError(
            f"the image is larger than {MAX_IMAGE_BYTES} bytes ({len(data)} base64 characters, "
            f"at most {MAX_IMAGE_DATA_CHARS}): send a smaller PNG or JPEG"
        )
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ImageDataError(
            "not valid base64: expected the standard alphabet (A-Z, a-z, 0-9, +, /) with = "
            "padding, without line breaks or a data: prefix"
        ) from None
    if not raw:
        raise ImageDataError("the image is empty: expected the base64 of a PNG or JPEG file")
    return raw


@contextmanager
def _opened(raw: bytes) -> Iterator[Image.Image]:
    """``raw`` opened by Pillow (header read, no pixels), checked for format and size."""
    with warnings.catch_warnings():
        # The pixel limit below is far lower than Pillow's own warning threshold.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(raw), formats=IMAGE_FORMATS)
        except Image.DecompressionBombError:
            raise ImageDataError(_too_many_pixels("far more than that")) from None
        except (UnidentifiedImageError, *_DECODE_ERRORS):
            raise ImageDataError(
                f"not a PNG or JPEG image ({len(raw)} bytes that neither decoder recognises)"
            ) from None
    with image:
        width, height = image.size
        if width * height > MAX_IMAGE_PIXELS:
            raise ImageDataError(_too_many_pixels(f"{width}x{height}"))
        if width < 1 or height < 1:
            raise ImageDataError(f"the image is {width}x{height}: it has no pixels")
        yield image


def _too_many_pixels(found: str) -> str:
    return (
        f"the image has more than {MAX_IMAGE_PIXELS} pixels ({found}); send at most 16 "
        "megapixels (e.g. 4096x4096): it is scaled to the video's size anyway"
    )


def check_image_data(data: str) -> ImageHeader:
    """Check ``data`` without decoding its pixels (see the module docs); its header.

    Raises:
        ImageDataError: bad base64, too many bytes or pixels, not a PNG or JPEG, or a
            PNG whose chunks are truncated or corrupt.
    """
    raw = image_bytes(data)
    with _opened(raw) as image:
        header = ImageHeader(str(image.format), image.width, image.height, len(raw))
        try:
            image.verify()  # PNG: every chunk's CRC, without decompressing
        except _DECODE_ERRORS as exc:
            raise ImageDataError(
                f"the {header.format} image is truncated or corrupt: {exc}"
            ) from None
    return header


def decode_image_data(data: str) -> np.ndarray:
    """The pixels of ``data`` as uint8 RGB ``(H, W, 3)`` (alpha dropped, palettes expanded).

    Raises:
        ImageDataError: everything :func:`check_image_data` refuses, and pixel data that
            does not decode.
    """
    raw = image_bytes(data)
    with _opened(raw) as image:
        try:
            image.load()
            if image.mode == "P" and "transparency" in image.info:
                rgb = image.convert("RGBA").convert("RGB")
            else:
                rgb = image.convert("RGB")
        except _DECODE_ERRORS as exc:
            raise ImageDataError(f"the {image.format} image cannot be decoded: {exc}") from None
        return np.asarray(rgb, dtype=np.uint8).copy()
