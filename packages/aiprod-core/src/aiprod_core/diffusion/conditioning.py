"""Conditioning on clean latent frames, per token: image-to-video, keyframes, continuation.

A :class:`FrameCondition` holds clean latents ``[B, C, K, h, w]`` for the latent frames
``frame .. frame + K - 1`` of the video being generated. :class:`Conditioning` combines any
number of them (the first frame for image-to-video, the first and the last for keyframe
interpolation, the first ``K`` for continuing a video) and composes with any ``Sampler``:

- ``apply(x)`` writes the clean frames into ``x``;
- ``conditioned(velocity_fn)`` wraps a velocity function so the denoiser sees the clean
  frames with **sigma 0 on their tokens** (a ``[B, N]`` sigma, see :func:`token_sigmas`)
  and the sampler's sigma on the others, and returns zero velocity on the clean frames so
  no step moves them;
- ``callback(then=None)`` re-imposes them after every step.

``sample(sampler, velocity_fn, noise, sigmas)`` does all three. Training uses the same
token sigmas (:func:`token_sigmas` with a per-item mask of clean frames), so the model
generates the way it was trained: conditioned tokens are told they are clean.

    condition = FrameCondition(vae.normalize(vae.encode(image_video).mode()), frame=0)
    x = Conditioning([condition], patch_size).sample(EulerSampler(), velocity, noise, sigmas)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from aiprod_core.diffusion.protocols import Sampler, StepCallback, VelocityFn

Grid = tuple[int, int, int]


def token_sigmas(
    sigma: torch.Tensor, clean: torch.Tensor, patch_size: Grid, spatial: int
) -> torch.Tensor:
    """``[B, N]`` per-token sigmas: ``sigma`` ``[B]`` everywhere except 0 on the tokens whose
    latent frames are all clean.

    ``clean`` is ``[B, T]`` (or ``[T]`` for the whole batch) bool over latent frames;
    ``spatial`` is the number of tokens per token frame (``H' * W'``). Tokens are in
    ``Patchifier3D`` order (time-major), so token frame ``t'`` covers latent frames
    ``t' * pt .. t' * pt + pt - 1``.
    """
    batch = sigma.shape[0]
    frames = clean.shape[-1]
    patch_t = patch_size[0]
    if frames % patch_t:
        raise ValueError(f"{frames} latent frames are not whole patches of length {patch_t}")
    clean = clean.to(sigma.device).expand(batch, frames)
    clean_tokens = clean.reshape(batch, frames // patch_t, patch_t).all(dim=-1)  # [B, T']
    per_frame = torch.where(clean_tokens, torch.zeros_like(sigma)[:, None], sigma[:, None])
    return per_frame.repeat_interleave(spatial, dim=1)


@dataclass(frozen=True)
class FrameCondition:
    """Clean latents ``[B, C, K, h, w]`` of the latent frames ``frame .. frame + K - 1``."""

    latent: torch.Tensor
    frame: int = 0

    def __post_init__(self) -> None:
        if self.latent.ndim != 5 or self.latent.shape[2] < 1:
            raise ValueError(
                "FrameCondition.latent must be [B, C, K, h, w] with K >= 1 frames, got "
                f"shape {tuple(self.latent.shape)}"
            )
        if self.frame < 0:
            raise ValueError(f"FrameCondition.frame must be >= 0, got {self.frame}")

    @property
    def frames(self) -> range:
        """The latent frame indices this condition fixes."""
        return range(self.frame, self.frame + self.latent.shape[2])


class Conditioning:
    """Several :class:`FrameCondition` s held clean while sampling (see the module docs)."""

    def __init__(self, conditions: Sequence[FrameCondition], patch_size: Grid) -> None:
        if not conditions:
            raise ValueError("Conditioning needs at least one FrameCondition")
        taken: dict[int, int] = {}
        for index, condition in enumerate(conditions):
            for frame in condition.frames:
                if frame in taken:
                    raise ValueError(
                        f"latent frame {frame} is conditioned twice (conditions {taken[frame]} "
                        f"and {index})"
                    )
                taken[frame] = index
        self.conditions = tuple(conditions)
        self.patch_size = patch_size

    @property
    def last_frame(self) -> int:
        """The highest latent frame index conditioned."""
        return max(condition.frames[-1] for condition in self.conditions)

    def _check(self, x: torch.Tensor) -> None:
        for condition in self.conditions:
            b, c, _, h, w = condition.latent.shape
            if (
                x.ndim != 5
                or x.shape[2] <= condition.frames[-1]
                or (x.shape[0], x.shape[1], x.shape[3], x.shape[4]) != (b, c, h, w)
            ):
                raise ValueError(
                    f"latents of shape {tuple(x.shape)} do not fit the condition "
                    f"{tuple(condition.latent.shape)} at latent frame {condition.frame}; "
                    f"expected [{b}, {c}, T > {condition.frames[-1]}, {h}, {w}]"
                )

    def frame_mask(self, num_frames: int, device: torch.device | str | None = None) -> torch.Tensor:
        """``[num_frames]`` bool, True for the conditioned (clean) latent frames."""
        mask = torch.zeros(num_frames, dtype=torch.bool, device=device)
        for condition in self.conditions:
            mask[condition.frames.start : condition.frames.stop] = True
        return mask

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with the conditioned frames replaced by their clean latents (a new tensor)."""
        self._check(x)
        out = x.clone()
        for condition in self.conditions:
            frames = condition.frames
            out[:, :, frames.start : frames.stop] = condition.latent.to(x.device, x.dtype)
        return out

    def sigmas(self, sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``[B, N]`` token sigmas for latents ``x``: 0 on the conditioned frames' tokens."""
        grid_h = x.shape[3] // self.patch_size[1]
        grid_w = x.shape[4] // self.patch_size[2]
        mask = self.frame_mask(x.shape[2], device=x.device)
        return token_sigmas(sigma, mask, self.patch_size, grid_h * grid_w)

    def conditioned(self, velocity_fn: VelocityFn) -> VelocityFn:
        """``velocity_fn`` seeing clean conditioned frames at sigma 0 (per token), and
        returning 0 velocity on them."""

        def wrapped(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            x = self.apply(x)
            velocity = velocity_fn(x, self.sigmas(sigma, x))
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
    ) -> torch.Tensor:
        """Run ``sampler`` from ``noise`` with the conditioned frames held clean throughout."""
        return sampler.sample(
            self.conditioned(velocity_fn),
            self.apply(noise),
            sigmas,
            callback=self.callback(then=callback),
        )
