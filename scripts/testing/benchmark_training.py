# /// script
# requires-python = ">=3.11"
# dependencies = ["aiprod-trainer"]
# ///
"""Measure training throughput (samples/s) and peak memory of the vae, dit and lora modes.

For each mode it writes a small dataset into a temporary folder (pixel clips as MP4 files
for vae, a latent cache of random latents and text embeddings for dit and lora), builds
the run with aiprod_trainer's own Trainer and lets ``Trainer.fit`` train for
``--warmup + --steps`` optimizer steps. Nothing of the step is re-implemented here: only
the clock around each of the trainer's steps is added. A step's time runs from the end of
the previous step to the end of this one (data loading, forward, backward, clipping,
AdamW and the loop's own bookkeeping); the report gives the median of the timed steps.

Peak memory covers the timed steps: on CUDA ``torch.cuda.max_memory_allocated``; on CPU
the process's peak resident set (``getrusage``), whose high-water mark is reset before the
timed steps where Linux allows it (else it is the peak since the process started, which
the memory column then says). When more than one mode or preset is measured, each runs in
a fresh child process (this script with one ``--mode`` and ``--preset``), so that no
measurement's peak includes memory an earlier one left behind; ``--in-process`` measures
them all in this process instead. The default preset is tiny on CPU and small on CUDA;
CUDA runs use the trainer's default precision there (bf16 autocast).
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MODES = ("dit", "vae", "lora")

#: Video shape (frames, height, width) and batch per preset and device type.
WORKLOADS: dict[str, dict[str, tuple[tuple[int, int, int], int]]] = {
    "tiny": {"cpu": ((17, 64, 64), 4), "cuda": ((17, 64, 64), 32)},
    "small": {"cpu": ((9, 128, 128), 1), "cuda": ((33, 256, 256), 8)},
}
DEFAULT_PRESET = {"cpu": "tiny", "cuda": "small"}
CLEAR_REFS = Path("/proc/self/clear_refs")
NEVER = 10**9  # checkpoint and log intervals: only the run's last step does either


@dataclass(frozen=True)
class Result:
    """One measurement: a mode of a preset on a device (``step_seconds`` is the median)."""

    mode: str
    preset: str
    device: str
    dtype: str
    threads: int
    batch: int
    video: tuple[int, int, int]
    latent: tuple[int, int, int, int]
    trainable_parameters: int
    steps: int
    step_seconds: float
    samples_per_second: float
    peak_memory_gib: float
    memory_kind: str


class BenchmarkError(Exception):
    """The benchmark cannot run as asked; the message says which argument."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mode",
        action="append",
        dest="modes",
        choices=MODES,
        help="mode to measure (repeatable; default: dit, vae and lora)",
    )
    parser.add_argument(
        "--preset",
        action="append",
        dest="presets",
        metavar="NAME",
        help="preset (repeatable; default: tiny on CPU, small on CUDA)",
    )
    parser.add_argument(
        "--device",
        default="auto",
        choices=("auto", "cpu", "cuda"),
        help="where to train (default: CUDA when available)",
    )
    parser.add_argument("--steps", type=int, default=10, help="timed steps (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument("--batch", type=int, help="override the preset's batch size")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="measure everything in this process (no child per measurement)",
    )
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args(argv)
    if (
        args.steps < 1
        or args.warmup < 0
        or any(value is not None and value < 1 for value in (args.batch, args.threads))
    ):
        parser.error("--steps, --batch and --threads must be >= 1 and --warmup >= 0")
    return args


def workload(preset: str, device_type: str, batch: int | None) -> tuple[tuple[int, int, int], int]:
    """The video shape and batch size of ``preset`` on a device type."""
    shape, default_batch = WORKLOADS[preset]["cuda" if device_type == "cuda" else "cpu"]
    return shape, batch or default_batch


def summarize(marks: Sequence[float], warmup: int, batch: int) -> tuple[float, float]:
    """Median step time of the steps after ``warmup`` and the samples per second it gives.

    ``marks`` are the clock readings before the first step and after each step.
    """
    durations = [end - start for start, end in itertools.pairwise(marks)][warmup:]
    if not durations:
        raise ValueError(f"no timed steps: {len(marks) - 1} step(s) ran, {warmup} of them warm-up")
    step = statistics.median(durations)
    return step, batch / step


