"""Activation memory of the video transformer: what a training step keeps for backward, and
the transient peak of an inference forward.

The counts follow :mod:`aiprod_core.transformer` operation by operation (``a`` is the
compute dtype's element size; norms work in float32, as :mod:`~aiprod_core.transformer.norms`
does). Per video token, one block keeps for its backward pass:

- each adaLN (two per block) its float32 input (a float32 copy when ``a < 4``), the
  float32 normalised values and its output in ``a``: ``8 + a`` bytes per channel;
- self-attention the fused qkv output (``3a``), for queries and keys each the float32
  copy (``a < 4`` only), the normalised float32 values and the rotated ones in ``a``,
  then the attention output, its merged-heads copy and the projected output: ``3a``;
- cross-attention its RMSNorm (``8 + a``), the query projection (4 bytes: the float32
  view or copy), its normalised float32 and ``a`` values and the attention output;
- the gated MLP its ``2M``-wide ``gate_up`` output, the SiLU and the product (``4 M a``)
  and the output the gate multiplies (``a``);
- small per-token statistics: five norm means/rstds and, per head, three RMS factors and
  two attention log-sum-exps (``20 + 20 H`` bytes); and per text token the keys and values.

That gives ``96 D + 16 M`` bytes per token and block in float32 and ``76 D + 8 M`` in
bfloat16 (plus the small terms), which ``tests/unit/test_memory_activations.py`` checks
against the tensors autograd actually saves. Attention is assumed to run in a fused kernel
(flash or memory-efficient, as ``scaled_dot_product_attention`` picks on CUDA and the
CPU's flash kernel): no ``N x N`` score matrix is kept. The math fallback would add
``batch x heads x N^2 x a`` bytes per block.

Activation checkpointing keeps each block's input (``D a`` per token) and recomputes one
block at a time in the backward pass, so it keeps ``depth x D a + one block``. While a
block's backward runs, the gradients of its widest intermediates add a workspace of about
``(M + 2 D) a`` per token (measured ``(M + 1.7 D) a`` on the CPU).

An inference forward (no autograd) holds, at its peak in a block's MLP, the block input,
the residual stream, the adaLN output and the ``gate_up``, SiLU and product tensors:
``(4 M + 3 D) a`` per token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from aiprod_core.models.configs import TransformerConfig

FLOAT32 = 4


@dataclass(frozen=True)
class TrainingActivations:
    """Bytes a training step of a batch keeps for backward (see the module docs)."""

    per_block: int
    """Everything one block keeps for its backward pass."""
    block_input: int
    """What activation checkpointing keeps of a block: its input."""
    outside_blocks: int
    """Patch tokens, RoPE tables, the text projection, the final layer and the loss."""
    backward_workspace: int
    """Gradients of one block's intermediates while that block's backward runs."""
    depth: int

    def saved(self, checkpointing: bool) -> int:
        """Bytes kept at the end of the forward pass."""
        per_block = self.block_input if checkpointing else self.per_block
        return self.depth * per_block + self.outside_blocks

    def backward_block(self, checkpointing: bool) -> int:
        """Bytes one block needs beyond what is saved while its backward runs: with
        checkpointing its recomputed activations, then the workspace either way."""
        return (self.per_block if checkpointing else 0) + self.backward_workspace

    def peak(self, checkpointing: bool) -> int:
        """Activation bytes at the start of the backward pass, its largest point."""
        return self.saved(checkpointing) + self.backward_block(checkpointing)


def patch_dim(config: TransformerConfig) -> int:
    """Channels of one token before the patch embedding."""
    return config.in_channels * math.prod(config.patch_size)


def block_bytes_per_token(config: TransformerConfig, dtype_bytes: int) -> int:
    """Bytes one block keeps for backward per video token (module docs)."""
    a, d, m, heads = dtype_bytes, config.hidden_dim, config.mlp_hidden_dim, config.num_heads
    copy = 0 if a >= FLOAT32 else FLOAT32  # .float() copies only when the input is not fp32
    ada_ln = FLOAT32 + FLOAT32 + a
    self_attention = 3 * a + 2 * (copy + FLOAT32 + a) + 3 * a
    cross_attention = (FLOAT32 + FLOAT32 + a) + (FLOAT32 + FLOAT32 + a + a)
    per_channel = 2 * ada_ln + self_attention + cross_attention + a
    statistics = 5 * FLOAT32 + 5 * FLOAT32 * heads
    return per_channel * d + 4 * m * a + statistics


def block_bytes_per_text_token(config: TransformerConfig, dtype_bytes: int) -> int:
    """Bytes one block keeps per text token: cross-attention keys and values."""
    a = dtype_bytes
    copy = 0 if a >= FLOAT32 else FLOAT32
    return config.hidden_dim * (2 * a + copy + FLOAT32 + a)


def lora_bytes_per_block(
    config: TransformerConfig, tokens: int, text_tokens: int, rank: int, dtype_bytes: int
) -> int:
    """What LoRA adds per block and sample: each adapter keeps its ``rank``-wide
    down-projection for the up-projection's gradient (six layers see the video tokens,
    ``cross_attn.kv`` the text)."""
    return rank * dtype_bytes * (6 * tokens + text_tokens)


def training_activations(
    config: TransformerConfig,
    tokens: int,
    text_tokens: int,
    batch: int,
    dtype_bytes: int,
    lora_rank: int | None = None,
) -> TrainingActivations:
    """Activation bytes of a training step of ``batch`` samples of ``tokens`` video tokens
    and ``text_tokens`` text tokens, computing in ``dtype_bytes``-byte floats."""
    a, d, m = dtype_bytes, config.hidden_dim, config.mlp_hidden_dim
    per_block = tokens * block_bytes_per_token(config, a)
    per_block += text_tokens * block_bytes_per_text_token(config, a)
    if lora_rank is not None:
        per_block += lora_bytes_per_block(config, tokens, text_tokens, lora_rank, a)
    p = patch_dim(config)
    outside = tokens * (
        p * (FLOAT32 + a)  # patch tokens and their cast
        + d * (2 * FLOAT32 + a)  # the final adaLN
        + p * (a + 3 * FLOAT32)  # the final projection, its float32 cast and the loss
    ) + text_tokens * (config.text_dim * a + d * (2 * a + FLOAT32))
    rope = 2 * tokens * (config.head_dim // 2) * FLOAT32  # cos and sin, shared by the batch
    return TrainingActivations(
        per_block=batch * per_block,
        block_input=batch * tokens * d * a,
        outside_blocks=batch * outside + rope,
        backward_workspace=batch * tokens * (m + 2 * d) * a,
        depth=config.depth,
    )


def inference_peak(
    config: TransformerConfig, tokens: int, text_tokens: int, batch: int, dtype_bytes: int
) -> int:
    """Transient bytes at the peak of an inference forward of ``batch`` samples (with
    classifier-free guidance the transformer sees twice the requested batch)."""
    a, d, m = dtype_bytes, config.hidden_dim, config.mlp_hidden_dim
    block = tokens * (4 * m + 3 * d) * a
    p = patch_dim(config)
    outside = tokens * p * (2 * FLOAT32 + 2 * a) + text_tokens * d * (2 * a + FLOAT32)
    rope = 2 * tokens * (config.head_dim // 2) * FLOAT32
    return batch * (block + outside) + rope
