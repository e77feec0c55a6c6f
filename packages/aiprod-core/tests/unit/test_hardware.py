"""Peak-throughput lookup by device name."""

from __future__ import annotations

import pytest

from aiprod_core.hardware import device_name_tokens, peak_bf16_tflops


@pytest.mark.parametrize(
    ("name", "peak"),
    [
        ("NVIDIA H200", 989.0),
        ("NVIDIA GH200 480GB", 989.0),
        ("NVIDIA H100 PCIe", 756.0),
        ("NVIDIA H100 NVL", 835.0),
        ("NVIDIA H100 80GB HBM3", 989.0),
        ("NVIDIA H800", 989.0),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("NVIDIA A800 80GB PCIe", 312.0),
        ("NVIDIA L40S", 362.0),
        ("NVIDIA L4", 121.0),
        ("NVIDIA A10G", 70.0),
        ("NVIDIA GeForce RTX 4090", 165.0),
        ("NVIDIA L40", None),
        ("Tesla T4", None),
        ("Some Future GPU", None),
        ("", None),
    ],
)
def test_lookup(name: str, peak: float | None) -> None:
    assert peak_bf16_tflops(name) == peak


def test_override_wins() -> None:
    assert peak_bf16_tflops("NVIDIA H200", override=500.0) == 500.0
    assert peak_bf16_tflops("unknown", override=1.0) == 1.0


def test_name_tokens_are_whole_lower_case_words() -> None:
    assert device_name_tokens("NVIDIA A100-SXM4-80GB") == {"nvidia", "a100", "sxm4", "80gb"}
    assert device_name_tokens("  --  ") == frozenset()
