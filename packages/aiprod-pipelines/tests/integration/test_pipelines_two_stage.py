"""Two-stage generation (half size, latent upsampler x2, refine) with the tiny preset on CPU."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import torch

from aiprod_core.diffusion import FlowMatchSchedule
from aiprod_pipelines.pipelines import (
    GenerationRequest,
    InvalidRequestError,
    LoadedModel,
    TextToVideoPipeline,
    TwoStagePipeline,
)
from aiprod_pipelines.pipelines.stages import PromptEmbeddings

pytestmark = pytest.mark.integration

REQUEST = GenerationRequest("a harbour at dawn", width=32, height=16, frames=5, steps=3)


@pytest.fixture(scope="module")
def pipeline(tiny: LoadedModel) -> TwoStagePipeline:
    return TwoStagePipeline(tiny.model, progress=False)


def test_output_has_the_requested_size(pipeline: TwoStagePipeline) -> None:
    calls: list[tuple[int, int]] = []
    video = pipeline(
        REQUEST, refine_steps=2, progress_callback=lambda step, total: calls.append((step, total))
    )
    assert video.frames.shape == (5, 16, 32, 3)
    assert video.frames.dtype == torch.uint8
    assert video.latents.shape == (1, 8, 3, 4, 8)
    assert float(video.frames.float().std()) > 5
    assert calls == [(step, 5) for step in range(1, 6)]  # 3 steps + 2 refine steps


def test_deterministic_and_different_from_single_stage(
    pipeline: TwoStagePipeline, tiny: LoadedModel
) -> None:
    first = pipeline(REQUEST)
    again = pipeline(REQUEST)
    other_seed = pipeline(dataclasses.replace(REQUEST, seed=4))
    single = TextToVideoPipeline(tiny.model, progress=False)(REQUEST)
    assert torch.equal(first.frames, again.frames)
    assert not torch.equal(first.frames, other_seed.frames)
    assert single.frames.shape == first.frames.shape
    assert float((first.frames.float() - single.frames.float()).abs().mean()) > 5


def test_stages_compose_as_described(
    pipeline: TwoStagePipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stage 1 runs at half size on the full schedule; stage 2 refines the upsampled,
    renoised latents along the schedule's tail from refine_strength."""
    seen: list[tuple[tuple[int, ...], list[float], float]] = []
    original = TwoStagePipeline.denoise

    def spy(
        self: TwoStagePipeline,
        latents: torch.Tensor,
        sigmas: torch.Tensor,
        prompts: PromptEmbeddings,
        *args: object,
        pixel_scale: float = 1.0,
    ) -> torch.Tensor:
        seen.append((tuple(latents.shape), sigmas.tolist(), pixel_scale))
        return original(self, latents, sigmas, prompts, *args, pixel_scale=pixel_scale)  # type: ignore[arg-type]

    monkeypatch.setattr(TwoStagePipeline, "denoise", spy)
    pipeline(REQUEST, refine_steps=3, refine_strength=0.4)
    (small_shape, small_sigmas, small_scale), (full_shape, tail, full_scale) = seen
    assert small_shape == (1, 8, 3, 2, 4)
    assert full_shape == (1, 8, 3, 4, 8)
    # stage 1's tokens sit at the full-size video's pixels, like the upsampled ones
    assert (small_scale, full_scale) == (2, 1.0)
    schedule = FlowMatchSchedule(pipeline.model_config.diffusion)
    assert small_sigmas == schedule.sigmas(3, 3 * 1 * 2).tolist()
    assert len(tail) == 4
    assert tail[0] == pytest.approx(0.4)
    assert tail[-1] == 0.0


def test_an_untrained_upsampler_is_warned_about(
    pipeline: TwoStagePipeline, caplog: pytest.LogCaptureFixture
) -> None:
    assert not pipeline.model.upsampler.trained
    with caplog.at_level(logging.WARNING):
        pipeline(REQUEST, refine_steps=1)
    assert any("upsampler has never been trained" in r.getMessage() for r in caplog.records)
    caplog.clear()
    pipeline.model.upsampler.trained_steps.fill_(10)
    try:
        with caplog.at_level(logging.WARNING):
            pipeline(REQUEST, refine_steps=1)
    finally:
        pipeline.model.upsampler.trained_steps.fill_(0)
    assert not any("never been trained" in r.getMessage() for r in caplog.records)


def test_refine_strength_changes_the_result(pipeline: TwoStagePipeline) -> None:
    weak = pipeline(REQUEST, refine_strength=0.2)
    strong = pipeline(REQUEST, refine_strength=0.9)
    assert not torch.equal(weak.latents, strong.latents)


@pytest.mark.parametrize(
    ("changes", "kwargs", "field", "message"),
    [
        (
            {"width": 24},
            {},
            "width",
            (
                "width=24 does not fit two-stage generation: its first stage runs at width/2, "
                "so use a multiple of 16 (spatial compression 4 x patch 2 x 2), e.g. 16 or 32"
            ),
        ),
        ({"frames": 6}, {}, "frames", "e.g. 5 or 7"),
        ({}, {"refine_steps": 0}, "refine_steps", "refine_steps=0 is too small: use 1 or more"),
        (
            {},
            {"refine_strength": 0.0},
            "refine_strength",
            "refine_strength=0.0 is out of range: use a sigma in (0, 1], e.g. 0.5",
        ),
        ({}, {"refine_strength": 1.5}, "refine_strength", "refine_strength=1.5 is out of range"),
        ({}, {"refine_strength": float("nan")}, "refine_strength", "refine_strength=nan"),
    ],
)
def test_invalid_requests_name_their_field(
    pipeline: TwoStagePipeline,
    changes: dict[str, int],
    kwargs: dict[str, float],
    field: str,
    message: str,
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        pipeline(dataclasses.replace(REQUEST, **changes), **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
    assert message in str(info.value)
