"""The lines of a training plan (modes ``train`` and ``lora``).

Training (``train``: the transformer fully fine-tuned; ``lora``: adapters on a frozen
base) keeps, per rank: the transformer's weights, gradients and AdamW's two moments, the
other components (VAE, text encoder, upsampler: the trainer holds the whole bundle on its
device, frozen, in float32), working copies, and the activations. Full training keeps
float32 master weights, float32 gradients and float32 moments (16 bytes a parameter); a
LoRA run trains float32 adapters on a frozen base that FSDP stores in the compute dtype
(``ddp`` keeps it in float32, as loaded).

- ``ddp`` replicates everything. Computing in bfloat16 (autocast) adds a bfloat16 copy of
  every transformer weight, kept for the backward pass; with more than one GPU DDP's buckets
  hold a second copy of the gradients (torch's default ``gradient_as_bucket_view=False``).
- ``fsdp`` (FSDP2 ``fully_shard`` per transformer block and once at the root) divides the
  weights, gradients and moments by the world size. It assumes the
  ``MixedPrecisionPolicy(param_dtype=<compute dtype>, reduce_dtype=float32)`` the trainer
  uses: shards stay float32 (the master copy), the gathered parameters of the block that
  runs and of the one prefetched are in the compute dtype, and a block's unsharded gradient
  exists in the compute dtype and in float32 while it is reduce-scattered. ``cpu_offload``
  (``CPUOffloadPolicy``) moves the shards, their gradients and the moments to host memory
  (:attr:`MemoryPlan.host_bytes`) and runs the optimizer step there.

The forward pass ends with every saved activation (and, under ``ddp``, autocast's copies).
The backward pass frees each block's activations as it makes that block's gradients, so
its peak is the larger of "all activations + one block's gradients" and "all gradients +
one block's activations", plus the workspace of the block being differentiated (and, with
checkpointing, its recomputed activations). The optimizer step comes after: gradients,
moments and, on CUDA, the 4-byte-per-parameter temporary of ``torch.optim.AdamW``'s default
multi-tensor (foreach) implementation. The peak of a step is the largest of the three.
Gradient accumulation (gradients alive during the next micro-batch's forward) is not
modelled.
"""

from __future__ import annotations

from aiprod_core.memory.activations import training_activations
from aiprod_core.memory.lines import Breakdown, MemoryLine
from aiprod_core.memory.parameters import ModelParameters
from aiprod_core.memory.settings import PlanSettings
from aiprod_core.models.configs import ModelConfig

FLOAT32 = 4
ADAM_MOMENTS = 2


def training_breakdown(
    config: ModelConfig, settings: PlanSettings, params: ModelParameters, tokens: int
) -> Breakdown:
    """Lines and phases of a training step of ``tokens`` video tokens per sample."""
    a = settings.compute_bytes
    t = params.transformer
    shards = settings.gpus if settings.sharded else 1
    lora = settings.mode == "lora"
    trainable = t.lora_parameters(settings.lora_rank) if lora else t.total
    # FSDP stores a frozen LoRA base in the compute dtype; otherwise weights stay float32.
    base_bytes = a if lora and settings.strategy == "fsdp" else FLOAT32
    weights = -(-t.total * base_bytes // shards) + (
        -(-trainable * FLOAT32 // shards) if lora else 0
    )
    grads = -(-trainable * FLOAT32 // shards)
    moments = -(-trainable * FLOAT32 * ADAM_MOMENTS // shards)
    host = 0
    if settings.cpu_offload:
        host, weights, grads, moments = weights + grads + moments, 0, 0, 0
    others = (params.vae + params.upsampler + params.text_encoder) * FLOAT32
    buckets = grads if settings.strategy == "ddp" and settings.gpus > 1 else 0
    if settings.strategy == "fsdp":
        gathered = (2 * t.per_block + t.outside_blocks) * a
        block_trainable = trainable * t.per_block // t.total if not lora else trainable // t.depth
        unsharded_grads = block_trainable * (a + (FLOAT32 if a < FLOAT32 else 0))
        working = forward_copies = backward_copies = gathered + unsharded_grads
        working_label = (
            "gathered blocks (FSDP all-gather, current + prefetched) and a block's gradients"
        )
    else:
        forward_copies, backward_copies = _autocast_copies(
            settings, t.total, t.per_block, trainable
        )
        working = max(forward_copies, backward_copies)
        working_label = f"{settings.compute_dtype} copies of the weights (autocast)"
    text_tokens = config.text_encoder.max_length
    rank = settings.lora_rank if lora else None
    acts = training_activations(config.transformer, tokens, text_tokens, settings.batch, a, rank)
    ckpt = settings.activation_checkpointing
    block_grads = grads // t.depth
    one_block = acts.block_input if ckpt else acts.per_block
    backward = max(acts.saved(ckpt) + block_grads, grads + one_block) + acts.backward_block(ckpt)
    step_temp = -(-trainable * FLOAT32 // shards) if settings.device == "cuda" else 0
    if settings.cpu_offload:
        step_temp = 0
    static = weights + others + moments + buckets
    phases = {
        "forward": static + forward_copies + acts.saved(ckpt),
        "backward": static + backward_copies + backward,
        "optimizer step": static + grads + step_temp,
    }
    sharding = f", 1/{shards} shard" if shards > 1 else ""
    where = " (on the host)" if settings.cpu_offload else ""
    if lora:
        stored = settings.compute_dtype if base_bytes < FLOAT32 else "float32"
        base = f"{stored} frozen base + float32 adapters"
    else:
        base = "float32 master weights"
    lines = [
        MemoryLine("weights", f"weights: transformer, {base}{sharding}{where}", weights),
        MemoryLine(
            "other_components", "weights: VAE, text encoder, upsampler (frozen, float32)", others
        ),
        MemoryLine("gradients", f"gradients (float32{sharding}){where}", grads),
        MemoryLine("gradient_buckets", "DDP gradient buckets", buckets),
        MemoryLine("optimizer", f"AdamW moments (float32{sharding}){where}", moments),
        MemoryLine("working_copies", working_label, working),
        MemoryLine("activations", "activations (no checkpointing)", acts.saved(False), not ckpt),
        MemoryLine(
            "activations_checkpointed",
            "activations (activation checkpointing: block inputs + one block)",
            acts.saved(True) + acts.per_block,
            ckpt,
        ),
        MemoryLine(
            "backward_workspace", "backward workspace of one block", acts.backward_workspace
        ),
        MemoryLine("optimizer_step", "optimizer step temporaries (foreach AdamW)", step_temp),
        MemoryLine("vae_decode", "VAE decode peak (none in a training step)", 0),
    ]
    return Breakdown(lines, phases, host)


def _autocast_copies(
    settings: PlanSettings, total: int, per_block: int, trainable: int
) -> tuple[int, int]:
    """Bytes of autocast's low-precision weight copies under ``ddp`` (forward, backward).

    Autocast caches its cast of every weight that requires grad until the forward pass
    leaves autocast; a frozen weight's cast lives only as long as something saves it.
    Without checkpointing the backward pass needs every cast; with it, each block's are
    made again as the block is recomputed.
    """
    a = settings.compute_bytes
    if a >= FLOAT32:
        return 0, 0
    lora = settings.mode == "lora"
    if not settings.activation_checkpointing:
        copies = (total + trainable if lora else total) * a
        return copies, copies
    forward = trainable * a if lora else total * a
    return forward, per_block * a + (trainable * a if lora else 0)
