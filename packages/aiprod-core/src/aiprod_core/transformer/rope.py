"""3D rotary position embeddings (RoPE) in seconds and pixels.

A token's position is where its patch starts in the video, not its index in the token
grid: ``(time in seconds, row in pixels, column in pixels)``. With the VAE compressing
time by ``temporal`` and space by ``spatial``, latent frame ``j`` starts at pixel frame
``max(0, 1 + (j - 1) * temporal)`` (the causal VAE encodes frame 0 alone, then groups of
``temporal`` frames; this is LTX-2's convention) and lasts until the next one; that frame
index divided by the frame rate is the time. Latent row ``i`` starts at pixel row
``i * spatial * pixel_scale``: ``pixel_scale`` is 2 for latents that a x2 upsampler will
double (stage 1 of two-stage generation), so their tokens sit where the upsampled ones do.
The same content therefore gets the same position at another frame rate (up to time), in
both stages of a two-stage run, and the spacing of positions says how far apart tokens
are on screen and in time.

Each axis is divided by its configured maximum (``rope_max_positions``) and rotates
``pairs`` channel pairs with angular frequencies ``pi / 2 * theta ** (k / (pairs - 1))``,
``k = 0 .. pairs - 1``: the slowest turns a quarter turn across the whole range, the
fastest ``theta`` times faster. A head of ``head_dim`` channels has ``head_dim / 2`` pairs;
each axis gets ``head_dim / 2 // 3`` of them and the pairs left over (when ``head_dim / 2``
is not a multiple of 3) do not rotate (cos 1, sin 0), as LTX-2 pads them. Rotating
queries and keys by angles proportional to position makes ``q . k`` depend only on the
difference of the two positions; :func:`position_sinusoids` turns the same angles into
absolute position features for a transformer that also adds those to its tokens.
"""

from __future__ import annotations

import math

import torch

Grid = tuple[int, int, int]
Rope = tuple[torch.Tensor, torch.Tensor]

DEFAULT_FPS = 24.0
"""Frame rate assumed for a forward pass that names none."""


def token_positions(
    grid: Grid,
    patch_size: Grid,
    latent_scale: tuple[int, int],
    fps: float | torch.Tensor = DEFAULT_FPS,
    pixel_scale: float = 1.0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``[B, N, 3]`` float32 (seconds, pixel row, pixel column) where each token's patch
    starts, time-major like ``Patchifier3D.patchify`` (see the module docstring).

    ``grid`` is the token grid ``(T', H', W')``; ``latent_scale`` the VAE's ``(temporal,
    spatial)`` compression; ``fps`` a number or a ``[B]`` tensor (``B`` is 1 for a number).
    """
    temporal, spatial = latent_scale
    frames, rows, cols = (
        torch.arange(size, device=device, dtype=torch.float32) * step
        for size, step in zip(grid, patch_size, strict=True)
    )
    frames = (1 + (frames - 1) * temporal).clamp(min=0)  # pixel frame where each token starts
    rows = rows * (spatial * pixel_scale)
    cols = cols * (spatial * pixel_scale)
    t, h, w = torch.meshgrid(frames, rows, cols, indexing="ij")
    rate = torch.as_tensor(fps, dtype=torch.float32, device=device).reshape(-1)
    if not bool((rate > 0).all()) or not bool(torch.isfinite(rate).all()):
        raise ValueError(f"fps must be finite and > 0, got {rate.tolist()}")
    seconds = t.reshape(1, -1) / rate[:, None]  # [B, N]
    space = torch.stack([h.reshape(-1), w.reshape(-1)], dim=-1)  # [N, 2]
    return torch.cat([seconds[..., None], space.expand(len(rate), -1, -1)], dim=-1)


def axis_pairs(head_dim: int) -> int:
    """Rotation pairs each of the three axes gets in a head of ``head_dim`` channels."""
    return head_dim // 2 // 3


def rope_frequencies(
    positions: torch.Tensor,
    head_dim: int,
    theta: float,
    max_positions: tuple[float, float, float],
) -> Rope:
    """Cos and sin ``[B, N, head_dim / 2]`` (float32) of the rotation angles of ``[B, N, 3]``
    positions (see the module docstring); padding pairs come first."""
    if head_dim % 2 or axis_pairs(head_dim) < 1:
        raise ValueError(f"head_dim {head_dim} must be even and at least 6 for 3D RoPE")
    pairs = axis_pairs(head_dim)
    angles = position_angles(positions, pairs, theta, max_positions)
    padding = head_dim // 2 - 3 * pairs
    cos, sin = angles.cos(), angles.sin()
    if padding:
        cos = torch.cat([cos.new_ones(*cos.shape[:-1], padding), cos], dim=-1)
        sin = torch.cat([sin.new_zeros(*sin.shape[:-1], padding), sin], dim=-1)
    return cos, sin


def position_angles(
    positions: torch.Tensor, pairs: int, theta: float, max_positions: tuple[float, float, float]
) -> torch.Tensor:
    """``[B, N, 3 * pairs]`` float32 angles of ``[B, N, 3]`` positions: ``pairs`` frequencies
    per axis (see the module docstring), time's first, then rows', then columns'."""
    exponents = torch.arange(pairs, device=positions.device, dtype=torch.float32)
    exponents = exponents / max(pairs - 1, 1)
    freqs = (math.pi / 2) * theta**exponents  # [pairs]
    scale = torch.tensor(max_positions, device=positions.device, dtype=torch.float32)
    fractions = positions.float() / scale  # [B, N, 3]
    return (fractions[..., None] * freqs).flatten(-2)


def position_sinusoids(
    positions: torch.Tensor, dim: int, theta: float, max_positions: tuple[float, float, float]
) -> torch.Tensor:
    """``[B, N, dim]`` float32 absolute position features of ``[B, N, 3]`` positions: the
    cos, then the sin, of RoPE's angles with ``dim / 2 // 3`` frequencies per axis, zero
    padded to ``dim`` (the transformer's ``absolute_positions``).

    Unlike RoPE, which only makes attention depend on the difference of two positions, these
    tell each token where it is in the clip, in the same seconds and pixels: the same
    content of a x2 upsampled grid or another frame rate gets the same features.
    """
    pairs = dim // 2 // 3
    if pairs < 1:
        raise ValueError(f"dim {dim} must be at least 6 for 3D position features")
    angles = position_angles(positions, pairs, theta, max_positions)
    features = torch.cat([angles.cos(), angles.sin()], dim=-1)
    return torch.nn.functional.pad(features, (0, dim - features.shape[-1]))


def apply_rope(x: torch.Tensor, rope: Rope) -> torch.Tensor:
    """Rotate channel pairs ``(x[2i], x[2i+1])`` of ``x [B, heads, N, head_dim]`` (in float32)
    by ``rope`` ``[B or 1, N, head_dim / 2]``."""
    cos, sin = (part[:, None] for part in rope)  # broadcast over heads
    pairs = torch.unflatten(x.float(), -1, (-1, 2))
    x0, x1 = pairs.unbind(-1)
    rotated = torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1)
    return rotated.flatten(-2).to(x.dtype)
