"""A tiny VAE trained for a few dozen steps reconstructs a moving square better than at start."""

from __future__ import annotations

import pytest
import torch

from aiprod_core.models.presets import TINY
from aiprod_core.vae import CausalVideoVAE

pytestmark = pytest.mark.integration

FRAMES, SIZE, SQUARE = 9, 12, 4


def moving_square() -> torch.Tensor:
    """A red-magenta square sliding right one pixel a frame on black, in [-1, 1]."""
    video = torch.full((1, 3, FRAMES, SIZE, SIZE), -1.0)
    for frame in range(FRAMES):
        rows, cols = slice(4, 4 + SQUARE), slice(frame, frame + SQUARE)
        video[0, 0, frame, rows, cols] = 1.0
        video[0, 2, frame, rows, cols] = 0.5
    return video


def test_training_reduces_reconstruction_error() -> None:
    torch.manual_seed(0)
    vae = CausalVideoVAE(TINY.vae)
    video = moving_square()
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)

    def error() -> float:
        with torch.no_grad():
            return (vae.decode(vae.encode(video).mode()) - video).pow(2).mean().item()

    start = error()
    for _ in range(40):
        reconstruction, posterior = vae(video, generator=generator)
        loss = (reconstruction - video).pow(2).mean() + 1e-6 * posterior.kl().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    # Measured 1.00 -> 0.13 with this seed (0.16 with others): a clear factor, not noise.
    assert error() < 0.5 * start
