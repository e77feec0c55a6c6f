"""How much memory decoding one latent tile takes, read off the VAE config.

:func:`decode_peak_bytes` replays :class:`~aiprod_core.vae.decoder.Decoder`'s forward pass
layer by layer on a ledger of the tensors alive at each step (batch 1, under
``torch.inference_mode()``, so nothing is kept for autograd) and returns the largest total:

- every :class:`CausalConv3d` holds its input, a copy with ``kernel_t - 1`` replicated first
  frames (the causal padding) and its output; the backend copies the padded input into its
  own layout and stages the output there (channels padded to :data:`LAYOUT_CHANNELS`)
  before writing it back, so for a moment it holds two more tensors;
- :class:`ChannelRMSNorm` works in float32: besides its input it holds a float32 copy (when
  the activations are not float32 already), ``x**2``, the normalised tensor and its scaled
  copy, so in bfloat16 it needs 5 times the bytes of its input on top of it;
- a residual block holds its input through both convolutions; the pixel shuffle of an
  upsampling stage copies the convolution's ``t * s * s`` times wider output, and keeps the
  frames its causal first frame drops, until the next stage is done with it.

The peak sits in the last layers, where the widest full-resolution activation (``base``
channels at every decoded pixel) goes through ``norm_out``, SiLU and the padded ``conv_out``:
about 12 bytes per element of that activation in float32 *and* in bfloat16 (the norm's
float32 temporaries cancel bfloat16's saving). Weights are not included, nor is the
allocator's fragmentation: leave headroom (:func:`default_memory_budget` gives a decode 85 %
of a GPU's free memory).

Every tensor a decoder layer makes has ``h * w`` times the spatial positions of the latent
tile, so the peak is exactly ``h * w`` times a function of ``t``
(:func:`decode_peak_bytes_per_position`); the tile planner
(:mod:`aiprod_core.vae.tile_plan`) relies on that.

**Calibration** (torch 2.13 CPU build; the peak of what the CPU allocator holds during one
decode, from ``torch.autograd.profiler.profile(profile_memory=True)``, plus the latents;
``tests/unit/test_decode_memory.py`` repeats the tiny case and asserts a factor of 1.25):

- bfloat16: equal to the byte for the tiny preset at latent (5, 8, 8), (9, 16, 16),
  (9, 32, 32), (17, 32, 32) and the small preset at (3, 8, 8), (5, 16, 16), (9, 16, 16);
- float32: equal to the byte for tiny (9, 32, 32), (17, 32, 32) and small (5, 16, 16),
  (9, 16, 16); 0.92 of the measured peak for small (3, 8, 8), and only 0.15-0.18 of it
  for tiny (5, 8, 8) and (9, 16, 16). There, PyTorch's CPU convolution takes its im2col
  path for small activations (batch x channels x frames x height <= 20480 in float32),
  whose buffer is 27 times the input. Only small tiles take that path, so the whole
  buffer is at most 2.2 MB per pixel of width;
- peak RSS of the process (``VmHWM`` after resetting it, minus the RSS before the
  decode): the estimate is 0.75-0.93 of it for tiny (17, 32, 32) and small (5, 16, 16) to
  (9, 32, 32). The rest is the allocator's own overhead and pages it keeps.

On a GPU the same copies are expected. cuDNN converts NCDHW half-precision tensors to
channels-last inside its workspace. The ``gpu`` test compares the estimate with
``torch.cuda.max_memory_allocated`` for the small preset in bfloat16.
"""

from __future__ import annotations

import math

import torch

from aiprod_core.models.configs import VAEConfig
from aiprod_core.vae.encoder import stage_channels

FLOAT32_BYTES = 4
"""ChannelRMSNorm computes in float32 whatever the activations' dtype."""

CUDA_BUDGET_FRACTION = 0.85
"""Share of a GPU's free memory (free to the driver plus what PyTorch holds unused) that
:func:`default_memory_budget` gives the decode: the rest is headroom for fragmentation and
the convolution workspaces the estimate leaves out."""

CPU_BUDGET_FRACTION = 0.5
"""Share of the host's available RAM (``MemAvailable``) :func:`default_memory_budget` gives a
decode on the CPU."""

FALLBACK_BUDGET = 8 << 30
"""The budget on a device whose free memory cannot be read (8 GiB)."""


LAYOUT_CHANNELS = 16
"""Convolution backends stage outputs in a layout whose channels are padded to this multiple
(oneDNN's 16-channel blocks on CPU; it also covers the 8-channel tensor-core tiles on GPUs)."""


class _Ledger:
    """Bytes of the tensors alive now and the most ever alive at once (per latent position)."""

    def __init__(self) -> None:
        self.live = 0.0
        self.peak = 0.0

    def alloc(self, size: float) -> float:
        self.live += size
        self.peak = max(self.peak, self.live)
        return size

    def free(self, *sizes: float) -> None:
        for size in sizes:
            self.live -= size


