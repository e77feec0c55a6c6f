"""What every pipeline shares: model placement, request checks, the seeded generator,
prompt encoding, sampling through the one denoising stage, and decoding.

A pipeline's ``__call__`` reads as its recipe; see ``TextToVideoPipeline`` for the
shortest one.
"""

from __future__ import annotations

import threading

import torch

from aiprod_core.diffusion import (
    ClassifierFreeGuidance,
    Conditioning,
    FlowMatchSchedule,
    Sampler,
)
from aiprod_core.models import AiprodModel, ModelConfig
from aiprod_core.precision import enable_tf32
from aiprod_pipelines.pipelines.loading import move_text_encoder, place_model
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

#: Where an offloaded text encoder waits between prompts.
OFFLOAD_DEVICE = torch.device("cpu")

# Held while an offloaded text encoder is on the device: pipelines sharing one model (the
# server runs one per worker thread) take turns, so none moves it away mid-encoding.
_TEXT_ENCODER_MOVES = threading.Lock()


class GenerationPipeline:
    """Base of the generation pipelines.

    ``model`` is put in eval mode and, when ``device``/``dtype`` are given, moved and cast
    in place (default: where it is). ``sampler`` is a core ``Sampler`` or a name from
    :data:`~aiprod_pipelines.pipelines.stages.SAMPLERS` (default Euler). ``progress``
    shows a tqdm bar per call. Videos over ``tiled_decode_above`` pixels, or any video when
    ``decode_memory_budget`` (bytes) is set, are decoded in tiles that fit the budget, in
    ``decode_tile_mode`` (``"auto"``: exact when exact tiles fit, else blended). On a CUDA device, float32
    matmuls and convolutions use TF32 (:func:`aiprod_core.precision.enable_tf32`).

    ``offload_text_encoder`` keeps the text encoder on the CPU (:data:`OFFLOAD_DEVICE`)
    and moves it to the device only while it encodes the prompts, so its device memory
    is free for denoising and decoding; the video is the same either way.
    """

    def __init__(
        self,
        model: AiprodModel,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        sampler: Sampler | str | None = None,
        progress: bool = True,
        offload_text_encoder: bool = False,
    ) -> None:
        self.model = place_model(model, device, dtype)
        self.model.eval()
        self.device = next(self.model.transformer.parameters()).device
        self.offload_text_encoder = offload_text_encoder
        if offload_text_encoder:
            move_text_encoder(self.model, OFFLOAD_DEVICE)
        enable_tf32(self.device)
        self.sampler = resolve_sampler(sampler)
        self.schedule = FlowMatchSchedule(model.config.diffusion)
        self.progress = progress
        self.tiled_decode_above = TILED_DECODE_MIN_PIXELS
        self.decode_memory_budget: int | None = None
        self.decode_tile_mode = "auto"

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
        """The request's prompts encoded, on the pipeline's device (an offloaded text
        encoder is moved there for this and back to the CPU after)."""
        if not self.offload_text_encoder:
            return self._encode(request)
        with _TEXT_ENCODER_MOVES:
            move_text_encoder(self.model, self.device)
            try:
                return self._encode(request)
            finally:
                move_text_encoder(self.model, OFFLOAD_DEVICE)

    def _encode(self, request: GenerationRequest) -> PromptEmbeddings:
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
        video = decode_latents(
            self.model.vae,
            latents,
            tiled_above=self.tiled_decode_above,
            memory_budget=self.decode_memory_budget,
            tile_mode=self.decode_tile_mode,
        )
        return GeneratedVideo(
            frames=video_to_uint8(video),
            fps=request.fps,
            latents=latents.float().cpu(),
            request=request,
            seed=request.seed,
        )
