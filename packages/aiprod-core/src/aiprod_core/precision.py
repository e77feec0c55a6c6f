"""Inference precision: which dtype a model runs in when nobody says, and TF32 on CUDA.

    default_inference_dtype("cuda")   # bfloat16 (compute capability 8.0+), else float32
    default_inference_dtype("cpu")    # float32 (also MPS and every other device)
    inference_dtype("cuda", "fp32")   # an explicit choice wins: float32
    enable_tf32("cuda")               # TF32 matmuls and convolutions for float32 work on CUDA

Models are trained in bf16 mixed precision, so bf16 weights and compute on a GPU lose
nothing a user can see and halve the weights (AIPROD-19b: ~38 GB instead of ~76 GB). CPUs
gain little from bf16 and some have no fast kernels for it, so they stay in float32. A
CUDA device older than Ampere (compute capability below 8.0) has no bf16 tensor cores and
stays in float32 too. Every command and the server take their default from here, so the
rule lives in one place.
"""

from __future__ import annotations

import torch

#: Names a user may give for a dtype (``--dtype``, ``serving.dtype``), aliases included.
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}

#: What asks for :func:`default_inference_dtype` where a dtype name is expected.
AUTO = "auto"

#: Lowest CUDA compute capability with bf16 tensor cores (Ampere).
BF16_MIN_CAPABILITY = (8, 0)


def dtype_from_name(name: str) -> torch.dtype:
    """The torch dtype ``name`` means (see :data:`DTYPES`); a ValueError lists the names."""
    try:
        return DTYPES[name.lower()]
    except KeyError:
        known = ", ".join(DTYPES)
        raise ValueError(f"unknown dtype {name!r}; expected one of: {known}") from None


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"`` (for logs and reports)."""
    return str(dtype).removeprefix("torch.")


def supports_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` is a CUDA device with bf16 tensor cores (capability 8.0+)."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return False
    return tuple(torch.cuda.get_device_capability(device)) >= BF16_MIN_CAPABILITY


def default_inference_dtype(device: torch.device | str) -> torch.dtype:
    """bfloat16 on a CUDA device that supports it, float32 everywhere else."""
    return torch.bfloat16 if supports_bf16(device) else torch.float32


def inference_dtype(
    device: torch.device | str, requested: torch.dtype | str | None = None
) -> torch.dtype:
    """``requested`` (a dtype or a name from :data:`DTYPES`) when given, else the default
    for ``device``; None and ``"auto"`` both mean the default."""
    if isinstance(requested, torch.dtype):
        return requested
    if requested is None or requested.lower() == AUTO:
        return default_inference_dtype(device)
    return dtype_from_name(requested)


def enable_tf32(device: torch.device | str) -> bool:
    """Let float32 matmuls and convolutions use TF32 tensor cores when ``device`` is CUDA.

    Returns whether it did. Only the CUDA backends' flags are set:
    ``torch.set_float32_matmul_precision("high")`` would also change CPU (oneDNN) matmuls,
    so CPU results stay what they were. The flags are process-wide; nothing in AIPROD
    needs full float32 matmul precision on a GPU.
    """
    if torch.device(device).type != "cuda":
        return False
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    return True
