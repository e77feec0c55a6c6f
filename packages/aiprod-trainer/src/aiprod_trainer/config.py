"""The training configuration: one YAML file, validated into a typed :class:`TrainConfig`.

    config = load_train_config("configs/dit.yaml", overrides={"training": {"max_steps": 10}})

Every section forbids unknown keys, so a misspelt key is an error instead of a silently
ignored setting. Every problem becomes one :class:`TrainConfigError` whose message names
the file, the key path and what was expected, one line per problem::

    configs/dit.yaml: optimizer.lr: Input should be greater than 0, got -1.0

Relative paths in the file (``run_dir``, ``data.*``, ``model.checkpoint``) are relative to
the folder that holds the file, so a config means the same wherever it is run from.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from aiprod_core.documents import read_mapping
from aiprod_core.errors import ConfigError
from aiprod_core.models import PRESETS
from aiprod_core.problems import join_problems, validation_problems

Mode = Literal["vae", "dit", "lora", "upsampler"]
"""What a run trains: the VAE, the whole transformer, LoRA adapters on the transformer, or
the x2 latent upsampler."""

LoraTarget = Literal["qkv", "out", "q", "kv", "gate_up", "down"]
LORA_TARGETS: tuple[LoraTarget, ...] = ("qkv", "out", "q", "kv", "gate_up", "down")
"""The transformer's attention (self: qkv/out, cross: q/kv/out) and MLP (gate_up/down) layers."""


def _no_bool(value: Any) -> Any:
    """YAML ``true`` is not a number: refuse it before pydantic turns it into 1.0."""
    if isinstance(value, bool):
        raise ValueError("expected a number, not a boolean")
    return value


