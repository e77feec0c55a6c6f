"""What every text encoder returns, and the protocol the pipelines and trainer code against."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch


@dataclass(frozen=True)
class TextEmbedding:
    """Token embeddings of a batch of prompts.

    ``tokens`` is ``[B, L, dim]`` floating point; ``mask`` is ``[B, L]`` bool, True where a
    position holds a real token and False where it is padding. Padded positions of
    ``tokens`` are zero, so a consumer that forgets the mask is at least not fed noise.
    """

    tokens: torch.Tensor
    mask: torch.Tensor

    def __post_init__(self) -> None:
        if self.tokens.ndim != 3 or not self.tokens.is_floating_point():
            raise ValueError(
                f"TextEmbedding.tokens must be a float [B, L, dim] tensor, got "
                f"{self.tokens.dtype} of shape {tuple(self.tokens.shape)}"
            )
        if self.mask.dtype != torch.bool or tuple(self.mask.shape) != tuple(self.tokens.shape[:2]):
            raise ValueError(
                f"TextEmbedding.mask must be a bool [B, L] = {tuple(self.tokens.shape[:2])} "
                f"tensor, got {self.mask.dtype} of shape {tuple(self.mask.shape)}"
            )

    @property
    def batch_size(self) -> int:
        return self.tokens.shape[0]

    @property
    def length(self) -> int:
        return self.tokens.shape[1]

    @property
    def dim(self) -> int:
        return self.tokens.shape[2]

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> TextEmbedding:
        """A copy with ``tokens`` moved/cast and ``mask`` moved (it stays bool)."""
        return TextEmbedding(
            tokens=self.tokens.to(device=device, dtype=dtype),
            mask=self.mask.to(device=device),
        )


@runtime_checkable
class TextEncoder(Protocol):
    """Turns prompts into token embeddings for the transformer's cross-attention.

    ``dim`` is the width of the embeddings (the transformer's ``text_dim``) and
    ``max_length`` the number of positions ``L`` every returned embedding has (prompts are
    truncated to it, shorter ones padded). ``encode`` returns its tensors on ``device``, or
    on the encoder's own device when ``device`` is None.
    """

    dim: int
    max_length: int

    def encode(
        self, prompts: Sequence[str], device: torch.device | str | None = None
    ) -> TextEmbedding: ...


def check_prompts(prompts: Sequence[str]) -> list[str]:
    """``prompts`` as a list; a bare string (a common slip) is refused rather than split."""
    if isinstance(prompts, str):
        raise TypeError("prompts must be a sequence of strings, e.g. [prompt], not one string")
    prompts = list(prompts)
    for index, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise TypeError(f"prompts[{index}] must be a str, got {type(prompt).__name__}")
    return prompts
