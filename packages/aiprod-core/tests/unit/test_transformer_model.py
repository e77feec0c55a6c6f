"""VideoTransformer on the tiny preset: shapes, init, determinism, gradients, masks, bf16."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from aiprod_core.models.configs import TransformerConfig
from aiprod_core.models.presets import TINY
from aiprod_core.transformer import PatchShapeError, VideoTransformer
from aiprod_core.transformer.embeddings import timestep_sinusoids

CONFIG = TINY.transformer
C = CONFIG.in_channels


def build(seed: int = 0, config: TransformerConfig = CONFIG) -> VideoTransformer:
    torch.manual_seed(seed)
    return VideoTransformer(config)


def perturbed(seed: int = 0, config: TransformerConfig = CONFIG) -> VideoTransformer:
    """A model whose zero-initialised parts (final projection, modulation gates, per-block
    and final tables) have been given random weights, as training would."""
    model = build(seed, config)
    with torch.no_grad():
        nn.init.normal_(model.final_proj.weight, std=0.5)
        nn.init.normal_(model.final_proj.bias, std=0.5)
        nn.init.normal_(model.time_modulation.weight, std=0.05)
        nn.init.normal_(model.final_table, std=0.1)
        for block in model.blocks:
            nn.init.normal_(block.scale_shift_table, std=0.1)
    return model


def inputs(
    batch: int = 2, size: tuple[int, int, int] = (3, 6, 10), text_len: int = 7, seed: int = 1
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn(batch, C, *size, generator=generator)
    sigma = torch.rand(batch, generator=generator)
    text = torch.randn(batch, text_len, CONFIG.text_dim, generator=generator)
    mask = torch.ones(batch, text_len, dtype=torch.bool)
    mask[0, text_len // 2 :] = False  # the first sample's prompt is shorter
    return latents, sigma, text, mask


@pytest.mark.parametrize(
    "size", [(1, 4, 4), (3, 6, 10), (5, 10, 6), (1, 6, 4), (3, 4, 10), (5, 4, 4)]
)
def test_output_matches_input_shape_and_dtype(size: tuple[int, int, int]) -> None:
    model = perturbed()
    latents, sigma, text, mask = inputs(size=size)
    out = model(latents, sigma, text, mask)
    assert out.shape == latents.shape
    assert out.dtype == latents.dtype
    assert torch.isfinite(out).all()
    assert out.abs().mean() > 1e-3


def test_untrained_model_predicts_zero_velocity() -> None:
    latents, sigma, text, mask = inputs()
    out = build()(latents, sigma, text, mask)
    assert torch.equal(out, torch.zeros_like(latents))


def test_output_dtype_follows_latents() -> None:
    latents, sigma, text, mask = inputs()
    out = perturbed()(latents.bfloat16(), sigma, text, mask)
    assert out.dtype == torch.bfloat16


def test_rejected_latent_size_names_valid_values() -> None:
    latents, sigma, text, mask = inputs(size=(3, 5, 6))
    with pytest.raises(PatchShapeError, match=r"latent height 5 .* \(nearest valid: 4 or 6\)"):
        build()(latents, sigma, text, mask)


def test_bad_input_shapes_are_named() -> None:
    model = build()
    latents, sigma, text, mask = inputs()
    with pytest.raises(
        ValueError, match=r"latents must be \[B, 8, T, H, W\], got \(2, 4, 3, 6, 10\)"
    ):
        model(latents[:, :4], sigma, text, mask)
    with pytest.raises(ValueError, match=r"sigma must be \[B\] = \[2\] or \[B, N\] = \[2, 45\]"):
        model(latents, sigma[:, None], text, mask)
    with pytest.raises(ValueError, match=r"sigma must be \[B\] = \[2\] or \[B, N\]"):
        model(latents, sigma[:1], text, mask)
    with pytest.raises(ValueError, match=r"text must be \[2, L, 64\], got \(2, 7, 32\)"):
        model(latents, sigma, text[..., :32], mask)
    with pytest.raises(ValueError, match=r"text_mask must be bool \[2, 7\], got torch.int64"):
        model(latents, sigma, text, mask.long())
    with pytest.raises(ValueError, match=r"text_mask must be bool \[2, 7\]"):
        model(latents, sigma, text, mask[:, :3])


def test_every_block_starts_as_the_identity() -> None:
    """adaLN-Zero: the gates of the shared modulation and the per-block tables start at 0."""
    model = build()
    _latents, sigma, text, mask = inputs()
    x = torch.randn(2, 45, CONFIG.hidden_dim)
    cond = model.time_modulation(torch.nn.functional.silu(model.time_embed(sigma[:, None])))
    cond = cond.unflatten(-1, (6, -1))
    rope = (torch.ones(1, 45, CONFIG.head_dim // 2), torch.zeros(1, 45, CONFIG.head_dim // 2))
    context = model.text_proj(text)
    for block in model.blocks:
        torch.testing.assert_close(
            block(x, cond, rope, context, mask),
            x + block.cross_attn(block.cross_norm(x), context, mask),
        )
    assert model.time_modulation.weight[2 * 96 : 3 * 96].abs().max() == 0
    assert model.time_modulation.weight[5 * 96 :].abs().max() == 0
    assert model.time_modulation.weight[: 2 * 96].abs().max() > 0


def test_modulation_is_shared_and_small() -> None:
    model = build()
    assert not any(
        name.endswith("modulation.weight") for name, _ in model.blocks.named_parameters()
    )
    assert [tuple(block.scale_shift_table.shape) for block in model.blocks] == [(6, 96)] * 2


def test_uniform_per_token_sigma_equals_per_sample_sigma() -> None:
    model = perturbed()
    latents, sigma, text, mask = inputs()
    per_token = sigma[:, None].expand(2, 45)
    torch.testing.assert_close(
        model(latents, per_token, text, mask), model(latents, sigma, text, mask)
    )


def test_each_token_is_modulated_by_its_own_sigma() -> None:
    model = perturbed()
    latents, sigma, text, mask = inputs()
    per_token = sigma[:, None].expand(2, 45).clone()
    per_token[:, :15] = 0.0  # the first latent frame is clean
    clean_first = model(latents, per_token, text, mask)
    uniform = model(latents, sigma, text, mask)
    assert (clean_first[:, :, 0] - uniform[:, :, 0]).abs().max() > 1e-3
    # a token's own sigma matters more to it than to the others: compare the changes
    own = (clean_first[:, :, 0] - uniform[:, :, 0]).abs().mean()
    others = (clean_first[:, :, 2] - uniform[:, :, 2]).abs().mean()
    assert own > others


def test_frame_rate_moves_tokens_in_time() -> None:
    model = perturbed()
    latents, sigma, text, mask = inputs()
    at_24 = model(latents, sigma, text, mask, fps=24.0)
    assert torch.equal(at_24, model(latents, sigma, text, mask))  # the default
    assert (model(latents, sigma, text, mask, fps=6.0) - at_24).abs().max() > 1e-4
    one_frame, sigma, text, mask = inputs(size=(1, 6, 10))
    torch.testing.assert_close(  # a single frame sits at time 0 whatever the rate
        model(one_frame, sigma, text, mask, fps=6.0), model(one_frame, sigma, text, mask)
    )


def test_scalar_sigma_applies_to_the_whole_batch() -> None:
    model = perturbed()
    latents, _, text, mask = inputs()
    sigma = torch.tensor(0.3)
    torch.testing.assert_close(
        model(latents, sigma, text, mask), model(latents, sigma.expand(2), text, mask)
    )


def test_sigma_changes_the_prediction() -> None:
    model = perturbed()
    latents, _, text, mask = inputs()
    low = model(latents, torch.full((2,), 0.1), text, mask)
    high = model(latents, torch.full((2,), 0.9), text, mask)
    assert (low - high).abs().max() > 1e-3


def test_same_seed_same_model_and_output() -> None:
    first, second, other = perturbed(seed=3), perturbed(seed=3), perturbed(seed=4)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert not torch.equal(first.blocks[0].attn.qkv.weight, other.blocks[0].attn.qkv.weight)
    batch = inputs(seed=5)
    assert torch.equal(first(*batch), second(*batch))
    assert not torch.equal(first(*batch), other(*batch))


def test_gradients_reach_every_trainable_parameter() -> None:
    model = perturbed()
    latents, sigma, text, mask = inputs()
    model(latents, sigma, text, mask).pow(2).mean().backward()
    params = dict(model.named_parameters())
    assert len(params) > 20
    for name, param in params.items():
        assert param.grad is not None, name
        assert param.grad.abs().max() > 0, name


def test_gradients_reach_the_final_layer_of_an_untrained_model() -> None:
    model = build()
    latents, sigma, text, mask = inputs()
    (model(latents, sigma, text, mask) - latents).pow(2).mean().backward()
    assert model.final_proj.weight.grad.abs().max() > 0
    assert model.final_proj.bias.grad.abs().max() > 0


def test_padded_text_tokens_do_not_change_the_output() -> None:
    model = perturbed()
    latents, sigma, text, mask = inputs()
    changed = text.clone()
    changed[~mask] = torch.randn(int((~mask).sum()), CONFIG.text_dim) * 100
    torch.testing.assert_close(
        model(latents, sigma, changed, mask), model(latents, sigma, text, mask), rtol=0, atol=1e-6
    )
    # A real token does change it.
    changed[0, 0] += 1.0
    assert (
        model(latents, sigma, changed, mask) - model(latents, sigma, text, mask)
    ).abs().max() > 0


def test_no_mask_means_every_token_is_real() -> None:
    model = perturbed()
    latents, sigma, text, mask = inputs()
    torch.testing.assert_close(
        model(latents, sigma, text, None), model(latents, sigma, text, torch.ones_like(mask))
    )


def test_all_padding_prompt_is_finite_and_ignores_the_text() -> None:
    model = perturbed()
    latents, sigma, text, mask = inputs()
    mask[1] = False
    out = model(latents, sigma, text, mask)
    assert torch.isfinite(out).all()
    other_text = text.clone()
    other_text[1] = torch.randn_like(text[1])
    torch.testing.assert_close(model(latents, sigma, other_text, mask)[1], out[1])
    out.pow(2).mean().backward()
    for name, param in model.named_parameters():
        assert torch.isfinite(param.grad).all(), name


def test_gradient_checkpointing_matches() -> None:
    plain, checkpointed = perturbed(), perturbed()
    checkpointed.gradient_checkpointing = True
    latents, sigma, text, mask = inputs()
    out_plain = plain(latents, sigma, text, mask)
    out_checkpointed = checkpointed(latents, sigma, text, mask)
    torch.testing.assert_close(out_checkpointed, out_plain, rtol=0, atol=0)
    out_plain.pow(2).mean().backward()
    out_checkpointed.pow(2).mean().backward()
    for (name, a), b in zip(plain.named_parameters(), checkpointed.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-7, msg=name)
    with torch.no_grad():  # no checkpointing without autograd; same result
        torch.testing.assert_close(checkpointed(latents, sigma, text, mask), out_plain)


def test_bf16_forward_is_close_to_fp32() -> None:
    """bf16 weights and inputs on CPU: max error within 2% of the output's largest value."""
    model = perturbed()
    latents, sigma, text, mask = inputs()
    with torch.no_grad():
        reference = model(latents, sigma, text, mask)
        low = copy.deepcopy(model).to(torch.bfloat16)(
            latents.bfloat16(), sigma, text.bfloat16(), mask
        )
    assert low.dtype == torch.bfloat16
    assert torch.isfinite(low).all()
    error = (low.float() - reference).abs().max() / reference.abs().max()
    assert error < 0.02


