"""What one training step computes in each mode: the objectives, batching and seeded noise.

- :class:`FlowMatchingObjective` (modes ``dit`` and ``lora``): pick a noise level
  ``sigma`` (``FlowMatchSchedule.sample_training_sigmas``), move the clean latents ``x0``
  toward noise (``x_sigma = (1 - sigma) x0 + sigma noise``) and regress the transformer's
  velocity on ``noise - x0`` (MSE). With probability ``text_dropout`` an item's prompt is
  replaced by the unconditional one (the empty prompt's embedding, or no tokens at all),
  which is what classifier-free guidance contrasts against at generation time.
  Frame conditioning (:class:`FrameConditioning`): with probability ``first_frame`` an
  item's first ``1..max_prefix_frames`` latent frames, and with probability ``last_frame``
  its last one, are kept clean: sigma 0 on their tokens (a ``[B, N]`` sigma) and left out
  of the loss, so the model learns to continue, end at, or interpolate between given
  frames, exactly as :class:`aiprod_core.diffusion.Conditioning` asks it at generation.
- :class:`VaeObjective` (mode ``vae``): encode, sample the posterior, decode; L1 or MSE
  reconstruction plus ``kl_weight`` times the KL divergence to N(0, 1).
- :class:`UpsamplerObjective` (mode ``upsampler``): MSE between the x2 upsampler's output
  on an item's half-size latents and its full-size latents (both normalised; see
  :mod:`aiprod_trainer.data.latent_pairs`). It draws no random numbers at all.

Randomness is drawn per item from :func:`item_generator` ``(seed, step, slot)``, never from
the global generators, so a step computes the same thing however the batch is split
across accumulation steps or processes, and after a resume.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from aiprod_core.diffusion import FlowMatchSchedule, add_noise, token_sigmas, velocity_target
from aiprod_core.transformer import Patchifier3D
from aiprod_core.upsampler import nearest_upsample
from aiprod_core.vae import CausalVideoVAE
from aiprod_trainer.training.batches import Batch


@dataclass(frozen=True)
class LossOutput:
    """A batch's mean loss (to backpropagate) and its parts for logging (detached)."""

    loss: torch.Tensor
    parts: Mapping[str, float]


class Objective(Protocol):
    """A training objective: the loss of ``module`` on a batch, randomness per item."""

    component: str

    def loss(
        self,
        module: nn.Module,
        batch: Batch,
        generators: Sequence[torch.Generator],
        device: torch.device,
        *,
        training: bool = True,
    ) -> LossOutput: ...


def _stack_draws(
    generators: Sequence[torch.Generator], shape: Sequence[int], device: torch.device
) -> torch.Tensor:
    """One standard normal draw of ``shape`` per generator, stacked, on ``device``."""
    draws = [torch.randn(tuple(shape), generator=g, dtype=torch.float32) for g in generators]
    return torch.stack(draws).to(device)


@dataclass(frozen=True)
class FrameConditioning:
    """How often training keeps latent frames clean (see the module docstring)."""

    first_frame: float = 0.0
    max_prefix_frames: int = 1
    last_frame: float = 0.0

    @property
    def enabled(self) -> bool:
        return self.first_frame > 0 or self.last_frame > 0

    def clean_frames(self, generators: Sequence[torch.Generator], frames: int) -> torch.Tensor:
        """``[B, frames]`` bool: the latent frames each item keeps clean (never all)."""
        clean = torch.zeros(len(generators), frames, dtype=torch.bool)
        if frames < 2:
            return clean
        for index, generator in enumerate(generators):
            draws = torch.rand(3, generator=generator)
            if draws[0] < self.first_frame:
                longest = min(self.max_prefix_frames, frames - 1)
                clean[index, : 1 + int(draws[1] * longest)] = True
            if draws[2] < self.last_frame and not clean[index, : frames - 1].all():
                clean[index, -1] = True
        return clean


