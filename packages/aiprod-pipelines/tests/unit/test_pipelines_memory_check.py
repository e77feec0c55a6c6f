"""A model that cannot fit this host is refused in one line before anything is allocated:
by load_model, aiprod-generate (exit 1) and aiprod-serve's start-up check."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from aiprod_core.config import load_config
from aiprod_core.memory import GIB
from aiprod_core.models import get_preset
from aiprod_pipelines.cli import main
from aiprod_pipelines.pipelines import (
    InsufficientMemoryError,
    check_host_memory,
    load_model,
    loading,
    model_config_of,
)
from aiprod_pipelines.server.generator import PipelineVideoGenerator, ServerSetupError

MESSAGE = (
    r"^aiprod-19b in float32 needs ~\d+ GiB of weights; this host has 24 GiB of RAM and no "
    r"GPU; see `nox -s dev -- plan_memory`$"
)


@pytest.fixture
def small_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU host with 24 GiB free, on which building any model is a test failure."""
    monkeypatch.setattr(loading, "device_memory", lambda device: 24 * GIB)
    monkeypatch.setattr("aiprod_core.memory.host.gpu_memory", lambda: ())

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was built although it cannot fit")

    monkeypatch.setattr(loading, "build_model", refuse)


def test_the_19b_preset_is_refused_before_it_is_built(small_host: None) -> None:
    with pytest.raises(InsufficientMemoryError, match=MESSAGE):
        load_model(preset="aiprod-19b", random_weights=True, device="cpu")


def test_a_model_that_fits_passes_and_the_figures_scale() -> None:
    tiny = get_preset("tiny")
    check_host_memory(tiny, "cpu", None, free_bytes=24 * GIB)  # no error
    with pytest.raises(InsufficientMemoryError, match=r"^tiny in float32 needs"):
        check_host_memory(tiny, "cpu", None, free_bytes=1024)
    big = get_preset("aiprod-19b")
    check_host_memory(big, "cuda", torch.bfloat16, free_bytes=80 * GIB)  # tiled decode: fits
    with pytest.raises(InsufficientMemoryError, match="in float32 needs ~81 GiB of weights"):
        check_host_memory(big, "cuda", None, free_bytes=80 * GIB)  # None: as stored, float32
    with pytest.raises(InsufficientMemoryError, match=r"the GPU \(cuda\) has 24 GiB"):
        check_host_memory(big, "cuda", torch.bfloat16, free_bytes=24 * GIB)


def test_aiprod_generate_exits_1_with_one_line(
    small_host: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = ["a red circle", "--random-weights", "--preset", "aiprod-19b", "--device", "cpu"]
    assert main([*argv, "-o", str(tmp_path / "out.mp4")]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(errors) == 1
    assert "aiprod-19b in float32 needs" in errors[0]
    assert not (tmp_path / "out.mp4").exists()


def test_aiprod_serve_start_up_check_refuses_it(small_host: None) -> None:
    generator = PipelineVideoGenerator(
        load_config(), random_weights=True, preset="aiprod-19b", device="cpu"
    )
    with pytest.raises(ServerSetupError, match=MESSAGE):
        generator.check()


def test_model_config_of_reads_presets_only_for_random_weights() -> None:
    config = load_config()
    assert model_config_of(preset="small", random_weights=True, config=config).preset == "small"
    default = config.models[config.serving.default_model].preset
    assert model_config_of(random_weights=True, config=config).preset == default
