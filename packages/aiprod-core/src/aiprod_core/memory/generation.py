"""The lines of a generation plan.

Generation holds the whole bundle in the compute dtype (with ``text_encoder_offload`` the
text encoder is on the device only while it encodes), then peaks in one of three phases:
encoding the prompts, denoising (the transformer runs its conditional and unconditional
branches as one batch of two: :func:`~aiprod_core.memory.activations.inference_peak`) or
decoding (:mod:`aiprod_core.memory.decoding`: the whole latent at once, or the tiles the
VAE's planner fits into what the weights leave of the device).
"""

from __future__ import annotations

from aiprod_core.memory.activations import inference_peak
from aiprod_core.memory.decoding import decode_lines
from aiprod_core.memory.lines import Breakdown, MemoryLine, fixed_reserve, headroom
from aiprod_core.memory.parameters import ModelParameters
from aiprod_core.memory.settings import PlanSettings
from aiprod_core.models.configs import ModelConfig

TEXT_ENCODING_FACTOR = 20
"""Bytes of an encoder layer's transient activations per token and channel, in ``a`` units."""


def generation_breakdown(
    config: ModelConfig,
    settings: PlanSettings,
    params: ModelParameters,
    shapes: tuple[int, tuple[int, int, int], tuple[int, int, int]],
    device_bytes: int | None,
) -> Breakdown:
    """Lines and phases of generating one clip: its tokens, latent and (F, H, W)."""
    tokens, latent, clip = shapes
    a = settings.compute_bytes
    resident = (params.transformer.total + params.vae + params.upsampler) * a
    encoder = params.text_encoder * a
    kept = 0 if settings.text_encoder_offload else encoder
    text = config.text_encoder
    encoding = text.max_length * text.dim * TEXT_ENCODING_FACTOR * a
    forward = inference_peak(config.transformer, tokens, text.max_length, 2 * settings.batch, a)
    budget = None
    if device_bytes is not None:
        spare = (device_bytes - fixed_reserve(settings)) / (1 + headroom(settings))
        budget = int(spare) - resident - kept
    decode = decode_lines(config, settings, latent, clip, budget)
    phases = {
        "text encoding": resident + encoder + encoding,
        "denoising": resident + kept + forward,
        "VAE decode": resident + kept + decode.peak,
    }
    offloaded = " (on the device only while encoding)" if settings.text_encoder_offload else ""
    lines = [
        MemoryLine(
            "weights", f"weights: transformer, VAE, upsampler ({settings.compute_dtype})", resident
        ),
        MemoryLine("text_encoder", f"weights: text encoder{offloaded}", encoder),
        MemoryLine("gradients", "gradients (none when generating)", 0),
        MemoryLine("optimizer", "optimizer (none when generating)", 0),
        MemoryLine("text_encoding", "text encoding activations", encoding),
        MemoryLine("activations", "transformer forward peak (CFG batch of 2)", forward),
        MemoryLine("vae_decode", decode.label, decode.decoder),
        MemoryLine(
            "decode_buffers", "tiled decode: output video and blend buffers", decode.buffers
        ),
        MemoryLine(
            "frames", "turning the video into frames (video + 2 float32 copies)", decode.frames
        ),
    ]
    return Breakdown(lines, phases)
