"""LatentUpsampler on the tiny preset: shapes, near-nearest start, causality, gradients, dtypes."""

from __future__ import annotations

import pytest
import torch

from aiprod_core.models.presets import TINY
from aiprod_core.upsampler import LatentUpsampler, nearest_upsample
from aiprod_core.vae import VideoShapeError


def make_upsampler(seed: int = 0) -> LatentUpsampler:
    torch.manual_seed(seed)
    return LatentUpsampler(TINY.upsampler).eval()


def latents(frames: int, height: int, width: int, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(2, 8, frames, height, width, generator=generator)


@pytest.fixture(scope="module")
def upsampler() -> LatentUpsampler:
    return make_upsampler()


@pytest.mark.parametrize(
    ("frames", "height", "width"), [(1, 2, 2), (3, 3, 5), (5, 4, 4), (2, 1, 7)]
)
def test_doubles_height_and_width_and_keeps_frames(
    upsampler: LatentUpsampler, frames: int, height: int, width: int
) -> None:
    with torch.no_grad():
        out = upsampler(latents(frames, height, width))
    assert out.shape == (2, 8, frames, 2 * height, 2 * width)
    assert out.dtype == torch.float32


def test_nearest_upsample_repeats_each_position() -> None:
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 1, 2, 2)
    assert nearest_upsample(x)[0, 0, 0].tolist() == [
        [1.0, 1.0, 2.0, 2.0],
        [1.0, 1.0, 2.0, 2.0],
        [3.0, 3.0, 4.0, 4.0],
        [3.0, 3.0, 4.0, 4.0],
    ]


def test_untrained_upsampler_is_close_to_nearest_neighbour(upsampler: LatentUpsampler) -> None:
    x = latents(3, 4, 5)
    with torch.no_grad():
        out = upsampler(x)
    nearest = nearest_upsample(x)
    assert (out - nearest).abs().max() < 0.05
    assert not torch.equal(out, nearest)  # the learnt residual path is live


def test_output_frame_never_sees_later_frames(upsampler: LatentUpsampler) -> None:
    x = latents(4, 3, 3)
    edited = x.clone()
    edited[:, :, 2] += 2.0
    with torch.no_grad():
        before, after = upsampler(x), upsampler(edited)
    assert torch.equal(before[:, :, :2], after[:, :, :2])
    assert not torch.allclose(before[:, :, 2], after[:, :, 2])


def test_same_seed_same_output() -> None:
    x = latents(2, 3, 3)
    with torch.no_grad():
        first, second, other = (make_upsampler(s)(x) for s in (3, 3, 4))
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


def test_gradients_reach_every_trainable_parameter() -> None:
    model = make_upsampler(1).train()
    x = latents(3, 3, 4)
    target = torch.randn(2, 8, 3, 6, 8, generator=torch.Generator().manual_seed(2))
    (model(x) - target).pow(2).mean().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_a_few_steps_learn_a_smoother_upsampling() -> None:
    torch.manual_seed(0)
    model = LatentUpsampler(TINY.upsampler)
    x = latents(1, 6, 6, seed=3)
    target = torch.nn.functional.interpolate(
        x[:, :, 0], scale_factor=2, mode="bilinear", align_corners=False
    ).unsqueeze(2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def error() -> float:
        with torch.no_grad():
            return (model(x) - target).pow(2).mean().item()

    start = error()
    for _ in range(30):
        optimizer.zero_grad()
        (model(x) - target).pow(2).mean().backward()
        optimizer.step()
    assert error() < 0.5 * start


def test_bfloat16_forward_on_cpu(upsampler: LatentUpsampler) -> None:
    x = latents(2, 3, 3)
    with torch.no_grad():
        reference = upsampler(x)
        out = make_upsampler().to(torch.bfloat16)(x.bfloat16())
    assert out.dtype == torch.bfloat16
    assert out.shape == reference.shape
    assert (out.float() - reference).abs().max() < 0.1


@pytest.mark.parametrize("shape", [(2, 8, 2, 2), (1, 4, 1, 2, 2)])
def test_rejects_wrong_layouts(upsampler: LatentUpsampler, shape: tuple[int, ...]) -> None:
    with pytest.raises(VideoShapeError) as caught:
        upsampler(torch.zeros(*shape))
    assert str(caught.value) == (
        f"latents must be [batch, 8, frames, height, width], got shape {shape}"
    )


@pytest.mark.gpu
def test_bfloat16_on_cuda() -> None:
    model = make_upsampler().cuda()
    x = latents(3, 8, 12).cuda()
    with torch.no_grad():
        reference = model(x)
        out = model.to(torch.bfloat16)(x.bfloat16())
    assert out.device.type == "cuda"
    assert out.dtype == torch.bfloat16
    assert out.shape == (2, 8, 3, 16, 24)
    assert (out.float() - reference).abs().max() < 0.1
