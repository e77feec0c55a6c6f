"""The stages every pipeline is made of, written once.

    prompts = encode_prompts(model.text_encoder, prompt, negative_prompt, device)
    noise   = draw_noise(shape, seeded_generator(seed), device)      # CPU draw, then moved
    latents = denoise(placed(model.transformer, fps), sampler, noise, sigmas, prompts,
                      ClassifierFreeGuidance(scale), condition=..., callback=...)
    frames  = video_to_uint8(decode_latents(model.vae, latents))      # [F, H, W, 3] uint8

``denoise`` composes the core diffusion protocols: a ``Guider`` turns the transformer into a
velocity function, an optional ``Conditioning`` keeps conditioned latent frames clean (their
tokens at sigma 0), and a ``Sampler`` integrates along the ``Scheduler``'s sigmas. Latents
are the VAE's normalised ones throughout; ``decode_latents`` denormalises them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from aiprod_core.diffusion import (
    Conditioning,
    Denoiser,
    EulerSampler,
    Guider,
    HeunSampler,
    Sampler,
    StepCallback,
)
from aiprod_core.text import TextEmbedding, TextEncoder
from aiprod_core.transformer import VideoTransformer
from aiprod_core.vae import CausalVideoVAE
from aiprod_pipelines.pipelines.request import InvalidRequestError

SAMPLERS: dict[str, type[EulerSampler] | type[HeunSampler]] = {
    "euler": EulerSampler,
    "heun": HeunSampler,
}
"""Samplers a pipeline can be given by name (the default is ``euler``)."""

TILED_DECODE_MIN_PIXELS = 1 << 22
"""Videos with more than this many pixels (frames x height x width; about 4.2 million, e.g.
65 frames of 256 x 256) are decoded tile by tile with ``CausalVideoVAE.decode_tiled``.

The decoder's activations grow with the number of pixels times its widest channel count,
so above this size one piece would need several GiB even for the small preset; below it,
decoding in one piece is faster. Tiles are sized from the memory budget (by default a share
of the device's free memory; see ``CausalVideoVAE.plan_tiles``) and, in the default exact
mode, overlap by the decoder's exact receptive field, so both paths give the same video up
to float rounding."""


@dataclass(frozen=True)
class PromptEmbeddings:
    """The encoded prompt and negative prompt (batch 1 each) for classifier-free guidance."""

    positive: TextEmbedding
    negative: TextEmbedding


def resolve_sampler(sampler: Sampler | str | None) -> Sampler:
    """``sampler`` itself, the sampler :data:`SAMPLERS` names, or Euler for None."""
    if sampler is None:
        return EulerSampler()
    if isinstance(sampler, str):
        try:
            return SAMPLERS[sampler.lower()]()
        except KeyError:
            known = ", ".join(SAMPLERS)
            raise InvalidRequestError(
                "sampler", f"sampler={sampler!r} is not known: use one of {known}"
            ) from None
    return sampler


def encode_prompts(
    text_encoder: TextEncoder,
    prompt: str,
    negative_prompt: str,
    device: torch.device | str | None = None,
) -> PromptEmbeddings:
    """Both prompts through ``text_encoder`` (any ``TextEncoder``), results on ``device``."""
    return PromptEmbeddings(
        positive=text_encoder.encode([prompt], device=device),
        negative=text_encoder.encode([negative_prompt], device=device),
    )


def seeded_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``: the draws are the same on every machine."""
    return torch.Generator(device="cpu").manual_seed(seed)


def draw_noise(
    shape: Sequence[int], generator: torch.Generator, device: torch.device | str
) -> torch.Tensor:
    """float32 standard normal noise of ``shape`` drawn on the CPU, then moved to ``device``."""
    return torch.randn(tuple(shape), generator=generator, dtype=torch.float32).to(device)


def num_tokens(transformer: VideoTransformer, latent_size: Sequence[int]) -> int:
    """How many tokens the transformer makes of latents of ``(T, h, w)`` frames/rows/columns."""
    frames, height, width = (int(size) for size in latent_size)
    return math.prod(transformer.patchifier.grid((frames, height, width)))


def placed(transformer: VideoTransformer, fps: float, pixel_scale: float = 1.0) -> Denoiser:
    """``transformer`` as a ``Denoiser`` whose tokens sit at ``fps`` and ``pixel_scale``
    (2 for latents a x2 upsampler will double; see aiprod_core.transformer.rope)."""
    return partial(transformer, fps=fps, pixel_scale=pixel_scale)


def denoise(
    denoiser: Denoiser,
    sampler: Sampler,
    latents: torch.Tensor,
    sigmas: torch.Tensor,
    prompts: PromptEmbeddings,
    guider: Guider,
    *,
    condition: Conditioning | None = None,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """Integrate ``latents`` (at ``sigmas[0]``) down to ``sigmas[-1]``.

    The guided velocity is ``guider.velocity_fn(denoiser, ...)``; with a ``condition`` its
    latent frames stay clean throughout. ``callback`` runs after every sampler step.
    """
    velocity = guider.velocity_fn(
        denoiser,
        prompts.positive.tokens,
        prompts.positive.mask,
        prompts.negative.tokens,
        prompts.negative.mask,
    )
    if condition is None:
        return sampler.sample(velocity, latents, sigmas, callback=callback)
    return condition.sample(sampler, velocity, latents, sigmas, callback=callback)


def module_dtype(module: nn.Module) -> torch.dtype:
    """The dtype of ``module``'s first parameter (what its inputs are cast to)."""
    return next(module.parameters()).dtype


def decode_latents(
    vae: CausalVideoVAE,
    latents: torch.Tensor,
    *,
    tiled_above: int = TILED_DECODE_MIN_PIXELS,
    memory_budget: int | None = None,
    tile_mode: str = "auto",
) -> torch.Tensor:
    """Pixels ``[B, 3, F, H, W]`` in about [-1, 1] of normalised ``latents``
    ``[B, C, T, h, w]`` (denormalised with the VAE's latent statistics first).

    Decodes tile by tile when the video has more than ``tiled_above`` pixels (see
    :data:`TILED_DECODE_MIN_PIXELS`) or a ``memory_budget`` (bytes) is given: the tiles are
    the ones ``CausalVideoVAE.plan_tiles`` fits into the budget (default: from the device)
    in ``tile_mode``: ``"exact"``, ``"blended"`` (approximate overlaps, as LTX-2 does) or
    ``"auto"`` (exact when it fits the budget, else blended: the only way a clip of the
    19B model's sizes fits a GPU; see ``CausalVideoVAE.auto_tile_mode``).
    """
    frames, height, width = vae.video_shape(*latents.shape[2:])
    latents = vae.denormalize(latents.float()).to(module_dtype(vae))
    if memory_budget is not None or frames * height * width > tiled_above:
        return vae.decode_tiled(latents, memory_budget=memory_budget, mode=tile_mode)
    return vae.decode(latents)


def video_to_uint8(video: torch.Tensor) -> torch.Tensor:
    """The first video of ``[B, 3, F, H, W]`` in [-1, 1] as uint8 ``[F, H, W, 3]`` on the CPU.

    Values outside [-1, 1] are clipped; -1 maps to 0 and 1 to 255.
    """
    pixels = (video[0].float().clamp(-1.0, 1.0) + 1.0) * 127.5
    return pixels.round().to(torch.uint8).permute(1, 2, 3, 0).contiguous().cpu()
