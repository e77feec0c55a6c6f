"""Does a setting fit, and if not, what is the smallest one that does?

:func:`verdict` plans the asked setting and searches for the smallest one that fits. For
training that is the fewest GPUs (powers of two from one, up to :data:`MAX_SEARCH_GPUS`),
and for a number of GPUs the options in the order they cost step time: ``ddp``, ``fsdp``,
``ddp`` + activation checkpointing, ``fsdp`` + checkpointing, then ``fsdp`` with CPU offload
(without, then with checkpointing). More GPUs do not help ``ddp``, which replicates
everything. On the CPU only checkpointing is left to try. Generation runs a whole replica
per GPU, so more GPUs never help it: it tries an untiled decode, an exact tiled decode,
then a blended (approximate) tiled one, each without and (on CUDA) with the text encoder
offloaded. What the user asked for (``fsdp``, checkpointing, offload, tiling) stays in every candidate.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from aiprod_core.memory.plan import MemoryPlan, plan_memory
from aiprod_core.memory.settings import GIB, MemoryPlanError, PlanSettings
from aiprod_core.models.configs import ModelConfig

MAX_SEARCH_GPUS = 64


@dataclass(frozen=True)
class Verdict:
    """The asked plan, whether it fits, the smallest fitting plan (None: none found) and,
    when none fits, the candidate that needs the least memory."""

    plan: MemoryPlan
    device_bytes: int
    fits: bool
    smallest: MemoryPlan | None
    least: MemoryPlan | None = None

    def summary(self) -> str:
        """One line: fits / does not fit, and what to do instead."""
        settings = self.plan.settings
        where = (
            f"{settings.gpus} x {self.device_bytes / GIB:.0f} GiB"
            if settings.device == "cuda"
            else f"{self.device_bytes / GIB:.0f} GiB of host memory"
        )
        need = f"{self.plan.peak_bytes / GIB:.1f} GiB per rank at its peak ({self.plan.peak_phase})"
        if self.fits:
            line = f"fits: {settings.describe()} needs {need} on {where}"
            if self.smallest is not None and self.smallest.settings != settings:
                line += f"; smallest setting that fits: {describe_fit(self.smallest)}"
            return line
        head = f"does not fit: {settings.describe()} needs {need} on {where}"
        if self.smallest is None:
            scope = (
                f"up to {MAX_SEARCH_GPUS} GPUs of this size "
                if settings.trains and settings.device == "cuda"
                else ""
            )
            least = f": the least any needs is {describe_fit(self.least)}" if self.least else ""
            return f"{head}; no setting {scope}fits{least}"
        return f"{head}; smallest setting that fits: {describe_fit(self.smallest)}"


def describe_fit(plan: MemoryPlan) -> str:
    """``"train, fsdp, 8 GPUs, ... (60.4 GiB per rank)"``, with offloaded host memory."""
    host = f" + {plan.host_bytes / GIB:.1f} GiB of host memory" if plan.host_bytes else ""
    return f"{plan.settings.describe()} ({plan.peak_bytes / GIB:.1f} GiB per rank{host})"


def _decodes(settings: PlanSettings) -> list[tuple[bool, str]]:
    """(tiled, tile mode) to try, from the asked one on: untiled, exact, blended."""
    order = [(False, "exact"), (True, "exact"), (True, "blended")]
    asked = (settings.tiled_decode, settings.tile_mode if settings.tiled_decode else "exact")
    return order[order.index(asked) :]


def candidates(settings: PlanSettings, max_gpus: int = MAX_SEARCH_GPUS) -> Iterator[PlanSettings]:
    """Settings to try, smallest first (see the module docs)."""
    if settings.mode == "generate":
        offloads = [True] if settings.text_encoder_offload else [False]
        if settings.device == "cuda" and not settings.text_encoder_offload:
            offloads.append(True)
        for tiled, mode in _decodes(settings):
            for offload in offloads:
                yield settings.with_changes(
                    tiled_decode=tiled, tile_mode=mode, text_encoder_offload=offload
                )
        return
    if settings.device == "cpu":
        for checkpointing in dict.fromkeys((settings.activation_checkpointing, True)):
            yield settings.with_changes(activation_checkpointing=checkpointing)
        return
    counts = [1 << k for k in range(max_gpus.bit_length()) if 1 << k <= max_gpus]
    options = (
        ("ddp", False, False),
        ("fsdp", False, False),
        ("ddp", True, False),
        ("fsdp", True, False),
        ("fsdp", False, True),
        ("fsdp", True, True),
    )
    for gpus in counts:
        for strategy, checkpointing, offload in options:
            if settings.strategy == "fsdp" and strategy == "ddp":
                continue
            if (settings.cpu_offload and not offload) or (
                settings.activation_checkpointing and not checkpointing
            ):
                continue
            yield settings.with_changes(
                gpus=gpus,
                strategy=strategy,
                activation_checkpointing=checkpointing,
                cpu_offload=offload,
            )


def verdict(
    config: ModelConfig,
    settings: PlanSettings,
    device_bytes: int,
    host_bytes: int | None = None,
    max_gpus: int = MAX_SEARCH_GPUS,
) -> Verdict:
    """Whether ``settings`` fits ``device_bytes`` per rank (GPU memory, or host memory for
    ``device="cpu"``), and the smallest setting that does (``host_bytes``: also require
    offloaded state to fit the host, per rank)."""
    if device_bytes <= 0:
        raise MemoryPlanError(f"device memory {device_bytes} bytes: expected a positive size")
    plan = plan_memory(config, settings, device_bytes)
    fits = plan.fits(device_bytes, host_bytes)
    least: MemoryPlan | None = None
    for candidate in candidates(settings, max_gpus):
        trial = plan_memory(config, candidate, device_bytes)
        if trial.fits(device_bytes, host_bytes):
            return Verdict(plan, device_bytes, fits, trial)
        if least is None or trial.peak_bytes < least.peak_bytes:
            least = trial
    return Verdict(plan, device_bytes, fits, None, least)