def reset_peak_memory(device: Any) -> bool:
    """Start a new peak-memory window; False when the CPU high-water mark cannot be reset."""
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        CLEAR_REFS.write_text("5")  # Linux: reset the process's peak resident set size
    except OSError:
        return False
    return True


def peak_memory_gib(device: Any) -> float:
    """The peak memory of the current window, in GiB."""
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is KiB


def memory_kind(device: Any, reset: bool) -> str:
    """What the peak memory figure measures."""
    if device.type == "cuda":
        return "cuda allocated"
    return "process peak RSS" if reset else "process peak RSS since start"


@dataclass
class StepClock:
    """Clock readings around the trainer's steps, and the peak memory of the timed ones."""

    device: Any
    warmup: int
    marks: list[float] = field(default_factory=list)
    peak: float = 0.0
    reset: bool = True

    def before(self) -> None:
        """Before a step: the first reading, and a new memory window once warm-up is over."""
        if not self.marks:
            self.marks.append(time.perf_counter())
        if len(self.marks) - 1 == self.warmup:
            self.reset = reset_peak_memory(self.device)

    def after(self) -> None:
        """After a step (its CUDA work finished): a reading, and the memory of a timed step."""
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.marks.append(time.perf_counter())
        if len(self.marks) - 1 > self.warmup:
            self.peak = max(self.peak, peak_memory_gib(self.device))


def timed_trainer(config: Any, clock: StepClock) -> Any:
    """The trainer of ``config``, its every optimizer step read by ``clock``."""
    from aiprod_trainer.training.trainer import Trainer

    class TimedTrainer(Trainer):
        def _step(self, step: int, batches: Any) -> tuple[float, float, float | None]:
            clock.before()
            outcome = super()._step(step, batches)
            clock.after()
            return outcome

    return TimedTrainer(config)


def latent_shape(preset: str, video: tuple[int, int, int]) -> tuple[int, int, int, int]:
    """``(C, T, h, w)`` of the latents of a ``video`` (frames, height, width) of ``preset``."""
    from aiprod_core.models import get_preset
    from aiprod_core.vae.shapes import VideoGeometry

    vae = get_preset(preset).vae
    geometry = VideoGeometry(vae.spatial_compression, vae.temporal_compression)
    return (vae.latent_channels, *geometry.latent_shape(*video))


def write_clips(folder: Path, video: tuple[int, int, int], count: int) -> Path:
    """``count`` synthetic MP4 clips of ``video`` and their manifest; returns the manifest."""
    from aiprod_trainer.data.synthetic_dataset import SyntheticSettings, write_synthetic_dataset

    frames, height, width = video
    settings = SyntheticSettings(count=count, width=width, height=height, frames=frames)
    return write_synthetic_dataset(folder, settings).manifests["all"]


def write_latents(folder: Path, preset: str, video: tuple[int, int, int], count: int) -> Path:
    """A latent cache of ``count`` items of random latents and text embeddings."""
    import torch

    from aiprod_core.models import get_preset
    from aiprod_trainer.data.latent_cache import CacheMeta, LatentCacheWriter
    from aiprod_trainer.data.manifest import ManifestRecord

    config = get_preset(preset)
    frames, height, width = video
    shape = latent_shape(preset, video)
    length, dim = config.text_encoder.max_length, config.transformer.text_dim
    generator = torch.Generator().manual_seed(0)
    meta = CacheMeta(preset, config.text_encoder.kind, {"source": "benchmark_training"})
    with LatentCacheWriter(folder, meta) as writer:
        for index in range(count):
            record = ManifestRecord(
                media=f"benchmark/{index:05d}.mp4", caption=f"benchmark item {index}",
                width=width, height=height, frames=frames, fps=8.0,
            )  # fmt: skip
            writer.add(
                f"item-{index:05d}",
                torch.randn(shape, generator=generator),
                torch.randn(length, dim, generator=generator),
                torch.ones(length, dtype=torch.bool),
                record,
            )
    return folder


def train_config(mode: str, preset: str, device: str, data: Path, run_dir: Path, batch: int,
                 steps: int) -> Any:  # fmt: skip
    """A run of ``steps`` steps: no validation, progress bar, or checkpoint before the end."""
    from aiprod_trainer.config import TrainConfig

    return TrainConfig.model_validate({
        "mode": mode,
        "run_dir": run_dir,
        "model": {"preset": preset},
        "data": {"manifest" if mode == "vae" else "cache": data, "batch_size": batch},
        "training": {"max_steps": steps, "device": device, "log_every": NEVER, "progress": False},
        "checkpoints": {"every": NEVER, "keep_last": 1},
        "validation": {"every": 0, "at_start": False},
    })  # fmt: skip


