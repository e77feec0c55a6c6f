"""CausalVideoVAE on the tiny preset: shapes, causality, first frame, seeds, gradients, dtypes."""

from __future__ import annotations

import pytest
import torch

from aiprod_core.models.presets import TINY
from aiprod_core.vae import CausalVideoVAE, DiagonalGaussian


def make_vae(seed: int = 0) -> CausalVideoVAE:
    torch.manual_seed(seed)
    return CausalVideoVAE(TINY.vae).eval()


@pytest.fixture(scope="module")
def vae() -> CausalVideoVAE:
    return make_vae()


def random_video(frames: int, height: int, width: int, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, frames, height, width, generator=generator) * 2 - 1


@pytest.mark.parametrize("frames", [1, 3, 5, 9])
@pytest.mark.parametrize(("height", "width"), [(8, 8), (12, 20)])
def test_encode_decode_shapes_and_dtypes(
    vae: CausalVideoVAE, frames: int, height: int, width: int
) -> None:
    video = random_video(frames, height, width)
    with torch.no_grad():
        posterior = vae.encode(video)
        latent = (1, 8, *vae.latent_shape(frames, height, width))
        assert isinstance(posterior, DiagonalGaussian)
        assert posterior.mean.shape == latent == posterior.logvar.shape
        assert posterior.mean.dtype == torch.float32
        decoded = vae.decode(posterior.sample(torch.Generator().manual_seed(0)))
    assert decoded.shape == video.shape
    assert decoded.dtype == torch.float32


def test_decode_output_stays_in_range_even_when_saturated() -> None:
    model = make_vae(0)
    with torch.no_grad():
        model.decoder.conv_out.conv.weight.mul_(100.0)
        decoded = model.decode(torch.randn(1, 8, 3, 2, 3))
    assert decoded.min() >= -1.0
    assert decoded.max() <= 1.0
    assert decoded.abs().max() > 0.999  # saturated by tanh, not clipped to something else


@pytest.mark.parametrize("changed_frame", [1, 2, 3, 4, 7, 8])
def test_encoder_latent_frames_never_see_later_pixel_frames(
    vae: CausalVideoVAE, changed_frame: int
) -> None:
    video = random_video(9, 8, 8)
    edited = video.clone()
    edited[:, :, changed_frame] = -edited[:, :, changed_frame]
    with torch.no_grad():
        before, after = vae.encode(video), vae.encode(edited)
    # latent frame j covers pixel frames 2j - 1 and 2j; frame f first reaches latent ceil(f/2)
    first_affected = (changed_frame + 1) // 2
    assert torch.equal(before.mean[:, :, :first_affected], after.mean[:, :, :first_affected])
    assert torch.equal(before.logvar[:, :, :first_affected], after.logvar[:, :, :first_affected])
    assert not torch.allclose(before.mean[:, :, first_affected], after.mean[:, :, first_affected])


def test_first_frame_is_encoded_on_its_own(vae: CausalVideoVAE) -> None:
    video = random_video(9, 12, 20)
    with torch.no_grad():
        whole = vae.encode(video).mean
        alone = vae.encode(video[:, :, :1]).mean
    assert alone.shape[2] == 1
    torch.testing.assert_close(whole[:, :, :1], alone, rtol=0, atol=1e-5)


@pytest.mark.parametrize("changed_latent", [1, 2, 4])
def test_decoder_frames_never_see_later_latent_frames(
    vae: CausalVideoVAE, changed_latent: int
) -> None:
    latents = torch.randn(1, 8, 5, 2, 3, generator=torch.Generator().manual_seed(3))
    edited = latents.clone()
    edited[:, :, changed_latent] += 3.0
    with torch.no_grad():
        before, after = vae.decode(latents), vae.decode(edited)
    first_affected = 2 * changed_latent - 1  # latent j decodes to frames 2j - 1 and 2j
    assert torch.equal(before[:, :, :first_affected], after[:, :, :first_affected])
    assert not torch.allclose(before[:, :, first_affected], after[:, :, first_affected])


def test_first_latent_frame_decodes_to_exactly_the_first_frame(vae: CausalVideoVAE) -> None:
    latents = torch.randn(1, 8, 4, 2, 2, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        whole = vae.decode(latents)
        alone = vae.decode(latents[:, :, :1])
    assert alone.shape[2] == 1
    torch.testing.assert_close(whole[:, :, :1], alone, rtol=0, atol=1e-5)


def test_same_seed_same_weights_and_outputs() -> None:
    first, second, other = make_vae(5), make_vae(5), make_vae(6)
    for (name, a), (_, b) in zip(
        first.state_dict().items(), second.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    video = random_video(5, 8, 8)
    with torch.no_grad():
        out_a, _ = first(video, generator=torch.Generator().manual_seed(0))
        out_b, _ = second(video, generator=torch.Generator().manual_seed(0))
        out_c, _ = other(video, generator=torch.Generator().manual_seed(0))
        out_d, _ = first(video, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out_a, out_b)
    assert not torch.allclose(out_a, out_c)
    assert not torch.allclose(out_a, out_d)


def test_forward_without_sampling_decodes_the_mode(vae: CausalVideoVAE) -> None:
    video = random_video(3, 8, 8)
    with torch.no_grad():
        reconstruction, posterior = vae(video, sample=False)
        expected = vae.decode(posterior.mode())
    assert torch.equal(reconstruction, expected)


def test_gradients_reach_every_trainable_parameter() -> None:
    model = make_vae(2).train()
    video = random_video(5, 8, 8)
    reconstruction, posterior = model(video, generator=torch.Generator().manual_seed(0))
    loss = (reconstruction - video).pow(2).mean() + 1e-3 * posterior.kl().mean()
    loss.backward()
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    assert len(names) > 40
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_bfloat16_forward_on_cpu() -> None:
    model = make_vae(0)
    video = random_video(5, 8, 8)
    with torch.no_grad():
        reference = model.decode(model.encode(video).mode())
        model = model.to(torch.bfloat16)
        posterior = model.encode(video.bfloat16())
        decoded = model.decode(posterior.mode())
    assert posterior.mean.dtype == torch.bfloat16
    assert posterior.sample(torch.Generator().manual_seed(0)).dtype == torch.bfloat16
    assert decoded.dtype == torch.bfloat16
    assert decoded.shape == video.shape
    assert torch.isfinite(decoded).all()
    assert decoded.abs().max() <= 1.0
    assert (decoded.float() - reference).abs().max() < 0.15


@pytest.mark.gpu
def test_bfloat16_on_cuda_matches_float32() -> None:
    model = make_vae(0).cuda()
    video = random_video(9, 16, 24).cuda()
    with torch.no_grad():
        reference = model.decode(model.encode(video).mode())
        model = model.to(torch.bfloat16)
        posterior = model.encode(video.bfloat16())
        decoded = model.decode(posterior.sample(torch.Generator("cuda").manual_seed(0)))
        tiled = model.decode_tiled(posterior.mode(), (3, 2, 4), (2, 1, 2))
    assert decoded.dtype == torch.bfloat16 == tiled.dtype
    assert decoded.device.type == "cuda"
    assert decoded.shape == video.shape == tiled.shape
    assert torch.isfinite(decoded).all()
    assert decoded.abs().max() <= 1.0
    mode = model.decode(posterior.mode())
    assert (mode.float() - reference).abs().max() < 0.15
