"""The analytic forward FLOPs equal what torch's FLOP counter measures on the tiny model."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from aiprod_core.models.presets import SMALL, TINY
from aiprod_core.transformer import VideoTransformer, forward_flops, transformer_flops_per_token


@pytest.mark.parametrize(("size", "text_len"), [((3, 6, 10), 7), ((1, 4, 4), 1), ((5, 8, 6), 12)])
def test_forward_flops_match_the_flop_counter(size: tuple[int, int, int], text_len: int) -> None:
    config = TINY.transformer
    model = VideoTransformer(config)
    latents = torch.randn(2, config.in_channels, *size)
    text = torch.randn(2, text_len, config.text_dim)
    # The math backend runs attention as matmuls, which the counter sees.
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(latents, torch.rand(2), text, torch.ones(2, text_len, dtype=torch.bool))
    grid = model.patchifier.grid(size)
    assert forward_flops(config, 2, grid, text_len) == counter.get_total_flops()


def test_flops_per_token() -> None:
    config = SMALL.transformer
    grid, text_len = (8, 16, 16), 128
    tokens = 8 * 16 * 16
    per_token = transformer_flops_per_token(config, tokens, text_len)
    assert per_token * tokens == pytest.approx(forward_flops(config, 1, grid, text_len))
    # Dominated by the weights: about 2 FLOPs per parameter per token, plus attention.
    with torch.device("meta"):
        params = sum(p.numel() for p in VideoTransformer(config).parameters())
    assert 2 * params * 0.7 < per_token < 2 * params * 1.5
    assert forward_flops(config, 3, grid, text_len) == 3 * forward_flops(config, 1, grid, text_len)
