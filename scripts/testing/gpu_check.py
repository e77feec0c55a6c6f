# /// script
# requires-python = ">=3.11"
# dependencies = ["aiprod-core", "aiprod-trainer", "pyyaml>=6", "torch>=2.4"]
# ///
"""Check a CUDA host on the paths aiprod-19b needs: smoke, training MFU, FSDP, bf16 generation.

Runs on whatever GPUs the host has and writes one JSON report to
``<output>/gpu_check-<UTC timestamp>.json`` and ``<output>/latest.json``:

  gpu_smoke            scripts/testing/gpu_smoke.py on the first GPU (its report is summarised)
  train_step_eager     forward + backward + AdamW of the small preset's transformer (fp32
                       weights, bf16 autocast): step time, TFLOP/s, MFU, peak memory
  train_step_compiled  the same step through torch.compile (compile time reported apart)
  fsdp_nccl            aiprod-train under torchrun on every GPU, FSDP over NCCL, the small
                       preset on synthetic latents: stopped after half its steps, resumed
                       from the sharded checkpoint; skipped (with the reason) on one GPU
  generate_bf16        text to video with the small preset in bf16 (random weights):
                       seconds, peak memory

MFU counts the analytic matmul FLOPs of a step (3x the forward, aiprod_core's
``forward_flops``) against the device's dense bf16 peak (by name, or ``--peak-tflops``).
Without a CUDA device (or torch, or the AIPROD packages) every check is reported
"skipped" with the reason and the exit status is 0; ``--require-gpu`` makes that 1.

Exit status: 0 when every check passed or was skipped, 1 when one failed.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import import_module
from pathlib import Path
from typing import Any

from aiprod_core.atomic import atomic_write_text

DEFAULT_OUTPUT = Path("outputs/gpu_check")
SCRIPTS = Path(__file__).resolve().parents[1]
CHECKS = ("gpu_smoke", "train_step_eager", "train_step_compiled", "fsdp_nccl", "generate_bf16")
PROMPT = "a red circle moving left on a blue background"
#: Seconds a subprocess (gpu_smoke, data preparation, one torchrun) may take.
SUBPROCESS_TIMEOUT = 1800

Details = dict[str, Any]
Grid = tuple[int, int, int]
CheckOutcome = tuple[bool, Details]


@dataclass(frozen=True)
class Sizes:
    """Workloads of the checks; the defaults load a data-centre GPU properly."""

    preset: str = "small"
    train_batch: int = 8
    train_video: Grid = (33, 256, 256)  # frames, height, width: a 9x16x16 token grid
    warmup_steps: int = 3
    timed_steps: int = 10
    compile_backend: str = "inductor"
    fsdp_steps: int = 4
    fsdp_video: Grid = (9, 64, 64)
    generation_steps: int | None = None  # None: the preset's default


@dataclass(frozen=True)
class Options:
    peak_tflops: float | None = None
    sizes: Sizes = field(default_factory=Sizes)


# ----------------------------------------------------------------- host-independent logic


def unavailable_reason() -> str | None:
    """Why the checks cannot run here (no torch, no CUDA device, a package missing), or None."""
    try:
        import torch
    except ImportError as exc:
        return f"torch is not installed ({exc})"
    reasons = []
    if not torch.cuda.is_available():
        if torch.version.cuda is None:
            reasons.append(f"torch {torch.__version__} is a CPU-only build")
        else:
            reasons.append("torch.cuda.is_available() is False (no driver or no visible device)")
    for module in ("aiprod_core.transformer", "aiprod_pipelines.pipelines", "aiprod_trainer.cli"):
        try:
            import_module(module)
        except ImportError as exc:
            reasons.append(f"{module.split('.')[0]} is not importable ({exc})")
    return "; ".join(reasons) or None


def throughput(step_flops: int, seconds: float, peak_tflops: float | None) -> Details:
    """Achieved TFLOP/s of ``step_flops`` in ``seconds``, and its fraction of the peak (MFU)."""
    tflops = step_flops / seconds / 1e12
    return {"tflops": tflops, "mfu": tflops / peak_tflops if peak_tflops else None}


def record(
    name: str, status: str, details: Details, seconds: float, reason: str | None = None
) -> dict[str, Any]:
    """One check's entry in the report; ``status`` is passed, failed or skipped."""
    return {
        "name": name,
        "status": status,
        "reason": reason,
        "seconds": seconds,
        "details": details,
    }


