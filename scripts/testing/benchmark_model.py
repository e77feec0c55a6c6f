# /// script
# requires-python = ">=3.11"
# dependencies = ["aiprod-core"]
# ///
"""Measure the video transformer's training step: latent tokens/s, peak memory, TFLOP/s, MFU.

For each preset (default: tiny and small) it times forward + backward + AdamW steps of
the transformer on random latents and text of a fixed shape, after warm-up, and reports
the median step. On CUDA it runs in bf16 (autocast) and also reports achieved TFLOP/s
(3x the analytic forward matmul FLOPs per step, recomputation not counted) and model-FLOPs
utilisation against the device's dense bf16 peak.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

#: Video shape (frames, height, width) and batch per preset and device type.
WORKLOADS: dict[str, dict[str, tuple[tuple[int, int, int], int]]] = {
    "tiny": {"cpu": ((17, 64, 64), 4), "cuda": ((17, 64, 64), 32)},
    "small": {"cpu": ((9, 128, 128), 1), "cuda": ((33, 256, 256), 8)},
    "aiprod-19b": {"cpu": ((9, 256, 256), 1), "cuda": ((121, 768, 1280), 1)},
}


@dataclass(frozen=True)
class Result:
    preset: str
    device: str
    dtype: str
    batch: int
    video: tuple[int, int, int]
    tokens_per_sample: int
    parameters: int
    step_seconds: float
    tokens_per_second: float
    peak_memory_gib: float
    memory_kind: str
    tflops: float | None
    mfu: float | None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", action="append", dest="presets", metavar="NAME",
                        help="preset to measure (repeatable; default: tiny and small)")  # fmt: skip
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--batch", type=int, help="override the preset's batch size")
    parser.add_argument("--compile", action="store_true", help="torch.compile the transformer")
    parser.add_argument("--checkpointing", action="store_true", help="gradient checkpointing")
    parser.add_argument("--peak-tflops", type=float, help="device bf16 peak (default: by name)")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or (args.batch is not None and args.batch < 1):
        parser.error("--steps and --batch must be >= 1 and --warmup >= 0")
    return args


def workload(preset: str, device_type: str, batch: int | None) -> tuple[tuple[int, int, int], int]:
    shape, default_batch = WORKLOADS[preset]["cuda" if device_type == "cuda" else "cpu"]
    return shape, batch or default_batch


def token_grid(config: Any, video: tuple[int, int, int]) -> tuple[int, int, int]:
    """The transformer's token grid for a video of (frames, height, width).

    A video the model cannot take raises an AiprodError naming the size that does not fit
    (never rounded down to one it can).
    """
    from aiprod_core.models.geometry import ModelGeometry

    return ModelGeometry.of(config).video_tokens(*video)[1]


def summarize(times: Sequence[float], tokens_per_step: int, flops_per_step: float,
              peak: float | None) -> tuple[float, float, float, float | None]:  # fmt: skip
    """Median step time, tokens/s, achieved TFLOP/s and MFU (None without a peak)."""
    step = statistics.median(times)
    tflops = flops_per_step / step / 1e12
    return step, tokens_per_step / step, tflops, (tflops / peak if peak else None)


def measure(preset: str, args: argparse.Namespace, device: Any) -> Result:
    import torch

    from aiprod_core.hardware import peak_bf16_tflops
    from aiprod_core.models import get_preset
    from aiprod_core.transformer import VideoTransformer, forward_flops

    config = get_preset(preset)
    tconf = config.transformer
    video, batch = workload(preset, device.type, args.batch)
    grid = token_grid(config, video)
    latent = tuple(g * p for g, p in zip(grid, tconf.patch_size, strict=True))
    text_len = config.text_encoder.max_length
    torch.manual_seed(0)
    model = VideoTransformer(tconf).to(device)
    model.gradient_checkpointing = args.checkpointing
    step_model = torch.compile(model) if args.compile else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    x = torch.randn(batch, tconf.in_channels, *latent, device=device)
    target = torch.randn_like(x)
    text = torch.randn(batch, text_len, tconf.text_dim, device=device)
    mask = torch.ones(batch, text_len, dtype=torch.bool, device=device)
    sigma = torch.rand(batch, device=device)
    use_bf16 = device.type == "cuda"

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            out = step_model(x, sigma, text, mask)
            loss = torch.nn.functional.mse_loss(out.float(), target)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(args.warmup):
        step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak_memory, kind = torch.cuda.max_memory_allocated(device) / 2**30, "cuda allocated"
    else:  # ru_maxrss is KiB on Linux: the process's peak resident memory so far
        peak_memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        kind = "process peak RSS"
    tokens = batch * math.prod(grid)
    flops = 3 * forward_flops(tconf, batch, grid, text_len)
    peak = (
        peak_bf16_tflops(torch.cuda.get_device_name(device), args.peak_tflops) if use_bf16 else None
    )
    seconds, per_second, tflops, mfu = summarize(times, tokens, flops, peak)
    return Result(
        preset=preset, device=str(device), dtype="bf16 autocast" if use_bf16 else "fp32",
        batch=batch, video=video, tokens_per_sample=math.prod(grid),
        parameters=sum(p.numel() for p in model.parameters()), step_seconds=seconds,
        tokens_per_second=per_second, peak_memory_gib=peak_memory, memory_kind=kind,
        tflops=tflops, mfu=mfu,
    )  # fmt: skip


def table(results: Sequence[Result]) -> str:
    lines = [
        (
            "| preset | device | dtype | batch x video (FxHxW) | tokens/sample | params "
            "| step (s) | tokens/s | peak memory (GiB) | TFLOP/s | MFU |"
        ),
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        mfu = f"{100 * r.mfu:.1f}%" if r.mfu is not None else "n/a"
        video = "x".join(map(str, r.video))
        lines.append(
            f"| {r.preset} | {r.device} | {r.dtype} | {r.batch} x {video} | {r.tokens_per_sample} "
            f"| {r.parameters / 1e6:.1f}M | {r.step_seconds:.3f} | {r.tokens_per_second:,.0f} "
            f"| {r.peak_memory_gib:.2f} ({r.memory_kind}) | {r.tflops:.2f} | {mfu} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from aiprod_core.models import PRESETS

    presets = args.presets or ["tiny", "small"]
    unknown = [p for p in presets if p not in WORKLOADS or p not in PRESETS]
    if unknown:
        print(f"error: unknown preset {', '.join(unknown)}; expected one of: "
              f"{', '.join(WORKLOADS)}", file=sys.stderr)  # fmt: skip
        return 2
    wanted = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    wanted = "cpu" if wanted == "auto" else wanted
    if wanted.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA device is available", file=sys.stderr)
        return 2
    device = torch.device(wanted)
    results = []
    for preset in presets:
        print(f"measuring {preset} on {device} ...", file=sys.stderr)
        results.append(measure(preset, args, device))
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
