"""Every model file the trainer or the demo exports gets its sha256 sidecar, and is checked."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from aiprod_core.checkpoints import (
    CheckpointError,
    file_sha256,
    read_sidecar,
    save_checkpoint,
    sidecar_path,
)
from aiprod_core.models import build_model, get_preset
from aiprod_core.transformer import VideoTransformer
from aiprod_trainer.config import LoraSection
from aiprod_trainer.demo import stages
from aiprod_trainer.training.lora import (
    ADAPTER_WEIGHTS,
    AdapterError,
    add_lora,
    load_adapter,
    save_adapter,
)

TINY = get_preset("tiny")


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def test_the_demo_export_records_the_digest_of_the_registry_file(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = tmp_path / "run" / "model.safetensors"
    save_checkpoint(build_model(TINY), TINY, source)
    target = tmp_path / "models" / "checkpoints" / "aiprod-tiny.safetensors"
    digest = stages.export_model(source, target)
    assert digest == file_sha256(target) == read_sidecar(target)
    assert sidecar_path(target).read_text() == f"{digest}  aiprod-tiny.safetensors\n"


@pytest.mark.fault("models")
def test_a_bit_flipped_demo_export_is_refused(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = tmp_path / "run" / "model.safetensors"
    save_checkpoint(build_model(TINY), TINY, source)
    target = tmp_path / "aiprod-tiny.safetensors"
    stages.export_model(source, target)
    flip_last_byte(target)
    with pytest.raises(CheckpointError, match=r"sha256 mismatch: .*from its sidecar"):
        stages.load_bundle(target)
    assert not stages.same_weights(source, target)


def adapted() -> torch.nn.Module:
    torch.manual_seed(0)
    settings = LoraSection(rank=2, alpha=4)
    return add_lora(VideoTransformer(TINY.transformer), settings)


def test_a_saved_adapter_records_its_digest(tmp_path: Path) -> None:
    settings = LoraSection(rank=2, alpha=4)
    folder = save_adapter(adapted(), tmp_path / "adapter", settings, TINY)
    weights = folder / ADAPTER_WEIGHTS
    assert read_sidecar(weights) == file_sha256(weights)


@pytest.mark.fault("models")
def test_a_bit_flipped_adapter_is_refused(tmp_path: Path) -> None:
    settings = LoraSection(rank=2, alpha=4)
    folder = save_adapter(adapted(), tmp_path / "adapter", settings, TINY)
    weights = folder / ADAPTER_WEIGHTS
    flip_last_byte(weights)
    with pytest.raises(AdapterError) as caught:
        load_adapter(VideoTransformer(TINY.transformer), folder)
    message = str(caught.value)
    assert message.startswith(f"{weights}: sha256 mismatch")
    assert "adapter_model.safetensors.sha256" in message