def skipped(name: str, reason: str) -> dict[str, Any]:
    return record(name, "skipped", {}, 0.0, reason)


def run_check(name: str, check: Callable[[], CheckOutcome]) -> dict[str, Any]:
    """Run one check, timing it; an exception fails it with the error as its detail."""
    start = time.perf_counter()
    try:
        passed, details = check()
    except Exception as exc:
        passed = False
        lines = str(exc).strip().splitlines()
        error = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
        details = {"error": error, "where": traceback.format_exc(limit=-1).strip()}
    return record(name, "passed" if passed else "failed", details, time.perf_counter() - start)


def aggregate_status(checks: Sequence[Mapping[str, Any]], require_gpu: bool) -> str:
    """failed if a check failed (or nothing ran under --require-gpu), skipped if nothing
    ran, else passed."""
    if any(check["status"] == "failed" for check in checks):
        return "failed"
    if all(check["status"] == "skipped" for check in checks):
        return "failed" if require_gpu else "skipped"
    return "passed"


def exit_code(status: str) -> int:
    return 1 if status == "failed" else 0


def host_info() -> dict[str, Any]:
    """Facts about the machine: names and versions, the GPUs when torch sees any."""
    info: dict[str, Any] = {"hostname": platform.node(), "python": platform.python_version()}
    try:
        import torch
    except ImportError:
        return {**info, "torch": None, "gpus": []}
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {**info, "torch": torch.__version__, "cuda": torch.version.cuda, "gpus": gpus}


def build_report(
    checks: Sequence[Mapping[str, Any]],
    *,
    skip_reason: str | None,
    require_gpu: bool,
    host: Mapping[str, Any],
    created: datetime,
) -> dict[str, Any]:
    return {
        "tool": "gpu_check",
        "created": created.isoformat(),
        "status": aggregate_status(checks, require_gpu),
        "skip_reason": skip_reason,
        "host": dict(host),
        "checks": [dict(check) for check in checks],
    }


def json_ready(value: Any) -> Any:
    """``value`` with tuples as lists and non-finite floats as None (strict JSON)."""
    if isinstance(value, Mapping):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def report_json(report: Mapping[str, Any]) -> str:
    return json.dumps(json_ready(report), indent=2, allow_nan=False) + "\n"


def write_report(report: Mapping[str, Any], output: Path, created: datetime) -> Path:
    """Write the timestamped report and ``latest.json`` (atomically); return the first."""
    text = report_json(report)
    stamped = output / f"gpu_check-{created.astimezone(UTC):%Y%m%dT%H%M%SZ}.json"
    atomic_write_text(stamped, text)
    atomic_write_text(output / "latest.json", text)
    return stamped


#: The details the table shows (the JSON report holds them all).
HEADLINE = ("error", "status", "tflops", "mfu", "step_seconds", "compile_seconds", "speedup",
            "gpus", "loss", "seconds", "peak_memory_gib")  # fmt: skip


def format_table(report: Mapping[str, Any]) -> str:
    """One row per check (result, seconds, headline figures or the reason), then the status."""
    lines = [f"{'check':<20} {'result':<7} {'seconds':>8}  details"]
    for check in report["checks"]:
        details = check["details"]
        shown = [
            f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
            for key, value in details.items()
            if key in HEADLINE and value is not None
        ]
        text = check["reason"] or " ".join(shown)
        lines.append(
            f"{check['name']:<20} {check['status'].upper():<7} {check['seconds']:>8.1f}  {text}"
        )
    lines.append(f"status: {report['status']}")
    return "\n".join(lines)


