"""Per-rank memory plans: exact parameter bytes, sharding, checkpointing, the verdicts."""

from __future__ import annotations

import json

import pytest
import torch

from aiprod_core.errors import AiprodError
from aiprod_core.memory import (
    GIB,
    MemoryPlanError,
    PlanSettings,
    model_parameters,
    plan_memory,
    verdict,
)
from aiprod_core.models import build_model, get_preset

TINY = get_preset("tiny")
SMALL = get_preset("small")
BIG = get_preset("aiprod-19b")
CLIP = {"frames": 121, "height": 768, "width": 1280}


@pytest.mark.parametrize("preset", ["tiny", "small", "aiprod-19b"])
def test_parameter_counts_equal_the_built_model(preset: str) -> None:
    config = get_preset(preset)
    counts = build_model(config, device="meta").parameter_counts()
    params = model_parameters(config)
    assert params.by_component() == {k: v for k, v in counts.items() if k != "total"}
    assert params.total == counts["total"]
    transformer = params.transformer
    assert (
        transformer.per_block * transformer.depth + transformer.outside_blocks
        == counts["transformer"]
    )


def test_the_19b_transformer_count() -> None:
    assert model_parameters(BIG).transformer.total == 19_222_059_648


def test_lora_adapters_count_rank_times_in_plus_out() -> None:
    # tiny: D 96, MLP 256: qkv 96+288, out 96+96, q 96+96, kv 96+192, out 96+96,
    # gate_up 96+512, down 256+96 = 2208 per block and unit of rank, 2 blocks.
    assert model_parameters(TINY).transformer.lora_parameters(8) == 8 * 2208 * 2


@pytest.mark.parametrize(("dtype", "size"), [("float32", 4), ("bfloat16", 2)])
def test_weight_bytes_are_the_exact_count_times_the_dtype(dtype: str, size: int) -> None:
    params = model_parameters(SMALL)
    plan = plan_memory(SMALL, PlanSettings("generate", dtype=dtype))
    assert plan.line("weights") == size * (params.transformer.total + params.vae + params.upsampler)
    assert plan.line("text_encoder") == size * params.text_encoder


def test_full_training_keeps_sixteen_bytes_per_transformer_parameter() -> None:
    total = model_parameters(BIG).transformer.total
    plan = plan_memory(BIG, PlanSettings("train"))
    assert plan.line("weights") == 4 * total
    assert plan.line("gradients") == 4 * total
    assert plan.line("optimizer") == 8 * total
    assert plan.line("working_copies") == 2 * total  # bfloat16 autocast copies
    assert plan.line("gradient_buckets") == 0  # one GPU: no DDP
    ddp = plan_memory(BIG, PlanSettings("train", gpus=8))
    assert ddp.line("gradient_buckets") == 4 * total
    assert ddp.line("weights") == plan.line("weights")  # DDP replicates


