"""Contact sheets: a grid of frames with a caption under each, as one Pillow image.

    sheet = contact_sheet([frame_a, frame_b], ["a red circle ...", "a blue square ..."])
    sheet.save("sheet.png")

Each frame is scaled to ``tile_width`` (nearest-neighbour when enlarging, so small
training frames stay crisp), captions are wrapped to the tile's width in Pillow's default
font and cut to ``caption_lines`` lines. :class:`SheetLayout` says where everything goes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

from aiprod_core.atomic import atomic_write_bytes

BACKGROUND = (255, 255, 255)
TEXT_COLOR = (20, 20, 20)
ELLIPSIS = "..."

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@dataclass(frozen=True)
class SheetLayout:
    """Where the tiles and captions of a contact sheet go."""

    count: int
    columns: int
    tile_width: int
    tile_height: int
    caption_height: int
    padding: int

    @property
    def rows(self) -> int:
        return math.ceil(self.count / self.columns)

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of the sheet in pixels."""
        width = self.columns * self.tile_width + (self.columns + 1) * self.padding
        cell = self.tile_height + self.caption_height
        return width, self.rows * cell + (self.rows + 1) * self.padding

    def tile_origin(self, index: int) -> tuple[int, int]:
        """Top-left corner ``(x, y)`` of tile ``index``; its caption starts just below."""
        row, column = divmod(index, self.columns)
        x = self.padding + column * (self.tile_width + self.padding)
        y = self.padding + row * (self.tile_height + self.caption_height + self.padding)
        return x, y


def line_height(font: Font) -> int:
    """Pixels per caption line in ``font``, spacing included."""
    _, top, _, bottom = font.getbbox("Ayg")
    return int(bottom - top) + 4


def wrap_caption(text: str, font: Font, width: int, max_lines: int) -> list[str]:
    """Break ``text`` into at most ``max_lines`` lines no wider than ``width`` pixels.

    Words are kept whole where they fit; a word wider than a line is cut. Text that does
    not fit ends the last line with ``"..."``.
    """
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if font.getlength(candidate) <= width:
            current = candidate
            continue
        if current:
            lines.append(current)
        current = word if font.getlength(word) <= width else _cut(word, font, width, ELLIPSIS)
    if current:
        lines.append(current)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = _cut(lines[-1], font, width, ELLIPSIS)
    return lines


def _cut(text: str, font: Font, width: int, suffix: str) -> str:
    """The longest prefix of ``text`` that fits in ``width`` with ``suffix`` appended."""
    for end in range(len(text), -1, -1):
        shortened = text[:end].rstrip() + suffix
        if font.getlength(shortened) <= width:
            return shortened
    return ""


def contact_sheet(
    frames: Sequence[npt.NDArray[np.uint8]],
    captions: Sequence[str],
    *,
    columns: int = 4,
    tile_width: int = 160,
    caption_lines: int = 3,
    padding: int = 8,
) -> Image.Image:
    """A grid of ``frames`` (uint8 RGB ``(H, W, 3)``) with ``captions`` under them.

    Tiles all get the width ``tile_width`` and the height of the tallest scaled frame.

    Raises:
        ValueError: no frames, a caption count that differs, a frame that is not RGB, or
            a non-positive layout setting.
    """
    if not frames:
        raise ValueError("frames: expected at least one frame for a contact sheet")
    if len(captions) != len(frames):
        raise ValueError(f"captions: expected one per frame ({len(frames)}), got {len(captions)}")
    for name, value, least in (
        ("columns", columns, 1),
        ("tile_width", tile_width, 1),
        ("caption_lines", caption_lines, 1),
        ("padding", padding, 0),
    ):
        if value < least:
            raise ValueError(f"{name}: expected an integer >= {least}, got {value}")
    for index, frame in enumerate(frames):
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(
                f"frames[{index}]: expected an RGB frame (H, W, 3), got shape {frame.shape}"
            )
    font = ImageFont.load_default()
    tiles = [_scaled(frame, tile_width) for frame in frames]
    layout = SheetLayout(
        count=len(tiles),
        columns=min(columns, len(tiles)),
        tile_width=tile_width,
        tile_height=max(tile.height for tile in tiles),
        caption_height=caption_lines * line_height(font),
        padding=padding,
    )
    sheet = Image.new("RGB", layout.size, BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for index, (tile, caption) in enumerate(zip(tiles, captions, strict=True)):
        x, y = layout.tile_origin(index)
        sheet.paste(tile, (x, y))
        text_y = y + layout.tile_height + 2
        for line in wrap_caption(caption, font, tile_width, caption_lines):
            draw.text((x, text_y), line, fill=TEXT_COLOR, font=font)
            text_y += line_height(font)
    return sheet


def _scaled(frame: npt.NDArray[np.uint8], width: int) -> Image.Image:
    image = Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8))
    height = max(1, round(image.height * width / image.width))
    resample = Image.Resampling.NEAREST if width >= image.width else Image.Resampling.BICUBIC
    return image.resize((width, height), resample)


def write_contact_sheet(
    path: Path,
    frames: Sequence[npt.NDArray[np.uint8]],
    captions: Sequence[str],
    **layout: int,
) -> Image.Image:
    """Build a :func:`contact_sheet` and save it as PNG at ``path``, atomically.

    ``layout`` takes :func:`contact_sheet`'s keyword arguments. Returns the image.
    """
    sheet = contact_sheet(frames, captions, **layout)
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())
    return sheet
