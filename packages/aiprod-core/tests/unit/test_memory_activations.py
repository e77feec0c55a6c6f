"""The activation formulas agree with what autograd saves and what a forward pass holds."""

from __future__ import annotations

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from aiprod_core.memory.activations import (
    block_bytes_per_text_token,
    block_bytes_per_token,
    inference_peak,
    training_activations,
)
from aiprod_core.models import get_preset
from aiprod_core.models.configs import TransformerConfig
from aiprod_core.transformer.block import TransformerBlock
from aiprod_core.transformer.rope import rope_frequencies

SMALL = get_preset("small").transformer
TINY = get_preset("tiny").transformer
BF16_19B = get_preset("aiprod-19b").transformer


def block_inputs(
    config: TransformerConfig, tokens: int, text: int, dtype: torch.dtype, grad: bool = True
) -> tuple[TransformerBlock, tuple[object, ...]]:
    torch.manual_seed(0)
    block = TransformerBlock(config).to(dtype)
    x = torch.randn(1, tokens, config.hidden_dim, dtype=dtype, requires_grad=grad)
    cond = torch.randn(1, 1, 6, config.hidden_dim, dtype=dtype, requires_grad=grad)
    context = torch.randn(1, text, config.hidden_dim, dtype=dtype, requires_grad=grad)
    mask = torch.ones(1, text, dtype=torch.bool)
    positions = torch.rand(1, tokens, 3)
    rope = rope_frequencies(
        positions, config.head_dim, config.rope_theta, config.rope_max_positions
    )
    return block, (x, cond, rope, context, mask)


def saved_by_block(config: TransformerConfig, tokens: int, text: int, dtype: torch.dtype) -> int:
    """Bytes of the distinct storages one block's forward saves for backward, its
    parameters and its inputs other than ``x`` left out (``x`` is the block's to keep)."""
    block, inputs = block_inputs(config, tokens, text, dtype)
    x, cond, rope, context, _ = inputs
    outside = {t.untyped_storage().data_ptr() for t in (cond, context, *rope)}  # type: ignore[union-attr]
    outside |= {p.untyped_storage().data_ptr() for p in block.parameters()}
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in outside:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        block(*inputs)
    if dtype == torch.float32:  # the block's own float32 input is what adaLN saves
        assert x.untyped_storage().data_ptr() in seen  # type: ignore[union-attr]
    return sum(seen.values())


@pytest.mark.parametrize(
    ("dtype", "per_channel", "per_mlp_channel"),
    [(torch.float32, 96, 16), (torch.bfloat16, 76, 8)],
)
def test_per_token_coefficients(dtype: torch.dtype, per_channel: int, per_mlp_channel: int) -> None:
    size = torch.tensor([], dtype=dtype).element_size()
    small = SMALL.hidden_dim * per_channel + SMALL.mlp_hidden_dim * per_mlp_channel
    assert block_bytes_per_token(SMALL, size) == small + 20 + 20 * SMALL.num_heads


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_block_formula_matches_what_autograd_saves(dtype: torch.dtype) -> None:
    size = torch.tensor([], dtype=dtype).element_size()
    tokens, text = 160, 16
    measured = saved_by_block(SMALL, tokens, text, dtype)
    estimate = tokens * block_bytes_per_token(SMALL, size)
    estimate += text * block_bytes_per_text_token(SMALL, size)
    # What is left over: the per-block modulation and the attention mask, a few kB.
    assert estimate == pytest.approx(measured, rel=0.005)


def test_activations_grow_linearly_with_tokens_and_batch() -> None:
    one = training_activations(TINY, 100, 64, 1, 4)
    assert training_activations(TINY, 200, 64, 1, 4).per_block - one.per_block == (
        100 * block_bytes_per_token(TINY, 4)
    )
    two = training_activations(TINY, 100, 64, 2, 4)
    assert two.per_block == 2 * one.per_block
    assert two.block_input == 2 * one.block_input == 2 * 100 * TINY.hidden_dim * 4


@pytest.mark.parametrize("config", [TINY, SMALL, BF16_19B], ids=["tiny", "small", "19b"])
def test_checkpointing_keeps_less(config: TransformerConfig) -> None:
    acts = training_activations(config, 4096, 128, 1, 2)
    assert acts.saved(True) == config.depth * acts.block_input + acts.outside_blocks
    assert acts.saved(True) < acts.saved(False)
    assert acts.peak(True) < acts.peak(False)
    assert acts.peak(True) == acts.saved(True) + acts.per_block + acts.backward_workspace
    assert acts.block_input * 20 < acts.per_block  # checkpointing keeps a small share


def test_lora_adds_the_adapters_rank_wide_inputs() -> None:
    plain = training_activations(SMALL, 300, 128, 1, 2)
    adapted = training_activations(SMALL, 300, 128, 1, 2, lora_rank=32)
    assert adapted.per_block - plain.per_block == 32 * 2 * (6 * 300 + 128)


def peak_of(run: object) -> int:
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()  # type: ignore[operator]
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]  # type: ignore[union-attr]
    live = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        live += event.nbytes()
        peak = max(peak, live)
    return peak


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_inference_peak_of_a_block_matches_the_profiler(dtype: torch.dtype) -> None:
    size = torch.tensor([], dtype=dtype).element_size()
    tokens = 512
    block, inputs = block_inputs(SMALL, tokens, 16, dtype, grad=False)
    # One intra-op thread: CPU bfloat16 attention kernels allocate scratch per thread (with
    # 2 threads the measured peak is 17 % higher), which the plan of a GPU does not have.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            measured = peak_of(lambda: block(*inputs))
    finally:
        torch.set_num_threads(threads)
    # The block's input is allocated before the measurement; the formula counts it.
    per_token = (4 * SMALL.mlp_hidden_dim + 3 * SMALL.hidden_dim) * size
    assert measured + tokens * SMALL.hidden_dim * size == pytest.approx(
        tokens * per_token, rel=0.02
    )
    whole = inference_peak(SMALL, tokens, 16, 1, size)
    assert whole > tokens * per_token
