"""First-frame (image) conditioning: the first latent frame(s) stay clean while sampling.

``FirstFrameCondition`` holds the clean latents of the first ``K`` latent frames (the VAE
encodes the first video frame on its own, so one image is exactly one latent frame). It
composes with any ``Sampler`` through three pieces:

- ``apply(x)``: writes the clean frames into ``x`` (use at the start and after each step);
- ``conditioned(velocity_fn)``: wraps a velocity function so the denoiser sees the clean
  frames (and, with ``per_frame_sigma=True``, sigma 0 for them as a ``[B, T]`` tensor), and
  returns zero velocity there, so no sampler step moves them;
- ``callback(then=None)``: a ``StepCallback`` that re-imposes the frames after every step.

``sample(sampler, velocity_fn, noise, sigmas)`` does all three::

    condition = FirstFrameCondition(vae.encode(image_video).mode())   # [B, C, 1, h, w]
    x = condition.sample(HeunSampler(), guidance.velocity_fn(...), noise, sigmas)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from aiprod_core.diffusion.protocols import Sampler, StepCallback, VelocityFn


@dataclass(frozen=True)
class FirstFrameCondition:
    """Clean latents ``[B, C, K, h, w]`` of the first ``K`` latent frames of the video."""

    latent: torch.Tensor

    def __post_init__(self) -> None:
        if self.latent.ndim != 5 or self.latent.shape[2] < 1:
            raise ValueError(
                "FirstFrameCondition.latent must be [B, C, K, h, w] with K >= 1 frames, got "
                f"shape {tuple(self.latent.shape)}"
            )

    @property
    def num_frames(self) -> int:
        """``K``, the number of conditioned latent frames."""
        return self.latent.shape[2]

    def _check(self, x: torch.Tensor) -> None:
        b, c, k, h, w = self.latent.shape
        if (
            x.ndim != 5
            or x.shape[2] < k
            or (x.shape[0], x.shape[1], x.shape[3], x.shape[4]) != (b, c, h, w)
        ):
            raise ValueError(
                f"latents of shape {tuple(x.shape)} do not fit the first-frame condition "
                f"{tuple(self.latent.shape)}; expected [{b}, {c}, T >= {k}, {h}, {w}]"
            )

    def frame_mask(self, num_frames: int, device: torch.device | str | None = None) -> torch.Tensor:
        """``[num_frames]`` bool, True for the conditioned (clean) frames."""
        mask = torch.zeros(num_frames, dtype=torch.bool, device=device)
        mask[: self.num_frames] = True
        return mask

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with its first ``K`` frames replaced by the clean latents (a new tensor)."""
        self._check(x)
        clean = self.latent.to(device=x.device, dtype=x.dtype)
        return torch.cat([clean, x[:, :, self.num_frames :]], dim=2)

    def frame_sigmas(self, sigma: torch.Tensor, num_frames: int) -> torch.Tensor:
        """``[B, num_frames]`` sigmas: ``sigma`` ``[B]`` for each frame, 0 for conditioned ones."""
        per_frame = sigma.reshape(-1, 1).expand(-1, num_frames).clone()
        per_frame[:, : self.num_frames] = 0.0
        return per_frame

    def conditioned(self, velocity_fn: VelocityFn, per_frame_sigma: bool = False) -> VelocityFn:
        """``velocity_fn`` seeing clean conditioned frames and returning 0 velocity there.

        With ``per_frame_sigma`` the wrapped function receives ``frame_sigmas`` ``[B, T]``
        (for denoisers that take a sigma per latent frame); otherwise the sampler's ``[B]``.
        """

        def wrapped(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            x = self.apply(x)
            if per_frame_sigma:
                sigma = self.frame_sigmas(sigma, x.shape[2])
            velocity = velocity_fn(x, sigma)
            keep = self.frame_mask(x.shape[2], device=x.device).view(1, 1, -1, 1, 1)
            return velocity.masked_fill(keep, 0.0)

        return wrapped

    def callback(self, then: StepCallback | None = None) -> StepCallback:
        """A step callback that re-imposes the clean frames, then calls ``then`` (if any)."""

        def hook(step: int, sigma: float, x: torch.Tensor) -> torch.Tensor:
            x = self.apply(x)
            if then is not None:
                replaced = then(step, sigma, x)
                if replaced is not None:
                    x = replaced
            return x

        return hook

    def sample(
        self,
        sampler: Sampler,
        velocity_fn: VelocityFn,
        noise: torch.Tensor,
        sigmas: torch.Tensor,
        callback: StepCallback | None = None,
        per_frame_sigma: bool = False,
    ) -> torch.Tensor:
        """Run ``sampler`` from ``noise`` with the first frames held clean throughout."""
        return sampler.sample(
            self.conditioned(velocity_fn, per_frame_sigma=per_frame_sigma),
            self.apply(noise),
            sigmas,
            callback=self.callback(then=callback),
        )
