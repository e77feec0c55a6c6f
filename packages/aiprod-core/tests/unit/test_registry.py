"""The model registry: names -> files under models/, with clear errors when they are not there."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from aiprod_core.checkpoints import CheckpointError, save_checkpoint, sidecar_path
from aiprod_core.config import load_config
from aiprod_core.errors import AiprodError
from aiprod_core.models import AiprodModel, build_model
from aiprod_core.models.presets import SMALL, TINY
from aiprod_core.registry import ModelRegistry, RegistryError


def registry_for(config_dir: Path, **models: dict[str, str]) -> ModelRegistry:
    """The fixture configuration, with ``models`` entries added or replaced."""
    base = config_dir / "AIPROD.json"
    data = json.loads(base.read_text())
    data["models"].update(models)
    base.write_text(json.dumps(data))
    return ModelRegistry(load_config(config_dir, env="development", environ={}))


@pytest.fixture
def registry(config_dir: Path) -> ModelRegistry:
    return registry_for(
        config_dir,
        cached={
            "file": "cached.safetensors",
            "location": "cache",
            "preset": "tiny",
            "obtain": "run scripts/data/fetch.py",
        },
    )


def test_names_and_expected_paths(registry: ModelRegistry, config_dir: Path) -> None:
    root = config_dir.parent.resolve()
    assert registry.names == ["big", "cached", "tiny"]
    assert registry.expected_path("tiny") == root / "models" / "checkpoints" / "tiny.safetensors"
    assert registry.expected_path("cached") == root / "models" / "cache" / "cached.safetensors"
    assert registry.expected_path("big") == Path("/srv/pretrained/big.safetensors")
    assert registry.entry("big").preset == "aiprod-19b"


def test_unknown_name_lists_the_known_ones(registry: ModelRegistry) -> None:
    with pytest.raises(RegistryError, match="model 'huge' is not in the registry") as caught:
        registry.resolve("huge")
    assert "known models: big, cached, tiny" in str(caught.value)
    assert isinstance(caught.value, AiprodError)


def test_missing_file_names_the_exact_path_and_how_to_obtain_it(registry: ModelRegistry) -> None:
    expected = registry.expected_path("cached")
    assert not registry.is_available("cached")
    with pytest.raises(RegistryError) as caught:
        registry.resolve("cached")
    message = str(caught.value)
    assert f"weights file {expected} is missing" in message
    assert "to obtain it: run scripts/data/fetch.py" in message


def test_missing_file_without_a_hint_says_where_to_add_one(registry: ModelRegistry) -> None:
    with pytest.raises(
        RegistryError, match=r"no 'obtain' hint is configured \(models\.tiny\.obtain\)"
    ):
        registry.load("tiny")


def test_a_folder_in_place_of_the_file(registry: ModelRegistry) -> None:
    registry.expected_path("tiny").mkdir(parents=True)
    with pytest.raises(RegistryError, match="is a folder, not a file"):
        registry.resolve("tiny")


def test_load_end_to_end(registry: ModelRegistry) -> None:
    torch.manual_seed(7)
    model = build_model(TINY)
    path = registry.expected_path("tiny")
    save_checkpoint(model, TINY, path)
    assert registry.is_available("tiny")
    assert registry.resolve("tiny") == path
    loaded, config = registry.load("tiny", dtype=torch.bfloat16)
    assert isinstance(loaded, AiprodModel)
    assert config == TINY
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor.to(torch.bfloat16)), name


def test_load_checks_the_entry_sha256(config_dir: Path) -> None:
    entry = {"file": "pinned.safetensors", "location": "checkpoints", "preset": "tiny"}
    registry = registry_for(config_dir, pinned={**entry, "sha256": "1" * 64})
    digest = save_checkpoint(build_model(TINY), TINY, registry.expected_path("pinned"))
    with pytest.raises(CheckpointError, match="sha256 mismatch") as caught:
        registry.load("pinned")
    assert "1" * 64 in str(caught.value)
    assert digest in str(caught.value)
    registry = registry_for(config_dir, pinned={**entry, "sha256": digest})
    assert registry.load("pinned")[1] == TINY


def test_preset_mismatch_names_file_and_both_presets(registry: ModelRegistry) -> None:
    path = registry.expected_path("tiny")
    save_checkpoint(build_model(TINY), SMALL, path)  # claims the small preset
    with pytest.raises(RegistryError) as caught:
        registry.load("tiny")
    message = str(caught.value)
    assert message.startswith(f"{path}: holds preset 'small'")
    assert "registry entry 'tiny' expects preset 'tiny'" in message


def flip_last_tensor_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.fault("models")
def test_a_bit_flipped_registry_model_fails_its_sidecar(registry: ModelRegistry) -> None:
    path = registry.expected_path("tiny")
    save_checkpoint(build_model(TINY), TINY, path)
    flip_last_tensor_byte(path)
    with pytest.raises(CheckpointError) as caught:
        registry.load("tiny")
    message = str(caught.value)
    assert message.startswith(f"{path}: sha256 mismatch")
    assert "from its sidecar tiny.safetensors.sha256" in message


@pytest.mark.fault("models")
def test_a_bit_flipped_registry_model_fails_its_pinned_digest(config_dir: Path) -> None:
    entry = {"file": "pinned.safetensors", "location": "checkpoints", "preset": "tiny"}
    path = registry_for(config_dir, pinned=entry).expected_path("pinned")
    digest = save_checkpoint(build_model(TINY), TINY, path)
    sidecar_path(path).unlink()
    flip_last_tensor_byte(path)
    registry = registry_for(config_dir, pinned={**entry, "sha256": digest})
    with pytest.raises(CheckpointError) as caught:
        registry.load("pinned")
    message = str(caught.value)
    assert message.startswith(f"{path}: sha256 mismatch: expected {digest} (from the caller)")
    assert "obtain it again" in message


@pytest.mark.fault("models")
def test_a_registry_model_with_no_known_digest_warns_once(
    registry: ModelRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    path = registry.expected_path("tiny")
    save_checkpoint(build_model(TINY), TINY, path)
    sidecar_path(path).unlink()
    with caplog.at_level(logging.WARNING):
        assert registry.load("tiny")[1] == TINY
        assert registry.load("tiny")[1] == TINY
    expected = (
        f"{path}: no sha256 is known for this file (registry models.tiny.sha256 is null "
        "and there is no tiny.safetensors.sha256 sidecar), so it is loaded unverified; "
        "run `nox -s maintenance -- verify_models --pin` to record its digest"
    )
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        ("aiprod_core.registry", expected)
    ]


def test_a_registry_model_with_a_sidecar_loads_without_warning(
    registry: ModelRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    save_checkpoint(build_model(TINY), TINY, registry.expected_path("tiny"))
    with caplog.at_level(logging.WARNING):
        registry.load("tiny")
    assert caplog.records == []
