"""TextEmbedding validation and build_text_encoder's choice of encoder."""

from __future__ import annotations

import pytest
import torch

from aiprod_core.models.configs import TextEncoderConfig
from aiprod_core.text import BuiltinTextEncoder, TextEmbedding, TextEncoder, build_text_encoder


def test_embedding_properties_and_to() -> None:
    embedding = TextEmbedding(tokens=torch.ones(2, 5, 3), mask=torch.ones(2, 5, dtype=torch.bool))
    assert (embedding.batch_size, embedding.length, embedding.dim) == (2, 5, 3)
    half = embedding.to(dtype=torch.float16)
    assert half.tokens.dtype == torch.float16
    assert half.mask.dtype == torch.bool
    with pytest.raises(AttributeError):
        embedding.tokens = torch.zeros(1)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("tokens", "mask", "message"),
    [
        (torch.ones(2, 5), torch.ones(2, 5, dtype=torch.bool), "tokens must be a float"),
        (torch.ones(2, 5, 3, dtype=torch.long), torch.ones(2, 5, dtype=torch.bool), "float"),
        (torch.ones(2, 5, 3), torch.ones(2, 5), "mask must be a bool"),
        (torch.ones(2, 5, 3), torch.ones(2, 4, dtype=torch.bool), r"\[B, L\] = \(2, 5\)"),
    ],
)
def test_embedding_rejects_bad_shapes(
    tokens: torch.Tensor, mask: torch.Tensor, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        TextEmbedding(tokens=tokens, mask=mask)


def test_build_builtin_by_default_and_on_meta() -> None:
    config = TextEncoderConfig(dim=16, max_length=8, depth=1, num_heads=2)
    encoder = build_text_encoder(config)
    assert isinstance(encoder, BuiltinTextEncoder)
    assert isinstance(encoder, TextEncoder)
    assert encoder.position_embedding.device.type == "cpu"
    on_meta = build_text_encoder(config, device="meta")
    assert on_meta.position_embedding.is_meta
    assert all(p.is_meta for p in on_meta.parameters())
