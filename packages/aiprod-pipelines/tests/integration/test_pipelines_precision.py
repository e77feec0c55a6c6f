"""How the commands run a model: default dtype per device, TF32 on CUDA, the text encoder
offloaded to the CPU between prompts.

On the CPU the offload's moves are to the CPU itself, so those tests check that the
option leaves the video unchanged and that the moves bracket exactly the prompt encoding;
the ``gpu`` tests check the real moves, placement and memory on a CUDA device.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from aiprod_core.checkpoints import save_checkpoint
from aiprod_pipelines.cli import main
from aiprod_pipelines.pipelines import (
    GenerationRequest,
    ImageToVideoPipeline,
    LoadedModel,
    TextToVideoPipeline,
    load_model,
    resolve_precision,
)
from aiprod_pipelines.pipelines.base import OFFLOAD_DEVICE

pytestmark = pytest.mark.integration

REQUEST = GenerationRequest("a red kite over green hills", width=16, height=16, frames=5, steps=2)
FAST = ["--width", "16", "--height", "16", "--frames", "5", "--steps", "2"]
RANDOM = ["--random-weights", "--preset", "tiny", "--json", "--quiet"]


@pytest.fixture
def tf32_flags() -> Iterator[None]:
    """Restore the process-wide TF32 flags a test changes."""
    matmul = torch.backends.cuda.matmul.allow_tf32
    cudnn = torch.backends.cudnn.allow_tf32
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul
        torch.backends.cudnn.allow_tf32 = cudnn


def devices_of(module: torch.nn.Module) -> set[str]:
    return {p.device.type for p in module.parameters()}


def record_moves(encoder: torch.nn.Module, events: list[tuple[str, str]]) -> None:
    """Log each ``encoder.to(device)`` and ``encoder.encode`` call into ``events``."""
    real_to, real_encode = encoder.to, encoder.encode

    def to(*args: Any, **kwargs: Any) -> torch.nn.Module:
        events.append(("to", str(torch.device(args[0] if args else kwargs["device"]))))
        return real_to(*args, **kwargs)

    def encode(*args: Any, **kwargs: Any) -> Any:
        events.append(("encode", ",".join(sorted(devices_of(encoder)))))
        return real_encode(*args, **kwargs)

    object.__setattr__(encoder, "to", to)
    object.__setattr__(encoder, "encode", encode)


def test_the_video_is_the_same_with_the_text_encoder_offloaded(tiny: LoadedModel) -> None:
    image = np.full((16, 16, 3), 90, np.uint8)
    for pipeline_class, extra in ((TextToVideoPipeline, ()), (ImageToVideoPipeline, (image,))):
        kept = pipeline_class(copy.deepcopy(tiny.model), progress=False)
        offloaded = pipeline_class(
            copy.deepcopy(tiny.model), progress=False, offload_text_encoder=True
        )
        reference, video = kept(REQUEST, *extra), offloaded(REQUEST, *extra)
        assert torch.equal(video.frames, reference.frames), pipeline_class.__name__
        assert torch.equal(video.latents, reference.latents), pipeline_class.__name__
        assert devices_of(offloaded.model.text_encoder) == {OFFLOAD_DEVICE.type}


def test_the_offloaded_encoder_moves_to_the_device_only_to_encode(tiny: LoadedModel) -> None:
    model = copy.deepcopy(tiny.model)
    events: list[tuple[str, str]] = []
    record_moves(model.text_encoder, events)
    pipeline = TextToVideoPipeline(model, progress=False, offload_text_encoder=True)
    assert events == [("to", "cpu")]  # parked at once
    pipeline(REQUEST)
    device = str(pipeline.device)
    assert events[1:] == [
        ("to", device),  # brought to the pipeline's device,
        ("encode", device),  # the prompt
        ("encode", device),  # and the negative prompt encoded there,
        ("to", "cpu"),  # then parked again
    ]
    assert not any(p.is_inference() for p in model.text_encoder.parameters())


def test_without_offload_the_encoder_never_moves(tiny: LoadedModel) -> None:
    model = copy.deepcopy(tiny.model)
    events: list[tuple[str, str]] = []
    record_moves(model.text_encoder, events)
    TextToVideoPipeline(model, progress=False)(REQUEST)
    assert [kind for kind, _ in events] == ["encode", "encode"]


def test_a_cpu_pipeline_leaves_the_tf32_flags_alone(tiny: LoadedModel, tf32_flags: None) -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    TextToVideoPipeline(copy.deepcopy(tiny.model), device="cpu", progress=False)
    assert torch.backends.cuda.matmul.allow_tf32 is False


def test_the_cli_runs_float32_on_the_cpu_unless_told(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["waves", "-o", str(tmp_path / "a.mp4"), *RANDOM, *FAST, "--device", "cpu"]) == 0
    default = json.loads(capsys.readouterr().out)["model"]
    assert (default["device"], default["dtype"]) == ("cpu", "float32")
    argv = ["waves", "-o", str(tmp_path / "b.mp4"), *RANDOM, *FAST]
    assert main([*argv, "--device", "cpu", "--dtype", "bf16", "--offload-text-encoder"]) == 0
    chosen = json.loads(capsys.readouterr().out)["model"]
    assert (chosen["device"], chosen["dtype"]) == ("cpu", "bfloat16")
    assert (tmp_path / "b.mp4").stat().st_size > 0


# --- on a CUDA device ---------------------------------------------------------------------


@pytest.mark.gpu
def test_cuda_defaults_to_bfloat16_and_tf32(tiny: LoadedModel, tf32_flags: None) -> None:
    ampere = torch.cuda.get_device_capability() >= (8, 0)
    device, dtype = resolve_precision(None, None)
    assert device.type == "cuda"
    assert dtype is (torch.bfloat16 if ampere else torch.float32)
    assert resolve_precision(None, "fp32")[1] is torch.float32  # an explicit choice wins
    torch.backends.cuda.matmul.allow_tf32 = False
    pipeline = TextToVideoPipeline(copy.deepcopy(tiny.model), device=device, dtype=dtype)
    assert torch.backends.cuda.matmul.allow_tf32 is True
    assert torch.backends.cudnn.allow_tf32 is True
    assert {p.dtype for p in pipeline.model.transformer.parameters()} == {dtype}


@pytest.mark.gpu
def test_the_cli_defaults_to_bfloat16_on_cuda(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if torch.cuda.get_device_capability() < (8, 0):
        pytest.skip("this GPU has no bf16 tensor cores: its default is float32")
    assert main(["waves", "-o", str(tmp_path / "a.mp4"), *RANDOM, *FAST]) == 0
    model = json.loads(capsys.readouterr().out)["model"]
    assert model["device"].startswith("cuda")
    assert model["dtype"] == "bfloat16"


@pytest.mark.gpu
def test_a_float32_checkpoint_lands_on_cuda_in_bfloat16(tmp_path: Path, tiny: LoadedModel) -> None:
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(tiny.model, tiny.model_config, path)
    loaded = load_model(checkpoint=path, device="cuda", dtype=torch.bfloat16)
    state = loaded.model.state_dict()
    for name, tensor in tiny.model.state_dict().items():
        assert state[name].device.type == "cuda", name
        want = tensor.to(torch.bfloat16) if tensor.is_floating_point() else tensor
        assert state[name].dtype == want.dtype, name
        assert torch.equal(state[name].cpu(), want), name


@pytest.mark.gpu
def test_offloading_on_cuda_frees_the_encoders_memory_and_keeps_the_video(
    tiny: LoadedModel,
) -> None:
    request = GenerationRequest("a red kite", width=32, height=32, frames=9, steps=3)
    reference = TextToVideoPipeline(copy.deepcopy(tiny.model), device="cuda", progress=False)(
        request
    )
    model = copy.deepcopy(tiny.model).to("cuda")
    encoder_bytes = sum(p.numel() * p.element_size() for p in model.text_encoder.parameters())
    before = torch.cuda.memory_allocated()
    pipeline = TextToVideoPipeline(model, device="cuda", progress=False, offload_text_encoder=True)
    assert before - torch.cuda.memory_allocated() >= encoder_bytes
    assert devices_of(model.text_encoder) == {"cpu"}
    video = pipeline(request)
    assert devices_of(model.text_encoder) == {"cpu"}
    assert devices_of(model.transformer) == devices_of(model.vae) == {"cuda"}
    assert not any(p.is_inference() for p in model.text_encoder.parameters())
    # The same kernels on the same device; at most a level of 255 from CUDA's rounding.
    assert int((video.frames.int() - reference.frames.int()).abs().max()) <= 1
