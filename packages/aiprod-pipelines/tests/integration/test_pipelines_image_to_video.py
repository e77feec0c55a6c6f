"""Image to video end to end with the tiny preset on the CPU.

With random weights the VAE does not reconstruct images faithfully, so "the first frame is
close to the image" is checked against the best this VAE can do: ``decode(encode(image))``,
its own round trip. The causal decoder makes video frame 0 from latent frame 0 alone and
the first-frame condition holds that latent at the image's encoding, so frame 0 must equal
the round trip (to a uint8 rounding step), whatever the seed or prompt, while the other
frames are generated.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aiprod_pipelines.pipelines import (
    GenerationRequest,
    ImageCondition,
    ImageToVideoPipeline,
    InvalidRequestError,
    LoadedModel,
    TextToVideoPipeline,
    prepare_image,
)
from aiprod_pipelines.pipelines.stages import decode_latents, video_to_uint8

pytestmark = pytest.mark.integration

REQUEST = GenerationRequest("the kite flies away", width=16, height=16, frames=5, steps=3)


@pytest.fixture(scope="module")
def pipeline(tiny: LoadedModel) -> ImageToVideoPipeline:
    return ImageToVideoPipeline(tiny.model, progress=False)


def kite_image(height: int = 20, width: int = 24, seed: int = 0) -> np.ndarray:
    """uint8 [H, W, 3]: a gradient sky with a red square, sized unlike the video."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[..., 2] = np.linspace(120, 250, height, dtype=np.uint8)[:, None]
    image[..., 1] = rng.integers(0, 60, (height, width), dtype=np.uint8)
    image[6:12, 8:14] = (230, 30, 40)
    return image


def round_trip(tiny: LoadedModel, image: np.ndarray, width: int, height: int) -> torch.Tensor:
    """uint8 [H, W, 3]: the VAE's reconstruction of the prepared image."""
    vae = tiny.model.vae
    with torch.inference_mode():
        latent = vae.normalize(vae.encode(prepare_image(image, width, height)).mode())
        return video_to_uint8(decode_latents(vae, latent))[0]


def mean_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().mean())


def test_first_frame_is_the_vae_round_trip_of_the_image(
    pipeline: ImageToVideoPipeline, tiny: LoadedModel
) -> None:
    image = kite_image()
    video = pipeline(REQUEST, image)
    expected = round_trip(tiny, image, 16, 16)
    assert video.frames.shape == (5, 16, 16, 3)
    assert video.frames.dtype == torch.uint8
    assert int((video.frames[0].int() - expected.int()).abs().max()) <= 1
    others = [mean_abs(frame, expected) for frame in video.frames[1:]]
    assert min(others) > 5  # measured 24-35: the later frames are generated, not copied


def test_first_frame_holds_across_seeds_and_prompts(pipeline: ImageToVideoPipeline) -> None:
    image = kite_image()
    base = pipeline(REQUEST, image)
    other_seed = pipeline(dataclasses.replace(REQUEST, seed=9), image)
    other_prompt = pipeline(dataclasses.replace(REQUEST, prompt="rain falls"), image)
    for video in (other_seed, other_prompt):
        assert int((video.frames[0].int() - base.frames[0].int()).abs().max()) <= 1
        assert not torch.equal(video.latents[:, :, 1:], base.latents[:, :, 1:])
    assert torch.equal(other_seed.latents[:, :, 0], base.latents[:, :, 0])
    assert mean_abs(other_seed.frames[1:], base.frames[1:]) > 5


def test_the_image_decides_the_first_frame(
    pipeline: ImageToVideoPipeline, tiny: LoadedModel
) -> None:
    text_only = TextToVideoPipeline(tiny.model, progress=False)(REQUEST)
    first = pipeline(REQUEST, kite_image(seed=0))
    inverted = pipeline(REQUEST, 255 - kite_image(seed=0))
    assert mean_abs(first.frames[0], inverted.frames[0]) > 5
    assert mean_abs(first.frames[0], text_only.frames[0]) > 5
    assert torch.equal(
        pipeline(REQUEST, kite_image()).frames, first.frames
    )  # same seed and image: identical video


def test_image_inputs_are_equivalent(pipeline: ImageToVideoPipeline, tmp_path: Path) -> None:
    image = kite_image(16, 16)
    path = tmp_path / "kite.png"
    Image.fromarray(image).save(path)
    from_array = pipeline(REQUEST, image)
    from_path = pipeline(REQUEST, path)
    from_tensor = pipeline(REQUEST, torch.from_numpy(image).permute(2, 0, 1).float() / 127.5 - 1)
    assert torch.equal(from_array.frames, from_path.frames)
    assert int((from_array.frames.int() - from_tensor.frames.int()).abs().max()) <= 1


def test_invalid_request_and_image_are_refused(
    pipeline: ImageToVideoPipeline, tmp_path: Path
) -> None:
    with pytest.raises(InvalidRequestError, match="frames=4") as info:
        pipeline(dataclasses.replace(REQUEST, frames=4), kite_image())
    assert info.value.field == "frames"
    with pytest.raises(InvalidRequestError, match=r"missing\.png") as info:
        pipeline(REQUEST, tmp_path / "missing.png")
    assert info.value.field == "image"


def test_keyframes_pin_the_first_and_the_last_frame(
    pipeline: ImageToVideoPipeline, tiny: LoadedModel
) -> None:
    """frames=5 with temporal compression 2: latent frames 0 | 1-2 | 3-4; the image at frame
    4 is encoded as a still clip and fills latent frame 2 (video frames 3 and 4)."""
    first, last = kite_image(seed=0), 255 - kite_image(seed=1)
    video = pipeline(REQUEST, [ImageCondition(first), ImageCondition(last, frame=4)])
    vae = tiny.model.vae
    with torch.inference_mode():
        still = prepare_image(last, 16, 16).expand(-1, -1, 3, -1, -1)
        expected = vae.normalize(vae.encode(still).mode())[:, :, 1:2]
    torch.testing.assert_close(video.latents[:, :, 2:3], expected.float(), rtol=0, atol=1e-5)
    assert int((video.frames[0].int() - round_trip(tiny, first, 16, 16).int()).abs().max()) <= 1
    only_first = pipeline(REQUEST, first)
    assert torch.equal(only_first.latents[:, :, 0], video.latents[:, :, 0])
    assert mean_abs(only_first.frames[3:], video.frames[3:]) > 5  # the keyframe decides the end


def test_continuation_pins_leading_frames(pipeline: ImageToVideoPipeline) -> None:
    images = [ImageCondition(kite_image(seed=0)), ImageCondition(kite_image(seed=3), frame=1)]
    video = pipeline(REQUEST, images)
    again = pipeline(dataclasses.replace(REQUEST, seed=5), images)
    assert torch.equal(video.latents[:, :, :2], again.latents[:, :, :2])  # pinned
    assert not torch.equal(video.latents[:, :, 2], again.latents[:, :, 2])  # generated


@pytest.mark.fault("errors")
@pytest.mark.parametrize(
    ("frames", "message"),
    [
        ([5], r"image frame 5 is outside the video: use a frame from 0 to 4 \(frames=5\)"),
        ([0, 3, 4], r"image frames 3 and 4 fall in the same latent frame \(frames 3\.\.4"),
    ],
)
def test_image_frames_that_do_not_fit_are_refused(
    pipeline: ImageToVideoPipeline, frames: list[int], message: str
) -> None:
    images = [ImageCondition(kite_image(), frame=frame) for frame in frames]
    with pytest.raises(InvalidRequestError, match=message) as info:
        pipeline(REQUEST, images)
    assert info.value.field == "image"
