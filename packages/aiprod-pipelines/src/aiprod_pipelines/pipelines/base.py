"""What every pipeline shares: model placement, request checks, the seeded generator,
prompt encoding, sampling through the one denoising stage, and decoding.

A pipeline's ``__call__`` reads as its recipe; see ``TextToVideoPipeline`` for the
shortest one.
"""

from __future__ import annotations

import torch

from aiprod_core.diffusion import (
    ClassifierFreeGuidance,
    Conditioning,
    FlowMatchSchedule,
    Sampler,
)
from aiprod_core.models import AiprodModel, ModelConfig
from aiprod_pipelines.pipelines.loading import place_model
from aiprod_pipelines.pipelines.progress import ProgressCallback, StepProgress
from aiprod_pipelines.pipelines.request import GeneratedVideo, GenerationRequest, ResolvedRequest
from aiprod_pipelines.pipelines.stages import (
    TILED_DECODE_MIN_PIXELS,
    PromptEmbeddings,
    decode_latents,
    denoise,
    draw_noise,
    encode_prompts,
    num_tokens,
    placed,
    resolve_sampler,
    video_to_uint8,
)


class GenerationPipeline:
    """Base of the generation pipelines.

    ``model`` is put in eval mode and, when ``device``/``dtype`` are given, moved and cast
    in place (default: where it is). ``sampler`` is a core ``Sampler`` or a name from
    :data:`~aiprod_pipelines.pipelines.stages.SAMPLERS` (default Euler). ``progress``
    shows a tqdm bar per call. Videos over ``tiled_decode_above`` pixels are decoded in
    tiles.
    """

    def __init__(
        self,
        model: AiprodModel,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        sampler: Sampler | str | None = None,
        progress: bool = True,
    ) -> None:
        self.model = place_model(model, device, dtype)
        self.model.eval()
        self.device = next(self.model.parameters()).device
        self.sampler = resolve_sampler(sampler)
        self.schedule = FlowMatchSchedule(model.config.diffusion)
        self.progress = progress
        self.tiled_decode_above = TILED_DECODE_MIN_PIXELS

    @property
    def model_config(self) -> ModelConfig:
        return self.model.config

    def prepare(self, request: GenerationRequest, *, upscale: int = 1) -> ResolvedRequest:
        """``request`` checked against the model, with the model's defaults filled in."""
        request.validate(self.model_config, upscale=upscale)
        return request.resolved(self.model_config)

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int, int]:
        """``[1, C, T, h, w]`` of the latents of a ``frames x height x width`` video."""
        channels = self.model_config.vae.latent_channels
        return (1, channels, *self.model.vae.latent_shape(frames, height, width))

    def sigmas(self, steps: int, latent_shape: tuple[int, ...]) -> torch.Tensor:
        """The schedule's ``steps + 1`` sigmas for latents of ``latent_shape``."""
        tokens = num_tokens(self.model.transformer, latent_shape[2:])
        return self.schedule.sigmas(steps, tokens)

    def encode(self, request: GenerationRequest) -> PromptEmbeddings:
        return encode_prompts(
            self.model.text_encoder, request.prompt, request.negative_prompt, self.device
        )

    def noise(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        return draw_noise(shape, generator, self.device)

    def open_progress(self, total: int, callback: ProgressCallback | None) -> StepProgress:
        return StepProgress(
            total, enabled=self.progress, callback=callback, description=type(self).__name__
        )

    def denoise(
        self,
        latents: torch.Tensor,
        sigmas: torch.Tensor,
        prompts: PromptEmbeddings,
        request: ResolvedRequest,
        progress: StepProgress,
        condition: Conditioning | None = None,
        *,
        pixel_scale: float = 1.0,
    ) -> torch.Tensor:
        """The shared denoising stage with this pipeline's transformer, sampler and guidance;
        tokens sit at the request's frame rate and ``pixel_scale``."""
        return denoise(
            placed(self.model.transformer, request.fps, pixel_scale),
            self.sampler,
            latents,
            sigmas,
            prompts,
            ClassifierFreeGuidance(request.guidance_for(self.model_config)),
            condition=condition,
            callback=progress.step_callback(),
        )

    def finish(self, latents: torch.Tensor, request: ResolvedRequest) -> GeneratedVideo:
        """Decode ``latents`` into the returned video."""
        video = decode_latents(self.model.vae, latents, tiled_above=self.tiled_decode_above)
        return GeneratedVideo(
            frames=video_to_uint8(video),
            fps=request.fps,
            latents=latents.float().cpu(),
            request=request,
            seed=request.seed,
        )
