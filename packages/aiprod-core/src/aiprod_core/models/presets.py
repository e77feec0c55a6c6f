"""Named model presets: ``tiny`` for tests and the demo, ``small`` for GPU checks and
benchmarks, ``aiprod-19b`` for production (built on the meta device only in tests)."""

from __future__ import annotations

from aiprod_core.errors import ConfigError
from aiprod_core.models.configs import (
    DiffusionConfig,
    ModelConfig,
    TextEncoderConfig,
    TransformerConfig,
    UpsamplerConfig,
    VAEConfig,
)

TINY = ModelConfig(
    preset="tiny",
    transformer=TransformerConfig(
        in_channels=8, patch_size=(1, 2, 2), hidden_dim=96, depth=2, num_heads=4, text_dim=64
    ),
    vae=VAEConfig(
        latent_channels=8,
        base_channels=16,
        channel_multipliers=(1, 2),
        spatial_compression=4,
        temporal_compression=2,
    ),
    upsampler=UpsamplerConfig(latent_channels=8, hidden_channels=32, num_blocks=1),
    # 64 bytes hold every synthetic caption ("a magenta triangle moving right on a yellow
    # background" is 54), so the model reads the background colour at the end of it.
    text_encoder=TextEncoderConfig(dim=64, max_length=64, depth=1, num_heads=4),
    # A tiny clip is ~80 tokens, where the default logit-normal draw almost never trains at
    # the near-pure noise where only the prompt says which colours to paint: shift it up and
    # widen it (a demo run's backgrounds went from 5 of 16 prompts right to 16 of 16).
    diffusion=DiffusionConfig(
        base_tokens=64,
        max_tokens=1024,
        default_steps=20,
        logit_normal_mean=0.5,
        logit_normal_std=1.4,
    ),
)

SMALL = ModelConfig(
    preset="small",
    transformer=TransformerConfig(
        in_channels=32, patch_size=(1, 2, 2), hidden_dim=768, depth=16, num_heads=8, text_dim=512
    ),
    vae=VAEConfig(
        latent_channels=32,
        base_channels=64,
        channel_multipliers=(1, 2, 4),
        spatial_compression=8,
        temporal_compression=4,
    ),
    upsampler=UpsamplerConfig(latent_channels=32, hidden_channels=256, num_blocks=2),
    text_encoder=TextEncoderConfig(dim=512, max_length=128, depth=4, num_heads=8),
)

AIPROD_19B = ModelConfig(
    preset="aiprod-19b",
    transformer=TransformerConfig(
        in_channels=128,
        patch_size=(1, 1, 1),
        hidden_dim=4608,
        depth=40,
        num_heads=32,
        text_dim=4096,
    ),  # fmt: skip
    vae=VAEConfig(
        latent_channels=128,
        base_channels=128,
        channel_multipliers=(1, 2, 4, 4, 4),
        num_res_blocks=2,
        spatial_compression=32,
        temporal_compression=8,
    ),
    upsampler=UpsamplerConfig(latent_channels=128, hidden_channels=1024, num_blocks=4),
    text_encoder=TextEncoderConfig(dim=4096, max_length=256, depth=8, num_heads=32),
    diffusion=DiffusionConfig(base_tokens=1024, max_tokens=32768, default_steps=40),
)

PRESETS: dict[str, ModelConfig] = {c.preset: c for c in (TINY, SMALL, AIPROD_19B)}


def get_preset(name: str) -> ModelConfig:
    """The configuration of preset ``name``; a ConfigError lists the known presets."""
    try:
        return PRESETS[name]
    except KeyError:
        known = ", ".join(PRESETS)
        raise ConfigError(f"unknown model preset {name!r}; expected one of: {known}") from None
