"""ModelGeometry: the one video -> latent -> token arithmetic of a model."""

from __future__ import annotations

import pytest

from aiprod_core.errors import AiprodError
from aiprod_core.models import get_preset
from aiprod_core.models.configs import ModelConfig
from aiprod_core.models.geometry import ModelGeometry

TINY = get_preset("tiny")


def with_patch(config: ModelConfig, patch: tuple[int, int, int]) -> ModelConfig:
    transformer = config.transformer.model_copy(update={"patch_size": patch})
    return config.model_copy(update={"transformer": transformer})


def test_the_tiny_preset_maps_video_to_latent_to_tokens() -> None:
    geometry = ModelGeometry.of(TINY)
    spatial = TINY.vae.spatial_compression
    temporal = TINY.vae.temporal_compression
    latent, grid = geometry.video_tokens(1 + 4 * temporal, 8 * spatial, 4 * spatial)
    assert latent == (5, 8, 4)
    patch = TINY.transformer.patch_size
    assert grid == (5 // patch[0], 8 // patch[1], 4 // patch[2])
    assert geometry.num_tokens(latent) == grid[0] * grid[1] * grid[2]
    assert geometry.pixel_multiples == (spatial * patch[1], spatial * patch[2])


@pytest.mark.parametrize(
    ("patch_t", "temporal_valid"),
    [(1, [1, 3, 5, 7, 9, 11]), (2, [3, 7, 11])],
)
def test_valid_frame_counts_follow_compression_and_patch_length(
    patch_t: int, temporal_valid: list[int]
) -> None:
    config = with_patch(
        TINY.model_copy(update={"vae": TINY.vae.model_copy(update={"temporal_compression": 2})}),
        (patch_t, 2, 2),
    )
    geometry = ModelGeometry.of(config)
    valid = [frames for frames in range(12) if geometry.fits_frames(frames)]
    assert valid == temporal_valid
    assert geometry.first_frames == temporal_valid[0]
    assert geometry.frame_step == temporal_valid[1] - temporal_valid[0]
    if patch_t == 2:
        assert geometry.nearest_frames(5) == "3 or 7"
        assert geometry.nearest_frames(1) == "3"
        # A video the VAE takes whose latent is not whole patches is refused, not rounded.
        with pytest.raises(AiprodError, match="latent frames 3 is not a multiple"):
            geometry.video_tokens(5, 16, 16)


def test_shapes_are_refused_never_rounded_down() -> None:
    geometry = ModelGeometry.of(TINY)
    spatial = TINY.vae.spatial_compression
    with pytest.raises(AiprodError, match="height"):
        geometry.video_tokens(1, spatial * 2 + 1, spatial * 2)
    with pytest.raises(AiprodError, match="frames"):
        geometry.video_tokens(2 + TINY.vae.temporal_compression, spatial * 2, spatial * 2)
