"""Which conditioning image breaks the frame rule, so a request can name it.

The rule is the pipeline's (:func:`aiprod_pipelines.pipelines.images.check_image_frames`):
each image's frame lies in the video (0 .. frames - 1), and no two images fall in the same
latent frame (the VAE encodes ``temporal`` frames together after the first). It judges
the list as a whole; :func:`image_frame_problem` finds the first image that breaks it, so
``aiprod-generate`` names that ``--image`` value before the model is loaded, and the
server that ``images.N.frame`` field before the job is queued.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ImageFrameProblem:
    """The image at position ``index`` cannot take its frame; ``message`` says why."""

    index: int
    message: str


def image_frame_problem(
    frames: Sequence[int], video_frames: int, temporal: int
) -> ImageFrameProblem | None:
    """The first image whose frame (``frames[i]``) breaks the pipeline's rule for a
    ``video_frames``-frame video of a VAE with ``temporal`` compression; None if none does."""
    import numpy as np

    from aiprod_pipelines.pipelines.images import ImageCondition, check_image_frames
    from aiprod_pipelines.pipelines.request import InvalidRequestError

    unread = np.zeros((1, 1, 3), dtype=np.uint8)  # the rule reads the frames only
    conditions = [ImageCondition(unread, frame) for frame in frames]
    for end in range(1, len(conditions) + 1):
        try:
            check_image_frames(conditions[:end], video_frames, temporal)
        except InvalidRequestError as exc:
            return ImageFrameProblem(end - 1, str(exc))
    return None
