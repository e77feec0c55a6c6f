"""Per-rank memory of training, LoRA fine-tuning or generating with a model, before building it.

    plan = plan_memory(get_preset("aiprod-19b"), PlanSettings("train", gpus=8, strategy="fsdp",
                                                               activation_checkpointing=True))
    plan.peak_bytes / GIB      # what one GPU needs at the step's largest point
    plan.lines                 # weights, gradients, optimizer, activations, ... (MemoryLine)

Training (:mod:`.training`) and generation (:mod:`.generation`) each give their lines and
the device bytes of each phase of their work; the plan's peak is the largest phase plus
what a rank needs besides tensors (:mod:`.lines`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from aiprod_core.errors import AiprodError
from aiprod_core.memory.generation import generation_breakdown
from aiprod_core.memory.lines import MemoryLine, reserve_line
from aiprod_core.memory.parameters import model_parameters
from aiprod_core.memory.settings import GIB, MemoryPlanError, PlanSettings
from aiprod_core.memory.training import training_breakdown
from aiprod_core.models.configs import ModelConfig
from aiprod_core.models.geometry import ModelGeometry


@dataclass(frozen=True)
class MemoryPlan:
    """What one rank needs for ``settings`` (see the module docs)."""

    preset: str
    settings: PlanSettings
    clip: tuple[int, int, int]
    latent: tuple[int, int, int]
    tokens: int
    parameters: dict[str, int]
    lines: tuple[MemoryLine, ...]
    peak_bytes: int
    peak_phase: str
    host_bytes: int

    def line(self, key: str) -> int:
        """Bytes of the line ``key`` (0 when the plan has no such line)."""
        return next((line.bytes for line in self.lines if line.key == key), 0)

    def fits(self, device_bytes: int, host_bytes: int | None = None) -> bool:
        """Whether one rank fits ``device_bytes`` (and its offloaded state ``host_bytes``)."""
        host_ok = host_bytes is None or self.host_bytes <= host_bytes
        return self.peak_bytes <= device_bytes and host_ok

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: settings, shapes, parameters, lines (bytes and GiB), peak."""
        return {
            "preset": self.preset,
            "settings": asdict(self.settings),
            "clip": list(self.clip),
            "latent": list(self.latent),
            "tokens": self.tokens,
            "parameters": self.parameters,
            "lines": [{**asdict(line), "gib": round(line.gib, 3)} for line in self.lines],
            "peak_bytes": self.peak_bytes,
            "peak_gib": round(self.peak_bytes / GIB, 3),
            "peak_phase": self.peak_phase,
            "host_bytes": self.host_bytes,
        }


def clip_of(config: ModelConfig, settings: PlanSettings) -> tuple[int, int, int]:
    """(frames, height, width) of ``settings``, the model's generation defaults filling in."""
    defaults = config.generation
    return (
        settings.frames or defaults.frames,
        settings.height or defaults.height,
        settings.width or defaults.width,
    )


def plan_memory(
    config: ModelConfig, settings: PlanSettings, device_bytes: int | None = None
) -> MemoryPlan:
    """The per-rank memory plan of running ``config`` as ``settings`` asks.

    ``device_bytes`` (the memory of one device) only matters to a tiled decode: its tiles
    are then the largest that fit what the rest leaves, else the smallest there are."""
    clip = clip_of(config, settings)
    try:
        latent, grid = ModelGeometry.of(config).video_tokens(*clip)
    except AiprodError as exc:
        raise MemoryPlanError(f"clip {'x'.join(map(str, clip))} (FxHxW): {exc}") from None
    tokens = grid[0] * grid[1] * grid[2]
    params = model_parameters(config)
    if settings.trains:
        parts = training_breakdown(config, settings, params, tokens)
    else:
        parts = generation_breakdown(config, settings, params, (tokens, latent, clip), device_bytes)
    phase, tensors = max(parts.phases.items(), key=lambda item: item[1])
    reserve = reserve_line(settings, tensors)
    return MemoryPlan(
        preset=config.preset,
        settings=settings,
        clip=clip,
        latent=latent,
        tokens=tokens,
        parameters={**params.by_component(), "total": params.total},
        lines=(*parts.lines, reserve),
        peak_bytes=tensors + reserve.bytes,
        peak_phase=phase,
        host_bytes=parts.host_bytes,
    )
