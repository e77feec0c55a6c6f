"""What a plan is made of: its lines, its phases, and what a rank needs besides tensors.

Besides its tensors a rank needs, on CUDA, :data:`CUDA_CONTEXT_BYTES` (CUDA context,
cuBLAS/cuDNN workspaces), :data:`COMMUNICATION_BYTES` when several GPUs talk (NCCL) and
:data:`CUDA_HEADROOM` of the tensors' peak (the caching allocator's fragmentation); on the
CPU :data:`CPU_RUNTIME_BYTES` of Python and torch and :data:`CPU_HEADROOM` of the peak.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiprod_core.memory.settings import GIB, PlanSettings

CUDA_CONTEXT_BYTES = GIB
"""CUDA context and cuBLAS/cuDNN workspaces of one process."""
COMMUNICATION_BYTES = GIB // 2
"""NCCL's buffers when a rank talks to others."""
CUDA_HEADROOM = 0.10
"""Share of the tensors' peak the CUDA caching allocator may lose to fragmentation (not
measured here: no CUDA host was at hand; ``measure_memory --device cuda`` measures it)."""
CPU_HEADROOM = 0.15
"""Share of the tensors' peak the CPU allocator holds beyond them. Measured with
``scripts/testing/measure_memory.py``: a training step's peak resident set exceeds the
resident set before the model plus the live tensors by about 0.16 GiB + 18 % of the tensors,
generation's by 0.09 GiB; with :data:`CPU_RUNTIME_BYTES` this share puts the small preset's
plans within -5 % to +9 % of the measured peaks."""
CPU_RUNTIME_BYTES = 400 * 2**20
"""Python, torch and aiprod before any model: 0.29-0.31 GiB resident after the imports,
plus the kernels and thread pools torch loads on first use."""


@dataclass(frozen=True)
class MemoryLine:
    """One figure of a plan: per-rank bytes of one kind of memory.

    ``in_total`` is False for figures shown for comparison only (the activations of the
    setting not chosen).
    """

    key: str
    label: str
    bytes: int
    in_total: bool = True

    @property
    def gib(self) -> float:
        return self.bytes / GIB


@dataclass
class Breakdown:
    """A mode's lines, the device bytes of each phase of its work, and host bytes."""

    lines: list[MemoryLine] = field(default_factory=list)
    phases: dict[str, int] = field(default_factory=dict)
    host_bytes: int = 0


def headroom(settings: PlanSettings) -> float:
    """The allocator's share on top of the tensors' peak."""
    return CUDA_HEADROOM if settings.device == "cuda" else CPU_HEADROOM


def fixed_reserve(settings: PlanSettings) -> int:
    """What a rank needs whatever its tensors."""
    if settings.device == "cpu":
        return CPU_RUNTIME_BYTES
    return CUDA_CONTEXT_BYTES + (COMMUNICATION_BYTES if settings.gpus > 1 else 0)


def reserve_line(settings: PlanSettings, tensors: int) -> MemoryLine:
    """The line of what a rank needs besides ``tensors`` bytes of tensors."""
    label = (
        "Python and torch runtime, allocator headroom"
        if settings.device == "cpu"
        else "CUDA context, NCCL buffers and allocator headroom"
    )
    return MemoryLine(
        "reserved", label, fixed_reserve(settings) + round(headroom(settings) * tensors)
    )
