"""Analytic matmul FLOPs of a VideoTransformer forward pass (for model-FLOPs utilisation).

A matrix product of ``[n, k] @ [k, m]`` counts ``2 * n * k * m`` FLOPs. Only matrix
products are counted (linear layers and the two products inside attention); norms, RoPE,
activations and softmax are left out, as is usual for MFU. A training step (forward and
backward) is about ``3 *`` the forward figure; add one more forward with gradient
checkpointing if you count recomputation (MFU conventionally does not). The timestep
embedding and modulation are counted once per sample (a sigma per sample); with a sigma per
token they run per token, which adds ``2 * (timestep_dim + 7 * D) * D`` per token, under 1 %
of a block's work at every preset.
"""

from __future__ import annotations

import math

from aiprod_core.models.configs import TransformerConfig

Grid = tuple[int, int, int]


def _sample_flops(config: TransformerConfig, num_tokens: int, text_tokens: int) -> int:
    """Forward FLOPs for one sample of ``num_tokens`` video tokens and ``text_tokens`` text."""
    d, m, n, s = config.hidden_dim, config.mlp_hidden_dim, num_tokens, text_tokens
    patch_dim = config.in_channels * math.prod(config.patch_size)

    per_block = (
        2 * n * d * 3 * d  # self-attention q, k, v
        + 2 * n * n * d * 2  # scores q @ k^T and weights @ v
        + 2 * n * d * d  # self-attention output
        + 2 * n * d * d  # cross-attention queries
        + 2 * s * d * 2 * d  # cross-attention keys and values of the text tokens
        + 2 * n * s * d * 2  # cross-attention scores and weights @ v
        + 2 * n * d * d  # cross-attention output
        + 2 * n * d * 2 * m  # MLP gate and up
        + 2 * n * m * d  # MLP down
    )
    embeddings = (
        2 * n * patch_dim * d  # patch embedding
        + 2 * (config.timestep_dim * d + d * d)  # timestep MLP (once per sample)
        + 2 * d * 6 * d  # adaLN-single modulation, shared by all blocks (once per sample)
        + 2 * s * (config.text_dim * d + d * d)  # text projection
    )
    final = 2 * n * d * patch_dim  # final projection
    return config.depth * per_block + embeddings + final


def transformer_flops_per_token(
    config: TransformerConfig, num_tokens: int, text_tokens: int
) -> float:
    """Forward matmul FLOPs per video token, for samples of ``num_tokens`` video tokens."""
    return _sample_flops(config, num_tokens, text_tokens) / num_tokens


def forward_flops(config: TransformerConfig, batch: int, grid: Grid, text_len: int) -> int:
    """Forward matmul FLOPs of a batch on the token ``grid`` ``(T', H', W')``.

    ``grid`` is the token grid that ``Patchifier3D.patchify`` returns (latent size divided
    by the patch), not the latent size.
    """
    return batch * _sample_flops(config, math.prod(grid), text_len)
