"""FSDP2 (``distributed.strategy: fsdp``): the trained module sharded over the processes.

:func:`shard` applies ``torch.distributed.fsdp.fully_shard`` to each transformer block and
then to the trained module itself (the VAE and the upsampler, which have no blocks, are
one unit), as torchtitan does: each process keeps ``1 / world_size`` of every parameter,
gradient and AdamW moment, and gathers a block's full parameters only while that block
runs forward or backward. Mixed precision follows FSDP2's ``MixedPrecisionPolicy``:

- parameters are gathered and computed with in ``distributed.param_dtype`` (bfloat16 on
  CUDA by default), while the sharded master copy, the gradients' reduce-scatter, the
  optimizer step and the module's outputs (so the loss) stay float32;
- ``distributed.cpu_offload`` keeps the shards, their gradients and the optimizer state in
  host memory (``CPUOffloadPolicy``), so the device holds only the block that runs;
- LoRA: the frozen base is cast to the parameter dtype before sharding (a 19B base in
  bfloat16 is 38 GB instead of 76 GB in all), the adapters stay float32 masters.

Activation checkpointing (``training.gradient_checkpointing``) is inside each block's
forward, so it composes: a block's parameters are gathered again for its recomputation.

A single process without torchrun may use FSDP too (a world of one, on an in-memory
store), which is how one GPU trains with ``cpu_offload``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import (
    CPUOffloadPolicy,
    FSDPModule,
    MixedPrecisionPolicy,
    OffloadPolicy,
    fully_shard,
)
from torch.distributed.tensor import DTensor

from aiprod_core.models import TransformerConfig
from aiprod_core.transformer import VideoTransformer
from aiprod_trainer.config import DistributedSection, LoraSection
from aiprod_trainer.training.distributed import DistributedContext

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def param_dtype(settings: DistributedSection, device: torch.device) -> torch.dtype:
    """The dtype FSDP gathers parameters in: ``param_dtype``, or for ``auto`` bfloat16 on
    CUDA and float32 elsewhere."""
    if settings.param_dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return DTYPES[settings.param_dtype]


def ensure_process_group(context: DistributedContext) -> None:
    """Join a world of one when no process group exists (FSDP needs one)."""
    if dist.is_initialized():
        return
    backend = "nccl" if context.device.type == "cuda" else "gloo"
    dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)


def shard(
    trained: nn.Module,
    blocks: Iterable[nn.Module],
    settings: DistributedSection,
    context: DistributedContext,
) -> None:
    """Shard ``trained`` in place: each of ``blocks`` is one FSDP unit, the rest one more.

    Call it before the optimizer (and EMA) are built: they must see the sharded parameters.
    """
    ensure_process_group(context)
    dtype = param_dtype(settings, context.device)
    for parameter in trained.parameters():
        if not parameter.requires_grad and parameter.is_floating_point():
            parameter.data = parameter.data.to(dtype)  # a frozen base is stored as computed
    mesh = init_device_mesh(context.device.type, (dist.get_world_size(),))
    compute = None if dtype == torch.float32 else dtype
    # Blocks hand their outputs on in the compute dtype; only the root's output (what the
    # loss reads) is cast back to float32.
    inner = MixedPrecisionPolicy(param_dtype=compute, reduce_dtype=torch.float32)
    outer = MixedPrecisionPolicy(
        param_dtype=compute, reduce_dtype=torch.float32, output_dtype=torch.float32
    )
    offload = (
        CPUOffloadPolicy(pin_memory=context.device.type == "cuda")
        if settings.cpu_offload
        else OffloadPolicy()
    )
    for block in blocks:
        fully_shard(block, mesh=mesh, mp_policy=inner, offload_policy=offload)
    fully_shard(trained, mesh=mesh, mp_policy=outer, offload_policy=offload)


def is_sharded(module: nn.Module) -> bool:
    """Whether ``fully_shard`` was applied to ``module``."""
    return isinstance(module, FSDPModule)


def set_gradient_sync(module: nn.Module, enabled: bool) -> None:
    """Reduce-scatter gradients after this backward (the last micro-batch of a step) or
    keep accumulating them unsharded (the others); a no-op for unsharded modules."""
    if isinstance(module, FSDPModule):
        module.set_requires_gradient_sync(enabled)


def full_tensor(value: torch.Tensor) -> torch.Tensor:
    """A plain tensor of ``value`` (a DTensor, such as a sharded gradient norm, is gathered)."""
    return value.full_tensor() if isinstance(value, DTensor) else value


def full_state_dict(module: nn.Module) -> dict[str, Any]:
    """``module``'s whole state dict on rank 0's CPU (empty on the other ranks).

    Collective: every rank calls it. Parameters come back in their stored (master) dtype.
    """
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(module, options=options)


def unsharded_transformer(
    trained: nn.Module, config: TransformerConfig, lora: LoraSection | None
) -> nn.Module | None:
    """A plain float32 transformer (with ``lora``'s adapters, for a LoRA run) holding the
    sharded ``trained``'s weights, on rank 0; None on the other ranks. Collective."""
    full = full_state_dict(trained)
    if not full:
        return None
    with torch.device("meta"):
        plain: nn.Module = VideoTransformer(config)
    if lora is not None:
        from aiprod_trainer.training.lora import add_lora

        plain = add_lora(plain, lora)
    plain.load_state_dict(full, assign=True)
    return plain.float()
