"""This host's memory, and the one-line check a CLI makes before it builds a model.

    message = host_verdict(config, "generate", "cuda", "bfloat16", device_memory("cuda"))
    if message:                  # e.g. "aiprod-19b in bfloat16 needs ~41 GiB of weights; the
        print(message); exit(1)  #  GPU (cuda) has 24 GiB; see `nox -s dev -- plan_memory`"

GPU memory is the device's total (``torch.cuda.mem_get_info``; the plan reserves the CUDA
context itself). Host memory is what Linux says can be allocated without swapping
(``MemAvailable`` in ``/proc/meminfo``), capped by the cgroup's limit when the process runs
in a container, else ``os.sysconf``'s available pages.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiprod_core.memory.plan import plan_memory
from aiprod_core.memory.settings import GIB, PlanSettings, dtype_name
from aiprod_core.models.configs import ModelConfig

MEMINFO = Path("/proc/meminfo")
CGROUP = Path("/sys/fs/cgroup")
PLAN_HINT = "see `nox -s dev -- plan_memory`"


@dataclass(frozen=True)
class HostMemory:
    """Memory this host offers: available RAM, and each CUDA device's total (if any)."""

    ram_bytes: int
    gpu_bytes: tuple[int, ...] = ()

    def for_device(self, device: str) -> int:
        """Memory a model on ``device`` (``cpu``, ``cuda`` or ``cuda:N``) can use."""
        if device.startswith("cuda"):
            index = int(device.partition(":")[2] or 0)
            return self.gpu_bytes[index] if index < len(self.gpu_bytes) else 0
        return self.ram_bytes


def describe_memory(device: str, free_bytes: int, gpus: int) -> str:
    """``"this host has 24 GiB of RAM and no GPU"`` or ``"its GPU has 80 GiB"``."""
    if device.startswith("cuda"):
        return f"the GPU ({device}) has {free_bytes / GIB:.0f} GiB"
    others = "no GPU" if gpus == 0 else f"{gpus} GPU{'s' if gpus > 1 else ''} it does not use"
    return f"this host has {free_bytes / GIB:.0f} GiB of RAM and {others}"


def available_ram(meminfo: Path = MEMINFO, cgroup: Path = CGROUP) -> int:
    """Bytes of RAM this process can still allocate (see the module docs)."""
    available: int | None = None
    try:
        for line in meminfo.read_text(encoding="ascii").splitlines():
            name, _, value = line.partition(":")
            if name == "MemAvailable":
                available = int(value.split()[0]) * 1024
                break
    except (OSError, ValueError, IndexError):
        available = None
    if available is None:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    try:
        limit = (cgroup / "memory.max").read_text(encoding="ascii").strip()
        used = int((cgroup / "memory.current").read_text(encoding="ascii").strip())
        if limit != "max":
            available = min(available, max(int(limit) - used, 0))
    except (OSError, ValueError):
        pass
    return available


def gpu_memory() -> tuple[int, ...]:
    """Total bytes of each visible CUDA device (empty without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return ()
    return tuple(torch.cuda.mem_get_info(index)[1] for index in range(torch.cuda.device_count()))


def read_host_memory() -> HostMemory:
    """This host's available RAM and its GPUs' memory."""
    return HostMemory(available_ram(), gpu_memory())


def device_memory(device: str) -> int:
    """Bytes a model on ``device`` can use here: the GPU's total, or the available RAM."""
    if device.startswith("cuda"):
        return HostMemory(0, gpu_memory()).for_device(device)
    return available_ram()


def host_verdict(
    config: ModelConfig,
    mode: str,
    device: str,
    dtype: object,
    free_bytes: int,
    *,
    host_gpus: int | None = None,
    **settings: Any,
) -> str | None:
    """None when ``config`` in ``mode`` fits ``free_bytes`` on ``device``, else one line
    saying what it needs and what this host has.

    ``dtype`` is the compute dtype (a torch dtype or its name); ``settings`` are further
    :class:`PlanSettings` fields (``frames``, ``tiled_decode``, ``strategy``, ``gpus``, ...).
    ``host_gpus`` (this host's CUDA device count, for the message) is read from torch when
    not given.
    """
    kind = "cuda" if device.startswith("cuda") else "cpu"
    name = dtype_name(dtype)
    plan = plan_memory(config, PlanSettings(mode, kind, dtype=name, **settings))  # type: ignore[arg-type]
    if plan.fits(free_bytes):
        return None
    if host_gpus is None:
        host_gpus = len(gpu_memory())
    weights = sum(plan.line(key) for key in ("weights", "other_components", "text_encoder"))
    if weights > free_bytes:
        need = f"~{weights / GIB:.0f} GiB of weights"
    else:
        need = f"~{plan.peak_bytes / GIB:.0f} GiB at its peak ({plan.peak_phase})"
    where = describe_memory(device, free_bytes, host_gpus)
    return f"{config.preset} in {name} needs {need}; {where}; {PLAN_HINT}"
