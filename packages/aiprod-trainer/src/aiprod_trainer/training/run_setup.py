"""Everything a training run is built from, assembled from its config.

:func:`build_run` loads or initialises the model, picks what trains (the VAE, the whole
transformer, LoRA adapters on it, or the x2 latent upsampler), and builds the optimizer,
learning-rate schedule, EMA, objective and datasets. Problems a user can cause (data made
for another model, caches that do not pair, bf16 without CUDA) raise
:class:`TrainingError` naming the setting.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from aiprod_core.checkpoints import inspect_checkpoint, load_model
from aiprod_core.diffusion import FlowMatchSchedule
from aiprod_core.errors import AiprodError
from aiprod_core.memory import device_memory, host_verdict
from aiprod_core.models import AiprodModel, build_model, get_preset
from aiprod_core.vae import VideoShapeError
from aiprod_trainer.config import TrainConfig
from aiprod_trainer.data.clip_dataset import ClipDataset
from aiprod_trainer.data.latent_cache import LatentCache, LatentDataset
from aiprod_trainer.data.latent_pairs import LatentPairError, PairedLatentDataset, paired_dataset
from aiprod_trainer.training.batches import dataset_buckets, mixed_seed
from aiprod_trainer.training.distributed import DistributedContext
from aiprod_trainer.training.ema import ExponentialMovingAverage
from aiprod_trainer.training.lr_schedule import WarmupCosineSchedule
from aiprod_trainer.training.objectives import (
    FlowMatchingObjective,
    FrameConditioning,
    Objective,
    UpsamplerObjective,
    VaeObjective,
    VaeReconstruction,
)
from aiprod_trainer.training.sharding import param_dtype, shard

LORA_INIT_STREAM = 2


class TrainingError(AiprodError, ValueError):
    """A run cannot start or continue as configured; the message says which setting."""


@dataclass
class RunParts:
    """The objects one run trains with."""

    model: AiprodModel
    trained: nn.Module
    forward_module: nn.Module
    parameters: list[nn.Parameter]
    optimizer: torch.optim.Optimizer
    schedule: WarmupCosineSchedule
    ema: ExponentialMovingAverage | None
    objective: Objective
    dataset: Any
    validation_dataset: Any | None
    autocast: Callable[[], contextlib.AbstractContextManager[Any]]

    def set_modes(self) -> None:
        """Eval mode for the frozen parts of the model, train mode for what trains."""
        self.model.eval()
        self.forward_module.train()


def seed_step(seed: int, step: int, rank: int) -> None:
    """Reseed python, numpy and torch for one step of one rank (for dropout and the like)."""
    value = mixed_seed(seed, step, rank)
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)


def build_run(config: TrainConfig, context: DistributedContext) -> RunParts:
    """Build the model, optimizer, schedule, EMA, objective and data of ``config``."""
    device = context.device
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(
            "training.device: 'cuda' was asked for but this host has no CUDA device; use "
            "'auto' or 'cpu'"
        )
    autocast = _autocast_factory(config, device)
    check_training_memory(config, context)
    model = initial_model(config).to(device)
    model.requires_grad_(False)
    if config.mode == "vae":
        trained: nn.Module = model.vae
        trained.requires_grad_(True)
        forward_module: nn.Module = VaeReconstruction(model.vae)
    elif config.mode == "dit":
        trained = forward_module = model.transformer
        trained.requires_grad_(True)
    elif config.mode == "upsampler":
        trained = forward_module = model.upsampler
        trained.requires_grad_(True)
    else:
        from aiprod_trainer.training.lora import add_lora

        with torch.random.fork_rng(devices=[]):  # adapters start from the seed alone
            torch.manual_seed(mixed_seed(config.seed, LORA_INIT_STREAM))
            trained = forward_module = add_lora(model.transformer, config.lora)
    if config.mode in ("dit", "lora"):
        model.transformer.gradient_checkpointing = config.training.gradient_checkpointing
    if config.distributed.strategy == "fsdp":  # before the optimizer and EMA see parameters
        shard(trained, model.transformer.blocks, config.distributed, context)
    dataset, validation_dataset = _datasets(config, model)
    objective = _objective(config, model, dataset, device)
    parameters = [p for p in trained.parameters() if p.requires_grad]
    optim = config.optimizer
    optimizer = torch.optim.AdamW(
        parameters,
        lr=optim.lr,
        betas=optim.betas,
        eps=optim.eps,
        weight_decay=optim.weight_decay,
    )
    schedule = WarmupCosineSchedule(
        optim.lr,
        config.schedule.warmup_steps,
        config.training.max_steps,
        config.schedule.min_lr_ratio,
    )
    ema = ExponentialMovingAverage(trained, config.ema.decay) if config.ema.enabled else None
    parts = RunParts(
        model=model,
        trained=trained,
        forward_module=forward_module,
        parameters=parameters,
        optimizer=optimizer,
        schedule=schedule,
        ema=ema,
        objective=objective,
        dataset=dataset,
        validation_dataset=validation_dataset,
        autocast=autocast,
    )
    parts.set_modes()
    return parts


def _autocast_factory(
    config: TrainConfig, device: torch.device
) -> Callable[[], contextlib.AbstractContextManager[Any]]:
    precision = config.training.precision
    if config.distributed.strategy == "fsdp":
        return contextlib.nullcontext  # FSDP's mixed-precision policy casts instead
    if precision == "bf16" and device.type != "cuda":
        raise TrainingError(
            f"training.precision: bf16 autocast runs on CUDA only, and this run trains on "
            f"{device.type}; use 'auto' or 'fp32'"
        )
    if device.type == "cuda" and precision in ("auto", "bf16"):
        return lambda: torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext


def check_training_memory(
    config: TrainConfig, context: DistributedContext, free_bytes: int | None = None
) -> None:
    """Raise TrainingError (one line) when a ``dit`` or ``lora`` run cannot hold even its
    weights, gradients and optimizer state on this host (``free_bytes``: default, the GPU's
    total or the available RAM), by :mod:`aiprod_core.memory`'s plan for the run's strategy,
    world size and precision with the smallest clip: nothing is built before. The
    activations of the real clips are not checked (the data is read after the model)."""
    if config.mode not in ("dit", "lora"):
        return
    model_config = (
        inspect_checkpoint(config.model.checkpoint).config
        if config.model.checkpoint is not None
        else get_preset(str(config.model.preset))
    )
    device = context.device
    cuda = device.type == "cuda"
    fsdp = config.distributed.strategy == "fsdp"
    side = model_config.vae.spatial_compression * model_config.transformer.patch_size[1]
    message = host_verdict(
        model_config,
        "train" if config.mode == "dit" else "lora",
        str(device),
        param_dtype(config.distributed, device) if fsdp else _plain_dtype(config, device),
        device_memory(str(device)) if free_bytes is None else free_bytes,
        gpus=context.world_size if cuda else 1,
        strategy=config.distributed.strategy,
        activation_checkpointing=config.training.gradient_checkpointing,
        cpu_offload=fsdp and cuda and config.distributed.cpu_offload,
        frames=1,
        height=side,
        width=side,
        batch=config.data.batch_size,
        lora_rank=config.lora.rank,
    )
    if message is not None:
        raise TrainingError(message)


def _plain_dtype(config: TrainConfig, device: torch.device) -> torch.dtype:
    """The compute dtype of a ddp run: bf16 autocast on CUDA unless fp32 was asked for."""
    if device.type == "cuda" and config.training.precision != "fp32":
        return torch.bfloat16
    return torch.float32


def initial_model(config: TrainConfig) -> AiprodModel:
    """The model a run starts from: its `model.checkpoint`, or its preset seeded by `seed`."""
    if config.model.checkpoint is not None:
        model, _ = load_model(config.model.checkpoint)
        return model
    assert config.model.preset is not None  # the config allows exactly one source
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return build_model(get_preset(config.model.preset))


def _datasets(config: TrainConfig, model: AiprodModel) -> tuple[Any, Any | None]:
    if config.mode == "upsampler":
        return _paired_datasets(config)
    key = "manifest" if config.mode == "vae" else "cache"
    sources = [(f"data.{key}", config.training_data)]
    if config.validation_data is not None:
        sources.append((f"data.validation_{key}", config.validation_data))
    datasets: list[ClipDataset | LatentDataset] = []
    for name, path in sources:
        dataset: ClipDataset | LatentDataset
        if config.mode == "vae":
            dataset = ClipDataset(path, keep_in_memory=config.data.keep_in_memory)
        else:
            dataset = LatentDataset(path, default_fps=model.config.generation.fps)
        if len(dataset) == 0:
            raise TrainingError(f"{name}: {path} holds no items")
        if isinstance(dataset, ClipDataset):  # config.mode == "vae"
            _check_clip_shapes(name, dataset, model)
        datasets.append(dataset)
    return datasets[0], datasets[1] if len(datasets) > 1 else None


def _paired_datasets(config: TrainConfig) -> tuple[Any, Any | None]:
    """Mode upsampler: the training (and held-out) pairs of full and half-size latents."""
    data = config.data
    sources = [("", data.cache, data.low_res_cache)]
    if data.validation_cache is not None:
        sources.append(("validation_", data.validation_cache, data.validation_low_res_cache))
    datasets: list[PairedLatentDataset] = []
    for prefix, *paths in sources:
        names = (f"data.{prefix}cache", f"data.{prefix}low_res_cache")
        caches = []
        for name, path in zip(names, paths, strict=True):
            if path is None:  # the config requires both of a pair
                raise TrainingError(f"{name}: required in mode 'upsampler'")
            cache = LatentCache(path)
            if len(cache) == 0:
                raise TrainingError(f"{name}: {path} holds no items")
            caches.append(cache)
        try:
            datasets.append(paired_dataset(caches[0], caches[1], names))
        except LatentPairError as exc:
            raise TrainingError(str(exc)) from None
    return datasets[0], datasets[1] if len(datasets) > 1 else None


def _check_clip_shapes(name: str, dataset: ClipDataset, model: AiprodModel) -> None:
    """Every clip's shape must be one the VAE takes (checked per bucket, before training)."""
    for label, indices in dataset_buckets(dataset).items():
        record = dataset.records[indices[0]]
        try:
            model.vae.validate_video_shape(record.frames, record.height, record.width)
        except VideoShapeError as exc:
            raise TrainingError(
                f"{name}: {len(indices)} clip(s) of bucket {label} ({record.media}, ...) do not "
                f"fit the VAE: {exc}"
            ) from None


