"""The objectives and their seeded randomness, computed by hand on small inputs."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from aiprod_core.diffusion import FlowMatchSchedule
from aiprod_core.models import get_preset
from aiprod_core.vae import CausalVideoVAE
from aiprod_trainer.training.batches import (
    batch_size_of,
    collate,
    dataset_buckets,
    item_generator,
    mixed_seed,
)
from aiprod_trainer.training.objectives import (
    FlowMatchingObjective,
    FrameConditioning,
    VaeObjective,
    VaeReconstruction,
)

TINY = get_preset("tiny")
CPU = torch.device("cpu")


class Recorder(nn.Module):
    """A stand-in transformer: returns ``scale * x`` and remembers what it was given."""

    def __init__(self, scale: float = 0.0) -> None:
        super().__init__()
        self.scale = scale
        self.calls: list[dict[str, torch.Tensor]] = []

    def forward(
        self,
        x: torch.Tensor,
        sigma: torch.Tensor,
        text: torch.Tensor,
        mask: torch.Tensor,
        fps: torch.Tensor | None = None,
    ) -> torch.Tensor:
        self.calls.append({"x": x, "sigma": sigma, "text": text, "mask": mask, "fps": fps})
        return self.scale * x


def latent_batch(size: int = 2) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(0)
    return {
        "latents": torch.randn(size, 8, 3, 4, 4, generator=generator),
        "text": torch.randn(size, 5, 64, generator=generator),
        "mask": torch.ones(size, 5, dtype=torch.bool),
        "caption": ["a", "b"][:size],
    }


def generators(*slots: int, step: int = 3) -> list[torch.Generator]:
    return [item_generator(0, 0, step, slot) for slot in slots]


def test_mixed_seeds_depend_on_every_part() -> None:
    assert mixed_seed(1, 2, 3) == mixed_seed(1, 2, 3)
    assert (
        len({mixed_seed(1, 2, 3), mixed_seed(1, 2, 4), mixed_seed(1, 3, 3), mixed_seed(2, 2, 3)})
        == 4
    )
    assert 0 <= mixed_seed(0) < 2**63
    a, b = item_generator(5, 0, 1, 2), item_generator(5, 0, 1, 2)
    assert torch.equal(torch.randn(4, generator=a), torch.randn(4, generator=b))


def test_collate_and_batch_size() -> None:
    clips = collate([torch.zeros(3, 5, 8, 8), torch.ones(3, 5, 8, 8)])
    assert clips.shape == (2, 3, 5, 8, 8)
    assert batch_size_of(clips) == 2
    items = [
        {"latents": torch.zeros(8, 1, 2, 2), "caption": "x"},
        {"latents": torch.ones(8, 1, 2, 2), "caption": "y"},
    ]
    batch = collate(items)
    assert batch["latents"].shape == (2, 8, 1, 2, 2)
    assert batch["caption"] == ["x", "y"]
    assert batch_size_of(batch) == 2


def test_dataset_buckets_from_caches_records_or_nothing() -> None:
    cache_like = SimpleNamespace(buckets=lambda: {"16x16x5": (0, 2), "8x8x5": [1]})
    assert dataset_buckets(cache_like) == {"16x16x5": [0, 2], "8x8x5": [1]}
    shapes = [(16, 16, 5), (8, 8, 5), (16, 16, 5)]
    records = [SimpleNamespace(width=w, height=h, frames=f) for w, h, f in shapes]
    assert dataset_buckets(SimpleNamespace(records=records)) == {"16x16x5": [0, 2], "8x8x5": [1]}
    assert dataset_buckets([10, 20, 30]) == {"all": [0, 1, 2]}


def test_flow_matching_loss_by_hand() -> None:
    schedule = FlowMatchSchedule(TINY.diffusion)
    objective = FlowMatchingObjective(schedule, (1, 2, 2))
    assert objective.num_tokens((3, 4, 4)) == 12
    batch = latent_batch()
    recorder = Recorder(scale=0.0)
    output = objective.loss(recorder, batch, generators(0, 1), CPU)

    noise, sigma = [], []
    for g in generators(0, 1):
        noise.append(torch.randn(8, 3, 4, 4, generator=g))
        sigma.append(schedule.sample_training_sigmas(1, 12, generator=g))
    noise_t, sigma_t = torch.stack(noise), torch.cat(sigma)
    x0 = batch["latents"]
    expected = F.mse_loss(torch.zeros_like(x0), noise_t - x0)  # the recorder predicts zero
    assert output.loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert output.parts == {"mse": pytest.approx(expected.item(), rel=1e-6)}
    call = recorder.calls[0]
    assert torch.equal(call["sigma"], sigma_t)
    s = sigma_t.view(2, 1, 1, 1, 1)
    torch.testing.assert_close(call["x"], (1 - s) * x0 + s * noise_t)
    assert torch.equal(call["text"], batch["text"])


def test_the_clips_frame_rate_reaches_the_transformer() -> None:
    objective = FlowMatchingObjective(FlowMatchSchedule(TINY.diffusion), (1, 2, 2))
    recorder = Recorder()
    batch = {**latent_batch(), "fps": torch.tensor([8.0, 24.0])}
    objective.loss(recorder, batch, generators(0, 1), CPU)
    assert recorder.calls[0]["fps"].tolist() == [8.0, 24.0]


def test_frame_conditioning_keeps_frames_clean_and_out_of_the_loss() -> None:
    """With first_frame 1 and last_frame 1, every item's first 1..2 latent frames and its
    last one are clean: sigma 0 on their tokens, x0 in x, and no part of the loss."""
    schedule = FlowMatchSchedule(TINY.diffusion)
    conditioning = FrameConditioning(first_frame=1.0, max_prefix_frames=2, last_frame=1.0)
    objective = FlowMatchingObjective(schedule, (1, 2, 2), conditioning=conditioning)
    batch = {**latent_batch(), "latents": torch.randn(2, 8, 4, 4, 4)}
    recorder = Recorder(scale=0.0)
    output = objective.loss(recorder, batch, generators(0, 1), CPU)
    call = recorder.calls[0]
    per_frame = call["sigma"].view(2, 4, 4)[..., 0]  # 4 tokens per latent frame
    clean = per_frame == 0
    assert clean[:, 0].all()
    assert clean[:, -1].all()
    assert not clean.all(dim=1).any()  # never every frame
    for item in range(2):
        frames = clean[item]
        torch.testing.assert_close(call["x"][item][:, frames], batch["latents"][item][:, frames])
        assert (per_frame[item][~frames] > 0).all()
    # by hand: the recorder predicts 0, so each item's loss is its noised frames' mean of
    # (noise - x0)^2, and the batch loss the mean over items
    noise = torch.stack([torch.randn(8, 4, 4, 4, generator=g) for g in generators(0, 1)])
    target = (noise - batch["latents"]).pow(2)
    per_item = [target[i][:, ~clean[i]].mean() for i in range(2)]
    assert output.loss.item() == pytest.approx(float(sum(per_item) / 2), rel=1e-5)
    assert output.parts["clean_frames"] == pytest.approx(float(clean.float().mean()))


def test_frame_conditioning_is_off_in_validation_and_at_probability_zero() -> None:
    schedule = FlowMatchSchedule(TINY.diffusion)
    always = FlowMatchingObjective(schedule, (1, 2, 2), conditioning=FrameConditioning(1.0))
    never = FlowMatchingObjective(schedule, (1, 2, 2))
    held_out, plain = Recorder(), Recorder()
    always.loss(held_out, latent_batch(), generators(0, 1), CPU, training=False)
    never.loss(plain, latent_batch(), generators(0, 1), CPU)
    assert held_out.calls[0]["sigma"].shape == (2,)
    assert torch.equal(held_out.calls[0]["sigma"], plain.calls[0]["sigma"])


def test_clean_frames_are_drawn_per_item() -> None:
    conditioning = FrameConditioning(first_frame=0.5, max_prefix_frames=3, last_frame=0.5)
    many = conditioning.clean_frames(generators(*range(200)), 5)
    assert many.shape == (200, 5)
    assert 0.35 < many[:, 0].float().mean() < 0.65
    assert 0.3 < many[:, -1].float().mean() < 0.7
    prefixes = {int(row[:4].sum()) for row in many if row[0]}
    assert prefixes == {1, 2, 3}
    assert not many.all(dim=1).any()
    assert torch.equal(conditioning.clean_frames(generators(7), 5), many[7:8])
    assert not FrameConditioning().clean_frames(generators(0), 5).any()
    assert not conditioning.clean_frames(generators(0), 1).any()  # one frame: nothing to keep


def test_each_item_draws_from_its_own_slot() -> None:
    objective = FlowMatchingObjective(FlowMatchSchedule(TINY.diffusion), (1, 2, 2))
    together, alone = Recorder(), Recorder()
    batch = latent_batch()
    objective.loss(together, batch, generators(0, 1), CPU)
    second = {key: value[1:] for key, value in batch.items()}
    objective.loss(alone, second, generators(1), CPU)
    assert torch.equal(together.calls[0]["x"][1:], alone.calls[0]["x"])
    assert torch.equal(together.calls[0]["sigma"][1:], alone.calls[0]["sigma"])


@pytest.mark.parametrize("null", ["empty_prompt", "zeros"])
def test_text_dropout_swaps_in_the_unconditional_prompt(null: str) -> None:
    null_text = torch.full((5, 64), 7.0) if null == "empty_prompt" else None
    null_mask = torch.tensor([True, True, False, False, False]) if null == "empty_prompt" else None
    objective = FlowMatchingObjective(
        FlowMatchSchedule(TINY.diffusion), (1, 2, 2), 0.999999, null_text, null_mask
    )
    recorder = Recorder()
    batch = latent_batch()
    objective.loss(recorder, batch, generators(0, 1), CPU)
    text, mask = recorder.calls[0]["text"], recorder.calls[0]["mask"]
    if null == "empty_prompt":
        assert torch.equal(text, null_text.expand(2, 5, 64))
        assert torch.equal(mask, null_mask.expand(2, 5))
    else:
        assert torch.equal(text, torch.zeros_like(batch["text"]))
        assert not mask.any()
    objective.loss(recorder, batch, generators(0, 1), CPU, training=False)
    assert torch.equal(recorder.calls[1]["text"], batch["text"])


def test_text_dropout_is_per_item() -> None:
    objective = FlowMatchingObjective(FlowMatchSchedule(TINY.diffusion), (1, 2, 2), 0.5)
    recorder = Recorder()
    batch = latent_batch()
    slots = range(40)
    many = {
        k: torch.cat([v[:1]] * 40) if isinstance(v, torch.Tensor) else v for k, v in batch.items()
    }
    objective.loss(recorder, many, generators(*slots), CPU)
    kept = recorder.calls[0]["mask"].any(dim=1)
    assert 5 < int(kept.sum()) < 35  # some dropped, some kept


def test_vae_objective_by_hand() -> None:
    torch.manual_seed(0)
    vae = CausalVideoVAE(TINY.vae)
    round_trip = VaeReconstruction(vae)
    video = torch.rand(2, 3, 5, 16, 16) * 2 - 1
    for kind, distance in (("l1", F.l1_loss), ("mse", F.mse_loss)):
        objective = VaeObjective(kind, kl_weight=0.01)
        output = objective.loss(round_trip, video, generators(0, 1), CPU)
        posterior = vae.encode(video)
        eps = torch.stack([torch.randn(8, 3, 4, 4, generator=g) for g in generators(0, 1)])
        reconstruction = vae.decode(posterior.mean + posterior.std * eps)
        rec = distance(reconstruction, video)
        kl = posterior.kl().mean()
        assert output.loss.item() == pytest.approx((rec + 0.01 * kl).item(), rel=1e-5)
        assert output.parts == {
            "reconstruction": pytest.approx(rec.item(), rel=1e-5),
            "kl": pytest.approx(kl.item(), rel=1e-5),
        }
    mean = VaeObjective("l1", 0.0).loss(round_trip, video, generators(0, 1), CPU, training=False)
    expected = F.l1_loss(vae.decode(vae.encode(video).mode()), video)
    assert mean.loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_vae_objective_rejects_unknown_losses() -> None:
    with pytest.raises(ValueError, match="reconstruction must be 'l1' or 'mse', got 'l2'"):
        VaeObjective("l2")
