"""Per-channel latent statistics: measured, stored in the VAE's checkpoint, applied both ways,
and identity (with a note) for a checkpoint written before they existed."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import safetensors.torch
import torch

from aiprod_core.checkpoints import CheckpointError, load_component, save_checkpoint
from aiprod_core.checkpoints.header import COMPONENT_KEY, CONFIG_KEY, FORMAT_KEY
from aiprod_core.models import build_model
from aiprod_core.models.presets import TINY
from aiprod_core.vae import CausalVideoVAE, LatentStatistics, StatisticsAccumulator


def test_accumulator_measures_per_channel_mean_and_std() -> None:
    generator = torch.Generator().manual_seed(0)
    means, stds = torch.tensor([3.0, -1.0, 0.5]), torch.tensor([2.0, 0.5, 1.0])
    accumulator = StatisticsAccumulator(3)
    for _ in range(4):  # batches of [B, C, T, h, w]
        draw = torch.randn(8, 3, 2, 8, 8, generator=generator)
        accumulator.update(draw * stds.view(1, 3, 1, 1, 1) + means.view(1, 3, 1, 1, 1))
    mean, std = accumulator.result()
    torch.testing.assert_close(mean, means, atol=0.05, rtol=0)
    torch.testing.assert_close(std, stds, atol=0.05, rtol=0)
    assert accumulator.count == 4 * 8 * 2 * 8 * 8


def test_accumulator_refuses_wrong_channels_and_no_data() -> None:
    accumulator = StatisticsAccumulator(3)
    with pytest.raises(ValueError, match=r"latents must be \[B, 3, \.\.\.\], got \(2, 4, 5\)"):
        accumulator.update(torch.zeros(2, 4, 5))
    with pytest.raises(ValueError, match="no latents were added"):
        accumulator.result()


def test_normalize_and_denormalize_are_inverse_and_normalise() -> None:
    stats = LatentStatistics(2)
    assert not stats.measured
    latents = torch.randn(4, 2, 3, 5, 5) * torch.tensor([4.0, 0.1]).view(1, 2, 1, 1, 1) + 7.0
    torch.testing.assert_close(stats.normalize(latents), latents)  # identity until measured
    accumulator = StatisticsAccumulator(2)
    accumulator.update(latents)
    stats.set(*accumulator.result())
    assert stats.measured
    normalized = stats.normalize(latents)
    per_channel = normalized.transpose(0, 1).reshape(2, -1)
    torch.testing.assert_close(per_channel.mean(dim=1), torch.zeros(2), atol=1e-4, rtol=0)
    torch.testing.assert_close(
        per_channel.std(dim=1, unbiased=False), torch.ones(2), atol=1e-4, rtol=0
    )
    torch.testing.assert_close(stats.denormalize(normalized), latents, atol=1e-4, rtol=1e-5)
    assert stats.normalize(latents.bfloat16()).dtype == torch.bfloat16


def test_set_refuses_wrong_shapes_and_floors_the_std() -> None:
    stats = LatentStatistics(2)
    with pytest.raises(ValueError, match=r"must be \[2\] per channel"):
        stats.set(torch.zeros(3), torch.ones(3))
    with pytest.raises(ValueError, match="must be finite"):
        stats.set(torch.tensor([0.0, float("nan")]), torch.ones(2))
    stats.set(torch.zeros(2), torch.tensor([0.0, 2.0]))
    assert stats.std.tolist() == [pytest.approx(1e-4), 2.0]


def test_statistics_travel_in_the_vae_checkpoint(tmp_path: Path) -> None:
    vae = CausalVideoVAE(TINY.vae)
    vae.latent_stats.set(torch.arange(8.0), torch.full((8,), 0.5))
    path = tmp_path / "vae.safetensors"
    save_checkpoint(vae, TINY, path, component="vae")
    loaded, _ = load_component(path, component="vae")
    assert isinstance(loaded, CausalVideoVAE)
    assert loaded.latent_stats.mean.tolist() == list(range(8))
    assert loaded.latent_stats.std.tolist() == [0.5] * 8
    assert loaded.latent_stats.measured


def _as_format_1(path: Path, target: Path) -> None:
    """Rewrite a checkpoint as an older AIPROD wrote it: format 1, no latent statistics,
    no transformer.latent_scale in its config."""
    tensors = safetensors.torch.load_file(path)
    with safetensors.safe_open(path, framework="pt") as handle:
        metadata = dict(handle.metadata())
    kept = {name: t for name, t in tensors.items() if "latent_stats" not in name}
    config = json.loads(metadata[CONFIG_KEY])
    del config["transformer"]["latent_scale"]
    metadata[CONFIG_KEY] = json.dumps(config)
    metadata[FORMAT_KEY] = "1"
    safetensors.torch.save_file(kept, target, metadata=metadata)


@pytest.mark.fault("models")
def test_a_format_1_vae_loads_with_identity_statistics_and_a_note(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    current = tmp_path / "vae.safetensors"
    save_checkpoint(CausalVideoVAE(TINY.vae), TINY, current, component="vae")
    old = tmp_path / "old-vae.safetensors"
    _as_format_1(current, old)
    with caplog.at_level(logging.WARNING):
        vae, config = load_component(old, component="vae")
        load_component(old, component="vae")
    assert isinstance(vae, CausalVideoVAE)
    assert config.transformer.latent_scale == (2, 4)
    assert not vae.latent_stats.measured
    assert vae.latent_stats.mean.device.type == "cpu"
    notes = [r.getMessage() for r in caplog.records if "no latent statistics" in r.getMessage()]
    assert len(notes) == 1  # once per file
    assert "old-vae.safetensors" in notes[0]
    assert "aiprod-train (mode vae)" in notes[0]


@pytest.mark.fault("models")
def test_a_format_1_bundle_fails_saying_how_to_regenerate_it(tmp_path: Path) -> None:
    current = tmp_path / "bundle.safetensors"
    save_checkpoint(build_model(TINY), TINY, current)
    old = tmp_path / "old.safetensors"
    _as_format_1(current, old)
    with safetensors.safe_open(old, framework="pt") as handle:
        assert handle.metadata()[COMPONENT_KEY] == "bundle"
    with pytest.raises(
        CheckpointError,
        match=r"old\.safetensors: is a format 1 bundle checkpoint.*nox -s demo -- --retrain",
    ):
        load_component(old)
