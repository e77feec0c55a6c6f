# /// script
# requires-python = ">=3.11"
# dependencies = ["aiprod-core", "torch>=2.4"]
# ///
"""Smoke-check a CUDA host: versions, matmul correctness and speed, fused attention, compile.

Runs a fixed suite of checks on the first CUDA device and writes a JSON report to
``<output>/gpu_smoke-<UTC timestamp>.json`` and ``<output>/latest.json``. The last check
runs forward and backward of the ``small`` AIPROD transformer in bf16 and reports its
peak memory and achieved TFLOP/s. On a host without a CUDA device (or without torch or
aiprod_core) it reports "skipped" and exits 0, or fails with ``--require-gpu``. torch and
aiprod_core are imported inside functions, so the script runs without them.

Exit status: 0 when every check passed (or skipped), 1 when a check failed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import import_module
from pathlib import Path
from typing import Any

DEFAULT_OUTPUT = Path("outputs/gpu_smoke")
DEFAULT_MIN_MATMUL_FRACTION = 0.3

#: (rtol, atol) per dtype for matmuls whose outputs are about unit scale.
MATMUL_TOLERANCES: dict[str, tuple[float, float]] = {
    "float32": (1e-4, 1e-4),
    "bfloat16": (1.6e-2, 1e-2),
    "float16": (5e-3, 5e-3),
}
SDPA_TOLERANCE = (2e-2, 2e-2)
COMPILE_TOLERANCE = (1e-3, 1e-3)

Details = dict[str, Any]
Grid = tuple[int, int, int]
CheckOutcome = tuple[bool, Details]


@dataclass(frozen=True)
class Sizes:
    """Problem sizes of the checks; the defaults load a data-centre GPU properly."""

    matmul_check: int = 1024
    matmul_throughput: int = 8192
    timing_repeats: int = 10
    sdpa_shape: tuple[int, int, int, int] = (4, 16, 2048, 128)  # batch, heads, seq, head dim
    model_preset: str = "small"
    model_batch: int = 8
    model_video: Grid = (33, 256, 256)  # frames, height, width


@dataclass(frozen=True)
class SmokeOptions:
    """What the user chose on the command line that the checks need."""

    peak_tflops: float | None = None
    min_matmul_fraction: float = DEFAULT_MIN_MATMUL_FRACTION
    sizes: Sizes = field(default_factory=Sizes)


# ----------------------------------------------------------------- host-independent logic


def unavailable_reason() -> str | None:
    """Why the checks cannot run here (no torch, no CUDA device, no aiprod_core), or None."""
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
    try:
        import_module("aiprod_core.transformer")
    except ImportError as exc:
        reasons.append(f"aiprod_core is not importable ({exc})")
    return "; ".join(reasons) or None


def matmul_tflops(n: int, seconds: float) -> float:
    """TFLOP/s of one n x n x n matmul (2 n^3 floating-point operations) taking ``seconds``."""
    return 2.0 * n**3 / seconds / 1e12


def evaluate_throughput(tflops: float, peak: float | None, min_fraction: float) -> CheckOutcome:
    """Pass when ``tflops`` reaches ``min_fraction`` of ``peak``; an unknown peak passes."""
    if peak is None:
        return True, {
            "tflops": tflops,
            "peak_tflops": None,
            "fraction": None,
            "note": "device peak unknown; pass --peak-tflops to evaluate the fraction",
        }
    fraction = tflops / peak
    return fraction >= min_fraction, {
        "tflops": tflops,
        "peak_tflops": peak,
        "fraction": fraction,
        "min_fraction": min_fraction,
    }


def make_record(name: str, passed: bool, details: Details, seconds: float) -> dict[str, Any]:
    """One check's entry in the report."""
    return {"name": name, "passed": passed, "details": details, "seconds": seconds}