@pytest.mark.parametrize("gpus", [2, 8, 64])
def test_fsdp_divides_weights_gradients_and_moments_by_the_world_size(gpus: int) -> None:
    one = plan_memory(BIG, PlanSettings("train", strategy="fsdp"))
    many = plan_memory(BIG, PlanSettings("train", strategy="fsdp", gpus=gpus))
    for key in ("weights", "gradients", "optimizer"):
        assert many.line(key) == -(-one.line(key) // gpus)
    assert many.line("activations") == one.line("activations")
    assert many.line("other_components") == one.line("other_components")
    assert many.peak_bytes < one.peak_bytes


def test_cpu_offload_moves_the_shards_to_the_host() -> None:
    settings = PlanSettings("train", strategy="fsdp", gpus=8, **CLIP)
    plan = plan_memory(BIG, settings)
    offloaded = plan_memory(BIG, settings.with_changes(cpu_offload=True))
    shards = sum(plan.line(key) for key in ("weights", "gradients", "optimizer"))
    assert offloaded.host_bytes == shards
    assert offloaded.line("weights") == offloaded.line("optimizer") == 0
    assert offloaded.peak_bytes < plan.peak_bytes
    assert plan.host_bytes == 0


def test_lora_adapters_train_on_a_frozen_base() -> None:
    params = model_parameters(BIG).transformer
    adapters = params.lora_parameters(32)
    ddp = plan_memory(BIG, PlanSettings("lora", lora_rank=32))
    assert ddp.line("weights") == 4 * params.total + 4 * adapters  # float32, as loaded
    assert ddp.line("working_copies") == 2 * (params.total + adapters)  # autocast's casts
    assert ddp.line("gradients") == 4 * adapters
    assert ddp.line("optimizer") == 8 * adapters
    fsdp = plan_memory(BIG, PlanSettings("lora", lora_rank=32, strategy="fsdp", gpus=8))
    assert fsdp.line("weights") == -(-params.total * 2 // 8) + -(-adapters * 4 // 8)
    other = model_parameters(BIG)
    assert fsdp.line("other_components") == 4 * (other.vae + other.upsampler + other.text_encoder)


def test_checkpointing_lowers_the_peak() -> None:
    for mode in ("train", "lora"):
        settings = PlanSettings(mode, strategy="fsdp", gpus=8, **CLIP)  # type: ignore[arg-type]
        plain = plan_memory(BIG, settings)
        checkpointed = plan_memory(BIG, settings.with_changes(activation_checkpointing=True))
        assert checkpointed.peak_bytes < plain.peak_bytes
        assert plain.line("activations_checkpointed") < plain.line("activations") / 10
        used = {line.key for line in checkpointed.lines if not line.in_total}
        assert "activations" in used  # shown for comparison only


def test_peak_grows_with_the_clip_and_the_batch() -> None:
    peaks = [
        plan_memory(SMALL, PlanSettings("train", device="cpu", frames=f)).peak_bytes
        for f in (9, 17, 33, 65)
    ]
    assert peaks == sorted(peaks)
    assert len(set(peaks)) == 4
    one = plan_memory(SMALL, PlanSettings("train", frames=33, batch=1))
    two = plan_memory(SMALL, PlanSettings("train", frames=33, batch=2))
    assert two.line("activations") > one.line("activations")


def test_more_gpus_never_need_more_memory_under_fsdp() -> None:
    peaks = [
        plan_memory(BIG, PlanSettings("train", strategy="fsdp", gpus=2**k, **CLIP)).peak_bytes
        for k in range(7)
    ]
    assert peaks == sorted(peaks, reverse=True)


def test_19b_training_does_not_fit_one_80_gib_gpu_with_ddp() -> None:
    result = verdict(BIG, PlanSettings("train", **CLIP), 80 * GIB)
    assert not result.fits
    assert result.plan.peak_bytes > 300 * GIB  # weights, gradients and moments alone: 286 GiB
    assert result.summary().startswith("does not fit: train, ddp, 1 GPU")


def test_19b_training_fits_eight_80_gib_gpus_with_fsdp_and_checkpointing() -> None:
    settings = PlanSettings("train", strategy="fsdp", gpus=8, activation_checkpointing=True, **CLIP)
    result = verdict(BIG, settings, 80 * GIB)
    assert result.fits
    assert result.summary().startswith("fits: train, fsdp, 8 GPUs, activation checkpointing")
    no_checkpointing = verdict(BIG, settings.with_changes(activation_checkpointing=False), 80 * GIB)
    assert not no_checkpointing.fits


def test_generation_at_19b_needs_a_tiled_decode_on_80_gib() -> None:
    settings = PlanSettings("generate", **CLIP)
    untiled = verdict(BIG, settings, 80 * GIB)
    assert not untiled.fits
    assert untiled.plan.peak_phase == "VAE decode"
    assert untiled.smallest is not None
    assert untiled.smallest.settings.tiled_decode
    tiled = plan_memory(
        BIG, settings.with_changes(tiled_decode=True, tile_mode="blended"), 80 * GIB
    )
    assert tiled.line("vae_decode") < untiled.plan.line("vae_decode")
    assert tiled.fits(80 * GIB)


def test_text_encoder_offload_leaves_room_for_denoising() -> None:
    settings = PlanSettings("generate", tiled_decode=True, **CLIP)
    kept = plan_memory(BIG, settings)
    offloaded = plan_memory(BIG, settings.with_changes(text_encoder_offload=True))
    assert offloaded.peak_bytes < kept.peak_bytes


def test_plans_are_json() -> None:
    plan = plan_memory(TINY, PlanSettings("lora", device="cpu"))
    data = json.loads(json.dumps(plan.as_dict()))
    assert data["settings"]["mode"] == "lora"
    assert data["parameters"]["total"] == model_parameters(TINY).total
    assert data["peak_bytes"] == plan.peak_bytes


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"mode": "infer"}, "mode='infer': expected one of train, lora, generate"),
        ({"gpus": 0}, "gpus=0: expected a whole number from 1"),
        ({"strategy": "zero3"}, "strategy='zero3': expected one of ddp, fsdp"),
        ({"dtype": "int8"}, "dtype int8: expected one of float32"),
        ({"cpu_offload": True}, "cpu_offload=True: offloading moves FSDP's shards"),
        ({"device": "cpu", "gpus": 2}, "gpus=2: a plan for device='cpu' has gpus=1"),
        ({"lora_rank": -1}, "lora_rank=-1"),
        ({"tile_mode": "fast"}, "tile_mode='fast': expected one of exact, blended"),
    ],
)
def test_bad_settings_name_what_was_expected(changes: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"mode": "train", **changes}
    with pytest.raises(MemoryPlanError, match="^" + message.replace("(", r"\(")) as info:
        PlanSettings(**arguments)  # type: ignore[arg-type]
    assert isinstance(info.value, AiprodError)
    assert isinstance(info.value, ValueError)


def test_a_clip_the_model_cannot_take_is_named() -> None:
    with pytest.raises(MemoryPlanError, match=r"clip 10x64x64 \(FxHxW\)"):
        plan_memory(TINY, PlanSettings("train", frames=10, height=64, width=64))
    with pytest.raises(MemoryPlanError, match="device memory 0 bytes"):
        verdict(TINY, PlanSettings("train"), 0)


def test_dtype_names_and_torch_dtypes_are_the_same() -> None:
    by_name = plan_memory(TINY, PlanSettings("generate", dtype="bf16"))
    by_dtype = plan_memory(TINY, PlanSettings("generate", dtype=str(torch.bfloat16)))
    assert by_name.settings.dtype == by_dtype.settings.dtype == "bfloat16"
    assert by_name.peak_bytes == by_dtype.peak_bytes
