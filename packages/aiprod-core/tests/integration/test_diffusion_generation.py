"""The diffusion pieces composed with the tiny preset's transformer and text encoder:
guided, first-frame-conditioned sampling (sigma 0 on the first frame's tokens) as a
pipeline runs it."""

from __future__ import annotations

import pytest
import torch

from aiprod_core.diffusion import (
    ClassifierFreeGuidance,
    Conditioning,
    EulerSampler,
    FlowMatchSchedule,
    FrameCondition,
    HeunSampler,
    Sampler,
)
from aiprod_core.models.presets import TINY
from aiprod_core.text import build_text_encoder
from aiprod_core.transformer import VideoTransformer

pytestmark = pytest.mark.integration


def generate(sampler: Sampler, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    transformer = VideoTransformer(TINY.transformer).eval()
    with torch.no_grad():  # untrained: give the zero-initialised parts weights
        torch.nn.init.normal_(transformer.final_proj.weight, std=0.02)
        torch.nn.init.normal_(transformer.time_modulation.weight, std=0.02)
    encoder = build_text_encoder(TINY.text_encoder).eval()
    with torch.no_grad():
        text = encoder.encode(["a red ball rolls left"])
        negative = encoder.encode([""])
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn(1, TINY.vae.latent_channels, 3, 4, 4, generator=generator)
        first = torch.randn(1, TINY.vae.latent_channels, 1, 4, 4, generator=generator)
        velocity = ClassifierFreeGuidance(TINY.diffusion.default_guidance).velocity_fn(
            transformer, text.tokens, text.mask, negative.tokens, negative.mask
        )
        num_tokens = 3 * 2 * 2  # T * (h / 2) * (w / 2) latent patches
        sigmas = FlowMatchSchedule(TINY.diffusion).sigmas(4, num_tokens)
        condition = Conditioning([FrameCondition(first)], TINY.transformer.patch_size)
        return condition.sample(sampler, velocity, noise, sigmas), noise, first


@pytest.mark.parametrize("sampler", [EulerSampler(), HeunSampler()], ids=["euler", "heun"])
def test_guided_image_to_video_sampling(sampler: Sampler) -> None:
    latents, noise, first = generate(sampler, seed=1)
    assert latents.shape == noise.shape
    assert torch.isfinite(latents).all()
    assert torch.equal(latents[:, :, :1], first)
    assert (latents[:, :, 1:] - noise[:, :, 1:]).abs().mean() > 0.1
    again, _, _ = generate(sampler, seed=1)
    assert torch.equal(again, latents)
    other, _, _ = generate(sampler, seed=2)
    assert not torch.equal(other, latents)
