"""The decoder's peak-memory estimate against torch's own accounting.

Stated factor: the estimate is within 1.25x of the peak the CPU allocator reports (torch's
memory profiler) for the tiny VAE at latent (9, 32, 32) in float32; measured: equal to the
byte. It scales exactly with the tile's area, since every activation does.
"""

from __future__ import annotations

import pytest
import torch
from torch.autograd.profiler import profile

from aiprod_core.memory.host import available_ram
from aiprod_core.models.presets import SMALL, TINY
from aiprod_core.vae import decode_peak_bytes, default_memory_budget
from aiprod_core.vae.decode_memory import (
    CPU_BUDGET_FRACTION,
    CUDA_BUDGET_FRACTION,
    FALLBACK_BUDGET,
    decode_peak_bytes_per_position,
)
from aiprod_core.vae.decoder import Decoder

STATED_FACTOR = 1.25


def measured_peak(decoder: Decoder, latents: torch.Tensor) -> int:
    """Peak bytes the CPU allocator holds while ``decoder`` decodes ``latents``, counting
    the latents themselves (allocated before the profiler starts)."""
    # The autograd profiler itself: torch.profiler.profile would first import torch._inductor.
    with torch.inference_mode(), profile(profile_memory=True) as prof:
        decoder(latents)
    events = sorted(
        (event.start_ns(), event.nbytes())
        for event in prof.kineto_results.events()
        if event.name() == "[memory]"
    )
    live = peak = 0
    for _, size in events:
        live += size
        peak = max(peak, live)
    return peak + latents.numel() * latents.element_size()


def test_estimate_matches_the_measured_peak_of_the_tiny_decoder() -> None:
    torch.manual_seed(0)
    decoder = Decoder(TINY.vae).eval()
    latents = torch.randn(1, TINY.vae.latent_channels, 9, 32, 32)
    measured = measured_peak(decoder, latents)
    estimate = decode_peak_bytes(TINY.vae, (9, 32, 32), 4)
    assert measured > 50e6  # the decode really ran: ~95 MB of activations
    assert 1 / STATED_FACTOR < estimate / measured < STATED_FACTOR


def test_estimate_scales_with_the_tile() -> None:
    base = decode_peak_bytes(TINY.vae, (9, 16, 16), 4)
    assert decode_peak_bytes(TINY.vae, (9, 32, 32), 4) == pytest.approx(4 * base, abs=4)
    assert decode_peak_bytes(TINY.vae, (9, 16, 32), 4) == pytest.approx(2 * base, abs=4)
    # Time: 9 latent frames decode to 17 frames, 17 to 33, so the peak nearly doubles.
    longer = decode_peak_bytes(TINY.vae, (17, 16, 16), 4)
    assert 1.8 < longer / base < 2.0
    # The channel RMS norm works in float32, so bfloat16 saves well under half.
    half = decode_peak_bytes(TINY.vae, (9, 16, 16), 2)
    assert 0.5 < half / base < 0.7
    # A wider decoder costs more per position.
    assert decode_peak_bytes_per_position(SMALL.vae, 9, 4) > 10 * (base / 256)


def test_estimate_rejects_empty_tiles() -> None:
    with pytest.raises(ValueError, match="every size must be at least 1"):
        decode_peak_bytes(TINY.vae, (0, 4, 4), 4)
    with pytest.raises(ValueError, match="dtype_bytes"):
        decode_peak_bytes(TINY.vae, (1, 4, 4), 0)


def test_default_budget_on_the_cpu_is_a_share_of_the_ram() -> None:
    available = available_ram()
    assert available > 0
    budget = default_memory_budget("cpu")
    assert budget == pytest.approx(available * CPU_BUDGET_FRACTION, rel=0.2)
    assert default_memory_budget(torch.device("meta")) == FALLBACK_BUDGET


def test_default_budget_on_a_gpu_is_a_share_of_its_free_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gib = 1 << 30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (10 * gib, 80 * gib))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device: 5 * gib)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: 3 * gib)
    # Free to the driver (10 GiB) plus what PyTorch's cache holds unused (2 GiB).
    assert default_memory_budget("cuda:0") == int(12 * gib * CUDA_BUDGET_FRACTION)


@pytest.mark.gpu
def test_estimate_matches_the_measured_cuda_peak_of_the_small_decoder() -> None:
    torch.manual_seed(0)
    decoder = Decoder(SMALL.vae).eval().to("cuda", torch.bfloat16)
    latents = torch.randn(1, SMALL.vae.latent_channels, 5, 16, 16, device="cuda").bfloat16()
    with torch.inference_mode():
        decoder(latents[:, :, :1, :2, :2])  # load the kernels before measuring
        torch.cuda.synchronize()
        start = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        decoder(latents)
        torch.cuda.synchronize()
    measured = torch.cuda.max_memory_allocated() - start + latents.numel() * 2
    estimate = decode_peak_bytes(SMALL.vae, (5, 16, 16), 2)
    assert 0.5 < estimate / measured < 2.0