def run_check(name: str, check: Callable[[], CheckOutcome]) -> dict[str, Any]:
    """Run one check, timing it; an exception fails the check with its message as the reason."""
    start = time.perf_counter()
    try:
        passed, details = check()
    except Exception as exc:
        passed = False
        details = {"error": describe_error(exc), "where": traceback.format_exc(limit=-1).strip()}
    return make_record(name, passed, details, time.perf_counter() - start)


def describe_error(exc: BaseException) -> str:
    """``Type: first line of the message``."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def aggregate_status(checks: Sequence[Mapping[str, Any]], skip_reason: str | None) -> str:
    """``skipped`` without a device, ``failed`` if any check failed, else ``passed``."""
    if skip_reason is not None and not checks:
        return "skipped"
    return "failed" if any(not check["passed"] for check in checks) else "passed"


def exit_code(status: str) -> int:
    """0 for passed or skipped, 1 for failed."""
    return 1 if status == "failed" else 0


def host_info() -> dict[str, Any]:
    """Facts about the machine that do not need a device."""
    try:
        import torch

        torch_version: str | None = torch.__version__
    except ImportError:
        torch_version = None
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch_version,
    }


def build_report(
    checks: Sequence[Mapping[str, Any]],
    *,
    skip_reason: str | None,
    host: Mapping[str, Any],
    created: datetime,
) -> dict[str, Any]:
    """The whole report: when, where, overall status, and every check."""
    return {
        "tool": "gpu_smoke",
        "created": created.isoformat(),
        "status": aggregate_status(checks, skip_reason),
        "skip_reason": skip_reason,
        "host": dict(host),
        "checks": [dict(check) for check in checks],
    }


def json_ready(value: Any) -> Any:
    """``value`` with tuples as lists and non-finite floats as None, so it is strict JSON."""
    if isinstance(value, Mapping):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def report_json(report: Mapping[str, Any]) -> str:
    return json.dumps(json_ready(report), indent=2, allow_nan=False) + "\n"


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a synced temporary file in the same folder."""
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        Path(temp_name).replace(path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def write_report(report: Mapping[str, Any], output: Path, created: datetime) -> Path:
    """Write the timestamped report and ``latest.json`` into ``output``; return the first."""
    output.mkdir(parents=True, exist_ok=True)
    text = report_json(report)
    stamped = output / f"gpu_smoke-{created.astimezone(UTC):%Y%m%dT%H%M%SZ}.json"
    write_atomic(stamped, text)
    write_atomic(output / "latest.json", text)
    return stamped


def summarize(details: Mapping[str, Any], width: int = 100) -> str:
    """Scalar details as ``key=value`` pairs, cut to ``width`` characters."""
    parts = []
    for key, value in details.items():
        if key == "where" or isinstance(value, (dict, list)):
            continue
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        parts.append(f"{key}={shown}")
    text = " ".join(parts)
    return text if len(text) <= width else text[: width - 3] + "..."


def format_table(report: Mapping[str, Any]) -> str:
    """The report as lines people read: one row per check, then the status."""
    checks = report["checks"]
    lines = [f"{'check':<24} {'result':<6} {'seconds':>8}  details"] if checks else []
    for check in checks:
        result = "PASS" if check["passed"] else "FAIL"
        summary = summarize(check["details"])
        lines.append(f"{check['name']:<24} {result:<6} {check['seconds']:>8.2f}  {summary}")
    failed = sum(not check["passed"] for check in checks)
    lines.append(f"status: {report['status']} ({len(checks)} checks, {failed} failed)")
    return "\n".join(lines)


# ------------------------------------------------------------------------ device checks


def synchronize(device: Any) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_runs(fn: Callable[[], Any], device: Any, repeats: int, warmup: int = 2) -> list[float]:
    """Seconds per call of ``fn`` over ``repeats`` synchronized runs, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def compare_tensors(actual: Any, expected: Any, rtol: float, atol: float) -> CheckOutcome:
    """Whether ``|actual - expected| <= atol + rtol |expected|`` everywhere, in float64."""
    import torch

    got = actual.detach().to("cpu", torch.float64)
    want = expected.detach().to("cpu", torch.float64)
    if got.shape != want.shape:
        return False, {"error": f"shape {tuple(got.shape)} != expected {tuple(want.shape)}"}
    finite = bool(torch.isfinite(got).all())
    diff = (got - want).abs()
    ratio = diff / (atol + rtol * want.abs())
    passed = finite and bool((ratio <= 1).all())
    return passed, {
        "max_abs_error": float(diff.max()),
        "worst_tolerance_ratio": float(ratio.max()),
        "finite": finite,
        "rtol": rtol,
        "atol": atol,
    }


def check_environment(device: Any) -> CheckOutcome:
    """Versions of torch, CUDA, cuDNN and NCCL, and the device's properties."""
    import torch

    device = torch.device(device)
    details: Details = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "nccl": _nccl_version(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        details |= {
            "device": props.name,
            "capability": f"{props.major}.{props.minor}",
            "memory_gib": props.total_memory / 2**30,
            "sm_count": props.multi_processor_count,
        }
    else:
        details["device"] = str(device)
    return True, details


def _nccl_version() -> str | None:
    import torch

    try:
        version = torch.cuda.nccl.version()
    except (AttributeError, RuntimeError):
        return None
    return ".".join(str(part) for part in version) if isinstance(version, tuple) else str(version)


def check_matmul(device: Any, dtype_name: str, n: int) -> CheckOutcome:
    """An n x n matmul in ``dtype_name`` against float64 on the CPU from the same inputs."""
    import torch

    dtype = getattr(torch, dtype_name)
    generator = torch.Generator().manual_seed(0)
    scale = n**-0.25  # keeps the product's entries near unit scale
    a = (torch.randn(n, n, generator=generator) * scale).to(dtype)
    b = (torch.randn(n, n, generator=generator) * scale).to(dtype)
    expected = a.double() @ b.double()
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")  # no TF32: float32 must be float32
    try:
        actual = a.to(device) @ b.to(device)
        synchronize(device)
    finally:
        torch.set_float32_matmul_precision(previous)
    rtol, atol = MATMUL_TOLERANCES[dtype_name]
    passed, details = compare_tensors(actual, expected, rtol, atol)
    return passed, {"n": n, **details}


def check_matmul_throughput(device: Any, options: SmokeOptions, device_name: str) -> CheckOutcome:
    """bf16 n^3 matmul TFLOP/s (median of timed runs) as a fraction of the device's peak."""
    import torch

    from aiprod_core.hardware import peak_bf16_tflops

    n = options.sizes.matmul_throughput
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    seconds = statistics.median(time_runs(lambda: a @ b, device, options.sizes.timing_repeats))
    tflops = matmul_tflops(n, seconds)
    peak = peak_bf16_tflops(device_name, options.peak_tflops)
    passed, details = evaluate_throughput(tflops, peak, options.min_matmul_fraction)
    return passed, {"n": n, "median_seconds": seconds, **details}


def check_sdpa(device: Any, shape: tuple[int, int, int, int]) -> CheckOutcome:
    """Fused attention (flash, then memory-efficient) in bf16 against the math backend."""
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    generator = torch.Generator().manual_seed(0)
    q, k, v = (
        torch.randn(*shape, generator=generator).to(device, torch.bfloat16) for _ in range(3)
    )
    with sdpa_kernel(SDPBackend.MATH):
        expected = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
    details: Details = {"shape": list(shape), "backends": {}}
    ran_ok = []
    for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                with sdpa_kernel(backend):
                    actual = F.scaled_dot_product_attention(q, k, v)
                synchronize(device)
            except RuntimeError as exc:
                details["backends"][backend.name] = {
                    "ran": False,
                    "error": describe_error(exc),
                    "warnings": [str(w.message) for w in caught],
                }
                continue
        matches, comparison = compare_tensors(actual, expected, *SDPA_TOLERANCE)
        details["backends"][backend.name] = {"ran": True, "matches": matches, **comparison}
        ran_ok.append(matches)
    details["fused_backends_run"] = len(ran_ok)
    return bool(ran_ok) and all(ran_ok), details


@cache
def _small_mlp_class() -> type:
    """The module the compile check compiles, created on first use (the script runs without
    torch): norm, two linears, GELU."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class SmallMLP(nn.Module):
        def __init__(self, dim: int) -> None:
            super().__init__()
            self.norm = nn.LayerNorm(dim)
            self.up = nn.Linear(dim, 4 * dim)
            self.down = nn.Linear(4 * dim, dim)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            residual: torch.Tensor = self.down(F.gelu(self.up(self.norm(x))))
            return x + residual

    return SmallMLP


def check_compile(device: Any, dim: int = 256, backend: str = "inductor") -> CheckOutcome:
    """torch.compile of a small float32 module gives the eager output."""
    import torch

    torch.manual_seed(0)
    module = _small_mlp_class()(dim).to(device).eval()
    x = torch.randn(8, dim, device=device)
    with torch.no_grad():
        expected = module(x)
        try:
            actual = torch.compile(module, backend=backend)(x)
        except Exception as exc:
            return False, {"error": f"torch.compile failed: {describe_error(exc)}"}
    passed, details = compare_tensors(actual, expected, *COMPILE_TOLERANCE)
    return passed, {"backend": backend, **details}


def latent_grid(config: Any, video: Grid) -> tuple[Grid, Grid]:
    """The latent size ``(T, H, W)`` and token grid of a video of ``(frames, height, width)``.

    ``config`` is a ``ModelConfig``: its VAE compresses the video, its transformer's patch
    cuts the latent into tokens; a video they do not divide raises a ValueError saying why.
    """
    from aiprod_core.models.geometry import ModelGeometry

    return ModelGeometry.of(config).video_tokens(*video)


def check_aiprod_model(
    device: Any,
    preset: str = "small",
    batch: int = 8,
    video: Grid = (33, 256, 256),
    *,
    repeats: int = 3,
    peak_tflops: float | None = None,
) -> CheckOutcome:
    """bf16 forward + backward of the preset's VideoTransformer: finite, memory, TFLOP/s.

    The model is built seeded in bf16 on ``device``; its inputs are random latents for a
    ``video`` of (frames, height, width), random text with a padding mask and sigma in
    [0, 1]; the loss is the MSE to a random target. ``peak_tflops`` (the device's dense
    bf16 peak) turns the achieved TFLOP/s into MFU.
    """
    import torch
    import torch.nn.functional as F

    from aiprod_core.models import count_parameters, get_preset
    from aiprod_core.transformer import VideoTransformer, forward_flops

    device = torch.device(device)
    config = get_preset(preset)
    tconf = config.transformer
    latent, grid = latent_grid(config, video)
    text_len = config.text_encoder.max_length
    torch.manual_seed(0)
    model = VideoTransformer(tconf)
    # The final projection starts at zero; give it weights so gradients reach every block.
    torch.nn.init.normal_(model.final_proj.weight, std=0.02)
    model = model.to(device=device, dtype=torch.bfloat16)
    bf16 = {"device": device, "dtype": torch.bfloat16}
    x = torch.randn(batch, tconf.in_channels, *latent, **bf16)
    target = torch.randn_like(x)
    text = torch.randn(batch, text_len, tconf.text_dim, **bf16)
    lengths = torch.randint(1, text_len + 1, (batch, 1), device=device)
    mask = torch.arange(text_len, device=device) < lengths
    sigma = torch.rand(batch, device=device)
    outputs: list[Any] = []
    losses: list[float] = []

    def step() -> None:
        model.zero_grad(set_to_none=True)
        out = model(x, sigma, text, mask)
        loss = F.mse_loss(out.float(), target.float())
        loss.backward()
        outputs[:] = [out.detach()]
        losses.append(float(loss.detach()))

    step()  # warm-up: kernel selection and allocator growth
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = statistics.median(time_runs(step, device, repeats, warmup=0))
    out = outputs[0]
    output_finite = bool(torch.isfinite(out).all())
    shape_ok = out.shape == x.shape and out.dtype == x.dtype
    grads_finite = all(
        p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in model.parameters()
    )
    tflops = 3 * forward_flops(tconf, batch, grid, text_len) / seconds / 1e12
    memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    passed = output_finite and shape_ok and grads_finite and all(map(math.isfinite, losses))
    return passed, {
        "tokens": batch * math.prod(grid),
        "tflops": tflops,
        "mfu": tflops / peak_tflops if peak_tflops else None,
        "peak_memory_gib": memory,
        "step_seconds": seconds,
        "parameters": count_parameters(model),
        "loss": losses[-1],
        "output_finite": output_finite,
        "shape_ok": shape_ok,
        "grads_finite": grads_finite,
        "preset": preset,
        "batch": batch,
        "video": list(video),
        "token_grid": list(grid),
        "latent_shape": list(x.shape),
        "output_shape": list(out.shape),
        "peak_tflops": peak_tflops,
    }


def run_all_checks(device: Any, options: SmokeOptions) -> list[dict[str, Any]]:
    """Every check on ``device``, in order, each recorded even when it fails."""
    import torch

    from aiprod_core.hardware import peak_bf16_tflops

    device = torch.device(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)
    sizes = options.sizes
    peak = peak_bf16_tflops(name, options.peak_tflops)
    steps: list[tuple[str, Callable[[], CheckOutcome]]] = [
        ("environment", lambda: check_environment(device)),
        *(
            (f"matmul_{dtype}", lambda dtype=dtype: check_matmul(device, dtype, sizes.matmul_check))
            for dtype in MATMUL_TOLERANCES
        ),
        ("matmul_bf16_throughput", lambda: check_matmul_throughput(device, options, name)),
        ("sdpa_fused", lambda: check_sdpa(device, sizes.sdpa_shape)),
        ("torch_compile", lambda: check_compile(device)),
        (
            "aiprod_model",
            lambda: check_aiprod_model(
                device, sizes.model_preset, sizes.model_batch, sizes.model_video, peak_tflops=peak
            ),
        ),
    ]
    records = []
    for index, (check_name, check) in enumerate(steps, start=1):
        print(f"[{index}/{len(steps)}] {check_name}", file=sys.stderr, flush=True)
        records.append(run_check(check_name, check))
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return records


# ---------------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    parser.add_argument(
        "--min-matmul-fraction",
        type=float,
        default=DEFAULT_MIN_MATMUL_FRACTION,
        help="lowest acceptable fraction of peak for the bf16 matmul (%(default)s)",
    )
    args = parser.parse_args(argv)
    if args.peak_tflops is not None and args.peak_tflops <= 0:
        parser.error(f"--peak-tflops must be positive, got {args.peak_tflops}")
    if not 0 <= args.min_matmul_fraction <= 1:
        parser.error(f"--min-matmul-fraction must be in [0, 1], got {args.min_matmul_fraction}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    say = sys.stderr if args.json else sys.stdout
    created = datetime.now(UTC)
    reason = unavailable_reason()
    checks: list[dict[str, Any]] = []
    if reason is None:
        options = SmokeOptions(args.peak_tflops, args.min_matmul_fraction)
        checks = run_all_checks("cuda", options)
    elif args.require_gpu:
        print(f"cannot run the checks: {reason}; failing (--require-gpu)", file=say)
        checks = [make_record("prerequisites", False, {"error": reason}, 0.0)]
    else:
        print(f"cannot run the checks: {reason}; skipping", file=say)
    report = build_report(checks, skip_reason=reason, host=host_info(), created=created)
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
