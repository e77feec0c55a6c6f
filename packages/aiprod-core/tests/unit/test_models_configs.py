"""Model configurations validate their own consistency; presets are well formed."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from aiprod_core.config import ConfigError
from aiprod_core.models import (
    PRESETS,
    DiffusionConfig,
    ModelConfig,
    TextEncoderConfig,
    TransformerConfig,
    UpsamplerConfig,
    VAEConfig,
    get_preset,
)
from aiprod_core.models.geometry import ModelGeometry


def test_presets_are_named_and_consistent() -> None:
    assert list(PRESETS) == ["tiny", "tiny-x2", "small", "aiprod-19b"]
    for name, config in PRESETS.items():
        assert config.preset == name
        assert config.transformer.in_channels == config.vae.latent_channels
        # presets derived with model_copy pass the same validation as a config file
        assert ModelConfig.model_validate(config.model_dump()) == config


def test_tiny_x2_keeps_tiny_tokens_with_latents_at_half_size() -> None:
    tiny, x2 = ModelGeometry.of(get_preset("tiny")), ModelGeometry.of(get_preset("tiny-x2"))
    assert x2.latent_shape(9, 32, 32) == (5, 16, 16)
    assert tiny.latent_shape(9, 32, 32) == (5, 8, 8)
    assert x2.video_tokens(9, 32, 32)[1] == tiny.video_tokens(9, 32, 32)[1] == (5, 4, 4)
    assert get_preset("tiny-x2").vae.latent_channels == 4
    assert get_preset("tiny-x2").text_encoder == get_preset("tiny").text_encoder


def test_get_preset_unknown_lists_known() -> None:
    assert get_preset("tiny") is PRESETS["tiny"]
    with pytest.raises(ConfigError, match=r"unknown model preset 'huge'; expected one of: tiny"):
        get_preset("huge")


def test_config_json_round_trip() -> None:
    config = get_preset("small")
    assert ModelConfig.model_validate_json(config.model_dump_json()) == config


def test_unknown_keys_rejected() -> None:
    data = get_preset("tiny").model_dump()
    data["transformer"]["hidden_size"] = 3
    with pytest.raises(ValidationError, match="hidden_size"):
        ModelConfig.model_validate(data)


def test_transformer_derived_sizes() -> None:
    config = get_preset("tiny").transformer
    assert config.head_dim == 24
    assert config.mlp_hidden_dim % 8 == 0
    assert config.mlp_hidden_dim >= config.hidden_dim * config.mlp_ratio


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"hidden_dim": 100, "num_heads": 3}, "divisible by num_heads"),
        ({"hidden_dim": 28, "num_heads": 4}, "even and at least 6"),
        ({"hidden_dim": 16, "num_heads": 4}, "even and at least 6"),
        ({"rope_max_positions": (1.0, 0.0, 2.0)}, "rope_max_positions entries must be > 0"),
        ({"patch_size": (0, 2, 2)}, "patch_size entries must be >= 1"),
    ],
)
def test_transformer_rejects(changes: dict, message: str) -> None:
    base = get_preset("tiny").transformer.model_dump() | changes
    with pytest.raises(ValidationError, match=message):
        TransformerConfig.model_validate(base)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"spatial_compression": 6}, "spatial_compression must be a power of two"),
        ({"channel_multipliers": (1,)}, "channel_multipliers needs 2 entries"),
        ({"temporal_compression": 8}, "cannot exceed spatial_compression"),
    ],
)
def test_vae_rejects(changes: dict, message: str) -> None:
    base = get_preset("tiny").vae.model_dump() | changes
    with pytest.raises(ValidationError, match=message):
        VAEConfig.model_validate(base)


def test_vae_stages() -> None:
    vae = get_preset("aiprod-19b").vae
    assert (vae.spatial_stages, vae.temporal_stages) == (5, 3)


def test_text_encoder_rules() -> None:
    with pytest.raises(ValidationError, match="divisible by num_heads"):
        TextEncoderConfig(dim=10, num_heads=4)
    with pytest.raises(ValidationError, match="set dim to 384"):
        TextEncoderConfig(kind="minilm", dim=64)
    assert TextEncoderConfig(kind="minilm", dim=384).dim == 384


def test_diffusion_token_range() -> None:
    with pytest.raises(ValidationError, match="max_tokens must be greater"):
        DiffusionConfig(base_tokens=10, max_tokens=10)


@pytest.mark.parametrize(
    ("part", "field", "value", "message"),
    [
        ("transformer", "in_channels", 9, "must equal vae.latent_channels"),
        ("upsampler", "latent_channels", 9, "upsampler.latent_channels must equal"),
        ("transformer", "text_dim", 32, "must equal text_encoder.dim"),
        ("transformer", "latent_scale", (4, 4), r"latent_scale \(4, 4\) must equal the VAE's"),
    ],
)
def test_model_config_cross_checks(part: str, field: str, value: int, message: str) -> None:
    data = get_preset("tiny").model_dump()
    data[part][field] = value
    with pytest.raises(ValidationError, match=message):
        ModelConfig.model_validate(data)


def test_configs_are_frozen() -> None:
    with pytest.raises(ValidationError, match="frozen"):
        get_preset("tiny").transformer.depth = 3  # type: ignore[misc]
    assert isinstance(get_preset("tiny").upsampler, UpsamplerConfig)
