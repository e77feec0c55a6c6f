"""Text encoding: prompts -> token embeddings for the transformer's cross-attention.

``build_text_encoder(config)`` picks the encoder named by ``config.kind``:

- ``"builtin"``: ``BuiltinTextEncoder``, a byte-level transformer (trainable, no download);
- ``"minilm"``: ``MiniLMTextEncoder``, frozen all-MiniLM-L6-v2 from the optional extra
  ``aiprod-core[minilm]``.
"""

from __future__ import annotations

import torch

from aiprod_core.models.configs import TextEncoderConfig
from aiprod_core.text.builtin import BuiltinTextEncoder
from aiprod_core.text.minilm import MINILM_DIM, MiniLMTextEncoder, MissingExtraError
from aiprod_core.text.protocol import TextEmbedding, TextEncoder
from aiprod_core.text.tokenizer import VOCAB_SIZE, ByteTokenizer

__all__ = [
    "MINILM_DIM",
    "VOCAB_SIZE",
    "BuiltinTextEncoder",
    "ByteTokenizer",
    "MiniLMTextEncoder",
    "MissingExtraError",
    "TextEmbedding",
    "TextEncoder",
    "build_text_encoder",
]


def build_text_encoder(
    config: TextEncoderConfig, device: torch.device | str | None = None
) -> BuiltinTextEncoder | MiniLMTextEncoder:
    """The text encoder ``config.kind`` names, on ``device`` (default: torch's default device).

    The built-in encoder is created directly on ``device``, so ``device="meta"`` allocates
    nothing. The MiniLM adapter loads its bundled weights there.
    """
    if config.kind == "minilm":
        return MiniLMTextEncoder(config, device=device)
    if device is None:
        return BuiltinTextEncoder(config)
    with torch.device(device):
        return BuiltinTextEncoder(config)
