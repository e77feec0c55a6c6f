"""GenerationRequest validation: each bad value names its field and the nearest valid values."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from aiprod_core.models.configs import ModelConfig
from aiprod_core.models.presets import SMALL, TINY
from aiprod_pipelines.pipelines import (
    GeneratedVideo,
    GenerationRequest,
    InvalidRequestError,
    size_multiple,
)
from aiprod_pipelines.pipelines.request import MAX_FPS, MAX_GUIDANCE_SCALE, MAX_SEED

REQUEST = GenerationRequest("a lighthouse at night", width=16, height=16, frames=5, steps=2)


def error_for(request: GenerationRequest, config: ModelConfig = TINY, upscale: int = 1) -> str:
    with pytest.raises(InvalidRequestError) as info:
        request.validate(config, upscale=upscale)
    return f"{info.value.field}: {info.value}"


def with_patch(patch: tuple[int, int, int]) -> ModelConfig:
    transformer = TINY.transformer.model_copy(update={"patch_size": patch})
    return TINY.model_copy(update={"transformer": transformer})


def test_defaults_fit_the_tiny_preset() -> None:
    GenerationRequest("waves").validate(TINY)
    REQUEST.validate(TINY)
    REQUEST.validate(TINY, upscale=2)


def test_size_multiple_is_spatial_compression_times_patch() -> None:
    assert size_multiple(TINY) == (8, 8)
    assert size_multiple(SMALL) == (16, 16)
    assert size_multiple(with_patch((1, 1, 2))) == (4, 8)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"width": 30},
            (
                "width: width=30 does not fit the model (spatial compression 4 x patch 2): "
                "use a multiple of 8, e.g. 24 or 32"
            ),
        ),
        ({"height": 4}, "height: height=4 does not fit the model"),
        ({"height": 0}, "use a multiple of 8, e.g. 8"),
        (
            {"frames": 10},
            (
                "frames: frames=10 does not fit the model (temporal compression 2): "
                "use 1 + 2k frames, e.g. 9 or 11"
            ),
        ),
        (
            {"frames": 0},
            "frames: frames=0 does not fit the model (temporal compression 2): use 1 + 2k frames, e.g. 1",
        ),
        ({"prompt": "   "}, "prompt: prompt is empty"),
        ({"steps": 0}, "steps: steps=0 is too small: use 1 or more"),
        (
            {"guidance_scale": 0.5},
            "guidance_scale: guidance_scale=0.5 is out of range: use a number from 1 to 100",
        ),
        ({"guidance_scale": float("nan")}, "guidance_scale: guidance_scale=nan is out of range"),
        ({"guidance_scale": 100.5}, "guidance_scale: guidance_scale=100.5 is out of range"),
        (
            {"seed": -1},
            "seed: seed=-1 is out of range: use an integer from 0 to 2**53 - 1 (9007199254740991)",
        ),
        ({"seed": 2**53}, "seed: seed=9007199254740992 is out of range"),
        ({"fps": 0}, "fps: fps=0 is too small: use 1 or more"),
        ({"fps": 241}, "fps: fps=241 is too large: use at most 240 frames per second"),
    ],
)
def test_invalid_values_name_field_and_nearest_valid(
    changes: dict[str, object], expected: str
) -> None:
    assert expected in error_for(dataclasses.replace(REQUEST, **changes))  # type: ignore[arg-type]


def test_the_limits_are_the_ones_every_json_client_and_torch_can_use() -> None:
    assert MAX_SEED == 2**53 - 1
    assert float(MAX_SEED) == MAX_SEED  # exact as an IEEE double, so as a JSON number in JS
    assert float(MAX_SEED + 2) != MAX_SEED + 2
    torch.Generator().manual_seed(MAX_SEED)  # and a seed torch takes
    largest = dataclasses.replace(
        REQUEST, seed=MAX_SEED, guidance_scale=MAX_GUIDANCE_SCALE, fps=MAX_FPS
    )
    largest.validate(TINY)


def test_the_first_problem_is_reported() -> None:
    message = error_for(dataclasses.replace(REQUEST, width=30, frames=10))
    assert message.startswith("width: ")


def test_error_is_a_value_error_and_an_aiprod_error() -> None:
    from aiprod_core.errors import AiprodError

    with pytest.raises(ValueError, match="width=30"):
        dataclasses.replace(REQUEST, width=30).validate(TINY)
    assert issubclass(InvalidRequestError, AiprodError)


def test_two_stage_needs_sizes_that_fit_at_half_size() -> None:
    message = error_for(dataclasses.replace(REQUEST, width=24), upscale=2)
    assert message == (
        "width: width=24 does not fit two-stage generation: its first stage runs at width/2, "
        "so use a multiple of 16 (spatial compression 4 x patch 2 x 2), e.g. 16 or 32"
    )
    message = error_for(dataclasses.replace(REQUEST, height=8), upscale=2)
    assert message.startswith("height: height=8 does not fit two-stage generation")
    assert message.endswith("e.g. 16")


def test_frames_also_fit_a_temporal_patch() -> None:
    config = with_patch((2, 2, 2))  # latent frames 1 + k must be even: 3, 7, 11 frames
    for frames in (3, 7, 11):
        dataclasses.replace(REQUEST, frames=frames).validate(config)
    message = error_for(dataclasses.replace(REQUEST, frames=5), config)
    assert message == (
        "frames: frames=5 does not fit the model (temporal compression 2): use 1 + 2k frames "
        "with 1 + k a multiple of the transformer's patch length 2, e.g. 3 or 7"
    )
    assert error_for(dataclasses.replace(REQUEST, frames=1), config).endswith("e.g. 3")
    assert error_for(dataclasses.replace(REQUEST, frames=9), config).endswith("e.g. 7 or 11")


def test_defaults_come_from_the_model_config() -> None:
    request = GenerationRequest("waves")
    assert request.steps_for(TINY) == TINY.diffusion.default_steps == 20
    assert request.guidance_for(TINY) == TINY.diffusion.default_guidance
    resolved = request.resolved(TINY)
    assert (resolved.steps, resolved.guidance_scale) == (20, TINY.diffusion.default_guidance)
    explicit = GenerationRequest("waves", steps=3, guidance_scale=1.5).resolved(TINY)
    assert (explicit.steps, explicit.guidance_scale) == (3, 1.5)
    assert explicit.prompt == "waves"


def test_request_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        REQUEST.width = 8  # type: ignore[misc]


def test_generated_video_reports_its_size() -> None:
    frames = torch.zeros(5, 16, 24, 3, dtype=torch.uint8)
    video = GeneratedVideo(
        frames=frames, fps=12, latents=torch.zeros(1, 8, 3, 4, 6), request=REQUEST, seed=3
    )
    assert (video.num_frames, video.height, video.width) == (5, 16, 24)
