"""Classifier-free guidance: push the velocity away from the unconditional prediction."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from aiprod_core.diffusion.protocols import Denoiser, VelocityFn


def _pad_length(
    tokens: torch.Tensor, mask: torch.Tensor, length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad ``[B, L, D]`` tokens with zeros and ``[B, L]`` mask with False to ``length``."""
    extra = length - tokens.shape[1]
    return F.pad(tokens, (0, 0, 0, extra)), F.pad(mask, (0, extra), value=False)


class ClassifierFreeGuidance:
    """``uncond + scale * (cond - uncond)``; scale 1 is plain conditional sampling.

    ``velocity_fn`` runs the conditional and unconditional branches as one batch of
    ``2B`` through the denoiser (one forward per sampler call), or only the conditional
    one when ``scale == 1``.
    """

    def __init__(self, scale: float) -> None:
        if not math.isfinite(scale) or scale < 0:
            raise ValueError(f"guidance scale must be a finite number >= 0, got {scale}")
        self.scale = float(scale)

    def combine(self, cond: torch.Tensor, uncond: torch.Tensor) -> torch.Tensor:
        """The guided velocity; returns ``cond`` itself when the scale is 1."""
        if self.scale == 1.0:
            return cond
        return uncond + self.scale * (cond - uncond)

    def velocity_fn(
        self,
        denoiser: Denoiser,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        uncond_text: torch.Tensor,
        uncond_mask: torch.Tensor,
    ) -> VelocityFn:
        """A sampler-ready ``velocity_fn(x, sigma)`` guiding ``denoiser(x, sigma, text, mask)``.

        ``text``/``uncond_text`` are ``[B, L, D]`` (``L`` may differ; the shorter is padded
        and masked; a batch-1 ``uncond_text`` serves every sample); ``sigma`` may be
        ``[B]`` or ``[B, N]`` (per token).
        """
        if self.scale == 1.0:
            return lambda x, sigma: denoiser(x, sigma, text, text_mask)
        if uncond_text.shape[0] == 1 and text.shape[0] > 1:  # one negative prompt for all
            uncond_text = uncond_text.expand(text.shape[0], -1, -1)
            uncond_mask = uncond_mask.expand(text.shape[0], -1)
        if uncond_text.shape[0] != text.shape[0]:
            raise ValueError(
                f"uncond_text has batch {uncond_text.shape[0]}; expected 1 or {text.shape[0]} "
                "(the batch of text)"
            )
        length = max(text.shape[1], uncond_text.shape[1])
        cond_tokens, cond_mask = _pad_length(text, text_mask, length)
        uncond_tokens, uncond_mask = _pad_length(uncond_text, uncond_mask, length)
        both_text = torch.cat([cond_tokens, uncond_tokens])
        both_mask = torch.cat([cond_mask, uncond_mask])

        def guided(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            velocity = denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), both_text, both_mask)
            cond, uncond = velocity.chunk(2)
            return self.combine(cond, uncond)

        return guided
