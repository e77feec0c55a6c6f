"""PipelineVideoGenerator: which weights it serves, its checks, and the pipeline it wraps."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from aiprod_core.config import AiprodConfig
from aiprod_core.errors import AiprodError
from aiprod_core.registry import RegistryError
from aiprod_pipelines.server.generator import (
    InvalidVideoRequest,
    PipelineVideoGenerator,
    ServerSetupError,
    VideoGenerator,
)
from aiprod_pipelines.server.schemas import VideoRequest
from aiprod_pipelines.server.testing import SyntheticVideoGenerator


def make_config(root: Path) -> AiprodConfig:
    return AiprodConfig.model_validate(
        {
            "project": {"name": "aiprod", "version": "0.1.0"},
            "paths": {
                "models_cache": str(root / "cache"),
                "checkpoints": str(root / "checkpoints"),
                "pretrained": str(root / "pretrained"),
                "outputs": str(root / "outputs"),
            },
            "models": {
                "aiprod-tiny": {
                    "file": "aiprod-tiny.safetensors",
                    "location": "checkpoints",
                    "preset": "tiny",
                    "obtain": "train it with the demo",
                },
                "aiprod-small": {
                    "file": "aiprod-small.safetensors",
                    "location": "checkpoints",
                    "preset": "small",
                },
            },
            "serving": {"default_model": "aiprod-tiny"},
        }
    )


@pytest.fixture
def config(tmp_path: Path) -> AiprodConfig:
    return make_config(tmp_path)


def test_both_generators_follow_the_protocol(config: AiprodConfig) -> None:
    assert isinstance(PipelineVideoGenerator(config), VideoGenerator)
    assert isinstance(SyntheticVideoGenerator(), VideoGenerator)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"model": "aiprod-tiny", "checkpoint": Path("x.safetensors")}, "--model and --checkpoint"),
        ({"preset": "tiny"}, "--preset only applies with --random-weights"),
        (
            {"random_weights": True, "checkpoint": Path("x.safetensors")},
            "--random-weights and --checkpoint",
        ),
    ],
)
def test_conflicting_choices_are_refused(
    config: AiprodConfig, options: dict[str, object], message: str
) -> None:
    with pytest.raises(ServerSetupError, match=message) as refused:
        PipelineVideoGenerator(config, **options)  # type: ignore[arg-type]
    assert isinstance(refused.value, AiprodError)


def test_an_unknown_model_names_the_known_ones(config: AiprodConfig) -> None:
    with pytest.raises(RegistryError, match="aiprod-small, aiprod-tiny"):
        PipelineVideoGenerator(config, model="aiprod-huge")


def test_model_names_say_what_is_served(config: AiprodConfig, tmp_path: Path) -> None:
    assert PipelineVideoGenerator(config).model_name == "aiprod-tiny"
    assert PipelineVideoGenerator(config, model="aiprod-small").model_name == "aiprod-small"
    checkpoint = PipelineVideoGenerator(config, checkpoint=tmp_path / "run7.safetensors")
    assert checkpoint.model_name == "run7"
    assert checkpoint.preset is None
    random = PipelineVideoGenerator(config, random_weights=True)
    assert random.preset == "tiny"
    assert random.model_name == "tiny (random weights, untrained)"
    small = PipelineVideoGenerator(config, model="aiprod-small", random_weights=True)
    assert small.preset == "small"
    assert PipelineVideoGenerator(config, random_weights=True, preset="small").preset == "small"


def test_check_names_the_missing_weights_and_how_to_get_them(config: AiprodConfig) -> None:
    with pytest.raises(RegistryError) as missing:
        PipelineVideoGenerator(config).check()
    assert str(config.model_file("aiprod-tiny")) in str(missing.value)
    assert "train it with the demo" in str(missing.value)


def test_check_of_a_missing_checkpoint(config: AiprodConfig, tmp_path: Path) -> None:
    path = tmp_path / "absent.safetensors"
    with pytest.raises(ServerSetupError, match=r"--checkpoint .*absent\.safetensors: no such file"):
        PipelineVideoGenerator(config, checkpoint=path).check()
    path.write_bytes(b"")
    PipelineVideoGenerator(config, checkpoint=path).check()


def test_check_passes_for_random_weights_and_present_files(config: AiprodConfig) -> None:
    PipelineVideoGenerator(config, random_weights=True).check()
    weights = config.model_file("aiprod-tiny")
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"")
    PipelineVideoGenerator(config).check()


def test_generate_before_load_is_a_programming_error(config: AiprodConfig) -> None:
    request = VideoRequest(prompt="x", width=16, height=16, frames=5)
    with pytest.raises(RuntimeError, match="before load"):
        PipelineVideoGenerator(config, random_weights=True).generate(request, lambda s, t: None)


def test_the_tiny_pipeline_validates_and_generates(config: AiprodConfig) -> None:
    generator = PipelineVideoGenerator(config, random_weights=True, device="cpu")
    generator.load()
    assert generator.source == "random weights (untrained)"
    with pytest.raises(InvalidVideoRequest, match="multiple of 8") as invalid:
        generator.validate(VideoRequest(prompt="x", width=12, height=16, frames=5))
    assert invalid.value.field == "width"
    with pytest.raises(InvalidVideoRequest) as blank:
        generator.validate(VideoRequest(prompt="  ", width=16, height=16, frames=5))
    assert blank.value.field == "prompt"

    request = VideoRequest(prompt="sunrise", width=16, height=24, frames=5, steps=2, seed=4)
    generator.validate(request)
    steps: list[tuple[int, int]] = []
    frames = generator.generate(request, lambda step, total: steps.append((step, total)))
    assert isinstance(frames, torch.Tensor)
    assert frames.dtype == torch.uint8
    assert tuple(frames.shape) == (5, 24, 16, 3)
    assert steps == [(1, 2), (2, 2)]
    unseeded = request.model_copy(update={"seed": None})
    assert torch.equal(
        generator.generate(unseeded, lambda s, t: None),
        generator.generate(request.model_copy(update={"seed": 0}), lambda s, t: None),
    )
