"""PipelineVideoGenerator: which weights it serves, its checks, and the pipeline it wraps."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aiprod_core.checkpoints import save_checkpoint
from aiprod_core.config import AiprodConfig
from aiprod_core.errors import AiprodError
from aiprod_core.models import build_model
from aiprod_core.models.configs import GenerationDefaults
from aiprod_core.models.presets import get_preset
from aiprod_core.registry import RegistryError
from aiprod_pipelines.pipelines.request import InvalidRequestError
from aiprod_pipelines.server.generator import (
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
    with pytest.raises(ServerSetupError, match=r"absent\.safetensors: is truncated"):
        PipelineVideoGenerator(config, checkpoint=path).check()


def test_check_passes_for_random_weights_and_present_files(config: AiprodConfig) -> None:
    PipelineVideoGenerator(config, random_weights=True).check()
    weights = config.model_file("aiprod-tiny")
    weights.parent.mkdir(parents=True)
    tiny = get_preset("tiny")
    save_checkpoint(build_model(tiny), tiny, weights)
    PipelineVideoGenerator(config).check()


def test_generate_before_load_is_a_programming_error(config: AiprodConfig) -> None:
    request = VideoRequest(prompt="x", width=16, height=16, frames=5).resolved(GenerationDefaults())
    generator = PipelineVideoGenerator(config, random_weights=True)
    with pytest.raises(RuntimeError, match="before load"):
        generator.generate(request, lambda s, t: None)
    with pytest.raises(RuntimeError, match="before load"):
        generator.defaults()


def png_data(size: tuple[int, int], colour: tuple[int, int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def truncated_jpeg() -> str:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="JPEG")
    raw = buffer.getvalue()
    return base64.b64encode(raw[: len(raw) // 2]).decode()


@pytest.fixture(scope="module")
def tiny_generator(tmp_path_factory: pytest.TempPathFactory) -> PipelineVideoGenerator:
    generator = PipelineVideoGenerator(
        make_config(tmp_path_factory.mktemp("tiny")), random_weights=True, device="cpu"
    )
    generator.load()
    return generator


def test_the_served_models_defaults_fill_in_a_request(
    tiny_generator: PipelineVideoGenerator,
) -> None:
    assert tiny_generator.defaults() == get_preset("tiny").generation
    request = VideoRequest(prompt="dusk", steps=1).resolved(tiny_generator.defaults())
    tiny_generator.validate(request)
    frames = tiny_generator.generate(request, lambda step, total: None)
    defaults = tiny_generator.defaults()
    assert tuple(frames.shape) == (defaults.frames, defaults.height, defaults.width, 3)


@pytest.mark.fault("server")
def test_an_image_that_does_not_decode_fails_the_job_naming_it(
    tiny_generator: PipelineVideoGenerator,
) -> None:
    images = [{"data": png_data((8, 8), (1, 2, 3))}, {"data": truncated_jpeg(), "frame": 4}]
    request = VideoRequest.model_validate(
        {"prompt": "x", "width": 16, "height": 16, "frames": 5, "steps": 1, "images": images}
    ).resolved(tiny_generator.defaults())
    with pytest.raises(
        InvalidRequestError, match=r"^images\.1\.data: the JPEG image cannot"
    ) as bad:
        tiny_generator.generate(request, lambda step, total: None)
    assert bad.value.field == "images.1.data"


def test_a_request_with_images_runs_image_to_video(
    tiny_generator: PipelineVideoGenerator,
) -> None:
    images = [
        {"data": png_data((20, 30), (200, 0, 0))},
        {"data": png_data((9, 9), (0, 0, 200)), "frame": 4},
    ]
    request = VideoRequest.model_validate(
        {"prompt": "x", "width": 16, "height": 24, "frames": 5, "steps": 1, "images": images}
    ).resolved(tiny_generator.defaults())
    tiny_generator.validate(request)
    steps: list[tuple[int, int]] = []
    frames = tiny_generator.generate(request, lambda step, total: steps.append((step, total)))
    assert tuple(frames.shape) == (5, 24, 16, 3)
    assert steps == [(1, 1)]


def test_the_tiny_pipeline_validates_and_generates(config: AiprodConfig) -> None:
    generator = PipelineVideoGenerator(config, random_weights=True, device="cpu")
    generator.load()
    assert generator.source == "random weights (untrained)"
    defaults = generator.defaults()
    with pytest.raises(InvalidRequestError, match="multiple of 8") as invalid:
        generator.validate(VideoRequest(prompt="x", width=12, height=16).resolved(defaults))
    assert invalid.value.field == "width"
    with pytest.raises(InvalidRequestError) as blank:
        generator.validate(VideoRequest(prompt="  ", width=16, height=16).resolved(defaults))
    assert blank.value.field == "prompt"

    request = VideoRequest(
        prompt="sunrise", width=16, height=24, frames=5, steps=2, seed=4
    ).resolved(defaults)
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


def with_serving(config: AiprodConfig, **serving: object) -> AiprodConfig:
    return config.model_copy(update={"serving": config.serving.model_copy(update=serving)})


def test_the_dtype_comes_from_serving_dtype_unless_given(
    config: AiprodConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    auto = PipelineVideoGenerator(config)
    assert (auto.torch_device, auto.torch_dtype) == (torch.device("cpu"), torch.float32)
    assert auto.offload_text_encoder is False
    configured = with_serving(config, dtype="bfloat16", offload_text_encoder=True)
    chosen = PipelineVideoGenerator(configured, device="cpu")
    assert chosen.torch_dtype is torch.bfloat16
    assert chosen.offload_text_encoder is True
    given = PipelineVideoGenerator(
        configured, device="cpu", dtype="fp32", offload_text_encoder=False
    )
    assert given.torch_dtype is torch.float32
    assert given.offload_text_encoder is False


def test_auto_is_bfloat16_on_a_cuda_device_with_bf16_tensor_cores(
    config: AiprodConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    generator = PipelineVideoGenerator(config)
    assert (generator.torch_device, generator.torch_dtype) == (
        torch.device("cuda"),
        torch.bfloat16,
    )
    assert PipelineVideoGenerator(config, device="cpu").torch_dtype is torch.float32


def test_a_device_torch_does_not_know_is_a_setup_error(config: AiprodConfig) -> None:
    with pytest.raises(ServerSetupError, match=r"--device 'gpu0' is not a torch device"):
        PipelineVideoGenerator(config, device="gpu0")
    with pytest.raises(ServerSetupError, match=r"--dtype: unknown dtype 'int4'"):
        PipelineVideoGenerator(config, device="cpu", dtype="int4")


def test_the_loaded_model_runs_in_the_chosen_dtype_with_the_encoder_offloaded(
    config: AiprodConfig,
) -> None:
    configured = with_serving(config, dtype="bfloat16", offload_text_encoder=True)
    generator = PipelineVideoGenerator(configured, random_weights=True, device="cpu")
    generator.load()
    request = VideoRequest(prompt="dusk", width=16, height=16, frames=5, steps=1)
    frames = generator.generate(request.resolved(generator.defaults()), lambda s, t: None)
    assert tuple(frames.shape) == (5, 16, 16, 3)
    pipeline = generator._pipeline
    assert pipeline is not None
    assert pipeline.offload_text_encoder is True
    assert {p.dtype for p in pipeline.model.transformer.parameters()} == {torch.bfloat16}