class FlowMatchingObjective:
    """Rectified-flow velocity regression for the transformer (see the module docstring).

    ``null_text``/``null_mask`` (``[L, D]`` and ``[L]``) are the unconditional prompt used
    for dropped items; None means zeros with an all-False mask (no text at all).
    """

    component = "transformer"

    def __init__(
        self,
        schedule: FlowMatchSchedule,
        patch_size: tuple[int, int, int],
        text_dropout: float = 0.0,
        null_text: torch.Tensor | None = None,
        null_mask: torch.Tensor | None = None,
        conditioning: FrameConditioning | None = None,
    ) -> None:
        self.schedule = schedule
        self.patchifier = Patchifier3D(patch_size)
        self.text_dropout = text_dropout
        self.null_text = null_text
        self.null_mask = null_mask
        self.conditioning = conditioning or FrameConditioning()

    def num_tokens(self, latent_size: Sequence[int]) -> int:
        """Transformer tokens of latents ``(T, h, w)`` (for the schedule's shift)."""
        t, h, w = (int(size) for size in latent_size)
        return math.prod(self.patchifier.grid((t, h, w)))

    def loss(
        self,
        module: nn.Module,
        batch: Batch,
        generators: Sequence[torch.Generator],
        device: torch.device,
        *,
        training: bool = True,
    ) -> LossOutput:
        x0 = batch["latents"].to(device=device, dtype=torch.float32)
        text = batch["text"].to(device=device, dtype=torch.float32)
        mask = batch["mask"].to(device=device, dtype=torch.bool)
        tokens = self.num_tokens(x0.shape[2:])
        noise = _stack_draws(generators, x0.shape[1:], device)
        sigma = torch.cat(
            [self.schedule.sample_training_sigmas(1, tokens, generator=g) for g in generators]
        ).to(device)
        if training and self.text_dropout > 0:
            text, mask = self._drop_text(text, mask, generators)
        fps = batch["fps"].to(device=device, dtype=torch.float32) if "fps" in batch else None
        target = velocity_target(x0, noise)
        if not (training and self.conditioning.enabled):
            velocity = module(add_noise(x0, noise, sigma), sigma, text, mask, fps=fps)
            loss = F.mse_loss(velocity.float(), target)
            return LossOutput(loss, {"mse": float(loss.detach())})
        clean = self.conditioning.clean_frames(generators, x0.shape[2]).to(device)
        frame_sigma = torch.where(clean, torch.zeros_like(sigma)[:, None], sigma[:, None])
        grid = self.patchifier.grid((x0.shape[2], x0.shape[3], x0.shape[4]))
        per_token = token_sigmas(sigma, clean, self.patchifier.patch_size, grid[1] * grid[2])
        velocity = module(add_noise(x0, noise, frame_sigma), per_token, text, mask, fps=fps)
        # Each item's mean over its noised frames, then the mean over items: the same value
        # however a batch is split over accumulation steps or processes.
        weight = (~clean).to(torch.float32)[:, None, :, None, None].expand_as(target)
        per_item = ((velocity.float() - target).pow(2) * weight).flatten(1).sum(dim=1)
        loss = (per_item / weight.flatten(1).sum(dim=1)).mean()
        parts = {"mse": float(loss.detach()), "clean_frames": float(clean.float().mean())}
        return LossOutput(loss, parts)

    def _drop_text(
        self, text: torch.Tensor, mask: torch.Tensor, generators: Sequence[torch.Generator]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        draws = torch.cat([torch.rand(1, generator=g) for g in generators])
        dropped = (draws < self.text_dropout).to(text.device)
        if self.null_text is None or self.null_mask is None:
            null_text = torch.zeros_like(text[0])
            null_mask = torch.zeros_like(mask[0])
        else:
            null_text = self.null_text.to(device=text.device, dtype=text.dtype)
            null_mask = self.null_mask.to(device=mask.device)
        text = torch.where(dropped[:, None, None], null_text[None], text)
        mask = torch.where(dropped[:, None], null_mask[None], mask)
        return text, mask


class VaeObjective:
    """Reconstruction (L1 or MSE) + ``kl_weight`` x KL for the causal video VAE.

    The KL term is the posterior's KL summed over latent elements, averaged over the batch.
    Validation (``training=False``) decodes the posterior mean instead of a sample.
    """

    component = "vae"

    def __init__(self, reconstruction: str = "l1", kl_weight: float = 1e-6) -> None:
        if reconstruction not in ("l1", "mse"):
            raise ValueError(f"reconstruction must be 'l1' or 'mse', got {reconstruction!r}")
        self.reconstruction = reconstruction
        self.kl_weight = kl_weight

    def loss(
        self,
        module: nn.Module,
        batch: Batch,
        generators: Sequence[torch.Generator],
        device: torch.device,
        *,
        training: bool = True,
    ) -> LossOutput:
        """``module`` is a :class:`VaeReconstruction` (possibly wrapped for DDP)."""
        video = batch.to(device=device, dtype=torch.float32)
        eps = None
        if training:
            latent_shape = _latent_shape(module, video.shape[2:])
            eps = _stack_draws(generators, latent_shape, device)
        reconstruction, kl = module(video, eps)
        if self.reconstruction == "l1":
            rec = F.l1_loss(reconstruction.float(), video)
        else:
            rec = F.mse_loss(reconstruction.float(), video)
        kl = kl.mean()
        loss = rec + self.kl_weight * kl
        return LossOutput(loss, {"reconstruction": float(rec.detach()), "kl": float(kl.detach())})


class UpsamplerObjective:
    """MSE of the x2 latent upsampler: ``module(low_res)`` against the full-size latents.

    Both are normalised latents of one clip (``batch["low_res"]`` ``[B, C, T, h, w]``,
    ``batch["latents"]`` ``[B, C, T, 2h, 2w]``). Nothing is random, so ``generators`` go
    unused and validation (``training=False``) computes the same loss. ``parts`` also
    holds the MSE of nearest-neighbour upsampling (what an untrained upsampler does), the
    baseline the learned residual has to beat.
    """

    component = "upsampler"

    def loss(
        self,
        module: nn.Module,
        batch: Batch,
        generators: Sequence[torch.Generator],
        device: torch.device,
        *,
        training: bool = True,
    ) -> LossOutput:
        del generators, training
        low_res = batch["low_res"].to(device=device, dtype=torch.float32)
        target = batch["latents"].to(device=device, dtype=torch.float32)
        loss = F.mse_loss(module(low_res).float(), target)
        with torch.no_grad():
            nearest = F.mse_loss(nearest_upsample(low_res), target)
        return LossOutput(loss, {"mse": float(loss.detach()), "nearest_mse": float(nearest)})


class VaeReconstruction(nn.Module):
    """The VAE's round trip as one forward (what DDP wraps in mode ``vae``).

    ``forward(video, eps)`` encodes, takes ``mean + std * eps`` (the mean when ``eps`` is
    None), decodes, and returns the reconstruction and the per-item KL ``[B]``.
    """

    def __init__(self, vae: CausalVideoVAE) -> None:
        super().__init__()
        self.vae = vae

    def forward(
        self, video: torch.Tensor, eps: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        posterior = self.vae.encode(video)
        latents = posterior.mode()
        if eps is not None:
            latents = latents + posterior.std * eps.to(latents.dtype)
        return self.vae.decode(latents), posterior.kl()


def _latent_shape(module: nn.Module, video_size: Sequence[int]) -> tuple[int, ...]:
    """``[C, T, h, w]`` of the latents of a ``(F, H, W)`` video, through DDP if wrapped."""
    inner: Any = getattr(module, "module", module)
    vae: CausalVideoVAE = inner.vae
    return (vae.config.latent_channels, *vae.latent_shape(*video_size))
