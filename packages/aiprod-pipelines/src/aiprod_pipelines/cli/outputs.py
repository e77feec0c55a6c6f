"""Where ``aiprod-generate`` writes: choosing, checking and writing the output.

The output is checked before any model is loaded, so a bad path costs nothing: its format
(from ``--format`` or the suffix), whether something is already there (kept unless
``--overwrite``), and whether the frame rate suits the format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from aiprod_core.errors import AiprodError
from aiprod_pipelines.video_io import VideoIOError, write_video
from aiprod_pipelines.video_io.formats import FRAME_NAME_PATTERN, resolve_write_format
from aiprod_pipelines.video_io.writers import frame_rate, gif_delay_ms

#: File suffix of each output format; PNG frames go to a folder without one.
SUFFIXES = {"mp4": ".mp4", "gif": ".gif", "png": ""}
#: Longest prompt-derived stem of a default output name.
MAX_STEM = 48


class OutputError(AiprodError):
    """The output path cannot be used; the message names it and what was expected."""


@dataclass(frozen=True)
class OutputTarget:
    """A checked output: the path to write and its format (``mp4``, ``gif`` or ``png``)."""

    path: Path
    format: str


def default_output(folder: Path, prompt: str, seed: int, format: str) -> Path:
    """``<folder>/<prompt-slug>-seed<seed><suffix>``, e.g. ``outputs/a-red-circle-seed0.mp4``."""
    words = re.findall(r"[a-z0-9]+", prompt.lower())
    stem = "-".join(words)[:MAX_STEM].strip("-") or "video"
    return folder / f"{stem}-seed{seed}{SUFFIXES[format]}"


def choose_output(
    output: Path | None, format: str | None, *, outputs_folder: Path, prompt: str, seed: int
) -> OutputTarget:
    """The output path and format from ``-o`` and ``--format``.

    Raises:
        OutputError: an unsupported suffix, or a suffix that contradicts ``--format``.
    """
    if output is None:
        chosen = format or "mp4"
        return OutputTarget(default_output(outputs_folder, prompt, seed, chosen), chosen)
    known_suffix = output.suffix.lower().removeprefix(".")
    if format is not None and known_suffix in SUFFIXES and known_suffix != format:
        raise OutputError(
            f"-o {output}: the suffix {output.suffix!r} says {known_suffix} but --format is "
            f"{format}; change one of them"
        )
    try:
        chosen = resolve_write_format(output, format)
    except VideoIOError as exc:
        raise OutputError(f"-o {output}: {exc}") from None
    return OutputTarget(output, chosen)


def check_output(target: OutputTarget, *, fps: int, overwrite: bool) -> None:
    """Refuse an output that exists (unless ``overwrite``), has the wrong kind, or fps it cannot store.

    Raises:
        OutputError: naming the path and what to do instead.
    """
    path = target.path
    if target.format == "gif":
        try:
            gif_delay_ms(frame_rate(fps, path), path)
        except VideoIOError as exc:
            raise OutputError(f"--fps {fps}: {exc}") from None
    if not (path.exists() or path.is_symlink()):
        return
    if not overwrite:
        raise OutputError(
            f"{path} already exists; pass --overwrite to replace it or choose another -o"
        )
    if target.format == "png":
        if not path.is_dir():
            raise OutputError(f"{path} is a file; PNG frames need a folder path")
        others = sorted(e.name for e in path.iterdir() if not FRAME_NAME_PATTERN.fullmatch(e.name))
        if others:
            raise OutputError(
                f"{path} holds files other than PNG frames ({', '.join(others[:3])}); "
                "--overwrite only replaces a folder of frame_NNNNN.png files"
            )
    elif path.is_dir():
        raise OutputError(f"{path} is a folder; expected a {target.format} file path")


def write_output(target: OutputTarget, frames: Any, *, fps: int, overwrite: bool) -> Path:
    """Write ``frames`` (uint8 ``(T, H, W, 3)``) atomically, checking the target once more.

    Raises:
        OutputError: the target appeared while generating and ``overwrite`` is off.
        VideoIOError: the write failed (the target is left as it was).
    """
    check_output(target, fps=fps, overwrite=overwrite)
    return write_video(target.path, frames, fps=Fraction(fps), format=target.format)