class _Replay:
    """One decode of a latent tile of ``frames`` frames and one spatial position, in bytes.

    Activations are ``(channels, frames, scale)``: ``scale`` is the number of pixels per
    latent position at that stage (``4**k`` after ``k`` spatial upsamplings).
    """

    def __init__(self, dtype_bytes: int) -> None:
        self.d = dtype_bytes
        self.ledger = _Ledger()

    def size(self, channels: int, frames: int, scale: int, itemsize: int | None = None) -> float:
        return float(channels * frames * scale * (itemsize or self.d))

    def conv(self, c_in: int, c_out: int, frames: int, scale: int, kernel_t: int) -> float:
        """CausalConv3d: the padded copy of the input lives while the output is made; the
        backend copies the input into its own layout and writes the output there first."""
        ledger = self.ledger
        padded = self.size(c_in, frames + kernel_t - 1, scale)
        pad = ledger.alloc(padded) if kernel_t > 1 else 0.0
        relaid = ledger.alloc(padded)
        staged = ledger.alloc(
            self.size(-(-c_out // LAYOUT_CHANNELS) * LAYOUT_CHANNELS, frames, scale)
        )
        ledger.free(relaid)
        out = ledger.alloc(self.size(c_out, frames, scale))
        ledger.free(staged, pad)
        return out

    def norm(self, channels: int, frames: int, scale: int) -> float:
        """ChannelRMSNorm in float32, then cast back (see blocks.ChannelRMSNorm.forward)."""
        ledger, f32 = self.ledger, FLOAT32_BYTES
        full = self.size(channels, frames, scale, f32)
        reduced = self.size(1, frames, scale, f32)
        copy = ledger.alloc(full) if self.d != f32 else 0.0  # x.float()
        square = ledger.alloc(full)  # x32.pow(2)
        mean = ledger.alloc(reduced)
        ledger.free(square)
        shifted = ledger.alloc(reduced)  # + eps
        ledger.free(mean)
        root = ledger.alloc(reduced)  # rsqrt
        ledger.free(shifted)
        normalised = ledger.alloc(full)  # x32 * rsqrt
        ledger.free(root, copy)
        scaled = ledger.alloc(full)  # * weight
        if self.d == f32:
            ledger.free(normalised)
            return scaled
        out = ledger.alloc(self.size(channels, frames, scale))  # .to(dtype)
        ledger.free(scaled, normalised)
        return out

    def norm_silu(self, channels: int, frames: int, scale: int) -> float:
        normed = self.norm(channels, frames, scale)
        activated = self.ledger.alloc(self.size(channels, frames, scale))
        self.ledger.free(normed)
        return activated

    def res_block(self, c_in: int, c_out: int, frames: int, scale: int) -> float:
        """ResBlock3d; its input stays alive (the caller holds it) throughout."""
        ledger = self.ledger
        activated = self.norm_silu(c_in, frames, scale)
        h = self.conv(c_in, c_out, frames, scale, 3)
        ledger.free(activated)
        activated = self.norm_silu(c_out, frames, scale)
        h2 = self.conv(c_out, c_out, frames, scale, 3)
        ledger.free(activated, h)
        skip = self.conv(c_in, c_out, frames, scale, 1) if c_in != c_out else 0.0
        out = ledger.alloc(self.size(c_out, frames, scale))
        ledger.free(skip, h2)
        return out

    def upsample(self, channels: int, frames: int, scale: int, temporal: int) -> float:
        """CausalUpsample: conv to ``channels * t * 4``, then the pixel shuffle's copy."""
        wide = self.conv(channels, channels * temporal * 4, frames, scale, 3)
        shuffled = self.ledger.alloc(wide)
        self.ledger.free(wide)
        return shuffled


def decode_peak_bytes_per_position(config: VAEConfig, frames: int, dtype_bytes: int) -> float:
    """Peak bytes of decoding a latent tile of ``frames`` frames, per latent (h, w) position."""
    if frames < 1 or dtype_bytes < 1:
        raise ValueError(f"frames ({frames}) and dtype_bytes ({dtype_bytes}) must be >= 1")
    replay = _Replay(dtype_bytes)
    ledger = replay.ledger
    channels = stage_channels(config)
    current, scale = channels[-1], 1
    latents = ledger.alloc(replay.size(config.latent_channels, frames, 1))
    first = replay.conv(config.latent_channels, current, frames, 1, 3)
    # conv_in's output is blocks' argument: alive until the last block returns.
    x = replay.res_block(current, current, frames, scale)
    for stage in reversed(range(config.spatial_stages)):
        for _ in range(config.num_res_blocks):
            out = replay.res_block(current, channels[stage], frames, scale)
            ledger.free(x)
            x, current = out, channels[stage]
        temporal = 2 if stage < config.temporal_stages else 1
        out = replay.upsample(current, frames, scale, temporal)
        ledger.free(x)
        # The shuffled storage keeps the temporal - 1 frames the causal first frame drops.
        x, frames, scale = out, frames * temporal - (temporal - 1), scale * 4
    ledger.free(first)
    activated = replay.norm_silu(current, frames, scale)
    video = replay.conv(current, config.in_channels, frames, scale, 3)
    ledger.free(activated)
    ledger.alloc(video)  # tanh
    ledger.free(video, video, x, latents)
    return ledger.peak


def decode_peak_bytes(config: VAEConfig, latent_thw: tuple[int, int, int], dtype_bytes: int) -> int:
    """Estimated peak activation bytes of decoding ONE latent tile of ``(t, h, w)`` at batch 1
    under ``torch.inference_mode()`` in a ``dtype_bytes``-wide dtype (weights not included)."""
    frames, height, width = latent_thw
    if min(frames, height, width) < 1:
        raise ValueError(f"latent tile {latent_thw}: every size must be at least 1")
    per_position = decode_peak_bytes_per_position(config, frames, dtype_bytes)
    return math.ceil(per_position * height * width)


def default_memory_budget(device: torch.device | str) -> int:
    """The decode budget when none is given: :data:`CUDA_BUDGET_FRACTION` of what is free
    on a CUDA device, :data:`CPU_BUDGET_FRACTION` of the available RAM on the CPU, and
    :data:`FALLBACK_BUDGET` where neither can be read."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int((free + cached) * CUDA_BUDGET_FRACTION)
    if device.type != "cpu":
        return FALLBACK_BUDGET
    # Imported here: aiprod_core.memory plans decodes with this module.
    from aiprod_core.memory.host import available_ram

    available = available_ram()
    return int(available * CPU_BUDGET_FRACTION) if available else FALLBACK_BUDGET
