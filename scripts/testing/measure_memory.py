# /// script
# requires-python = ">=3.11"
# dependencies = ["aiprod-trainer"]
# ///
"""Measure peak memory of training steps and generation against aiprod_core's memory plan.

Each case runs in a fresh child process (this script with ``--in-process``), so no case
inherits memory an earlier one left behind. A case builds the whole model (transformer,
VAE, upsampler, text encoder), as the trainer and the CLI do, and then:

- ``train`` / ``train-checkpointing``: two steps of forward + backward + AdamW over the
  transformer on random latents and text (the second step's peak includes AdamW's
  moments), without and with activation checkpointing;
- ``generate``: ``TextToVideoPipeline`` with classifier-free guidance for two sampler
  steps, then the VAE decode (the clips are small enough to be decoded in one piece).

On the CPU (float32) two peaks are measured from just before the model is built: the most
bytes live tensors held at once (torch's CPU memory profiler, allocation by allocation),
which is what :func:`aiprod_core.memory.plan_memory` estimates without its reserve, and
the process's peak resident set, which is what the host sees, against the plan's whole
peak (runtime and allocator headroom included). On CUDA (``--device cuda``: bfloat16
autocast for training and bfloat16 weights for generation, as the trainer and the CLI run
there) the figures are ``torch.cuda.max_memory_allocated`` against the plan's tensors and
``max_memory_reserved`` against the tensors plus the allocator headroom. Errors are
``(estimate - measured) / measured``.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MODES = ("train", "train-checkpointing", "generate")
#: (frames, height, width) and training batch of each preset's cases.
WORKLOADS: dict[str, tuple[tuple[int, int, int], int]] = {
    "tiny": ((33, 128, 128), 2),
    "small": ((17, 256, 256), 1),
}
STATUS = Path("/proc/self/status")
STEPS = 2
MIB = 2**20


class MeasureError(Exception):
    """The measurement cannot run as asked; the message says which argument."""


@dataclass(frozen=True)
class Result:
    """One case: the plan's estimates against the measured peaks (bytes)."""

    preset: str
    mode: str
    device: str
    video: tuple[int, int, int]
    batch: int
    tokens: int
    estimate: int
    measured_tensors: int
    estimate_total: int
    measured_total: int
    before_model: int
    total_kind: str

    @property
    def tensor_error(self) -> float:
        """Relative error of the plan's tensor bytes against the measured tensor peak."""
        return (self.estimate - self.measured_tensors) / self.measured_tensors

    @property
    def total_error(self) -> float:
        """Relative error of the plan's total against the process's measured peak."""
        return (self.estimate_total - self.measured_total) / self.measured_total

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "tensor_error": round(self.tensor_error, 4),
            "total_error": round(self.total_error, 4),
        }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", action="append", dest="presets", choices=tuple(WORKLOADS),
                        help="preset to measure (repeatable; default: tiny and small)")  # fmt: skip
    parser.add_argument("--mode", action="append", dest="modes", choices=MODES,
                        help="case to measure (repeatable; default: all three)")  # fmt: skip
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                        help="where to run (default cpu)")  # fmt: skip
    parser.add_argument("--in-process", action="store_true",
                        help="measure in this process (one preset and one mode only)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser.parse_args(argv)


def plan_settings(preset: str, mode: str, device: str) -> Any:
    """The plan of a case: its device (and that device's dtype), clip and batch."""
    from aiprod_core.memory import PlanSettings

    (frames, height, width), batch = WORKLOADS[preset]
    return PlanSettings(
        "generate" if mode == "generate" else "train",
        device=device,  # type: ignore[arg-type]
        activation_checkpointing=mode == "train-checkpointing",
        frames=frames,
        height=height,
        width=width,
        batch=1 if mode == "generate" else batch,
    )


def estimate(preset: str, mode: str, device: str) -> tuple[int, int, int]:
    """(the plan's tensor bytes at the peak, the total to compare with the process's
    peak, tokens per sample) of a case. On CUDA the total leaves out the CUDA context,
    which ``max_memory_reserved`` does not see."""
    from aiprod_core.memory import plan_memory
    from aiprod_core.memory.lines import fixed_reserve
    from aiprod_core.models import get_preset

    settings = plan_settings(preset, mode, device)
    plan = plan_memory(get_preset(preset), settings)
    tensors = plan.peak_bytes - plan.line("reserved")
    total = plan.peak_bytes - (fixed_reserve(settings) if device == "cuda" else 0)
    return tensors, total, plan.tokens


def training_run(preset: str, mode: str, device: str) -> Callable[[], None]:
    """Build the model and run :data:`STEPS` training steps of the transformer."""
    import contextlib

    import torch
    import torch.nn.functional as F

    from aiprod_core.models import build_model, get_preset
    from aiprod_core.models.geometry import ModelGeometry

    config = get_preset(preset)
    (frames, height, width), batch = WORKLOADS[preset]
    latent = ModelGeometry.of(config).latent_shape(frames, height, width)
    text = config.text_encoder
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(batch, config.vae.latent_channels, *latent, generator=generator)
    noise = torch.randn(latents.shape, generator=generator)
    context = torch.randn(batch, text.max_length, text.dim, generator=generator)
    inputs = [t.to(device) for t in (latents, noise, context)]
    mask = torch.ones(batch, text.max_length, dtype=torch.bool, device=device)
    sigma = torch.full((batch,), 0.5, device=device)

    def autocast() -> contextlib.AbstractContextManager[Any]:
        if device == "cuda":
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def run() -> None:
        clean, drawn, text_tokens = inputs
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = build_model(config).to(device)
        model.requires_grad_(False)
        transformer = model.transformer
        transformer.requires_grad_(True)
        transformer.train()
        transformer.gradient_checkpointing = mode == "train-checkpointing"
        optimizer = torch.optim.AdamW(transformer.parameters(), lr=1e-4)
        level = sigma[:, None, None, None, None]
        noisy = (1 - level) * clean + level * drawn
        for _ in range(STEPS):
            with autocast():
                prediction = transformer(noisy, sigma, text_tokens, mask)
                loss = F.mse_loss(prediction.float(), drawn - clean)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            del prediction, loss

    return run


def generation_run(preset: str, device: str) -> Callable[[], None]:
    """Build the model and generate one clip with :data:`STEPS` sampler steps."""
    import torch

    from aiprod_core.models import build_model, get_preset
    from aiprod_pipelines.pipelines import GenerationRequest, TextToVideoPipeline

    config = get_preset(preset)
    (frames, height, width), _ = WORKLOADS[preset]
    request = GenerationRequest(
        "a red ball bouncing", frames=frames, height=height, width=width, steps=STEPS, seed=0
    )
    dtype = torch.bfloat16 if device == "cuda" else None

    def run() -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = build_model(config).eval()
        pipeline = TextToVideoPipeline(model, device=device, dtype=dtype, progress=False)
        pipeline(request)

    return run


def peak_tensor_bytes(run: Callable[[], None]) -> int:
    """The most bytes live CPU tensors allocated by ``run`` held at once (CPU profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    live = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        live += event.nbytes()
        peak = max(peak, live)
    return peak


def status_kib(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (None where there is none)."""
    try:
        for line in STATUS.read_text(encoding="ascii").splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def resident_bytes() -> int:
    """This process's resident set now (0 where /proc is not there)."""
    return (status_kib("VmRSS") or 0) * 1024


def peak_resident_bytes() -> int:
    """This process's peak resident set since it started."""
    peak = status_kib("VmHWM")
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return peak * 1024


def measure_cpu(make: Callable[[], Callable[[], None]]) -> tuple[int, int, int]:
    """(tensor peak, process peak RSS, RSS before the model) of a CPU case: first run for
    the resident set, second run under the profiler."""
    run = make()
    gc.collect()
    before = resident_bytes()
    run()
    rss = peak_resident_bytes()
    del run
    gc.collect()
    return peak_tensor_bytes(make()), rss, before


def measure_cuda(make: Callable[[], Callable[[], None]]) -> tuple[int, int, int]:
    """(peak allocated, peak reserved, allocated before the model) of a CUDA case."""
    import torch

    run = make()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    run()
    torch.cuda.synchronize()
    allocated = torch.cuda.max_memory_allocated() - before
    reserved = torch.cuda.max_memory_reserved() - before
    return allocated, reserved, before


def measure(preset: str, mode: str, device: str) -> Result:
    """One case in this process."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise MeasureError("--device cuda: no CUDA device is available on this host")

    def make() -> Callable[[], None]:
        if mode == "generate":
            return generation_run(preset, device)
        return training_run(preset, mode, device)

    measured = measure_cuda(make) if device == "cuda" else measure_cpu(make)
    tensors, total, tokens = estimate(preset, mode, device)
    video, batch = WORKLOADS[preset]
    kind = "CUDA peak reserved" if device == "cuda" else "process peak RSS"
    return Result(
        preset=preset, mode=mode, device=device, video=video,
        batch=1 if mode == "generate" else batch, tokens=tokens, estimate=tensors,
        measured_tensors=measured[0], estimate_total=total, measured_total=measured[1],
        before_model=measured[2], total_kind=kind,
    )  # fmt: skip


def measure_in_child(preset: str, mode: str, device: str) -> Result:
    """:func:`measure` in a fresh process running this script."""
    command = [sys.executable, str(Path(__file__).resolve()), "--preset", preset,
               "--mode", mode, "--device", device, "--in-process", "--json"]  # fmt: skip
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise MeasureError(
            f"measuring {mode} of {preset} failed in its child process (exit code "
            f"{done.returncode}); its error is above"
        )
    (data,) = json.loads(done.stdout)
    fields = {key: data[key] for key in Result.__dataclass_fields__}
    fields["video"] = tuple(fields["video"])
    return Result(**fields)


def table(results: Sequence[Result]) -> str:
    """The results as a markdown table (MiB and relative errors)."""
    lines = [
        (
            "| preset | case | device | batch x video (FxHxW) | tokens | tensors: plan / "
            "measured (MiB) | error | total: plan / measured (MiB) | error | measured total |"
        ),
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        video = "x".join(map(str, r.video))
        lines.append(
            f"| {r.preset} | {r.mode} | {r.device} | {r.batch} x {video} | {r.tokens:,} "
            f"| {r.estimate / MIB:,.0f} / {r.measured_tensors / MIB:,.0f} "
            f"| {r.tensor_error:+.1%} "
            f"| {r.estimate_total / MIB:,.0f} / {r.measured_total / MIB:,.0f} "
            f"| {r.total_error:+.1%} | {r.total_kind} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    presets = list(dict.fromkeys(args.presets or WORKLOADS))
    modes = list(dict.fromkeys(args.modes or MODES))
    cases = [(preset, mode) for preset in presets for mode in modes]
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("error: --device cuda: no CUDA device is available on this host",
                  file=sys.stderr)  # fmt: skip
            return 2
    if args.in_process and len(cases) != 1:
        print("error: --in-process measures one case: name one --preset and one --mode",
              file=sys.stderr)  # fmt: skip
        return 2
    results = []
    for preset, mode in cases:
        if not args.in_process:
            print(f"measuring {mode} of {preset} on {args.device} ...", file=sys.stderr)
        try:
            if args.in_process:
                results.append(measure(preset, mode, args.device))
            else:
                results.append(measure_in_child(preset, mode, args.device))
        except MeasureError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
