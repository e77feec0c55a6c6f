"""Repository-wide pytest hooks shared by every package's tests.

gpu-marked tests are skipped, with the reason, on hosts without a CUDA device. torch is
imported lazily so that packages which do not depend on torch can still run their tests.
"""

from __future__ import annotations

import importlib.util

import pytest


def cuda_unavailable_reason() -> str | None:
    """Return why CUDA tests cannot run here, or None when a CUDA device is usable."""
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed in this environment"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device on this host"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_items:
        return
    reason = cuda_unavailable_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"gpu test skipped: {reason}")
    for item in gpu_items:
        item.add_marker(skip)
