"""What a memory plan is asked about: the mode, the devices, the strategy and the clip.

``PlanSettings`` is validated when it is made: a bad value raises :class:`MemoryPlanError`
naming the field and what was expected, so a CLI can print it as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, get_args

from aiprod_core.errors import AiprodError

Mode = Literal["train", "lora", "generate"]
Strategy = Literal["ddp", "fsdp"]
Device = Literal["cuda", "cpu"]
TileMode = Literal["exact", "blended"]

MODES: tuple[str, ...] = get_args(Mode)
STRATEGIES: tuple[str, ...] = get_args(Strategy)
DEVICES: tuple[str, ...] = get_args(Device)
TILE_MODES: tuple[str, ...] = get_args(TileMode)

GIB = 2**30
"""Memory is reported in GiB (2^30 bytes): what an "80 GB" GPU holds is 80 GiB."""

DTYPE_BYTES: dict[str, int] = {"float32": 4, "bfloat16": 2, "float16": 2}
"""Element sizes of the floating-point dtypes a plan can name."""

DTYPE_ALIASES: dict[str, str] = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}

DEFAULT_LORA_RANK = 32
MAX_GPUS = 4096


class MemoryPlanError(AiprodError, ValueError):
    """A memory plan was asked with an argument it cannot use; the message names it."""


def dtype_name(dtype: object) -> str:
    """``"bfloat16"`` for ``torch.bfloat16``, ``"bf16"`` or ``"bfloat16"``; else an error."""
    text = str(dtype).removeprefix("torch.")
    text = DTYPE_ALIASES.get(text, text)
    if text not in DTYPE_BYTES:
        known = ", ".join([*DTYPE_BYTES, *DTYPE_ALIASES])
        raise MemoryPlanError(f"dtype {dtype!s}: expected one of {known}")
    return text


def default_dtype(device: str) -> str:
    """The compute dtype AIPROD uses on ``device``: bfloat16 on CUDA, float32 on the CPU."""
    return "bfloat16" if device == "cuda" else "float32"


@dataclass(frozen=True)
class PlanSettings:
    """One way of running a model whose per-rank memory is planned.

    ``dtype`` is the compute dtype (``None``: bfloat16 on CUDA, float32 on the CPU): the
    dtype of activations, of inference weights, of a LoRA run's frozen base and of FSDP's
    gathered parameters. Full training keeps float32 master weights whatever it is.
    ``frames``, ``height`` and ``width`` default to the model's generation defaults;
    ``batch`` is the micro-batch per rank. ``tiled_decode`` decodes in the tiles the VAE's
    tile planner picks, in ``tile_mode`` (``exact``, or LTX-2's approximate ``blended``
    overlaps); ``text_encoder_offload`` keeps the text encoder on the host but while it
    encodes (both as the pipelines do).
    """

    mode: Mode
    device: Device = "cuda"
    gpus: int = 1
    strategy: Strategy = "ddp"
    activation_checkpointing: bool = False
    cpu_offload: bool = False
    dtype: str | None = None
    frames: int | None = None
    height: int | None = None
    width: int | None = None
    batch: int = 1
    lora_rank: int = DEFAULT_LORA_RANK
    tiled_decode: bool = False
    tile_mode: TileMode = "exact"
    text_encoder_offload: bool = False

    def __post_init__(self) -> None:
        choices = (
            ("mode", MODES),
            ("device", DEVICES),
            ("strategy", STRATEGIES),
            ("tile_mode", TILE_MODES),
        )
        for name, allowed in choices:
            value = getattr(self, name)
            if value not in allowed:
                raise MemoryPlanError(f"{name}={value!r}: expected one of {', '.join(allowed)}")
        _check_count("gpus", self.gpus, 1, MAX_GPUS)
        _check_count("batch", self.batch, 1, 1 << 16)
        _check_count("lora_rank", self.lora_rank, 1, 1 << 16)
        for name in ("frames", "height", "width"):
            value = getattr(self, name)
            if value is not None:
                _check_count(name, value, 1, 1 << 20)
        if self.dtype is not None:
            object.__setattr__(self, "dtype", dtype_name(self.dtype))
        if self.cpu_offload and (self.strategy != "fsdp" or self.device != "cuda"):
            raise MemoryPlanError(
                "cpu_offload=True: offloading moves FSDP's shards to the host; it needs "
                "strategy='fsdp' on device='cuda'"
            )
        if self.text_encoder_offload and self.device != "cuda":
            raise MemoryPlanError(
                "text_encoder_offload=True: offloading keeps the text encoder on the host "
                "instead of the GPU; it needs device='cuda'"
            )
        if self.device == "cpu" and self.gpus != 1:
            raise MemoryPlanError(f"gpus={self.gpus}: a plan for device='cpu' has gpus=1")

    @property
    def compute_dtype(self) -> str:
        """The dtype activations and inference weights are in."""
        return self.dtype or default_dtype(self.device)

    @property
    def compute_bytes(self) -> int:
        return DTYPE_BYTES[self.compute_dtype]

    @property
    def trains(self) -> bool:
        return self.mode != "generate"

    @property
    def sharded(self) -> bool:
        """Whether parameters, gradients and optimizer state are split over the ranks."""
        return self.trains and self.strategy == "fsdp"

    def with_changes(self, **changes: object) -> PlanSettings:
        """A copy with ``changes`` applied (and validated)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def describe(self) -> str:
        """One line: ``train, fsdp, 8 GPUs, activation checkpointing, bfloat16``."""
        parts: list[str] = [self.mode]
        if self.trains:
            parts.append(self.strategy)
        if self.device == "cuda":
            parts.append(f"{self.gpus} GPU{'s' if self.gpus > 1 else ''}")
        else:
            parts.append("CPU")
        flags = (
            (self.trains and self.activation_checkpointing, "activation checkpointing"),
            (self.cpu_offload, "CPU offload"),
            (self.mode == "lora", f"LoRA rank {self.lora_rank}"),
            (self.mode == "generate" and self.tiled_decode, f"tiled VAE decode ({self.tile_mode})"),
            (self.mode == "generate" and self.text_encoder_offload, "text encoder offloaded"),
        )
        parts += [text for on, text in flags if on]
        parts.append(self.compute_dtype)
        return ", ".join(parts)


def _check_count(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise MemoryPlanError(f"{name}={value!r}: expected a whole number from {low} to {high}")
