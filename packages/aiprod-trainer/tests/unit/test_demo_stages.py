"""The demo's stage helpers that need no training: names, prompt fit, weights comparison."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from aiprod_core.checkpoints import save_checkpoint
from aiprod_core.models import build_model, get_preset
from aiprod_core.models.configs import TextEncoderConfig
from aiprod_trainer.demo import stages
from aiprod_trainer.demo.stages import DemoError

PROMPT = "a red circle moving left on a blue background"


def test_clip_name_keeps_the_content_words() -> None:
    assert stages.clip_name(3, PROMPT) == "03-red-circle-left-blue.mp4"
    assert stages.clip_name(0, "A  Big, RED thing!") == "00-big-red-thing.mp4"


def test_prompt_truncations_names_prompts_the_text_encoder_cuts() -> None:
    tiny = get_preset("tiny")
    short = tiny.model_copy(
        update={"text_encoder": tiny.text_encoder.model_copy(update={"max_length": 12})}
    )
    lines = stages.prompt_truncations(short, [PROMPT, "a red"])
    expected = (
        f"{PROMPT!r} has 45 bytes but preset 'tiny' reads 10 (text_encoder.max_length 12): "
        "the model only sees 'a red circ'"
    )
    assert lines == [expected]
    roomy = tiny.model_copy(
        update={"text_encoder": tiny.text_encoder.model_copy(update={"max_length": 64})}
    )
    assert stages.prompt_truncations(roomy, [PROMPT]) == []


def test_prompt_truncations_ignores_pretrained_encoders() -> None:
    tiny = get_preset("tiny")
    minilm = tiny.model_copy(
        update={
            "text_encoder": TextEncoderConfig(kind="minilm", dim=384, max_length=4),
            "transformer": tiny.transformer.model_copy(update={"text_dim": 384}),
        }
    )
    assert stages.prompt_truncations(minilm, [PROMPT]) == []


def test_same_weights_compares_tensors_not_files(tmp_path: Path) -> None:
    config = get_preset("tiny")
    torch.manual_seed(0)
    model = build_model(config)
    first = tmp_path / "a.safetensors"
    save_checkpoint(model, config, first)
    copy = tmp_path / "copy.safetensors"
    stages.export_model(first, copy)
    assert stages.same_weights(first, copy)
    assert not stages.same_weights(first, tmp_path / "missing.safetensors")
    with torch.no_grad():
        model.transformer.final_proj.bias.add_(1.0)
    changed = tmp_path / "b.safetensors"
    save_checkpoint(model, config, changed)
    assert not stages.same_weights(first, changed)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"not a checkpoint")
    assert not stages.same_weights(first, corrupt)


def test_cache_is_complete_needs_an_index(tmp_path: Path) -> None:
    assert not stages.cache_is_complete(tmp_path / "cache", tmp_path / "train.jsonl")


def test_demo_error_is_an_aiprod_error() -> None:
    from aiprod_core.errors import AiprodError

    with pytest.raises(AiprodError, match="why"):
        raise DemoError("why")