def last_json_line(text: str) -> dict[str, Any] | None:
    """The last line of ``text`` that is a JSON object (what ``--json`` CLIs print last)."""
    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def fsdp_config(sizes: Sizes) -> dict[str, Any]:
    """The aiprod-train config of the FSDP check: the preset on the cache beside it."""
    return {
        "mode": "dit",
        "run_dir": "run",
        "seed": 0,
        "model": {"preset": sizes.preset},
        "data": {"cache": "cache", "batch_size": 1},
        "optimizer": {"lr": 1.0e-4},
        "training": {
            "max_steps": sizes.fsdp_steps,
            "device": "cuda",
            "precision": "auto",  # FSDP computes in distributed.param_dtype
            "gradient_checkpointing": True,
            "log_every": 1,
            "progress": False,
        },
        "distributed": {"strategy": "fsdp", "param_dtype": "bfloat16", "cpu_offload": False},
        "checkpoints": {"every": max(1, sizes.fsdp_steps // 2), "keep_last": 2},
        "validation": {"every": 0, "at_start": False},
    }


#: What each of :func:`fsdp_commands` does, as failures name it.
FSDP_STEPS = ("make_synthetic_dataset", "compute_latents", "torchrun (first half)",
              "torchrun --resume")  # fmt: skip


def fsdp_commands(python: str, workdir: Path, gpus: int, sizes: Sizes) -> list[list[str]]:
    """Make clips, encode them (random small VAE), train to half, resume to the end."""
    frames, height, width = sizes.fsdp_video
    clips, config = workdir / "clips", workdir / "train.yaml"
    torchrun = [python, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                str(gpus), "-m", "aiprod_trainer.cli", str(config), "--json"]  # fmt: skip
    return [
        [python, str(SCRIPTS / "data" / "make_synthetic_dataset.py"), "--output", str(clips),
         "--count", str(2 * gpus), "--frames", str(frames), "--height", str(height),
         "--width", str(width), "--quiet", "--json"],
        [python, str(SCRIPTS / "data" / "compute_latents.py"), "--manifest",
         str(clips / "manifest.jsonl"), "--cache", str(workdir / "cache"), "--preset",
         sizes.preset, "--random-weights", "--device", "cuda", "--json"],
        [*torchrun, "--stop-at-step", str(max(1, sizes.fsdp_steps // 2))],
        [*torchrun, "--resume"],
    ]  # fmt: skip


# ------------------------------------------------------------------------ device checks


def check_smoke(output: Path, peak_tflops: float | None) -> CheckOutcome:
    """gpu_smoke.py as a subprocess: its status and each of its checks' results."""
    command = [sys.executable, str(SCRIPTS / "testing" / "gpu_smoke.py"), "--json",
               "--output", str(output / "gpu_smoke")]  # fmt: skip
    if peak_tflops:
        command += ["--peak-tflops", str(peak_tflops)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    try:
        smoke = json.loads(done.stdout)
    except ValueError:
        return False, {
            "error": f"gpu_smoke exited {done.returncode} without a report",
            "stderr": done.stderr[-2000:],
        }
    checks = {check["name"]: check["passed"] for check in smoke["checks"]}
    model: Details = next(
        (c["details"] for c in smoke["checks"] if c["name"] == "aiprod_model"), {}
    )
    return done.returncode == 0 and smoke["status"] == "passed", {
        "status": smoke["status"],
        "checks": checks,
        "mfu": model.get("mfu"),
        "report": str(output / "gpu_smoke" / "latest.json"),
    }


def measure_train_step(
    device: Any, sizes: Sizes, *, compiled: bool, peak_tflops: float | None
) -> CheckOutcome:
    """Median seconds of forward + backward + AdamW step of the preset's transformer.

    fp32 weights and bf16 autocast, as aiprod-train runs on CUDA; with ``compiled`` the
    model goes through ``torch.compile`` (``sizes.compile_backend``) and the first step,
    which compiles, is timed apart.
    """
    import torch
    import torch.nn.functional as F

    from aiprod_core.models import count_parameters, get_preset
    from aiprod_core.models.geometry import ModelGeometry
    from aiprod_core.transformer import VideoTransformer, forward_flops

    device = torch.device(device)
    config = get_preset(sizes.preset)
    tconf, batch, text_len = config.transformer, sizes.train_batch, config.text_encoder.max_length
    latent, grid = ModelGeometry.of(config).video_tokens(*sizes.train_video)
    torch.manual_seed(0)
    model = VideoTransformer(tconf)
    torch.nn.init.normal_(model.final_proj.weight, std=0.02)  # gradients reach every block
    model = model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    forward = torch.compile(model, backend=sizes.compile_backend) if compiled else model
    x = torch.randn(batch, tconf.in_channels, *latent, device=device)
    target = torch.randn_like(x)
    text = torch.randn(batch, text_len, tconf.text_dim, device=device)
    mask = torch.arange(text_len, device=device) < torch.randint(
        1, text_len + 1, (batch, 1), device=device
    )
    sigma = torch.rand(batch, device=device)
    losses: list[float] = []

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            out = forward(x, sigma, text, mask)
        loss = F.mse_loss(out.float(), target)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))

    first = timed(step, device)
    for _ in range(sizes.warmup_steps):
        step()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = statistics.median(timed(step, device) for _ in range(sizes.timed_steps))
    memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    flops = 3 * forward_flops(tconf, batch, grid, text_len)
    details: Details = {
        "step_seconds": seconds,
        **throughput(flops, seconds, peak_tflops),
        "peak_memory_gib": memory,
        "loss": losses[-1],
        "step_tflop": flops / 1e12,
        "preset": sizes.preset,
        "batch": batch,
        "token_grid": list(grid),
        "parameters": count_parameters(model),
        "peak_tflops": peak_tflops,
    }
    if compiled:
        details |= {"compile_seconds": first, "backend": sizes.compile_backend}
    return all(map(math.isfinite, losses)), details


def timed(fn: Callable[[], Any], device: Any) -> float:
    """Seconds one call of ``fn`` takes, the device synchronized before and after."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def check_fsdp(gpus: int, sizes: Sizes, workdir: Path) -> CheckOutcome:
    """aiprod-train with FSDP on ``gpus`` GPUs: half the steps, then resumed to the end."""
    import yaml

    (workdir / "train.yaml").write_text(yaml.safe_dump(fsdp_config(sizes)), encoding="utf-8")
    commands = fsdp_commands(sys.executable, workdir, gpus, sizes)
    results = []
    for what, command in zip(FSDP_STEPS, commands, strict=True):
        done = subprocess.run(command, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
        if done.returncode != 0:
            return False, {
                "error": f"{what} exited {done.returncode}",
                "command": command,
                "stderr": done.stderr[-3000:],
            }
        results.append(last_json_line(done.stdout) or {})
    stopped, resumed = results[2], results[3]
    half = max(1, sizes.fsdp_steps // 2)
    loss = resumed.get("last_loss")
    passed = (
        stopped.get("step") == half
        and stopped.get("completed") is False
        and resumed.get("step") == sizes.fsdp_steps
        and resumed.get("completed") is True
        and isinstance(loss, float)
        and math.isfinite(loss)
    )
    return passed, {
        "gpus": gpus,
        "stopped_at": stopped.get("step"),
        "resumed_to": resumed.get("step"),
        "loss": loss,
        "final_model": resumed.get("final_model"),
        "preset": sizes.preset,
    }


def check_generation(device: Any, sizes: Sizes, dtype_name: str = "bfloat16") -> CheckOutcome:
    """Text to video with random weights of the preset in ``dtype_name``: time, memory."""
    import torch

    from aiprod_pipelines import GenerationRequest, TextToVideoPipeline, load_model

    device = torch.device(device)
    dtype = getattr(torch, dtype_name)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    loaded = load_model(preset=sizes.preset, random_weights=True, device=device, dtype=dtype)
    load_seconds = time.perf_counter() - start
    request = GenerationRequest(PROMPT, steps=sizes.generation_steps, seed=0)
    start = time.perf_counter()
    video = TextToVideoPipeline(loaded.model)(request)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    resolved = video.request
    shape_ok = tuple(video.frames.shape) == (resolved.frames, resolved.height, resolved.width, 3)
    finite = bool(torch.isfinite(video.latents).all())
    weights = {str(p.dtype).removeprefix("torch.") for p in loaded.model.parameters()}
    transformer = {
        str(p.dtype).removeprefix("torch.") for p in loaded.model.transformer.parameters()
    }
    memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return shape_ok and finite and transformer == {dtype_name}, {
        "seconds": seconds,
        "load_seconds": load_seconds,
        "peak_memory_gib": memory,
        "video": [resolved.frames, resolved.height, resolved.width],
        "steps": resolved.steps,
        "transformer_dtype": sorted(transformer),
        "weights_dtype": sorted(weights),
        "latents_finite": finite,
        "shape_ok": shape_ok,
        "preset": sizes.preset,
    }


Step = tuple[str, Callable[[], CheckOutcome] | str]


def plan_checks(
    device: str, gpus: int, peak: float | None, options: Options, output: Path, workdir: Path
) -> list[Step]:
    """The checks in order: (name, check), or (name, why it is skipped)."""
    sizes = options.sizes

    def train(compiled: bool) -> Callable[[], CheckOutcome]:
        return lambda: measure_train_step(device, sizes, compiled=compiled, peak_tflops=peak)

    fsdp: Callable[[], CheckOutcome] | str = (
        (lambda: check_fsdp(gpus, sizes, workdir))
        if gpus > 1
        else f"FSDP over NCCL needs 2 or more GPUs; this host has {gpus}"
    )
    return [
        ("gpu_smoke", lambda: check_smoke(output, options.peak_tflops)),
        ("train_step_eager", train(False)),
        ("train_step_compiled", train(True)),
        ("fsdp_nccl", fsdp),
        ("generate_bf16", lambda: check_generation(device, sizes)),
    ]


def run_checks(steps: Sequence[Step]) -> list[dict[str, Any]]:
    """Run ``steps`` in order, each recorded even when it fails; compiled vs eager speedup."""
    import torch

    records = []
    for index, (name, check) in enumerate(steps, start=1):
        print(f"[{index}/{len(steps)}] {name}", file=sys.stderr, flush=True)
        records.append(skipped(name, check) if isinstance(check, str) else run_check(name, check))
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    by_name = {entry["name"]: entry["details"] for entry in records}
    eager, compiled = by_name.get("train_step_eager", {}), by_name.get("train_step_compiled", {})
    if eager.get("step_seconds") and compiled.get("step_seconds"):
        compiled["speedup"] = eager["step_seconds"] / compiled["step_seconds"]
    return records


def run_all_checks(options: Options, output: Path) -> list[dict[str, Any]]:
    """Every check on this host's GPUs."""
    import torch

    from aiprod_core.hardware import peak_bf16_tflops

    peak = peak_bf16_tflops(torch.cuda.get_device_name(0), options.peak_tflops)
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as workdir:
        gpus = torch.cuda.device_count()
        return run_checks(plan_checks("cuda", gpus, peak, options, output, Path(workdir)))


# ---------------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--require-gpu", action="store_true", help="fail when the checks cannot run here"
    )
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="report folder (%(default)s)"
    )
    parser.add_argument("--json", action="store_true", help="print the report JSON to stdout")
    parser.add_argument(
        "--peak-tflops", type=float, help="device bf16 dense peak in TFLOP/s (default: by name)"
    )
    args = parser.parse_args(argv)
    if args.peak_tflops is not None and args.peak_tflops <= 0:
        parser.error(f"--peak-tflops must be positive, got {args.peak_tflops}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    say = sys.stderr if args.json else sys.stdout
    created = datetime.now(UTC)
    reason = unavailable_reason()
    if reason is None:
        checks = run_all_checks(Options(args.peak_tflops), args.output)
    else:
        verdict = "failing (--require-gpu)" if args.require_gpu else "skipping every check"
        print(f"cannot run the checks: {reason}; {verdict}", file=say)
        checks = [skipped(name, reason) for name in CHECKS]
    report = build_report(checks, skip_reason=reason, require_gpu=args.require_gpu,
                          host=host_info(), created=created)  # fmt: skip
    try:
        path = write_report(report, args.output, created)
    except OSError as exc:
        print(f"error: cannot write the report into {args.output}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(report_json(report), end="")
    else:
        print(format_table(report))
    print(f"report: {path}", file=say)
    return exit_code(report["status"])


if __name__ == "__main__":
    raise SystemExit(main())
