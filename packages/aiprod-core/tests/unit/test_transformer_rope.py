"""3D RoPE: positions in seconds and pixels, rotation angles per axis, padding, and the
relative-position property."""

from __future__ import annotations

import math

import pytest
import torch

from aiprod_core.models import get_preset
from aiprod_core.models.geometry import ModelGeometry
from aiprod_core.transformer import apply_rope, rope_frequencies, token_positions
from aiprod_core.transformer.rope import position_sinusoids

MAXIMA = (20.0, 2048.0, 2048.0)


def test_positions_are_patch_starts_in_seconds_and_pixels() -> None:
    # Latent frames 0..2 of a causal VAE with temporal 4 start at pixel frames 0, 1, 5.
    positions = token_positions((3, 2, 2), (1, 1, 1), latent_scale=(4, 8), fps=10.0)
    assert positions.shape == (1, 12, 3)
    assert positions.dtype == torch.float32
    times = positions[0, ::4, 0].tolist()
    assert times == pytest.approx([0.0, 0.1, 0.5])
    assert positions[0, :4, 1:].tolist() == [[0, 0], [0, 8], [8, 0], [8, 8]]


def test_patches_step_positions_by_the_patch() -> None:
    positions = token_positions((2, 2, 2), (2, 2, 2), latent_scale=(1, 4), fps=1.0)
    # token t=1 starts at latent frame 2 (temporal 1: pixel frame 2); rows step 2 x 4 px.
    assert positions[0, 4, 0].item() == 2.0
    assert positions[0, :4, 1:].tolist() == [[0, 0], [0, 8], [8, 0], [8, 8]]


def test_upsampled_grid_shares_positions_with_the_original_at_shared_pixels() -> None:
    """Stage 1 of two-stage generation runs at pixel_scale 2; its x2 upsampled latents at
    pixel_scale 1. Tokens at the same pixel location get the same position."""
    config = get_preset("tiny")
    geometry = ModelGeometry.of(config)
    transformer = config.transformer
    scale = transformer.latent_scale
    small = geometry.token_grid((5, 4, 4))
    large = geometry.token_grid((5, 8, 8))
    original = token_positions(small, transformer.patch_size, scale, 8.0, pixel_scale=2.0)
    upsampled = token_positions(large, transformer.patch_size, scale, 8.0, pixel_scale=1.0)
    original = original[0].reshape(*small, 3)
    upsampled = upsampled[0].reshape(*large, 3)
    torch.testing.assert_close(upsampled[:, ::2, ::2], original, rtol=0, atol=0)
    # the in-between tokens are new pixel locations, not copies
    assert not torch.equal(upsampled[:, 1::2, 1::2], original)


def test_frame_rate_changes_time_only() -> None:
    at_24 = token_positions((3, 2, 2), (1, 1, 1), (4, 8), fps=24.0)
    at_12 = token_positions((3, 2, 2), (1, 1, 1), (4, 8), fps=12.0)
    torch.testing.assert_close(at_12[..., 1:], at_24[..., 1:], rtol=0, atol=0)
    torch.testing.assert_close(at_12[..., 0], 2 * at_24[..., 0])
    assert at_12[0, -1, 0] > at_24[0, -1, 0]
    cos_24, _ = rope_frequencies(at_24, 12, 100.0, MAXIMA)
    cos_12, _ = rope_frequencies(at_12, 12, 100.0, MAXIMA)
    assert not torch.equal(cos_24[..., :2], cos_12[..., :2])  # time pairs turn
    torch.testing.assert_close(cos_24[..., 2:], cos_12[..., 2:])  # space pairs do not


def test_per_sample_frame_rates() -> None:
    positions = token_positions((2, 1, 1), (1, 1, 1), (2, 4), fps=torch.tensor([1.0, 2.0]))
    assert positions.shape == (2, 2, 3)
    assert positions[:, 1, 0].tolist() == [1.0, 0.5]


@pytest.mark.parametrize("fps", [0.0, -3.0, math.inf])
def test_bad_frame_rate_is_refused(fps: float) -> None:
    with pytest.raises(ValueError, match="fps must be finite and > 0"):
        token_positions((1, 1, 1), (1, 1, 1), (1, 1), fps=fps)