def _objective(
    config: TrainConfig, model: AiprodModel, dataset: Any, device: torch.device
) -> Objective:
    if config.mode == "vae":
        return VaeObjective(config.vae.reconstruction, config.vae.kl_weight)
    _check_cache(config, model, dataset)
    if config.mode == "upsampler":
        return UpsamplerObjective()
    null_text = null_mask = None
    if (
        config.training.text_dropout > 0
        and config.training.text_dropout_embedding == "empty_prompt"
    ):
        with torch.no_grad():
            empty = model.text_encoder.encode([""], device=device)
        null_text, null_mask = empty.tokens[0].float(), empty.mask[0]
        length = dataset[0]["text"].shape[0]
        if null_text.shape[0] != length:
            raise TrainingError(
                f"data.cache: its text embeddings have {length} tokens but the model's text "
                f"encoder makes {null_text.shape[0]}; recompute the cache with this model or "
                "set training.text_dropout_embedding to 'zeros'"
            )
    return FlowMatchingObjective(
        FlowMatchSchedule(model.config.diffusion),
        model.config.transformer.patch_size,
        config.training.text_dropout,
        null_text,
        null_mask,
        FrameConditioning(**config.training.conditioning.model_dump()),
    )


def _check_cache(config: TrainConfig, model: AiprodModel, dataset: Any) -> None:
    """The cache must be made for this model: latents of its channels and (dit, lora) text
    embeddings of its text encoder's width."""
    meta_preset = dataset.cache.meta.preset
    if meta_preset != model.config.preset:
        raise TrainingError(
            f"data.cache: {config.training_data} was made for preset {meta_preset!r}; the "
            f"model being trained is {model.config.preset!r}"
        )
    if config.mode == "upsampler":
        channels = dataset.cache.entries[0].latent_shape[0]
        wanted = model.config.upsampler.latent_channels
        if channels != wanted:
            raise TrainingError(
                f"data.cache: {config.training_data} holds {channels}-channel latents; the "
                f"model's upsampler takes {wanted}"
            )
        return
    item = dataset[0]
    channels, text_dim = item["latents"].shape[0], item["text"].shape[-1]
    transformer = model.config.transformer
    if channels != transformer.in_channels or text_dim != transformer.text_dim:
        raise TrainingError(
            f"data.cache: {config.training_data} holds {channels}-channel latents and "
            f"{text_dim}-wide text embeddings; the model takes {transformer.in_channels} and "
            f"{transformer.text_dim}"
        )
