"""The verdict and the search for the smallest setting that fits."""

from __future__ import annotations

import pytest

from aiprod_core.memory import GIB, MemoryPlanError, PlanSettings, candidates, plan_memory, verdict
from aiprod_core.models import get_preset

BIG = get_preset("aiprod-19b")
CLIP = {"frames": 121, "height": 768, "width": 1280}


def test_the_smallest_setting_is_searched_in_order() -> None:
    settings = PlanSettings("train", **CLIP)
    result = verdict(BIG, settings, 80 * GIB, host_bytes=64 * GIB)  # no room for offloading
    assert result.smallest is not None
    smallest = result.smallest.settings
    assert (smallest.strategy, smallest.activation_checkpointing) == ("fsdp", True)
    assert not smallest.cpu_offload
    assert result.smallest.fits(80 * GIB)
    fewer = plan_memory(BIG, smallest.with_changes(gpus=smallest.gpus // 2))
    assert not fewer.fits(80 * GIB)  # the search found the fewest GPUs
    order = [
        (c.gpus, c.strategy, c.activation_checkpointing, c.cpu_offload)
        for c in candidates(settings)
    ]
    assert order[:6] == [
        (1, "ddp", False, False),
        (1, "fsdp", False, False),
        (1, "ddp", True, False),
        (1, "fsdp", True, False),
        (1, "fsdp", False, True),
        (1, "fsdp", True, True),
    ]
    assert order[-1][0] == 64


def test_asked_options_stay_on_in_every_candidate() -> None:
    settings = PlanSettings("train", strategy="fsdp", activation_checkpointing=True, **CLIP)
    found = list(candidates(settings))
    assert all(c.strategy == "fsdp" and c.activation_checkpointing for c in found)
    assert [c.gpus for c in found[:2]] == [1, 1]  # without, then with offload
    assert [c.cpu_offload for c in found[:2]] == [False, True]


def test_generation_tries_tiles_then_blends_and_offloads_the_text_encoder() -> None:
    found = [
        (c.tiled_decode, c.tile_mode, c.text_encoder_offload)
        for c in candidates(PlanSettings("generate", **CLIP))
    ]
    assert found == [
        (False, "exact", False),
        (False, "exact", True),
        (True, "exact", False),
        (True, "exact", True),
        (True, "blended", False),
        (True, "blended", True),
    ]
    blended = PlanSettings("generate", tiled_decode=True, tile_mode="blended", device="cpu")
    assert [(c.tile_mode, c.text_encoder_offload) for c in candidates(blended)] == [
        ("blended", False)
    ]


def test_a_fitting_setting_names_a_smaller_one() -> None:
    settings = PlanSettings("lora", gpus=8, strategy="fsdp", activation_checkpointing=True, **CLIP)
    result = verdict(BIG, settings, 80 * GIB)
    assert result.fits
    assert result.smallest is not None
    assert result.smallest.settings.gpus == 1
    assert result.summary().endswith(
        f"smallest setting that fits: lora, fsdp, 1 GPU, activation checkpointing, LoRA rank 32, "
        f"bfloat16 ({result.smallest.peak_bytes / GIB:.1f} GiB per rank)"
    )


def test_when_nothing_fits_the_least_is_named() -> None:
    result = verdict(BIG, PlanSettings("generate", **CLIP), 32 * GIB)
    assert not result.fits
    assert result.smallest is None
    assert result.least is not None
    least = result.least.settings
    assert (least.tiled_decode, least.tile_mode, least.text_encoder_offload) == (
        True,
        "blended",
        True,
    )
    assert result.least.peak_bytes > 32 * GIB
    assert "no setting fits: the least any needs is generate, 1 GPU, tiled VAE decode" in (
        result.summary()
    )
    weights = plan_memory(BIG, least).line("weights")
    assert result.least.peak_bytes > weights  # bfloat16 weights alone: 37.6 GiB


def test_offloading_the_text_encoder_needs_a_gpu() -> None:
    with pytest.raises(MemoryPlanError, match=r"text_encoder_offload=True: .* device='cuda'"):
        PlanSettings("generate", device="cpu", text_encoder_offload=True)
