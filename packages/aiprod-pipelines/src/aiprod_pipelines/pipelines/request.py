"""What a generation asks for (``GenerationRequest``), what it returns (``GeneratedVideo``),
and the checks that tell a user which values a model accepts.

A model accepts a video of ``F`` frames of ``H x W`` pixels when

- ``F = 1 + k * temporal_compression`` (the VAE encodes the first frame on its own), and the
  ``1 + k`` latent frames are a multiple of the transformer's patch length;
- ``H`` and ``W`` are multiples of ``spatial_compression * patch`` (for the tiny preset
  ``4 * 2 = 8``): the VAE divides them by its compression, the transformer by its patch.

Every failed check raises :class:`InvalidRequestError` naming the field and the nearest
valid values, e.g. ``frames=10 does not fit the model (temporal compression 2): use 1 + 2k
frames, e.g. 9 or 11``.

This module is the one request contract: the CLI, the pipelines and the HTTP server's
request schema (``aiprod_pipelines.server.schemas``) all take :data:`MAX_SEED`,
:data:`MAX_GUIDANCE_SCALE`, :data:`MAX_FPS` and :class:`InvalidRequestError` from here.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from aiprod_core.errors import AiprodError
from aiprod_core.models.configs import ModelConfig
from aiprod_core.models.geometry import ModelGeometry

MAX_SEED = 2**53 - 1
"""The largest seed: 2**53 - 1 (9007199254740991, JavaScript's ``Number.MAX_SAFE_INTEGER``).

``torch.Generator.manual_seed`` takes any integer up to 2**64 - 1, but a seed travels
through JSON: JavaScript clients, and every JSON parser that reads numbers as IEEE doubles,
round integers above 2**53 (2**53 + 1 reads back as 2**53). A seed above that would come
back from a job's view as a different number, and "same seed, same video" would silently
break. Every integer from 0 to 2**53 - 1 survives a double exactly, so this is the largest
seed every client can send and read back; it still leaves 9e15 seeds.
"""
MAX_GUIDANCE_SCALE = 100.0
"""The largest classifier-free guidance scale; the models are tuned around 1..10, and far
above it the sampler only saturates the video."""
MAX_FPS = 240
"""The largest frame rate written to a video file (the rate of high-speed phone cameras)."""


class InvalidRequestError(AiprodError, ValueError):
    """A request value the model cannot take; ``field`` names it, the message says what fits."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def size_multiple(model_config: ModelConfig) -> tuple[int, int]:
    """(height, width) pixel multiples: ``spatial_compression * patch`` along each axis."""
    return ModelGeometry.of(model_config).pixel_multiples


def _nearest_multiples(value: int, step: int) -> str:
    below = value // step * step
    return str(step) if below < step else f"{below} or {below + step}"


@dataclass(frozen=True)
class GenerationRequest:
    """One video to generate. Values left None take the model's defaults: ``width``,
    ``height``, ``frames`` and ``fps`` from ``model_config.generation`` (what the model was
    trained on), ``steps`` and ``guidance_scale`` from ``model_config.diffusion``; see
    :meth:`resolved`."""

    prompt: str
    negative_prompt: str = ""
    width: int | None = None
    height: int | None = None
    frames: int | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    seed: int = 0
    fps: int | None = None

    def validate(self, model_config: ModelConfig, *, upscale: int = 1) -> None:
        """Raise InvalidRequestError for the first value ``model_config`` cannot take.

        Values left None are checked as the model's defaults fill them in. ``upscale`` is for
        pipelines that generate at ``1 / upscale`` of the size first (two-stage generation
        passes 2): width and height must then fit at that size too.
        """
        self.resolved(model_config).check(model_config, upscale=upscale)

    def steps_for(self, model_config: ModelConfig) -> int:
        """``steps``, or the model's ``diffusion.default_steps`` when it is None."""
        return model_config.diffusion.default_steps if self.steps is None else self.steps

    def guidance_for(self, model_config: ModelConfig) -> float:
        """``guidance_scale``, or the model's ``diffusion.default_guidance`` when it is None."""
        if self.guidance_scale is None:
            return model_config.diffusion.default_guidance
        return self.guidance_scale

    def resolved(self, model_config: ModelConfig) -> ResolvedRequest:
        """This request with every value left None filled in from the model's defaults."""
        defaults = model_config.generation
        return ResolvedRequest(
            **{
                **dataclasses.asdict(self),
                "width": defaults.width if self.width is None else self.width,
                "height": defaults.height if self.height is None else self.height,
                "frames": defaults.frames if self.frames is None else self.frames,
                "fps": defaults.fps if self.fps is None else self.fps,
                "steps": self.steps_for(model_config),
                "guidance_scale": self.guidance_for(model_config),
            }
        )


@dataclass(frozen=True)
class ResolvedRequest(GenerationRequest):
    """A :class:`GenerationRequest` whose every value is set (``GenerationRequest.resolved``)."""

    width: int = 0
    height: int = 0
    frames: int = 0
    steps: int = 0
    guidance_scale: float = 0.0
    fps: int = 0

    def check(self, model_config: ModelConfig, *, upscale: int = 1) -> None:
        """Raise InvalidRequestError for the first value ``model_config`` cannot take."""
        if not self.prompt.strip():
            raise InvalidRequestError("prompt", "prompt is empty: describe the video to generate")
        multiples = size_multiple(model_config)
        for name, value, multiple in (
            ("width", self.width, multiples[1]),
            ("height", self.height, multiples[0]),
        ):
            _check_size(name, value, multiple, model_config, upscale)
        if not ModelGeometry.of(model_config).fits_frames(self.frames):
            raise InvalidRequestError("frames", _frames_message(self.frames, model_config))
        if self.steps is not None and self.steps < 1:
            raise InvalidRequestError("steps", f"steps={self.steps} is too small: use 1 or more")
        if self.guidance_scale is not None and not (
            math.isfinite(self.guidance_scale) and 1.0 <= self.guidance_scale <= MAX_GUIDANCE_SCALE
        ):
            raise InvalidRequestError(
                "guidance_scale",
                f"guidance_scale={self.guidance_scale} is out of range: use a number from 1 to "
                f"{MAX_GUIDANCE_SCALE:g} (1 turns classifier-free guidance off)",
            )
        if not 0 <= self.seed <= MAX_SEED:
            raise InvalidRequestError(
                "seed",
                f"seed={self.seed} is out of range: use an integer from 0 to 2**53 - 1 "
                f"({MAX_SEED}), the largest that JSON clients read back exactly",
            )
        if self.fps < 1:
            raise InvalidRequestError("fps", f"fps={self.fps} is too small: use 1 or more")
        if self.fps > MAX_FPS:
            raise InvalidRequestError(
                "fps", f"fps={self.fps} is too large: use at most {MAX_FPS} frames per second"
            )


def _check_size(
    name: str, value: int, multiple: int, model_config: ModelConfig, upscale: int
) -> None:
    spatial = model_config.vae.spatial_compression
    patch = multiple // spatial
    if value < multiple or value % multiple:
        raise InvalidRequestError(
            name,
            f"{name}={value} does not fit the model (spatial compression {spatial} x patch "
            f"{patch}): use a multiple of {multiple}, e.g. {_nearest_multiples(value, multiple)}",
        )
    needed = multiple * upscale
    if value % needed:
        raise InvalidRequestError(
            name,
            f"{name}={value} does not fit two-stage generation: its first stage runs at "
            f"{name}/{upscale}, so use a multiple of {needed} (spatial compression {spatial} x "
            f"patch {patch} x {upscale}), e.g. {_nearest_multiples(value, needed)}",
        )


def _frames_message(frames: int, model_config: ModelConfig) -> str:
    temporal = model_config.vae.temporal_compression
    patch_t = model_config.transformer.patch_size[0]
    rule = f"use 1 + {temporal}k frames"
    if patch_t > 1:
        rule += f" with 1 + k a multiple of the transformer's patch length {patch_t}"
    return (
        f"frames={frames} does not fit the model (temporal compression {temporal}): "
        f"{rule}, e.g. {ModelGeometry.of(model_config).nearest_frames(frames)}"
    )


@dataclass(frozen=True)
class GeneratedVideo:
    """A generated video: ``frames`` uint8 ``[F, H, W, 3]`` on the CPU, ready to write.

    ``latents`` are the final latents ``[1, C, T, h, w]`` (float32, CPU) the frames were
    decoded from; ``request`` is the request with its defaults filled in.
    """

    frames: torch.Tensor
    fps: int
    latents: torch.Tensor
    request: ResolvedRequest
    seed: int

    @property
    def num_frames(self) -> int:
        return self.frames.shape[0]

    @property
    def height(self) -> int:
        return self.frames.shape[1]

    @property
    def width(self) -> int:
        return self.frames.shape[2]
