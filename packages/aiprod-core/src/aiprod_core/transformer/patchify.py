"""Cut video latents into 3D patches (tokens) and put them back.

Latents ``[B, C, T, H, W]`` become tokens ``[B, N, C * pt * ph * pw]`` on the grid
``(T', H', W') = (T / pt, H / ph, W / pw)``, ordered time-major, then rows, then columns
(the order :func:`aiprod_core.transformer.rope.token_positions` enumerates).
"""

from __future__ import annotations

from typing import Protocol

import torch

from aiprod_core.errors import AiprodError

Grid = tuple[int, int, int]

_AXES = (("frames", "patch length"), ("height", "patch height"), ("width", "patch width"))


class PatchShapeError(AiprodError, ValueError):
    """Latent frames, height or width are not multiples of the transformer's patch size."""


class Patchifier(Protocol):
    """Turns latents into a token sequence on a grid, and tokens back into latents."""

    patch_size: Grid

    def grid(self, latent_size: Grid) -> Grid:
        """The token grid ``(T', H', W')`` of latents with ``(T, H, W)`` frames/rows/columns."""
        ...

    def patchify(self, latents: torch.Tensor) -> tuple[torch.Tensor, Grid]:
        """``[B, C, T, H, W]`` -> tokens ``[B, N, C * prod(patch_size)]`` and their grid."""
        ...

    def unpatchify(self, tokens: torch.Tensor, grid: Grid) -> torch.Tensor:
        """The inverse of :meth:`patchify`."""
        ...


def _nearest_multiples(value: int, step: int) -> str:
    """The multiples of ``step`` nearest ``value`` (never below ``step``), as text."""
    below, above = (value // step) * step, (value // step + 1) * step
    return f"{above}" if below == 0 else f"{below} or {above}"


class Patchifier3D:
    """Non-overlapping ``(pt, ph, pw)`` patches of a ``[B, C, T, H, W]`` latent video."""

    def __init__(self, patch_size: Grid) -> None:
        if len(patch_size) != 3 or min(patch_size) < 1:
            raise ValueError(f"patch_size must be three positive integers, got {patch_size}")
        self.patch_size: Grid = (int(patch_size[0]), int(patch_size[1]), int(patch_size[2]))

    def __repr__(self) -> str:
        return f"Patchifier3D(patch_size={self.patch_size})"

    def grid(self, latent_size: Grid) -> Grid:
        problems = []
        for value, step, (axis, patch_name) in zip(
            latent_size, self.patch_size, _AXES, strict=True
        ):
            if value < 1 or value % step:
                nearest = _nearest_multiples(value, step)
                problems.append(
                    f"latent {axis} {value} is not a multiple of the {patch_name} {step} "
                    f"(nearest valid: {nearest})"
                )
        if problems:
            raise PatchShapeError(
                f"latents of size (T, H, W) = {tuple(latent_size)} do not fit the transformer's "
                f"patch {self.patch_size}: " + "; ".join(problems)
            )
        pt, ph, pw = self.patch_size
        return latent_size[0] // pt, latent_size[1] // ph, latent_size[2] // pw

    def patchify(self, latents: torch.Tensor) -> tuple[torch.Tensor, Grid]:
        if latents.ndim != 5:
            raise ValueError(f"latents must be [B, C, T, H, W], got shape {tuple(latents.shape)}")
        b, c, t, h, w = latents.shape
        gt, gh, gw = self.grid((t, h, w))
        pt, ph, pw = self.patch_size
        x = latents.reshape(b, c, gt, pt, gh, ph, gw, pw)
        x = x.permute(0, 2, 4, 6, 1, 3, 5, 7)  # [B, T', H', W', C, pt, ph, pw]
        return x.reshape(b, gt * gh * gw, c * pt * ph * pw), (gt, gh, gw)

    def unpatchify(self, tokens: torch.Tensor, grid: Grid) -> torch.Tensor:
        pt, ph, pw = self.patch_size
        gt, gh, gw = grid
        b, n, d = tokens.shape
        if n != gt * gh * gw or d % (pt * ph * pw):
            raise ValueError(
                f"tokens of shape {tuple(tokens.shape)} do not match grid {tuple(grid)} "
                f"and patch {self.patch_size}"
            )
        c = d // (pt * ph * pw)
        x = tokens.reshape(b, gt, gh, gw, c, pt, ph, pw)
        x = x.permute(0, 4, 1, 5, 2, 6, 3, 7)  # [B, C, T', pt, H', ph, W', pw]
        return x.reshape(b, c, gt * pt, gh * ph, gw * pw)
