"""BuiltinTextEncoder: shapes, masking, determinism, gradients, dtype/device handling."""

from __future__ import annotations

import pytest
import torch

from aiprod_core.models.configs import TextEncoderConfig
from aiprod_core.models.presets import TINY
from aiprod_core.text import BuiltinTextEncoder, TextEncoder
from aiprod_core.text.tokenizer import PAD_ID

CONFIG = TextEncoderConfig(dim=32, max_length=12, depth=2, num_heads=4)


def make(seed: int = 0, config: TextEncoderConfig = CONFIG) -> BuiltinTextEncoder:
    torch.manual_seed(seed)
    return BuiltinTextEncoder(config)


def test_shapes_mask_and_protocol() -> None:
    encoder = make()
    assert isinstance(encoder, TextEncoder)
    assert (encoder.dim, encoder.max_length) == (32, 12)
    embedding = encoder.encode(["a cat", "", "a very long prompt that gets truncated"])
    assert embedding.tokens.shape == (3, 12, 32)
    assert embedding.tokens.dtype == torch.float32
    assert embedding.mask.sum(dim=1).tolist() == [7, 2, 12]
    assert torch.all(embedding.tokens[~embedding.mask] == 0)
    assert torch.all(embedding.tokens[embedding.mask].abs().sum(-1) > 0)


def test_tiny_preset_encoder() -> None:
    embedding = make(config=TINY.text_encoder).encode(["a dog runs on the beach"])
    assert embedding.tokens.shape == (1, TINY.text_encoder.max_length, TINY.transformer.text_dim)


def test_padded_positions_do_not_affect_real_tokens() -> None:
    encoder = make().eval()
    ids, mask = encoder.tokenizer(["short", "a longer prompt"])
    reference = encoder(ids, mask)
    scrambled = ids.clone()
    scrambled[~mask] = torch.randint(0, 256, (int((~mask).sum()),))
    assert not torch.equal(scrambled, ids)
    assert torch.all(ids[~mask] == PAD_ID)
    assert torch.equal(encoder(scrambled, mask)[mask], reference[mask])


def test_batch_composition_does_not_change_a_prompt() -> None:
    encoder = make()
    alone = encoder.encode(["the same prompt"]).tokens[0]
    batched = encoder.encode(["x", "the same prompt", "y" * 30]).tokens[1]
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-6)


def test_deterministic_from_seed() -> None:
    prompts = ["a red fox", "snow"]
    first = make(seed=3).encode(prompts).tokens
    assert torch.equal(make(seed=3).encode(prompts).tokens, first)
    assert not torch.allclose(make(seed=4).encode(prompts).tokens, first)


def test_gradients_reach_every_parameter() -> None:
    encoder = make()
    embedding = encoder.encode(["gradients everywhere", "b"])
    (embedding.tokens * torch.randn_like(embedding.tokens)).sum().backward()
    for name, parameter in encoder.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name


def test_zero_depth_is_embedding_plus_norm() -> None:
    encoder = make(config=TextEncoderConfig(dim=8, max_length=6, depth=0, num_heads=1))
    assert len(encoder.layers) == 0
    embedding = encoder.encode(["ab"])
    ids, mask = encoder.tokenizer(["ab"])
    x = encoder.token_embedding(ids) + encoder.position_embedding
    expected = torch.nn.functional.layer_norm(x, (8,)) * mask[..., None]
    torch.testing.assert_close(embedding.tokens, expected)


def test_runs_in_module_dtype_and_returns_on_requested_device() -> None:
    encoder = make().to(torch.bfloat16)
    embedding = encoder.encode(["bf16 please"], device="cpu")
    assert embedding.tokens.dtype == torch.bfloat16
    assert embedding.tokens.device.type == "cpu"
    assert embedding.mask.device.type == "cpu"
    reference = make().encode(["bf16 please"]).tokens
    torch.testing.assert_close(embedding.tokens.float(), reference, atol=0.1, rtol=0.05)


def test_rejects_too_many_tokens() -> None:
    encoder = make()
    ids = torch.zeros(1, 13, dtype=torch.long)
    with pytest.raises(ValueError, match="got 13 tokens; this encoder takes at most 12"):
        encoder(ids, torch.ones(1, 13, dtype=torch.bool))


@pytest.mark.gpu
def test_cuda_bf16_matches_float32() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    encoder = make(config=TextEncoderConfig(dim=128, max_length=64, depth=2, num_heads=2))
    prompts = ["a cat on the moon", "", "x" * 100]
    reference = encoder.encode(prompts)
    embedding = encoder.to("cuda", torch.bfloat16).encode(prompts)
    assert embedding.tokens.device.type == "cuda"
    assert embedding.tokens.dtype == torch.bfloat16
    assert torch.equal(embedding.mask.cpu(), reference.mask)
    torch.testing.assert_close(
        embedding.tokens.float().cpu(), reference.tokens, atol=0.1, rtol=0.05
    )
