"""Where ``aiprod-generate`` writes: choosing, checking and writing the output.

The output is checked before any model is loaded, so a bad path costs nothing: its format
(from ``--format`` or the suffix), whether something is already there (kept unless
``--overwrite``), and whether its folder can be created and written (tried with a hidden
probe that is removed at once); once the model's config is read, whether the frame rate
suits the format.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from aiprod_core.errors import AiprodError
from aiprod_pipelines.video_io import VideoIOError, write_video
from aiprod_pipelines.video_io.formats import (
    FRAME_NAME_PATTERN,
    WRITE_FORMATS,
    resolve_write_format,
)
from aiprod_pipelines.video_io.writers import frame_rate, gif_delay_ms

#: File suffix of each output format; PNG frames go to a folder without one.
SUFFIXES = {"mp4": ".mp4", "gif": ".gif", "png": ""}
#: Longest prompt-derived stem of a default output name.
MAX_STEM = 48
#: Name prefix of the probe that checks an output folder is writable (removed at once).
PROBE_PREFIX = ".aiprod-write-check-"
OUTPUT_FLAG = "-o/--output"


class OutputError(AiprodError):
    """The output path cannot be used; the message names it and what was expected."""


@dataclass(frozen=True)
class OutputTarget:
    """A checked output: the path to write, its format (``mp4``, ``gif`` or ``png``), and
    whether it is the default output (no ``-o``) rather than the one given with ``-o``."""

    path: Path
    format: str
    default: bool = False

    @property
    def label(self) -> str:
        """How error messages name the output: the flag that chose it, or the default."""
        if self.default:
            where = f"in paths.outputs; choose one with {OUTPUT_FLAG}"
            return f"the default output {self.path} ({where})"
        return f"{OUTPUT_FLAG} {self.path}"


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
        path = default_output(outputs_folder, prompt, seed, chosen)
        return OutputTarget(path, chosen, default=True)
    known_suffix = output.suffix.lower().removeprefix(".")
    if format is not None and known_suffix in SUFFIXES and known_suffix != format:
        raise OutputError(
            f"{OUTPUT_FLAG} {output}: the suffix {output.suffix!r} says {known_suffix} but "
            f"--format is {format}; change one of them"
        )
    try:
        chosen = resolve_write_format(output, format)
    except VideoIOError:
        raise OutputError(
            f"{OUTPUT_FLAG} {output}: unsupported suffix {output.suffix!r}; expected .mp4, "
            ".gif, or a path without a suffix for a folder of PNG frames, or choose the "
            f"format with --format ({', '.join(WRITE_FORMATS)})"
        ) from None
    return OutputTarget(output, chosen)


def check_output(target: OutputTarget, *, fps: int | None, overwrite: bool) -> None:
    """Refuse an output that exists (unless ``overwrite``), has the wrong kind, fps it
    cannot store, or a folder that cannot be created or written.

    ``fps`` None skips the frame-rate check (it is made with :func:`check_frame_rate`
    once the model's default frame rate is known).

    Raises:
        OutputError: naming the path and what to do instead.
    """
    path = target.path
    if fps is not None:
        check_frame_rate(target, fps)
    if path.exists() or path.is_symlink():
        _check_existing(target, overwrite=overwrite)
    check_folder(target)


def check_frame_rate(target: OutputTarget, fps: int) -> None:
    """Refuse a frame rate the output's format cannot store (a GIF's frame delay).

    Raises:
        OutputError: naming ``--fps`` (given, or the model's default) and what fits.
    """
    if target.format == "gif":
        try:
            gif_delay_ms(frame_rate(fps, target.path), target.path)
        except VideoIOError as exc:
            raise OutputError(f"--fps {fps}: {exc}") from None


def check_folder(target: OutputTarget) -> None:
    """Refuse an output whose folder cannot be created, or written once it exists.

    Raises:
        OutputError: naming the output flag, the folder and what went wrong.
    """
    problem = folder_problem(target.path.parent)
    if problem is not None:
        raise OutputError(f"{target.label}: {problem}")


def folder_problem(wanted: Path) -> str | None:
    """Why files cannot be written in ``wanted`` (created if need be); None when they can.

    The nearest existing ancestor of ``wanted`` must be a folder in which a file (``wanted``
    exists) or a folder (it is to be created) can be made: a hidden probe is created there
    and removed at once, which also catches read-only and virtual file systems (``/proc``)
    that permission bits do not show.
    """
    folder = wanted
    while not os.path.lexists(folder) and folder.parent != folder:
        folder = folder.parent
    if not folder.is_dir():
        return f"{folder} exists and is not a folder; choose an output path inside a folder"
    creating = folder != wanted
    try:
        if creating:
            Path(tempfile.mkdtemp(prefix=PROBE_PREFIX, dir=folder)).rmdir()
        else:
            handle, probe = tempfile.mkstemp(prefix=PROBE_PREFIX, dir=folder)
            os.close(handle)
            with contextlib.suppress(OSError):
                Path(probe).unlink()
    except OSError as exc:
        action = "create a folder" if creating else "write"
        return f"cannot {action} in {folder} ({exc.strerror or exc}); choose a writable folder"
    return None


def _check_existing(target: OutputTarget, *, overwrite: bool) -> None:
    """Refuse replacing ``target`` unless ``overwrite`` and it is the right kind of thing."""
    path = target.path
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
        OutputError: the target appeared while generating and ``overwrite`` is off, or
            its folder can no longer be written.
        VideoIOError: the write failed (the target is left as it was).
    """
    check_output(target, fps=fps, overwrite=overwrite)
    return write_video(target.path, frames, fps=Fraction(fps), format=target.format)
