"""Facts about accelerators used to express measured speed as a fraction of the peak."""

from __future__ import annotations

import re

#: Dense bf16 tensor-core peak in TFLOP/s (no sparsity), by device-name tokens; the first
#: entry whose tokens are all words of the (lower-cased) device name wins, so more
#: specific entries come first.
PEAK_BF16_TFLOPS: tuple[tuple[tuple[str, ...], float], ...] = (
    (("gh200",), 989.0),
    (("h200",), 989.0),
    (("h100", "pcie"), 756.0),
    (("h100", "nvl"), 835.0),
    (("h100",), 989.0),
    (("h800",), 989.0),
    (("a100",), 312.0),
    (("a800",), 312.0),
    (("l40s",), 362.0),
    (("l4",), 121.0),
    (("a10g",), 70.0),
    (("4090",), 165.0),
)


def device_name_tokens(device_name: str) -> frozenset[str]:
    """The lower-cased words of a device name: ``"NVIDIA A100-SXM4-80GB"`` -> a100, sxm4, ..."""
    return frozenset(token for token in re.split(r"[^a-z0-9]+", device_name.lower()) if token)


def peak_bf16_tflops(device_name: str, override: float | None = None) -> float | None:
    """The device's dense bf16 peak: ``override`` if given, else the table, else None.

    Names are matched by whole words, so an L40 is not taken for an L4.
    """
    if override is not None:
        return override
    words = device_name_tokens(device_name)
    for tokens, peak in PEAK_BF16_TFLOPS:
        if words.issuperset(tokens):
            return peak
    return None
