"""load_model: registry names, checkpoint files and (only when asked) random weights."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch

from aiprod_core.checkpoints import CheckpointError, save_checkpoint, sidecar_path
from aiprod_core.config import AiprodConfig, find_config_dir, load_config
from aiprod_core.errors import ConfigError
from aiprod_core.models import AiprodModel, build_model
from aiprod_core.models.presets import TINY
from aiprod_core.registry import RegistryError
from aiprod_core.text import TextEmbedding
from aiprod_pipelines.pipelines import (
    RANDOM_WEIGHTS_SOURCE,
    GenerationRequest,
    ModelLoadError,
    TextToVideoPipeline,
    default_device,
    load_model,
    resolve_precision,
)
from aiprod_pipelines.pipelines.base import OFFLOAD_DEVICE
from aiprod_pipelines.pipelines.loading import place_model


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """A copy of the repository's config/ under tmp_path, so model paths resolve there."""
    source = find_config_dir(start=Path(__file__).parent, environ={})
    return Path(shutil.copytree(source, tmp_path / "config"))


@pytest.fixture
def config(config_dir: Path) -> AiprodConfig:
    return load_config(config_dir, env="development", environ={})


def tiny_weights(seed: int = 0) -> AiprodModel:
    torch.manual_seed(seed)
    return build_model(TINY)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    left, right = a.state_dict(), b.state_dict()
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


def test_missing_registry_weights_name_the_expected_path(config: AiprodConfig) -> None:
    expected = config.root / "models" / "checkpoints" / "aiprod-tiny.safetensors"
    with pytest.raises(RegistryError) as info:
        load_model(config=config, device="cpu")
    message = str(info.value)
    assert str(expected) in message
    assert "is missing" in message
    assert "nox -s demo" in message  # how to obtain it


def test_unknown_registry_name_lists_the_known_ones(config: AiprodConfig) -> None:
    with pytest.raises(RegistryError, match="known models: aiprod-19b, aiprod-small, aiprod-tiny"):
        load_model("nope", config=config, device="cpu")


def test_registry_model_loads_in_eval_mode(config: AiprodConfig) -> None:
    weights = tiny_weights(3)
    path = config.model_file("aiprod-tiny")
    save_checkpoint(weights, TINY, path)
    loaded = load_model("aiprod-tiny", config=config, device="cpu")
    assert loaded.model_config == TINY
    assert loaded.name == "aiprod-tiny"
    assert loaded.source == f"registry model 'aiprod-tiny' ({path})"
    assert same_weights(loaded.model, weights)
    assert not loaded.model.training
    assert not any(p.requires_grad for p in loaded.model.parameters())