def test_frequencies_split_head_dim_by_axis() -> None:
    head_dim = 12  # two rotation pairs per axis
    maxima = (2.0, 4.0, 8.0)
    positions = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])
    cos, sin = rope_frequencies(positions, head_dim, theta=100.0, max_positions=maxima)
    assert cos.shape == sin.shape == (1, 3, head_dim // 2)
    # Frequencies pi/2 and 100 pi/2 per unit of position / maximum.
    angles = torch.atan2(sin, cos)[0].double()
    freqs = torch.tensor([math.pi / 2, 100 * math.pi / 2], dtype=torch.float64)
    wrapped = torch.remainder(freqs / torch.tensor([2.0, 4.0, 8.0])[:, None] + math.pi, 2 * math.pi)
    expected = (wrapped - math.pi).float()
    torch.testing.assert_close(angles[0, :2].float(), expected[0], atol=1e-4, rtol=0)
    torch.testing.assert_close(angles[1, 2:4].float(), expected[1], atol=1e-4, rtol=0)
    torch.testing.assert_close(angles[2, 4:].float(), expected[2], atol=1e-4, rtol=0)
    assert angles[0, 2:].abs().max() == 0
    assert angles[2, :4].abs().max() == 0


def test_head_dims_not_divisible_by_six_pad_with_unrotated_pairs() -> None:
    head_dim = 16  # 8 pairs: 2 per axis, 2 left over
    positions = torch.rand(1, 5, 3) * 100
    cos, sin = rope_frequencies(positions, head_dim, 100.0, MAXIMA)
    assert cos.shape == (1, 5, 8)
    assert torch.equal(cos[..., :2], torch.ones(1, 5, 2))
    assert torch.equal(sin[..., :2], torch.zeros(1, 5, 2))
    assert (sin[..., 2:].abs() > 0).any()
    x = torch.randn(1, 1, 5, head_dim)
    rotated = apply_rope(x, (cos, sin))
    torch.testing.assert_close(rotated[..., :4], x[..., :4])  # the padding pairs stay as they are


@pytest.mark.parametrize("head_dim", [4, 7])
def test_head_dim_must_be_even_and_hold_three_pairs(head_dim: int) -> None:
    with pytest.raises(ValueError, match="even and at least 6"):
        rope_frequencies(torch.zeros(1, 1, 3), head_dim, 100.0, MAXIMA)


def test_rotation_of_one_pair() -> None:
    x = torch.tensor([1.0, 0.0, 0.0, 2.0, 1.0, 1.0]).reshape(1, 1, 1, 6)
    angle = math.pi / 2
    cos = torch.tensor([[[math.cos(angle), 1.0, 1.0]]])
    sin = torch.tensor([[[math.sin(angle), 0.0, 0.0]]])
    out = apply_rope(x, (cos, sin)).flatten()
    torch.testing.assert_close(out, torch.tensor([0.0, 1.0, 0.0, 2.0, 1.0, 1.0]))


def test_rotation_preserves_norm_and_dtype() -> None:
    q = torch.randn(2, 3, 24, 12, dtype=torch.bfloat16)
    rope = rope_frequencies(token_positions((2, 3, 4), (1, 1, 1), (1, 8)), 12, 1e4, MAXIMA)
    out = apply_rope(q, rope)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(
        out.float().norm(dim=-1), q.float().norm(dim=-1), rtol=1e-2, atol=1e-2
    )


def test_scores_depend_only_on_position_differences() -> None:
    generator = torch.Generator().manual_seed(0)
    head_dim = 24
    q = torch.randn(1, 2, 30, head_dim, generator=generator, dtype=torch.float64)
    k = torch.randn(1, 2, 30, head_dim, generator=generator, dtype=torch.float64)
    positions = token_positions((2, 3, 5), (1, 1, 1), (1, 8), fps=4.0).double()

    def scores(pos: torch.Tensor) -> torch.Tensor:
        cos, sin = rope_frequencies(pos, head_dim, 1e4, MAXIMA)
        rope = (cos.double(), sin.double())
        return apply_rope(q, rope) @ apply_rope(k, rope).transpose(-1, -2)

    base = scores(positions)
    shifted = scores(positions + torch.tensor([0.5, 64.0, 128.0], dtype=torch.float64))
    # angles are float32 (up to ~1000 rad here), so agreement is to about 1e-3
    torch.testing.assert_close(shifted, base, rtol=2e-3, atol=2e-3)
    # Moving only the keys' positions changes the scores: the rotation is not a no-op.
    cos, sin = rope_frequencies(positions, head_dim, 1e4, MAXIMA)
    cos_k, sin_k = rope_frequencies(positions + 8.0, head_dim, 1e4, MAXIMA)
    moved = apply_rope(q, (cos.double(), sin.double())) @ apply_rope(
        k, (cos_k.double(), sin_k.double())
    ).transpose(-1, -2)
    assert (moved - base).abs().max() > 1e-2


def test_absolute_features_are_cos_then_sin_of_the_rope_angles() -> None:
    positions = token_positions((3, 2, 2), (1, 1, 1), (4, 8), fps=10.0)
    features = position_sinusoids(positions, 14, 100.0, MAXIMA)
    assert features.shape == (1, 12, 14)
    cos, sin = rope_frequencies(positions, 12, 100.0, MAXIMA)  # 2 pairs per axis, as dim 14
    torch.testing.assert_close(features[..., :6], cos)
    torch.testing.assert_close(features[..., 6:12], sin)
    assert torch.equal(features[..., 12:], torch.zeros(1, 12, 2))  # 14 = 2 * 3 * 2 + 2 pad
    # every token of the grid gets its own features
    assert len({tuple(row) for row in features[0].tolist()}) == 12


def test_absolute_features_match_at_shared_pixels_of_an_upsampled_grid() -> None:
    small = token_positions((2, 2, 2), (1, 1, 1), (2, 4), 8.0, pixel_scale=2.0)
    large = token_positions((2, 4, 4), (1, 1, 1), (2, 4), 8.0, pixel_scale=1.0)
    original = position_sinusoids(small, 24, 100.0, MAXIMA)[0].reshape(2, 2, 2, 24)
    upsampled = position_sinusoids(large, 24, 100.0, MAXIMA)[0].reshape(2, 4, 4, 24)
    torch.testing.assert_close(upsampled[:, ::2, ::2], original, rtol=0, atol=0)


def test_absolute_features_need_three_frequencies() -> None:
    positions = token_positions((1, 1, 1), (1, 1, 1), (1, 1))
    with pytest.raises(ValueError, match="dim 5 must be at least 6"):
        position_sinusoids(positions, 5, 100.0, MAXIMA)