def measure(mode: str, preset: str, args: argparse.Namespace, device: Any) -> Result:
    """Train ``mode`` of ``preset`` for warm-up + timed steps and read the clock and memory."""
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(f"measuring {mode} of {preset} on {device} ...", file=sys.stderr)
    video, batch = workload(preset, device.type, args.batch)
    with tempfile.TemporaryDirectory(prefix="aiprod-benchmark-") as temp:
        root = Path(temp)
        if mode == "vae":
            data = write_clips(root / "clips", video, batch)
        else:
            data = write_latents(root / "latents", preset, video, batch)
        config = train_config(mode, preset, device.type, data, root / "run", batch,
                              args.warmup + args.steps)  # fmt: skip
        clock = StepClock(device, args.warmup)
        trainer = timed_trainer(config, clock)
        trainable = sum(p.numel() for p in trainer.parts.parameters)
        trainer.fit()
    seconds, per_second = summarize(clock.marks, args.warmup, batch)
    cuda = device.type == "cuda"
    return Result(
        mode=mode, preset=preset, device=str(device), dtype="bf16 autocast" if cuda else "fp32",
        threads=torch.get_num_threads(), batch=batch, video=video,
        latent=latent_shape(preset, video), trainable_parameters=trainable, steps=args.steps,
        step_seconds=seconds, samples_per_second=per_second, peak_memory_gib=clock.peak,
        memory_kind=memory_kind(device, clock.reset),
    )  # fmt: skip


def measure_in_child(mode: str, preset: str, args: argparse.Namespace, device: Any) -> Result:
    """:func:`measure` in a fresh process running this script (its progress goes to stderr)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--mode", mode, "--preset", preset,
               "--device", device.type, "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--json"]  # fmt: skip
    for flag, value in (("--batch", args.batch), ("--threads", args.threads)):
        if value is not None:
            command += [flag, str(value)]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise BenchmarkError(
            f"measuring {mode} of {preset} failed in its child process (exit code "
            f"{done.returncode}); its error is above"
        )
    (data,) = json.loads(done.stdout)
    data["video"], data["latent"] = tuple(data["video"]), tuple(data["latent"])
    return Result(**data)


def table(results: Sequence[Result]) -> str:
    """The results as a markdown table."""
    lines = [
        (
            "| mode | preset | device | dtype | threads | batch x video (FxHxW) | latent (CxTxhxw) "
            "| trainable params | timed steps | step (s, median) | samples/s | peak memory (GiB) |"
        ),
        "| --- | --- | --- | --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        video, latent = "x".join(map(str, r.video)), "x".join(map(str, r.latent))
        lines.append(
            f"| {r.mode} | {r.preset} | {r.device} | {r.dtype} | {r.threads} "
            f"| {r.batch} x {video} | {latent} "
            f"| {r.trainable_parameters / 1e6:.3f}M | {r.steps} | {r.step_seconds:.3f} "
            f"| {r.samples_per_second:.2f} | {r.peak_memory_gib:.2f} ({r.memory_kind}) |"
        )
    return "\n".join(lines)


def pick_device(choice: str) -> Any:
    """The torch device of ``--device``; a BenchmarkError when CUDA is asked for but absent."""
    import torch

    if choice == "cuda" and not torch.cuda.is_available():
        raise BenchmarkError("--device cuda: no CUDA device is available on this host")
    if choice == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", 0)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        device = pick_device(args.device)
        presets = list(dict.fromkeys(args.presets or [DEFAULT_PRESET[device.type]]))
        unknown = [preset for preset in presets if preset not in WORKLOADS]
        if unknown:
            raise BenchmarkError(
                f"--preset: unknown preset {', '.join(unknown)}; expected one of: "
                f"{', '.join(WORKLOADS)}"
            )
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    modes = list(dict.fromkeys(args.modes or MODES))
    runs = [(mode, preset) for preset in presets for mode in modes]
    run = measure if len(runs) == 1 or args.in_process else measure_in_child
    results = []
    for mode, preset in runs:
        try:
            results.append(run(mode, preset, args, device))
        except BenchmarkError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
