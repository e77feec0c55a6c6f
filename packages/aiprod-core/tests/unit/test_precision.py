"""The inference precision rule: bf16 on CUDA with bf16 tensor cores, float32 elsewhere,
an explicit choice always wins; TF32 only for CUDA."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from aiprod_core.precision import (
    DTYPES,
    default_inference_dtype,
    dtype_from_name,
    dtype_name,
    enable_tf32,
    inference_dtype,
    supports_bf16,
)


@pytest.fixture
def tf32_flags() -> Iterator[None]:
    """Restore the process-wide TF32 flags a test changes."""
    matmul = torch.backends.cuda.matmul.allow_tf32
    cudnn = torch.backends.cudnn.allow_tf32
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul
        torch.backends.cudnn.allow_tf32 = cudnn


def fake_cuda(monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int]) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)


@pytest.mark.parametrize("device", ["cpu", "meta", "mps", torch.device("cpu")])
def test_float32_off_cuda(device: str | torch.device) -> None:
    assert default_inference_dtype(device) is torch.float32
    assert inference_dtype(device) is torch.float32
    assert inference_dtype(device, "auto") is torch.float32


def test_bfloat16_on_cuda_with_bf16_tensor_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cuda(monkeypatch, (9, 0))  # H100
    assert supports_bf16("cuda")
    assert supports_bf16("cuda:1")
    assert default_inference_dtype("cuda") is torch.bfloat16
    assert inference_dtype(torch.device("cuda:0")) is torch.bfloat16
    assert default_inference_dtype("cpu") is torch.float32  # the CPU stays float32


@pytest.mark.parametrize("capability", [(7, 0), (7, 5)])  # V100, T4: no bf16 tensor cores
def test_float32_on_cuda_before_ampere(
    monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int]
) -> None:
    fake_cuda(monkeypatch, capability)
    assert not supports_bf16("cuda")
    assert default_inference_dtype("cuda") is torch.float32


def test_float32_when_cuda_is_named_but_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_inference_dtype("cuda") is torch.float32


def test_an_explicit_choice_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cuda(monkeypatch, (8, 0))
    assert inference_dtype("cuda", torch.float32) is torch.float32
    assert inference_dtype("cuda", "fp32") is torch.float32
    assert inference_dtype("cuda", "FLOAT16") is torch.float16
    assert inference_dtype("cpu", "bf16") is torch.bfloat16
    assert inference_dtype("cpu", torch.bfloat16) is torch.bfloat16


@pytest.mark.parametrize(("name", "dtype"), sorted(DTYPES.items()))
def test_names_and_aliases(name: str, dtype: torch.dtype) -> None:
    assert dtype_from_name(name) is dtype
    assert dtype_from_name(dtype_name(dtype)) is dtype


def test_an_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown dtype 'int8'; expected one of: float32, fp32"):
        dtype_from_name("int8")
    assert dtype_name(torch.bfloat16) == "bfloat16"


@pytest.mark.usefixtures("tf32_flags")
def test_tf32_is_enabled_for_cuda_only() -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    cpu_matmul = getattr(torch.backends.mkldnn, "matmul", None)
    cpu_precision = getattr(cpu_matmul, "fp32_precision", None)
    assert enable_tf32("cpu") is False
    assert torch.backends.cuda.matmul.allow_tf32 is False
    assert enable_tf32(torch.device("cuda:0")) is True  # a flag: no CUDA device needed to set it
    assert torch.backends.cuda.matmul.allow_tf32 is True
    assert torch.backends.cudnn.allow_tf32 is True
    # CPU (oneDNN) matmuls keep full float32 precision.
    assert getattr(cpu_matmul, "fp32_precision", None) == cpu_precision


@pytest.mark.gpu
def test_the_default_on_this_cuda_device_follows_its_capability() -> None:
    major, minor = torch.cuda.get_device_capability()
    expected = torch.bfloat16 if (major, minor) >= (8, 0) else torch.float32
    assert default_inference_dtype("cuda") is expected
    assert default_inference_dtype("cpu") is torch.float32
