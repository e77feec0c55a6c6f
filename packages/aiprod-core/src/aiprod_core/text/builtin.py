"""The built-in text encoder: byte tokens through a small pre-norm transformer.

It needs no download, so it is the default for tests, the demo and training from scratch.
Read top to bottom: ``SelfAttention`` -> ``EncoderLayer`` -> ``BuiltinTextEncoder``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from aiprod_core.models.configs import TextEncoderConfig
from aiprod_core.text.protocol import TextEmbedding
from aiprod_core.text.tokenizer import VOCAB_SIZE, ByteTokenizer

INIT_STD = 0.02


class SelfAttention(nn.Module):
    """Multi-head self-attention through ``scaled_dot_product_attention``.

    ``mask`` is ``[B, L]`` bool (True = real token); padded keys are never attended to.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        qkv = self.qkv(x).view(batch, length, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [B, heads, L, head_dim]
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
        out: torch.Tensor = self.out(attended.transpose(1, 2).reshape(batch, length, dim))
        return out


class EncoderLayer(nn.Module):
    """Pre-norm transformer layer: ``x + attn(norm(x))``, then ``x + mlp(norm(x))``."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, num_heads)
        self.mlp_norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), mask)
        mlp: torch.Tensor = self.mlp(self.mlp_norm(x))
        return x + mlp


class BuiltinTextEncoder(nn.Module):
    """Byte-level transformer text encoder (trainable, no download).

    Token embedding + learned position embedding, ``config.depth`` pre-norm encoder layers
    and a final LayerNorm. Outputs at padded positions are set to zero, and padded
    positions never influence real tokens (they are masked out as attention keys).
    """

    def __init__(self, config: TextEncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.dim = config.dim
        self.max_length = config.max_length
        self.tokenizer = ByteTokenizer(config.max_length)
        self.token_embedding = nn.Embedding(VOCAB_SIZE, config.dim)
        self.position_embedding = nn.Parameter(torch.empty(config.max_length, config.dim))
        self.layers = nn.ModuleList(
            EncoderLayer(config.dim, config.num_heads) for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(config.dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-style initialisation: N(0, 0.02) weights and embeddings, zero biases."""
        nn.init.normal_(self.position_embedding, std=INIT_STD)
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, std=INIT_STD)
            if isinstance(module, nn.Linear | nn.LayerNorm) and module.bias is not None:
                nn.init.zeros_(module.bias)
            if isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Token embeddings ``[B, L, dim]`` of ``ids`` ``[B, L]`` (L <= max_length)."""
        length = ids.shape[1]
        if length > self.max_length:
            raise ValueError(f"got {length} tokens; this encoder takes at most {self.max_length}")
        x = self.token_embedding(ids) + self.position_embedding[:length]
        for layer in self.layers:
            x = layer(x, mask)
        normed: torch.Tensor = self.norm(x)
        return normed * mask[..., None].to(x.dtype)

    def encode(
        self, prompts: Sequence[str], device: torch.device | str | None = None
    ) -> TextEmbedding:
        """Tokenize and run on the module's device and dtype; results go to ``device``.

        Gradients flow when enabled (the encoder is trainable); wrap the call in
        ``torch.no_grad()`` to use it frozen.
        """
        own_device = self.position_embedding.device
        ids, mask = self.tokenizer(prompts)
        ids, mask = ids.to(own_device), mask.to(own_device)
        tokens = self(ids, mask)
        target = own_device if device is None else device
        return TextEmbedding(tokens=tokens.to(target), mask=mask.to(target))
