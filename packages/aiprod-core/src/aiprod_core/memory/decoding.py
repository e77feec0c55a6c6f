"""The VAE decode lines of a generation plan: the decoder's peak for the whole latent or for
one tile, and the decoded video.

Untiled, the decoder's peak is :func:`aiprod_core.vae.decode_memory.decode_peak_bytes` of
the whole latent (activations of one decode at batch 1, the output included). Tiled, the
tiles are the ones :func:`aiprod_core.vae.tile_plan.plan_tiles` fits into the memory left
for decoding (``budget``; the pipelines' decode takes its tiles from the same planner), or
its smallest tiles when no budget is known: the least memory a tiled decode can need. The
tile's peak and the planner's assembly buffers (output video, float32 blends) are the two
lines. After decoding, the decoder's activations are gone and the pipeline turns the video
into uint8 frames: the video in the compute dtype and up to two float32 copies at a time
(the "frames" line). The decode's peak is the larger of the two steps.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiprod_core.memory.settings import PlanSettings
from aiprod_core.models.configs import ModelConfig
from aiprod_core.vae.decode_memory import decode_peak_bytes
from aiprod_core.vae.tile_plan import minimum_budget, plan_tiles

FLOAT32 = 4
Grid = tuple[int, int, int]


@dataclass(frozen=True)
class DecodeLines:
    """What a decode holds besides the weights, in bytes."""

    decoder: int
    """The decoder's activations: the whole latent's, or one tile's."""
    buffers: int
    """The tiled decode's output video and float32 blend buffers (0 untiled)."""
    frames: int
    """The decoded video and two float32 copies, while it is turned into uint8 frames."""
    label: str

    @property
    def peak(self) -> int:
        return max(self.decoder + self.buffers, self.frames)


def decode_lines(
    config: ModelConfig,
    settings: PlanSettings,
    latent: Grid,
    clip: Grid,
    budget: int | None = None,
) -> DecodeLines:
    """The decode lines of generating ``clip`` (latent ``latent``) as ``settings`` asks;
    ``budget`` is the memory left for a tiled decode (None: plan its smallest tiles)."""
    a, batch = settings.compute_bytes, settings.batch
    frames, height, width = clip
    pixels = batch * config.vae.in_channels * frames * height * width
    conversion = pixels * (a + 2 * FLOAT32)
    if not settings.tiled_decode:
        shape = "x".join(map(str, latent))
        return DecodeLines(
            decoder=decode_peak_bytes(config.vae, latent, a) * batch,
            buffers=0,
            frames=conversion,
            label=f"VAE decode peak (untiled: the whole {shape} latent)",
        )
    mode = settings.tile_mode
    least = minimum_budget(config.vae, latent, a, mode)
    plan = plan_tiles(config.vae, latent, max(least, budget or 0), a, mode)
    tiles = "x".join(map(str, plan.tiles))
    tile = "x".join(map(str, plan.tile))
    return DecodeLines(
        decoder=plan.tile_peak_bytes * batch,
        buffers=plan.assembly_bytes * batch,
        frames=conversion,
        label=f"VAE decode peak (tiled, {mode}: {tiles} tiles of {tile} latents)",
    )
