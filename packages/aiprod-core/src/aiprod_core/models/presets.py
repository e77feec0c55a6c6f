"""Named model presets: ``tiny`` for tests and the demo, ``tiny-x2`` for the demo's long
profile, ``small`` for GPU checks and benchmarks, ``aiprod-19b`` for production (built on
the meta device only in tests)."""

from __future__ import annotations

from aiprod_core.errors import ConfigError
from aiprod_core.models.configs import (
    DiffusionConfig,
    GenerationDefaults,
    ModelConfig,
    TextEncoderConfig,
    TransformerConfig,
    UpsamplerConfig,
    VAEConfig,
)

TINY = ModelConfig(
    preset="tiny",
    # Positions of a 32 x 32 clip of about a second span a good part of a 4 s, 64 px range,
    # and theta 100 spreads the 4 rotation pairs per axis from a quarter turn across that
    # range to about 2.5 radians per pixel: the production range (20 s, 2048 px, theta 1e4)
    # would leave a tiny clip almost all its pairs unturned or aliased.
    transformer=TransformerConfig(
        in_channels=8,
        patch_size=(1, 2, 2),
        hidden_dim=96,
        depth=2,
        num_heads=4,
        text_dim=64,
        rope_theta=100.0,
        rope_max_positions=(4.0, 64.0, 64.0),
        latent_scale=(2, 4),
        # Two blocks starting from pure noise cannot tell where a token is from RoPE alone:
        # without absolute positions the demo's model moved the shape the way the prompt
        # says in 0 of 48 held-out clips, with them in 36 to 48 (docs/PERFORMANCE.md).
        absolute_positions=True,
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
    # No terminal stretch: the demo samples a 80-token clip in 30 Euler steps, whose last
    # steps sit at sigma 0.01-0.05 where the tiny model sharpens the shape's edge; stretched
    # to 0.1, the final step is 3x longer and edges blur into off-palette pixels.
    diffusion=DiffusionConfig(
        base_tokens=64,
        max_tokens=1024,
        default_steps=20,
        logit_normal_mean=0.5,
        logit_normal_std=1.4,
        terminal=None,
    ),
    # The demo's clips: what the README's `aiprod-generate --model aiprod-tiny` should make.
    generation=GenerationDefaults(width=32, height=32, frames=9, fps=8),
)

# The demo's long profile: latents at half the clip's size (one VAE stage, 4 channels) keep
# the edges that tell a circle from a square, which the tiny VAE's x4 latents round off;
# 4x4 patches keep the token count of ``tiny`` (4 x 4 tokens per latent frame of a 32 x 32
# clip) and a width of 128 gives each token the 64 values it paints. Its transformer needs
# more than 4 times the default demo's training to paint the named shapes
# (docs/PERFORMANCE.md, "What the shape costs").
TINY_X2 = TINY.model_copy(
    update={
        "preset": "tiny-x2",
        "transformer": TINY.transformer.model_copy(
            update={
                "in_channels": 4,
                "patch_size": (1, 4, 4),
                "hidden_dim": 128,
                "latent_scale": (2, 2),
            }
        ),
        "vae": TINY.vae.model_copy(
            update={"latent_channels": 4, "channel_multipliers": (1,), "spatial_compression": 2}
        ),
        "upsampler": TINY.upsampler.model_copy(update={"latent_channels": 4}),
    }
)

SMALL = ModelConfig(
    preset="small",
    transformer=TransformerConfig(
        in_channels=32,
        patch_size=(1, 2, 2),
        hidden_dim=768,
        depth=16,
        num_heads=8,
        text_dim=512,
        latent_scale=(4, 8),
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
    generation=GenerationDefaults(width=256, height=256, frames=33, fps=24),
)

AIPROD_19B = ModelConfig(
    preset="aiprod-19b",
    # 56 blocks of 16 D^2 (attention 8 D^2, gated MLP 8 D^2) = 19.0B parameters spent in
    # attention and MLP; adaLN-single adds one shared 6 D^2 modulation (0.7 %).
    transformer=TransformerConfig(
        in_channels=128,
        patch_size=(1, 1, 1),
        hidden_dim=4608,
        depth=56,
        num_heads=36,
        text_dim=4096,
        latent_scale=(8, 32),
    ),
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
    # LTX-2's anchors: log-shift 0.95 at 1024 tokens and 2.05 at 4096, extended beyond.
    diffusion=DiffusionConfig(
        base_shift=0.95, max_shift=2.05, base_tokens=1024, max_tokens=4096, default_steps=40
    ),
    generation=GenerationDefaults(width=768, height=512, frames=121, fps=24),
)

PRESETS: dict[str, ModelConfig] = {c.preset: c for c in (TINY, TINY_X2, SMALL, AIPROD_19B)}


def get_preset(name: str) -> ModelConfig:
    """The configuration of preset ``name``; a ConfigError lists the known presets."""
    try:
        return PRESETS[name]
    except KeyError:
        known = ", ".join(PRESETS)
        raise ConfigError(f"unknown model preset {name!r}; expected one of: {known}") from None
