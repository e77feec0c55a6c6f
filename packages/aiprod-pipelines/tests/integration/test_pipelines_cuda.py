"""The pipelines on a CUDA device: placement, bf16, and results that match the CPU's.

Noise is drawn on the CPU from the seed and then moved, so a CUDA run starts from the same
latents as a CPU run; the two differ only by kernel rounding (TF32 convolutions, fused
attention). Skipped, with the reason, on hosts without a CUDA device.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from aiprod_pipelines.pipelines import (
    GenerationRequest,
    ImageToVideoPipeline,
    LoadedModel,
    TextToVideoPipeline,
    TwoStagePipeline,
    load_model,
    prepare_image,
)
from aiprod_pipelines.pipelines.stages import decode_latents, video_to_uint8

pytestmark = [pytest.mark.gpu, pytest.mark.integration]

REQUEST = GenerationRequest("a red kite over green hills", width=32, height=32, frames=9, steps=4)


@pytest.fixture(scope="module")
def cpu_model() -> LoadedModel:
    loaded = load_model(preset="tiny", random_weights=True, device="cpu")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        torch.nn.init.normal_(loaded.model.transformer.final_proj.weight, std=0.5)
    return loaded


def mean_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().mean())


def test_cuda_float32_matches_the_cpu(cpu_model: LoadedModel) -> None:
    reference = TextToVideoPipeline(copy.deepcopy(cpu_model.model), progress=False)(REQUEST)
    pipeline = TextToVideoPipeline(copy.deepcopy(cpu_model.model), device="cuda", progress=False)
    assert pipeline.device.type == "cuda"
    video = pipeline(REQUEST)
    assert video.frames.device.type == "cpu"
    assert video.frames.shape == reference.frames.shape == (9, 32, 32, 3)
    assert mean_abs(video.frames, reference.frames) < 2  # levels of 255


def test_cuda_bfloat16_is_repeatable_for_every_pipeline(cpu_model: LoadedModel) -> None:
    model = copy.deepcopy(cpu_model.model)
    for pipeline, extra in (
        (TextToVideoPipeline(model, device="cuda", dtype=torch.bfloat16, progress=False), ()),
        (TwoStagePipeline(model, progress=False), ()),
        (ImageToVideoPipeline(model, progress=False), (np.full((32, 32, 3), 90, np.uint8),)),
    ):
        first = pipeline(REQUEST, *extra)
        again = pipeline(REQUEST, *extra)
        assert first.frames.shape == (9, 32, 32, 3)
        assert first.latents.dtype == torch.float32
        assert int((first.frames.int() - again.frames.int()).abs().max()) <= 1


def test_cuda_image_conditioning_keeps_the_vae_round_trip(cpu_model: LoadedModel) -> None:
    model = copy.deepcopy(cpu_model.model)
    pipeline = ImageToVideoPipeline(model, device="cuda", progress=False)
    image = np.zeros((32, 32, 3), np.uint8)
    image[8:24, 8:24] = (220, 40, 60)
    video = pipeline(REQUEST, image)
    with torch.inference_mode():
        latent = model.vae.encode(prepare_image(image, 32, 32).cuda()).mode()
        expected = video_to_uint8(decode_latents(model.vae, latent))[0]
    assert int((video.frames[0].int() - expected.int()).abs().max()) <= 1
    assert mean_abs(video.frames[1:], expected) > 5
