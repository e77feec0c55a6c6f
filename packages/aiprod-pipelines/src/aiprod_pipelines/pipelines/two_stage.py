"""Two-stage generation: generate at half size, upsample the latents x2, refine.

    stage 1   text to video at width/2 x height/2 with ``steps`` steps, its tokens placed
              at the pixels of the full-size video (RoPE ``pixel_scale`` 2)
    upsample  LatentUpsampler: [1, C, T, h, w] -> [1, C, T, 2h, 2w] (normalised latents)
    renoise   add fresh seeded noise up to sigma = refine_strength
    stage 2   ``refine_steps`` steps from refine_strength to 0 along the tail of the schedule
    decode    at full size

Stage 1 costs about a quarter of a full-size step per step (a quarter of the tokens); the
refinement restores detail the upsampler cannot invent. An upsampler that was never
trained (``upsampler.trained`` is False) is nearest-neighbour upsampling plus noise; the
pipeline logs a warning naming how to train one.
"""

from __future__ import annotations

import logging
import math

import torch

from aiprod_core.diffusion import FlowMatchSchedule, add_noise
from aiprod_pipelines.pipelines.base import GenerationPipeline
from aiprod_pipelines.pipelines.progress import ProgressCallback
from aiprod_pipelines.pipelines.request import (
    GeneratedVideo,
    GenerationRequest,
    InvalidRequestError,
)
from aiprod_pipelines.pipelines.stages import module_dtype, num_tokens, seeded_generator

logger = logging.getLogger(__name__)

UPSCALE = 2
"""The latent upsampler doubles height and width."""

DEFAULT_REFINE_STRENGTH = 0.5
"""Sigma the upsampled latents are renoised to before refining (0: none, 1: all noise)."""


def tail_sigmas(schedule: FlowMatchSchedule, steps: int, tokens: int, start: float) -> torch.Tensor:
    """``steps + 1`` sigmas from ``start`` down to 0, spaced like the schedule's own grid.

    The schedule maps a uniform grid ``u`` through ``shift(u, mu)``; the tail takes the
    uniform grid from ``shift^-1(start)`` (= ``shift(start, -mu)``, a logit translation) to
    0, so refining spends its steps where a full run would have spent them.
    """
    mu = schedule.mu(tokens)
    begin = FlowMatchSchedule.shift(torch.tensor(start, dtype=torch.float64), -mu)
    uniform = torch.linspace(float(begin), 0.0, steps + 1, dtype=torch.float64)
    sigmas = FlowMatchSchedule.shift(uniform, mu)
    sigmas[0] = start
    return sigmas.to(torch.float32)


class TwoStagePipeline(GenerationPipeline):
    """Generate at half resolution, upsample the latents x2 and refine at full resolution.

    Width and height must fit the model at half size too (multiples of twice the usual
    multiple). Progress counts the steps of both stages.
    """

    def __call__(
        self,
        request: GenerationRequest,
        *,
        refine_steps: int = 4,
        refine_strength: float = DEFAULT_REFINE_STRENGTH,
        progress_callback: ProgressCallback | None = None,
    ) -> GeneratedVideo:
        """The video ``request`` describes, made in two stages (see the module docs).

        Raises InvalidRequestError naming the field for values the model cannot take,
        including ``refine_steps`` < 1 and ``refine_strength`` outside (0, 1].
        """
        if refine_steps < 1:
            raise InvalidRequestError(
                "refine_steps", f"refine_steps={refine_steps} is too small: use 1 or more"
            )
        if not (math.isfinite(refine_strength) and 0.0 < refine_strength <= 1.0):
            raise InvalidRequestError(
                "refine_strength",
                f"refine_strength={refine_strength} is out of range: use a sigma in (0, 1], "
                f"e.g. {DEFAULT_REFINE_STRENGTH}",
            )
        with torch.inference_mode():
            request = self.prepare(request, upscale=UPSCALE)
            steps = request.steps_for(self.model_config)
            generator = seeded_generator(request.seed)
            prompts = self.encode(request)
            small = self.latent_shape(
                request.frames, request.height // UPSCALE, request.width // UPSCALE
            )
            latents = self.noise(small, generator)
            with self.open_progress(steps + refine_steps, progress_callback) as progress:
                latents = self.denoise(
                    latents,
                    self.sigmas(steps, small),
                    prompts,
                    request,
                    progress,
                    pixel_scale=UPSCALE,
                )
                latents = self.upsample(latents)
                latents = add_noise(latents, self.noise(latents.shape, generator), refine_strength)
                tokens = num_tokens(self.model.transformer, latents.shape[2:])
                sigmas = tail_sigmas(self.schedule, refine_steps, tokens, refine_strength)
                latents = self.denoise(latents, sigmas, prompts, request, progress)
            return self.finish(latents, request)

    def upsample(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents at twice the height and width, through the model's LatentUpsampler."""
        upsampler = self.model.upsampler
        if not upsampler.trained:
            logger.warning(
                "the model's latent upsampler has never been trained, so two-stage generation "
                "upsamples nearly nearest-neighbour; train one with aiprod-train (mode "
                "upsampler) or generate in one stage"
            )
        upsampled: torch.Tensor = upsampler(latents.to(module_dtype(upsampler)))
        return upsampled.float()
