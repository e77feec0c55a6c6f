# /// script
# requires-python = ">=3.11"
# dependencies = ["aiprod-core", "torch>=2.4"]
# ///
"""Plan per-rank memory of training, LoRA or generation with a preset before running it.

Prints what one rank (one GPU, or the host on the CPU) needs: weights, gradients, AdamW
moments, working copies, activations without and with activation checkpointing, the VAE
decode peak, and the total at the step's largest point; then a verdict on ``--gpus`` x
``--gpu-memory`` and the smallest setting that fits (fewest GPUs first, then fsdp,
activation checkpointing, CPU offload; for generation a tiled decode and offloading the text
encoder). The formulas are ``aiprod_core.memory``'s; nothing is allocated, the model is
counted on the meta device. Memory sizes are GiB (2^30 bytes). Exit status: 0 when the
asked setting fits, 1 when it does not, 2 for arguments that cannot be planned.

    nox -s dev -- plan_memory --preset aiprod-19b --mode train --gpus 8 --gpu-memory 80 \\
        --strategy fsdp --activation-checkpointing --frames 121 --height 768 --width 1280
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from typing import Any

DEFAULT_GPU_MEMORY = 80.0
#: Lines every table shows, even at 0 (the others only when they hold something).
ALWAYS_SHOWN = ("weights", "gradients", "optimizer", "activations", "activations_checkpointed",
                "vae_decode")  # fmt: skip


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    from aiprod_core.memory.settings import DEFAULT_LORA_RANK, MODES, STRATEGIES, TILE_MODES
    from aiprod_core.models import PRESETS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add(
        "--preset",
        default="aiprod-19b",
        choices=tuple(PRESETS),
        help="model preset (default aiprod-19b)",
    )
    add(
        "--mode",
        default="train",
        choices=MODES,
        help="train (full fine-tune), lora or generate (default train)",
    )
    add(
        "--device",
        default="cuda",
        choices=("cuda", "cpu"),
        help="plan for GPUs (default) or the CPU",
    )
    add("--gpus", type=int, default=1, help="GPUs (ranks) of the run (default 1)")
    add(
        "--gpu-memory",
        type=float,
        default=DEFAULT_GPU_MEMORY,
        metavar="GB",
        help=f"memory of one GPU in GiB (default {DEFAULT_GPU_MEMORY:g})",
    )
    add(
        "--host-memory",
        type=float,
        metavar="GB",
        help="host memory per rank in GiB: with --device cpu what the plan must fit (default: "
        "this host's available RAM); with --cpu-offload, where the shards go (default: "
        "not checked)",
    )
    add(
        "--strategy",
        default="ddp",
        choices=STRATEGIES,
        help="ddp (replicated, default) or fsdp (sharded)",
    )
    add(
        "--activation-checkpointing",
        action="store_true",
        help="recompute transformer blocks in backward",
    )
    add(
        "--cpu-offload",
        action="store_true",
        help="fsdp: shards, gradients and AdamW state on the host",
    )
    add("--dtype", help="compute dtype: bfloat16 (CUDA default), float32 (CPU default), float16")
    add("--frames", type=int, help="clip frames (default: the preset's generation default)")
    add("--height", type=int, help="clip height in pixels (default: the preset's)")
    add("--width", type=int, help="clip width in pixels (default: the preset's)")
    add("--batch", type=int, default=1, help="samples per rank and step (default 1)")
    add(
        "--lora-rank",
        type=int,
        default=DEFAULT_LORA_RANK,
        help=f"LoRA rank (default {DEFAULT_LORA_RANK})",
    )
    add("--tiled-decode", action="store_true", help="generate: decode the VAE in tiles")
    add(
        "--tile-mode", default="exact", choices=TILE_MODES, help="tiles: exact (default) or blended"
    )
    add(
        "--text-encoder-offload",
        action="store_true",
        help="generate: text encoder on the host but while encoding",
    )
    add("--json", action="store_true", help="print the plan, the verdict and the smallest fitting plan as JSON")  # fmt: skip
    return parser.parse_args(argv)


def settings_of(args: argparse.Namespace) -> Any:
    """The ``PlanSettings`` the arguments describe (a MemoryPlanError names a bad one)."""
    from aiprod_core.memory import PlanSettings

    return PlanSettings(
        mode=args.mode, device=args.device, gpus=args.gpus, strategy=args.strategy,
        activation_checkpointing=args.activation_checkpointing, cpu_offload=args.cpu_offload,
        dtype=args.dtype, frames=args.frames, height=args.height, width=args.width,
        batch=args.batch, lora_rank=args.lora_rank, tiled_decode=args.tiled_decode,
        tile_mode=args.tile_mode, text_encoder_offload=args.text_encoder_offload,
    )  # fmt: skip


def memory_of(args: argparse.Namespace) -> tuple[int, int | None]:
    """(bytes one rank's device has, bytes of host memory per rank to check or None)."""
    from aiprod_core.memory import GIB, MemoryPlanError, available_ram

    for name in ("gpu_memory", "host_memory"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            flag = "--" + name.replace("_", "-")
            raise MemoryPlanError(f"{flag} {value:g}: expected a positive size in GiB")
    host = None if args.host_memory is None else int(args.host_memory * GIB)
    if args.device == "cpu":
        return (host if host is not None else available_ram()), None
    return int(args.gpu_memory * GIB), host


def table(plan: Any) -> str:
    """The plan's lines and its total as a markdown table (GiB per rank)."""
    from aiprod_core.memory import GIB

    rows = ["| per rank | GiB |", "| --- | ---: |"]
    for line in plan.lines:
        if line.bytes == 0 and line.key not in ALWAYS_SHOWN:
            continue
        note = "" if line.in_total else " (for comparison, not in the total)"
        rows.append(f"| {line.label}{note} | {line.gib:,.2f} |")
    rows.append(f"| **total at the peak ({plan.peak_phase})** | **{plan.peak_bytes / GIB:,.2f}** |")
    if plan.host_bytes:
        rows.append(f"| host memory per rank (offloaded) | {plan.host_bytes / GIB:,.2f} |")
    return "\n".join(rows)


def header(plan: Any) -> str:
    """What is planned: preset, setting, clip, tokens and parameter counts."""
    clip, latent = "x".join(map(str, plan.clip)), "x".join(map(str, plan.latent))
    counts = ", ".join(
        f"{name.replace('_', ' ')} {count / 1e9:.2f}B" for name, count in plan.parameters.items()
    )
    return (
        f"{plan.preset}: {plan.settings.describe()}\n"
        f"clip {clip} (FxHxW) -> latent {latent} -> {plan.tokens:,} tokens per sample, "
        f"batch {plan.settings.batch}\nparameters: {counts}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # torch notes once that numpy is absent; planning does not need numpy.
    warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
    from aiprod_core.memory import MemoryPlanError, verdict
    from aiprod_core.models import get_preset

    try:
        settings = settings_of(args)
        device_bytes, host_bytes = memory_of(args)
        result = verdict(get_preset(args.preset), settings, device_bytes, host_bytes)
    except MemoryPlanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        payload = {
            "fits": result.fits,
            "verdict": result.summary(),
            "device_memory_bytes": device_bytes,
            "host_memory_bytes": host_bytes,
            "plan": result.plan.as_dict(),
            "smallest": None if result.smallest is None else result.smallest.as_dict(),
        }
        print(json.dumps(payload, indent=2))
    else:
        print(header(result.plan))
        print()
        print(table(result.plan))
        print()
        print(result.summary())
    return 0 if result.fits else 1


if __name__ == "__main__":
    raise SystemExit(main())
