"""This host's memory and the one-line check the CLIs make before building a model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from aiprod_core.memory import (
    GIB,
    HostMemory,
    MemoryPlanError,
    PlanSettings,
    available_ram,
    device_memory,
    gpu_memory,
    host_verdict,
    plan_memory,
)
from aiprod_core.models import get_preset

BIG = get_preset("aiprod-19b")
TINY = get_preset("tiny")


def write_meminfo(folder: Path, available_kib: int | None) -> Path:
    lines = ["MemTotal:       32000000 kB", "MemFree:         1000000 kB"]
    if available_kib is not None:
        lines.append(f"MemAvailable:   {available_kib} kB")
    path = folder / "meminfo"
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    return path


def test_available_ram_reads_mem_available(tmp_path: Path) -> None:
    meminfo = write_meminfo(tmp_path, 25_165_824)  # 24 GiB
    assert available_ram(meminfo, tmp_path / "no-cgroup") == 24 * GIB


def test_a_container_limit_caps_the_available_ram(tmp_path: Path) -> None:
    meminfo = write_meminfo(tmp_path, 25_165_824)
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    (cgroup / "memory.max").write_text(f"{8 * GIB}\n", encoding="ascii")
    (cgroup / "memory.current").write_text(f"{2 * GIB}\n", encoding="ascii")
    assert available_ram(meminfo, cgroup) == 6 * GIB
    (cgroup / "memory.max").write_text("max\n", encoding="ascii")
    assert available_ram(meminfo, cgroup) == 24 * GIB


def test_without_meminfo_the_system_is_asked(tmp_path: Path) -> None:
    assert available_ram(tmp_path / "missing", tmp_path) > 0
    assert available_ram(write_meminfo(tmp_path, None), tmp_path) > 0


def test_host_memory_per_device() -> None:
    host = HostMemory(ram_bytes=24 * GIB, gpu_bytes=(80 * GIB, 40 * GIB))
    assert host.for_device("cpu") == 24 * GIB
    assert host.for_device("cuda") == 80 * GIB
    assert host.for_device("cuda:1") == 40 * GIB
    assert host.for_device("cuda:2") == 0


def test_this_host_reports_its_memory() -> None:
    assert device_memory("cpu") > 0
    if not torch.cuda.is_available():
        assert gpu_memory() == ()
        assert device_memory("cuda") == 0


def test_19b_on_a_24_gib_host_without_a_gpu_is_refused_in_one_line() -> None:
    message = host_verdict(BIG, "generate", "cpu", torch.float32, 24 * GIB, host_gpus=0)
    assert message is not None
    weights = plan_memory(BIG, PlanSettings("generate", "cpu")).line("weights")
    assert message == (
        f"aiprod-19b in float32 needs ~{(weights + 1_613_156_352 * 4) / GIB:.0f} GiB of "
        "weights; this host has 24 GiB of RAM and no GPU; see `nox -s dev -- plan_memory`"
    )
    assert "\n" not in message


def test_19b_in_bfloat16_on_a_24_gib_gpu() -> None:
    message = host_verdict(BIG, "generate", "cuda", "bfloat16", 24 * GIB, host_gpus=1)
    assert message is not None
    assert message.startswith("aiprod-19b in bfloat16 needs ~41 GiB of weights;")
    assert "the GPU (cuda) has 24 GiB" in message


def test_weights_that_fit_but_a_peak_that_does_not_names_the_phase() -> None:
    message = host_verdict(
        BIG,
        "generate",
        "cuda",
        "bfloat16",
        80 * GIB,
        host_gpus=1,
        frames=121,
        height=768,
        width=1280,
    )
    assert message is not None
    assert "at its peak (VAE decode)" in message
    tiled = host_verdict(
        BIG, "generate", "cuda", "bfloat16", 80 * GIB, host_gpus=1, frames=121, height=768,
        width=1280, tiled_decode=True, tile_mode="blended",
    )  # fmt: skip
    assert tiled is None


def test_training_is_checked_too() -> None:
    message = host_verdict(BIG, "train", "cuda:0", "bfloat16", 80 * GIB, host_gpus=8)
    assert message is not None
    assert "needs ~" in message
    assert "the GPU (cuda:0) has 80 GiB" in message
    sharded = host_verdict(
        BIG, "train", "cuda:0", "bfloat16", 80 * GIB, host_gpus=8, gpus=8, strategy="fsdp",
        activation_checkpointing=True,
    )  # fmt: skip
    assert sharded is None
    assert host_verdict(TINY, "train", "cpu", "float32", 4 * GIB, host_gpus=0) is None


def test_a_model_that_fits_gives_none() -> None:
    assert host_verdict(TINY, "generate", "cpu", torch.float32, 4 * GIB, host_gpus=0) is None


def test_bad_arguments_are_plan_errors() -> None:
    with pytest.raises(MemoryPlanError, match="mode='serve'"):
        host_verdict(TINY, "serve", "cpu", "float32", GIB, host_gpus=0)
    with pytest.raises(MemoryPlanError, match="dtype int8"):
        host_verdict(TINY, "generate", "cpu", "int8", GIB, host_gpus=0)


@pytest.mark.gpu
def test_gpu_memory_is_each_devices_total() -> None:
    totals = gpu_memory()
    assert len(totals) == torch.cuda.device_count() >= 1
    for index, total in enumerate(totals):
        assert total == pytest.approx(
            torch.cuda.get_device_properties(index).total_memory, rel=0.01
        )
    assert device_memory("cuda") == totals[0]