def test_without_qk_norm() -> None:
    config = CONFIG.model_copy(update={"qk_norm": False})
    model = perturbed(config=config)
    assert not any("norm" in name for name, _ in model.blocks[0].attn.named_parameters())
    latents, sigma, text, mask = inputs()
    out = model(latents, sigma, text, mask)
    assert out.shape == latents.shape
    assert torch.isfinite(out).all()


def test_timestep_sinusoids() -> None:
    sigma = torch.tensor([0.0, 0.5])
    even = timestep_sinusoids(sigma, 8)
    assert even.shape == (2, 8)
    torch.testing.assert_close(even[0], torch.tensor([1.0] * 4 + [0.0] * 4))
    assert even[1, 0] == pytest.approx(torch.cos(torch.tensor(500.0)).item())
    odd = timestep_sinusoids(sigma, 9)
    assert odd.shape == (2, 9)
    assert torch.equal(odd[:, -1], torch.zeros(2))
    torch.testing.assert_close(odd[:, :8], even)


@pytest.mark.parametrize("absolute", [True, False])
def test_absolute_positions_tell_tokens_of_a_uniform_input_apart(absolute: bool) -> None:
    """RoPE only weighs values by relative position: on an input whose tokens are all equal
    every token's output is the same. Absolute position features make it depend on where
    the token is, which a model drawing from pure noise needs to place anything."""
    config = CONFIG.model_copy(update={"absolute_positions": absolute})
    model = perturbed(config=config)
    latents = torch.ones(1, C, 3, 4, 4)
    _, _, text, mask = inputs(batch=1)
    out = model(latents, torch.ones(1), text, mask)
    tokens, _ = model.patchifier.patchify(out)
    spread = (tokens - tokens[:, :1]).abs().max().item()
    if absolute:
        assert spread > 1e-3
    else:
        assert spread < 1e-5


def test_a_config_saved_before_absolute_positions_existed_reads_as_without() -> None:
    assert CONFIG.absolute_positions  # the tiny preset adds them
    saved = {
        key: value for key, value in CONFIG.model_dump().items() if key != "absolute_positions"
    }
    assert TransformerConfig.model_validate(saved).absolute_positions is False
