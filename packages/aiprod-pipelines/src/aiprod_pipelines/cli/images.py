"""The ``--image PATH[@FRAME]`` options: each file read up front, each frame checked.

Both checks run before the model is loaded: a file that cannot be read, or a frame the
video does not have (or one that falls in the same latent frame as another image's), ends
in one line naming the ``--image`` value as given.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiprod_pipelines.cli.arguments import ImageOption, UsageError
from aiprod_pipelines.pipelines import ImageCondition
from aiprod_pipelines.pipelines.images import image_frame_problem
from aiprod_pipelines.video_io import VideoIOError, read_image


def read_images(options: Sequence[ImageOption]) -> list[ImageCondition]:
    """Each ``--image`` read as uint8 ``(H, W, 3)`` pixels pinned to its frame.

    Raises:
        UsageError: a file is missing, unreadable, or not a PNG or JPEG.
    """
    conditions = []
    for option in options:
        try:
            pixels = read_image(option.path)
        except VideoIOError as exc:
            raise UsageError(f"--image {option.text}: {exc}") from None
        conditions.append(ImageCondition(pixels, option.frame))
    return conditions


def check_image_frames(options: Sequence[ImageOption], frames: int, temporal: int) -> None:
    """Refuse an ``--image`` frame outside a ``frames``-frame video, or in the same latent
    frame as an earlier image's (a VAE of ``temporal`` compression).

    Raises:
        UsageError: naming the ``--image`` value.
    """
    problem = image_frame_problem([option.frame for option in options], frames, temporal)
    if problem is not None:
        raise UsageError(f"--image {options[problem.index].text}: {problem.message}")
