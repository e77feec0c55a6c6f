"""The VAE's building blocks: causal convolution, pixel shuffle, norm, Gaussian posterior."""

from __future__ import annotations

import math

import pytest
import torch

from aiprod_core.vae import CausalConv3d, DiagonalGaussian
from aiprod_core.vae.blocks import (
    CausalUpsample,
    ChannelRMSNorm,
    DepthToSpace,
    ResBlock3d,
    depth_to_space,
)
from aiprod_core.vae.distribution import LOGVAR_RANGE


@pytest.mark.parametrize(("stride", "frames", "expected"), [(1, 5, 5), (2, 9, 5), (2, 1, 1)])
def test_causal_conv_keeps_spatial_size_and_maps_frames(
    stride: int, frames: int, expected: int
) -> None:
    conv = CausalConv3d(2, 3, 3, stride=(stride, 1, 1))
    assert conv(torch.randn(1, 2, frames, 6, 10)).shape == (1, 3, expected, 6, 10)


def test_causal_conv_output_frame_never_sees_later_frames() -> None:
    torch.manual_seed(0)
    conv = CausalConv3d(2, 2, 3)
    x = torch.randn(1, 2, 6, 4, 4)
    changed = x.clone()
    changed[:, :, 3] += 5.0
    before, after = conv(x), conv(changed)
    assert torch.equal(before[:, :, :3], after[:, :, :3])
    assert not torch.allclose(before[:, :, 3], after[:, :, 3])


def test_causal_conv_pads_the_past_with_the_first_frame() -> None:
    conv = CausalConv3d(1, 1, (3, 1, 1))
    with torch.no_grad():
        conv.conv.weight.copy_(torch.tensor([1.0, 10.0, 100.0]).view(1, 1, 3, 1, 1))
        conv.conv.bias.zero_()
    x = torch.tensor([2.0, 3.0, 5.0]).view(1, 1, 3, 1, 1)
    # frame 0 reads (x0, x0, x0), frame 1 (x0, x0, x1), frame 2 (x0, x1, x2)
    assert conv(x).flatten().tolist() == [222.0, 322.0, 532.0]


def test_causal_conv_rejects_even_spatial_kernels() -> None:
    with pytest.raises(ValueError, match=r"spatial kernel sizes must be odd, got \(3, 2, 3\)"):
        CausalConv3d(1, 1, (3, 2, 3))


def test_depth_to_space_places_channels_into_time_height_width() -> None:
    x = torch.arange(8.0).view(1, 8, 1, 1, 1)  # 1 channel out, t=2, s=2
    out = depth_to_space(x, temporal=2, spatial=2)
    assert out.shape == (1, 1, 2, 2, 2)
    assert out[0, 0].flatten().tolist() == list(range(8))
    # A pixel-shuffle along space only agrees with torch's 2D pixel shuffle.
    y = torch.randn(2, 12, 3, 4, 5)
    reference = torch.nn.functional.pixel_shuffle(y.transpose(1, 2), 2).transpose(1, 2)
    assert torch.equal(depth_to_space(y, 1, 2), reference)


@pytest.mark.parametrize(("temporal", "frames", "expected"), [(1, 3, 3), (2, 3, 5), (4, 2, 5)])
def test_depth_to_space_keeps_one_frame_for_the_first_input_frame(
    temporal: int, frames: int, expected: int
) -> None:
    x = torch.randn(1, 4 * temporal, frames, 2, 3)
    assert DepthToSpace(temporal, 2)(x).shape == (1, 1, expected, 4, 6)
    assert CausalUpsample(4, temporal, 2)(torch.randn(1, 4, frames, 2, 3)).shape == (
        1,
        4,
        expected,
        4,
        6,
    )


def test_channel_rms_norm_normalises_each_position_and_keeps_dtype() -> None:
    norm = ChannelRMSNorm(6)
    x = torch.randn(2, 6, 3, 4, 4) * 7.0
    out = norm(x)
    assert torch.allclose(out.pow(2).mean(dim=1), torch.ones(2, 3, 4, 4), atol=1e-4)
    assert norm(x.bfloat16()).dtype == torch.bfloat16


def test_res_block_projects_its_skip_when_channels_change() -> None:
    block = ResBlock3d(4, 6)
    assert isinstance(block.skip, CausalConv3d)
    assert block(torch.randn(1, 4, 3, 4, 4)).shape == (1, 6, 3, 4, 4)
    assert isinstance(ResBlock3d(4, 4).skip, torch.nn.Identity)


def test_gaussian_statistics_and_clamped_logvar() -> None:
    parameters = torch.tensor([0.5, -1.0, math.log(4.0), 100.0]).view(1, 4, 1, 1, 1)
    posterior = DiagonalGaussian.from_parameters(parameters)
    assert posterior.mean.flatten().tolist() == [0.5, -1.0]
    assert posterior.logvar.flatten().tolist() == pytest.approx([math.log(4.0), LOGVAR_RANGE[1]])
    assert posterior.std[0, 0].item() == pytest.approx(2.0)
    assert posterior.var[0, 0].item() == pytest.approx(4.0)
    assert torch.equal(posterior.mode(), posterior.mean)
    low = DiagonalGaussian(torch.zeros(1), torch.tensor([-1000.0]))
    assert low.logvar.item() == LOGVAR_RANGE[0]


def test_gaussian_kl_is_per_sample_and_zero_for_the_prior() -> None:
    mean = torch.zeros(3, 2, 1, 2, 2)
    mean[1] = 1.0
    logvar = torch.zeros_like(mean)
    logvar[2] = math.log(2.0)
    kl = DiagonalGaussian(mean, logvar).kl()
    assert kl.shape == (3,)
    assert kl.dtype == torch.float32
    elements = 8
    assert kl.tolist() == pytest.approx(
        [0.0, 0.5 * elements, 0.5 * elements * (2.0 - 1.0 - math.log(2.0))]
    )


def test_gaussian_sampling_is_reproducible_from_a_generator() -> None:
    posterior = DiagonalGaussian(torch.full((2, 3, 1, 4, 4), 3.0), torch.zeros(2, 3, 1, 4, 4))
    first = posterior.sample(torch.Generator().manual_seed(7))
    again = posterior.sample(torch.Generator().manual_seed(7))
    other = posterior.sample(torch.Generator().manual_seed(8))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert abs(first.mean().item() - 3.0) < 0.5
    assert posterior.sample().shape == (2, 3, 1, 4, 4)


def test_gaussian_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match=r"mean \(2,\) and logvar \(3,\) differ in shape"):
        DiagonalGaussian(torch.zeros(2), torch.zeros(3))
