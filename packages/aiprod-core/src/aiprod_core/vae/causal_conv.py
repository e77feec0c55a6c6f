"""A 3D convolution that never looks at future frames.

Time is padded only on the past side, by repeating the first frame ``kernel_t - 1`` times,
so output frame ``t`` depends on input frames ``<= t`` and the first output frame sees the
first input frame alone. Height and width are zero-padded on both sides ("same" padding).
"""

from __future__ import annotations

import torch
from torch import nn


def _triple(value: int | tuple[int, int, int]) -> tuple[int, int, int]:
    return (value, value, value) if isinstance(value, int) else value


class CausalConv3d(nn.Module):
    """``nn.Conv3d`` over [B, C, T, H, W] with causal time padding and same spatial padding.

    With temporal stride ``st`` and ``1 + k * st`` input frames it returns ``1 + k`` frames;
    output frame ``j`` reads input frames ``st * j - (kernel_t - 1) .. st * j``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int, int] = 3,
        stride: int | tuple[int, int, int] = 1,
    ) -> None:
        super().__init__()
        self.kernel_size = _triple(kernel_size)
        self.stride = _triple(stride)
        _, kh, kw = self.kernel_size
        if kh % 2 == 0 or kw % 2 == 0:
            raise ValueError(f"spatial kernel sizes must be odd, got {self.kernel_size}")
        self.conv = nn.Conv3d(
            in_channels,
            out_channels,
            self.kernel_size,
            stride=self.stride,
            padding=(0, kh // 2, kw // 2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        history = self.kernel_size[0] - 1
        if history:
            first = x[:, :, :1].expand(-1, -1, history, -1, -1)
            x = torch.cat([first, x], dim=2)
        out: torch.Tensor = self.conv(x)
        return out