def test_default_model_comes_from_the_config_found_in_the_environment(
    config_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIPROD_CONFIG_DIR", str(config_dir))
    monkeypatch.setenv("AIPROD_ENV", "development")
    save_checkpoint(
        tiny_weights(), TINY, config_dir.parent / "models/checkpoints/aiprod-tiny.safetensors"
    )
    loaded = load_model(device="cpu", dtype=torch.float64)
    assert loaded.name == "aiprod-tiny"
    assert next(loaded.model.parameters()).dtype == torch.float64


def test_checkpoint_file_loads_with_its_own_config(tmp_path: Path) -> None:
    weights = tiny_weights(4)
    path = tmp_path / "run.safetensors"
    save_checkpoint(weights, TINY, path)
    loaded = load_model(checkpoint=path, device="cpu")
    assert loaded.source == f"checkpoint {path}"
    assert loaded.name is None
    assert loaded.model_config == TINY
    assert same_weights(loaded.model, weights)


@pytest.mark.parametrize(
    "extra",
    [{"name": "aiprod-tiny"}, {"preset": "tiny"}, {"random_weights": True}],
)
def test_checkpoint_excludes_other_sources(tmp_path: Path, extra: dict[str, object]) -> None:
    with pytest.raises(ModelLoadError, match=r"checkpoint=.*run.safetensors names the weights"):
        load_model(checkpoint=tmp_path / "run.safetensors", **extra)  # type: ignore[arg-type]


def test_preset_alone_needs_the_random_weights_flag() -> None:
    with pytest.raises(ModelLoadError, match="pass random_weights=True") as info:
        load_model(preset="tiny")
    assert "preset='tiny' names an architecture, not weights" in str(info.value)


def test_random_weights_are_seeded_and_leave_the_global_rng_alone() -> None:
    state = torch.get_rng_state()
    first = load_model(preset="tiny", random_weights=True, device="cpu")
    assert torch.equal(torch.get_rng_state(), state)
    again = load_model(preset="tiny", random_weights=True, device="cpu")
    other = load_model(preset="tiny", random_weights=True, device="cpu", seed=1)
    assert first.source == RANDOM_WEIGHTS_SOURCE == "random weights (untrained)"
    assert first.name is None
    assert first.model_config == TINY
    assert same_weights(first.model, again.model)
    assert not same_weights(first.model, other.model)
    assert not first.model.training


def test_random_weights_without_preset_use_the_registry_entry(
    config: AiprodConfig, config_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = load_model(random_weights=True, config=config, device="cpu", dtype=torch.float64)
    assert loaded.model_config.preset == "tiny"  # serving.default_model is aiprod-tiny
    assert next(loaded.model.parameters()).dtype == torch.float64
    monkeypatch.setenv("AIPROD_CONFIG_DIR", str(config_dir))
    monkeypatch.delenv("AIPROD_ENV", raising=False)
    assert load_model("aiprod-tiny", random_weights=True, device="cpu").model_config == TINY


def test_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown model preset 'huge'; expected one of: tiny"):
        load_model(preset="huge", random_weights=True)


def test_default_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_device() == torch.device("cuda")


class FakeAdapter:
    """A pretrained text encoder stand-in: not a module, moved with its own ``to``."""

    dim = TINY.text_encoder.dim
    max_length = TINY.text_encoder.max_length

    def __init__(self) -> None:
        self.moved_to: list[torch.device | str] = []

    def encode(self, prompts: list[str], device: torch.device | str | None = None) -> TextEmbedding:
        tokens = torch.zeros(len(prompts), self.max_length, self.dim)
        return TextEmbedding(tokens, torch.ones(len(prompts), self.max_length, dtype=torch.bool))

    def to(self, device: torch.device | str) -> FakeAdapter:
        self.moved_to.append(device)
        return self


def test_place_model_moves_a_pretrained_adapter_separately() -> None:
    adapter = FakeAdapter()
    model = AiprodModel(TINY, text_encoder=adapter)
    assert place_model(model, None, None) is model
    assert adapter.moved_to == []
    place_model(model, None, torch.float64)
    assert adapter.moved_to == []
    assert next(model.parameters()).dtype == torch.float64
    place_model(model, torch.device("cpu"), None)
    assert adapter.moved_to == [torch.device("cpu")]


def test_an_offloaded_pretrained_adapter_moves_only_around_the_encoding() -> None:
    adapter = FakeAdapter()
    model = AiprodModel(TINY, text_encoder=adapter)
    pipeline = TextToVideoPipeline(model, device="cpu", progress=False, offload_text_encoder=True)
    cpu = torch.device("cpu")
    moves = [torch.device(device) for device in adapter.moved_to]
    assert moves == [cpu, OFFLOAD_DEVICE]  # placed with the model, then parked
    pipeline.encode(GenerationRequest("a kite", negative_prompt="fog"))
    assert [torch.device(device) for device in adapter.moved_to[2:]] == [
        pipeline.device,
        OFFLOAD_DEVICE,
    ]


def test_resolve_precision_defaults_per_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_precision(None, None) == (torch.device("cpu"), torch.float32)
    assert resolve_precision("cpu", "bf16") == (torch.device("cpu"), torch.bfloat16)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    assert resolve_precision(None, "auto") == (torch.device("cuda"), torch.bfloat16)
    assert resolve_precision("cuda:1", torch.float32) == (torch.device("cuda:1"), torch.float32)
    assert resolve_precision("cpu", None) == (torch.device("cpu"), torch.float32)


def flip_last_tensor_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.fault("models")
def test_a_shipped_registry_entry_without_digest_loads_with_one_clear_warning(
    config: AiprodConfig, caplog: pytest.LogCaptureFixture
) -> None:
    assert config.models["aiprod-tiny"].sha256 is None  # as shipped
    path = config.model_file("aiprod-tiny")
    save_checkpoint(tiny_weights(6), TINY, path)
    sidecar_path(path).unlink()
    with caplog.at_level(logging.WARNING):
        load_model("aiprod-tiny", config=config, device="cpu")
        load_model("aiprod-tiny", config=config, device="cpu")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1
    assert messages[0].startswith(f"{path}: no sha256 is known for this file")
    assert "models.aiprod-tiny.sha256 is null" in messages[0]
    assert messages[0].endswith("`nox -s maintenance -- verify_models --pin` to record its digest")


@pytest.mark.fault("models")
def test_a_bit_flipped_registry_model_is_refused(config: AiprodConfig) -> None:
    path = config.model_file("aiprod-tiny")
    save_checkpoint(tiny_weights(7), TINY, path)
    flip_last_tensor_byte(path)
    with pytest.raises(CheckpointError, match=r"sha256 mismatch: .*from its sidecar"):
        load_model("aiprod-tiny", config=config, device="cpu")


@pytest.mark.fault("models")
def test_a_checkpoint_without_sidecar_loads_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "run.safetensors"
    save_checkpoint(tiny_weights(8), TINY, path)
    sidecar_path(path).unlink()
    with caplog.at_level(logging.WARNING):
        load_model(checkpoint=path, device="cpu")
        load_model(checkpoint=path, device="cpu")
    messages = [r.getMessage() for r in caplog.records]
    expected = (
        f"{path}: no sha256 is known for this file (none was given and there is no "
        "run.safetensors.sha256 sidecar), so it is loaded unverified; to verify it from now "
        "on, record its digest: `sha256sum run.safetensors > run.safetensors.sha256` in its "
        "folder"
    )
    assert messages == [expected]


@pytest.mark.fault("models")
def test_a_bit_flipped_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "run.safetensors"
    save_checkpoint(tiny_weights(9), TINY, path)
    flip_last_tensor_byte(path)
    with pytest.raises(CheckpointError) as caught:
        load_model(checkpoint=path, device="cpu")
    assert str(caught.value).startswith(f"{path}: sha256 mismatch")
