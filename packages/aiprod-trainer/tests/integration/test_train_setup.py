"""Building a run: what trains, and clear errors for data that does not fit the model."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from aiprod_trainer.config import load_train_config
from aiprod_trainer.training.run_log import read_metrics
from aiprod_trainer.training.run_setup import TrainingError
from aiprod_trainer.training.trainer import Trainer

pytestmark = pytest.mark.integration


def trainer_for(write_config: Callable[..., Path], changes: dict) -> Trainer:
    return Trainer(load_train_config(write_config(changes)))


def test_dit_trains_the_whole_transformer_and_nothing_else(
    latent_cache: Path, write_config: Callable[..., Path]
) -> None:
    trainer = trainer_for(write_config, {"training": {"gradient_checkpointing": True}})
    model = trainer.parts.model
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"transformer"}
    assert model.transformer.gradient_checkpointing
    assert model.transformer.training
    assert not model.vae.training
    null = trainer.parts.objective.null_text  # the empty prompt, encoded
    expected = model.text_encoder.encode([""]).tokens[0]
    assert null is not None
    assert torch.equal(null, expected.detach())
    result = trainer.fit()
    assert result.completed


def test_zeros_as_the_unconditional_prompt(
    latent_cache: Path, write_config: Callable[..., Path]
) -> None:
    trainer = trainer_for(write_config, {"training": {"text_dropout_embedding": "zeros"}})
    assert trainer.parts.objective.null_text is None
    assert trainer.fit(stop_at_step=2).step == 2


def test_cache_of_another_preset_is_refused(
    make_latent_cache: Callable[..., Path], write_config: Callable[..., Path]
) -> None:
    cache = make_latent_cache("cache", 2, preset="small")
    with pytest.raises(TrainingError) as error:
        trainer_for(write_config, {})
    assert str(error.value) == (
        f"data.cache: {cache} was made for preset 'small'; the model being trained is 'tiny'"
    )


def test_latents_of_other_shapes_are_refused(
    make_latent_cache: Callable[..., Path], write_config: Callable[..., Path]
) -> None:
    cache = make_latent_cache("cache", 2, channels=4)
    with pytest.raises(TrainingError) as error:
        trainer_for(write_config, {})
    assert str(error.value) == (
        f"data.cache: {cache} holds 4-channel latents and 64-wide text embeddings; the model "
        "takes 8 and 64"
    )


def test_text_of_another_length_needs_zeros_dropout(
    make_latent_cache: Callable[..., Path], write_config: Callable[..., Path]
) -> None:
    make_latent_cache("cache", 2, text_length=16)
    with pytest.raises(TrainingError) as error:
        trainer_for(write_config, {})
    assert str(error.value) == (
        "data.cache: its text embeddings have 16 tokens but the model's text encoder makes 64; "
        "recompute the cache with this model or set training.text_dropout_embedding to 'zeros'"
    )
    trainer = trainer_for(write_config, {"training": {"text_dropout_embedding": "zeros"}})
    assert trainer.fit(stop_at_step=1).step == 1


def test_empty_caches_are_refused(
    make_latent_cache: Callable[..., Path], write_config: Callable[..., Path]
) -> None:
    cache = make_latent_cache("cache", 0)
    with pytest.raises(TrainingError) as error:
        trainer_for(write_config, {})
    assert str(error.value) == f"data.cache: {cache} holds no items"
    make_latent_cache("full", 2)
    with pytest.raises(TrainingError) as error:
        trainer_for(write_config, {"data": {"cache": "full", "validation_cache": "cache"}})
    assert str(error.value) == f"data.validation_cache: {cache} holds no items"


def test_clips_the_vae_cannot_take_are_refused(
    clip_manifest: Path, write_config: Callable[..., Path]
) -> None:
    lines = clip_manifest.read_text().replace('"frames": 5', '"frames": 4')
    (clip_manifest.parent / "four.jsonl").write_text(lines)
    changes = {"mode": "vae", "data": {"cache": "<delete>", "manifest": "four.jsonl"}}
    with pytest.raises(TrainingError) as error:
        trainer_for(write_config, changes)
    assert str(error.value) == (
        "data.manifest: 4 clip(s) of bucket 16x16x4 (clips/clip-0.mp4, ...) do not fit the "
        "VAE: video shape 4x16x16: frames=4 does not fit temporal_compression=2: use 1 + 2k "
        "frames, e.g. 3 or 5"
    )


def test_training_without_clipping_in_a_worker_thread(
    latent_cache: Path, write_config: Callable[..., Path]
) -> None:
    """Signals can only be caught on the main thread; elsewhere training runs without them."""
    trainer = trainer_for(write_config, {"optimizer": {"grad_clip": None}})
    results = []
    worker = threading.Thread(target=lambda: results.append(trainer.fit(stop_at_step=2)))
    worker.start()
    worker.join()
    assert results[0].step == 2
    assert trainer.stop_signal is None


@pytest.mark.fault("interrupted", guards_data=True)
def test_metrics_lines_torn_by_a_kill_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\n[1, 2]\n{"step": 2, "lo')
    assert read_metrics(path) == [{"step": 1, "loss": 2.0}]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this host has a CUDA device")
def test_cuda_without_a_cuda_device(latent_cache: Path, write_config: Callable[..., Path]) -> None:
    with pytest.raises(TrainingError) as error:
        trainer_for(write_config, {"training": {"device": "cuda"}})
    assert str(error.value) == (
        "training.device: 'cuda' was asked for but this host has no CUDA device; use 'auto' "
        "or 'cpu'"
    )


@pytest.mark.parametrize("mode", ["dit", "lora"])
def test_a_model_that_cannot_fit_is_refused_before_it_is_built(
    latent_cache: Path,
    write_config: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    mode: str,
) -> None:
    from aiprod_core.memory import GIB
    from aiprod_trainer import cli
    from aiprod_trainer.training import run_setup

    monkeypatch.setattr(run_setup, "device_memory", lambda device: 24 * GIB)
    monkeypatch.setattr("aiprod_core.memory.host.gpu_memory", lambda: ())

    def refuse(config: object) -> None:
        raise AssertionError("the model was built although it cannot fit")

    monkeypatch.setattr(run_setup, "initial_model", refuse)
    path = write_config(
        {"mode": mode, "model": {"preset": "aiprod-19b"}, "training": {"device": "cpu"}}
    )
    expected = r"^aiprod-19b in float32 needs ~\d+ GiB .*; this host has 24 GiB of RAM and no GPU"
    with pytest.raises(TrainingError, match=expected):
        Trainer(load_train_config(path))
    assert cli.main([str(path)]) == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1
    assert "aiprod-19b in float32 needs" in errors[0]
