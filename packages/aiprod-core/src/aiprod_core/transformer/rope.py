"""3D rotary position embeddings (RoPE) for video tokens.

Each attention head's ``head_dim`` channels form ``head_dim / 2`` rotation pairs, split in
three equal parts: the first third rotates with the token's frame index, the second with
its row, the last with its column. Rotating queries and keys by angles proportional to
their positions makes ``q . k`` depend only on the difference of the two positions.
"""

from __future__ import annotations

import torch

Grid = tuple[int, int, int]
Rope = tuple[torch.Tensor, torch.Tensor]


def grid_positions(grid: Grid, device: torch.device | str | None = None) -> torch.Tensor:
    """``[N, 3]`` float32 (t, h, w) coordinates of a token grid, time-major like patchify."""
    axes = [torch.arange(size, device=device, dtype=torch.float32) for size in grid]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)


def rope_frequencies(positions: torch.Tensor, head_dim: int, theta: float = 10_000.0) -> Rope:
    """Cos and sin ``[N, head_dim / 2]`` (float32) of the rotation angles of ``[N, 3]`` positions.

    Each axis gets ``head_dim / 6`` pairs with frequencies ``theta ** (-2i / (head_dim / 3))``.
    """
    if head_dim % 6:
        raise ValueError(f"head_dim {head_dim} must be divisible by 6 for 3D RoPE")
    axis_dim = head_dim // 3
    exponents = torch.arange(0, axis_dim, 2, device=positions.device, dtype=torch.float32)
    inv_freq = theta ** (-exponents / axis_dim)  # [head_dim / 6]
    angles = positions.float()[:, :, None] * inv_freq  # [N, 3, head_dim / 6]
    angles = angles.flatten(1)  # [N, head_dim / 2]: t pairs, then h pairs, then w pairs
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, rope: Rope) -> torch.Tensor:
    """Rotate channel pairs ``(x[2i], x[2i+1])`` of ``x [B, heads, N, head_dim]`` (in float32)."""
    cos, sin = rope
    pairs = torch.unflatten(x.float(), -1, (-1, 2))
    x0, x1 = pairs.unbind(-1)
    rotated = torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1)
    return rotated.flatten(-2).to(x.dtype)