Number = Annotated[float, BeforeValidator(_no_bool)]
PositiveNumber = Annotated[Number, Field(gt=0)]
Fraction = Annotated[Number, Field(ge=0, lt=1)]
Count = Annotated[int, Field(strict=True, ge=1)]
NonNegativeCount = Annotated[int, Field(strict=True, ge=0)]
Switch = Annotated[bool, Field(strict=True)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSection(_Section):
    """Where the initial weights come from: exactly one of ``preset`` or ``checkpoint``."""

    preset: str | None = Field(default=None, description="random init (seeded) of this preset")
    checkpoint: Path | None = Field(default=None, description="a bundle checkpoint to start from")

    @model_validator(mode="after")
    def _one_source(self) -> ModelSection:
        if (self.preset is None) == (self.checkpoint is None):
            raise ValueError("give exactly one of preset (random init) or checkpoint")
        if self.preset is not None and self.preset not in PRESETS:
            raise ValueError(
                f"unknown preset {self.preset!r}; expected one of: {', '.join(PRESETS)}"
            )
        return self


class DataSection(_Section):
    """Training and held-out data: latent caches (dit, lora), clip manifests (vae), or
    latent caches of the same clips at full and at half width and height (upsampler)."""

    cache: Path | None = None
    validation_cache: Path | None = None
    low_res_cache: Path | None = Field(
        default=None,
        description="mode upsampler: the clips of data.cache at half width and height "
        "(compute_latents.py --downscale 2), paired with it by item id",
    )
    validation_low_res_cache: Path | None = Field(
        default=None, description="mode upsampler: the clips of data.validation_cache likewise"
    )
    manifest: Path | None = None
    validation_manifest: Path | None = None
    batch_size: Count = 1
    shuffle: Switch = True
    num_workers: NonNegativeCount = 0
    keep_in_memory: Switch = False


class OptimizerSection(_Section):
    """AdamW with gradient clipping and accumulation."""

    lr: PositiveNumber = 1e-4
    betas: tuple[Fraction, Fraction] = (0.9, 0.999)
    eps: PositiveNumber = 1e-8
    weight_decay: Annotated[Number, Field(ge=0)] = 0.01
    grad_clip: PositiveNumber | None = 1.0
    accumulation: Count = 1


class ScheduleSection(_Section):
    """Linear warm-up to ``optimizer.lr``, then cosine decay to ``lr * min_lr_ratio``."""

    warmup_steps: NonNegativeCount = 0
    min_lr_ratio: Annotated[Number, Field(ge=0, le=1)] = 0.1


class ConditioningSection(_Section):
    """Frame conditioning in modes dit and lora: how often latent frames are kept clean
    (sigma 0 on their tokens, left out of the loss), so the model learns image-to-video
    (the first frame), continuation (the first few) and keyframes (the last one)."""

    first_frame: Annotated[Number, Field(ge=0, le=1)] = 0.1
    max_prefix_frames: Count = 1
    last_frame: Annotated[Number, Field(ge=0, le=1)] = 0.0


class TrainingSection(_Section):
    """How long and on what the run trains."""

    max_steps: Count
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    gradient_checkpointing: Switch = False
    text_dropout: Fraction = 0.1
    text_dropout_embedding: Literal["empty_prompt", "zeros"] = "empty_prompt"
    conditioning: ConditioningSection = ConditioningSection()
    log_every: Count = 10
    progress: Switch = True


class DistributedSection(_Section):
    """How the processes of a torchrun launch share the model (a single process without
    torchrun is a world of one)."""

    strategy: Literal["ddp", "fsdp"] = Field(
        default="ddp",
        description="ddp: every process holds the whole model; fsdp: FSDP2 shards each "
        "transformer block's parameters, gradients and optimizer state over the processes",
    )
    param_dtype: Literal["auto", "float32", "bfloat16"] = Field(
        default="auto",
        description="fsdp: the dtype parameters are gathered in and computed with (gradients "
        "are reduced and the optimizer steps in float32); auto: bfloat16 on CUDA, float32 on CPU",
    )
    cpu_offload: Switch = Field(
        default=False,
        description="fsdp: keep the sharded parameters, gradients and optimizer state in host "
        "memory and move each block to the device only while it runs",
    )

    @model_validator(mode="after")
    def _fsdp_only(self) -> DistributedSection:
        if self.strategy != "fsdp":
            for key, default in (("param_dtype", "auto"), ("cpu_offload", False)):
                if getattr(self, key) != default:
                    raise ValueError(
                        f"distributed.{key}: only used with strategy 'fsdp', not "
                        f"{self.strategy!r}; set distributed.strategy: fsdp or remove it"
                    )
        return self


class EmaSection(_Section):
    """Exponential moving average of the trained weights (exported when enabled)."""

    enabled: Switch = False
    decay: Annotated[Number, Field(gt=0, lt=1)] = 0.999


class CheckpointSection(_Section):
    """Resumable checkpoints in ``<run_dir>/checkpoints``."""

    every: Count = 100
    keep_last: Count = 3


class ValidationSection(_Section):
    """Held-out loss (deterministic) and optional sample videos every ``every`` steps."""

    every: NonNegativeCount = 0
    max_items: Count = 16
    reconstructions: NonNegativeCount = 0
    seed: NonNegativeCount = 1234
    at_start: Switch = True
    prompts: list[str] = Field(default_factory=list)
    width: Count = 32
    height: Count = 32
    frames: Count = 9
    steps: Count = 10
    guidance_scale: Annotated[Number, Field(ge=1)] = 3.0
    fps: Count = 8


class VaeSection(_Section):
    """VAE objective: reconstruction loss plus a small KL term."""

    reconstruction: Literal["l1", "mse"] = "l1"
    kl_weight: Annotated[Number, Field(ge=0)] = 1e-6
    latent_stats_items: Count = Field(
        default=512,
        description="training clips (a seeded sample) the exported VAE's per-channel latent "
        "mean and std are measured on",
    )


class LoraSection(_Section):
    """LoRA adapters (peft) on the transformer's attention and MLP linear layers."""

    rank: Count = 8
    alpha: PositiveNumber = 16.0
    dropout: Fraction = 0.0
    target_modules: list[LoraTarget] = Field(
        default_factory=lambda: list(LORA_TARGETS), min_length=1
    )


class TrainConfig(_Section):
    """A whole training run (see the example configs in ``configs/``)."""

    mode: Mode
    run_dir: Path
    seed: NonNegativeCount = 0
    model: ModelSection
    data: DataSection
    optimizer: OptimizerSection = OptimizerSection()
    schedule: ScheduleSection = ScheduleSection()
    training: TrainingSection
    ema: EmaSection = EmaSection()
    checkpoints: CheckpointSection = CheckpointSection()
    validation: ValidationSection = ValidationSection()
    vae: VaeSection = VaeSection()
    lora: LoraSection = LoraSection()
    distributed: DistributedSection = DistributedSection()

    @model_validator(mode="after")
    def _data_for_mode(self) -> TrainConfig:
        wanted, other = ("manifest", "cache") if self.mode == "vae" else ("cache", "manifest")
        if getattr(self.data, wanted) is None:
            raise ValueError(f"data.{wanted}: required in mode {self.mode!r}")
        if getattr(self.data, other) is not None:
            raise ValueError(f"data.{other}: not used in mode {self.mode!r}; use data.{wanted}")
        self._low_res_data_for_mode()
        self._distributed_for_mode()
        if self.data.keep_in_memory and self.mode != "vae":
            raise ValueError(
                f"data.keep_in_memory: only for decoded video clips (mode 'vae'), not mode "
                f"{self.mode!r}, whose latent cache is read from safetensors shards"
            )
        return self

    def _distributed_for_mode(self) -> None:
        if self.distributed.strategy != "fsdp":
            return
        if self.mode not in ("dit", "lora"):
            raise ValueError(
                f"distributed.strategy: fsdp shards the transformer (modes 'dit' and 'lora'); "
                f"mode {self.mode!r} trains a component small enough for ddp, so use ddp"
            )
        if self.training.precision == "bf16":
            raise ValueError(
                "training.precision: bf16 autocast is not used with distributed.strategy "
                "fsdp; set distributed.param_dtype: bfloat16 instead (and precision: auto)"
            )

    def _low_res_data_for_mode(self) -> None:
        data = self.data
        if self.mode != "upsampler":
            for key in ("low_res_cache", "validation_low_res_cache"):
                if getattr(data, key) is not None:
                    raise ValueError(
                        f"data.{key}: only for mode 'upsampler' (pairs of latents of a clip "
                        f"at two resolutions), not mode {self.mode!r}"
                    )
            return
        if data.low_res_cache is None:
            raise ValueError(
                "data.low_res_cache: required in mode 'upsampler': a latent cache of the clips "
                "of data.cache at half width and height (compute_latents.py --downscale 2)"
            )
        if (data.validation_cache is None) != (data.validation_low_res_cache is None):
            given, missing = (
                ("validation_cache", "validation_low_res_cache")
                if data.validation_low_res_cache is None
                else ("validation_low_res_cache", "validation_cache")
            )
            raise ValueError(
                f"data.{missing}: required with data.{given} in mode 'upsampler' (the "
                "held-out clips at full and at half width and height); give both or neither"
            )

    @property
    def training_data(self) -> Path:
        """The cache (dit, lora, upsampler: the full-resolution one) or manifest (vae) the
        run trains on."""
        path = self.data.manifest if self.mode == "vae" else self.data.cache
        assert path is not None  # guaranteed by the validator
        return path

    @property
    def validation_data(self) -> Path | None:
        """The held-out cache or manifest, if any."""
        return self.data.validation_manifest if self.mode == "vae" else self.data.validation_cache


class TrainConfigError(ConfigError):
    """A training config file is missing, unreadable or invalid; the message says where."""


_PATH_KEYS: tuple[tuple[str, ...], ...] = (
    ("run_dir",),
    ("model", "checkpoint"),
    ("data", "cache"),
    ("data", "validation_cache"),
    ("data", "low_res_cache"),
    ("data", "validation_low_res_cache"),
    ("data", "manifest"),
    ("data", "validation_manifest"),
)


def load_train_config(
    path: str | Path,
    overrides: Mapping[str, Any] | None = None,
    *,
    check_paths: bool = True,
) -> TrainConfig:
    """Read, merge ``overrides`` into (nested mappings merge), and validate a YAML config.

    Relative paths become absolute against the file's folder. With ``check_paths`` the
    inputs must exist: the checkpoint and manifests as files, the caches as folders.
    """
    path = Path(path)
    data = _read_yaml(path)
    if overrides:
        _merge(data, overrides)
    try:
        config = TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise TrainConfigError(_describe(exc, path)) from None
    config = _resolved(config, path.resolve().parent)
    if check_paths:
        _check_inputs(config, path)
    return config


def _read_yaml(path: Path) -> dict[str, Any]:
    return read_mapping(path, "yaml", error=TrainConfigError)


def _merge(target: dict[str, Any], overrides: Mapping[str, Any]) -> None:
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = dict(value) if isinstance(value, Mapping) else value


def _describe(exc: ValidationError, path: Path) -> str:
    problems = validation_problems(
        exc, unknown="unknown key (not part of the training config schema)"
    )
    lines = [f"{path}: {problem}" for problem in problems]
    return join_problems(f"{path}: invalid training config", lines)


def _resolved(config: TrainConfig, base: Path) -> TrainConfig:
    """``config`` with every relative path made absolute against ``base``."""
    data = config.model_dump()
    for keys in _PATH_KEYS:
        node = data
        for key in keys[:-1]:
            node = node[key]
        value = node[keys[-1]]
        if value is not None:
            node[keys[-1]] = (base / Path(value).expanduser()).resolve()
    return TrainConfig.model_validate(data)


def _check_inputs(config: TrainConfig, path: Path) -> None:
    expected = [
        (("model", "checkpoint"), config.model.checkpoint, "file"),
        (("data", "cache"), config.data.cache, "folder"),
        (("data", "validation_cache"), config.data.validation_cache, "folder"),
        (("data", "low_res_cache"), config.data.low_res_cache, "folder"),
        (("data", "validation_low_res_cache"), config.data.validation_low_res_cache, "folder"),
        (("data", "manifest"), config.data.manifest, "file"),
        (("data", "validation_manifest"), config.data.validation_manifest, "file"),
    ]
    for keys, value, kind in expected:
        if value is None:
            continue
        exists = value.is_file() if kind == "file" else value.is_dir()
        if not exists:
            raise TrainConfigError(f"{path}: {'.'.join(keys)}: {kind} not found: {value}")
