"""scripts/dev/plan_memory.py prints aiprod_core.memory's plan and verdict."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from aiprod_dev import workspace

GIB = 2**30
CLIP = ["--frames", "121", "--height", "768", "--width", "1280"]


@pytest.fixture(scope="module")
def planner(load_script: Callable[[str], ModuleType]) -> ModuleType:
    return load_script("dev/plan_memory.py")


def run_json(
    planner: ModuleType, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, dict]:  # type: ignore[type-arg]
    code = planner.main([*args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_19b_training_on_one_80_gib_gpu_does_not_fit(
    planner: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    code = planner.main(["--preset", "aiprod-19b", "--mode", "train", "--gpus", "1",
                         "--gpu-memory", "80", *CLIP])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 1
    assert out.startswith("aiprod-19b: train, ddp, 1 GPU, bfloat16\n")
    assert "clip 121x768x1280 (FxHxW) -> latent 16x24x40 -> 15,360 tokens per sample" in out
    assert "| weights: transformer, float32 master weights | 71.61 |" in out
    assert "| gradients (float32) | 71.61 |" in out
    assert "| AdamW moments (float32) | 143.22 |" in out
    assert "activations (activation checkpointing: block inputs + one block)" in out
    assert "| VAE decode peak (none in a training step) | 0.00 |" in out
    assert "**total at the peak (backward)**" in out
    assert out.splitlines()[-1].startswith("does not fit: train, ddp, 1 GPU, bfloat16 needs ")
    assert "smallest setting that fits: train, fsdp" in out.splitlines()[-1]


def test_19b_training_with_fsdp_on_eight_gpus_fits(
    planner: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    from aiprod_core.memory import PlanSettings, plan_memory
    from aiprod_core.models import get_preset

    code, data = run_json(planner, capsys, "--mode", "train", "--gpus", "8", "--strategy",
                          "fsdp", "--activation-checkpointing", *CLIP)  # fmt: skip
    assert code == 0
    assert data["fits"] is True
    assert data["verdict"].startswith("fits: train, fsdp, 8 GPUs, activation checkpointing")
    assert data["device_memory_bytes"] == 80 * GIB
    settings = PlanSettings("train", gpus=8, strategy="fsdp", activation_checkpointing=True,
                            frames=121, height=768, width=1280)  # fmt: skip
    plan = plan_memory(get_preset("aiprod-19b"), settings)
    assert data["plan"]["peak_bytes"] == plan.peak_bytes
    lines = {line["key"]: line["bytes"] for line in data["plan"]["lines"]}
    assert lines["weights"] == plan.line("weights") == -(-19_222_059_648 * 4 // 8)


def test_lora_and_generation(planner: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    code, lora = run_json(planner, capsys, "--mode", "lora", "--activation-checkpointing", *CLIP)
    assert code == 1  # ddp keeps the 19B base in float32: 72 GiB before anything else
    assert lora["plan"]["settings"]["lora_rank"] == 32
    smallest = lora["smallest"]["settings"]
    assert (smallest["strategy"], smallest["gpus"]) == ("fsdp", 1)  # a bfloat16 base
    code, sharded = run_json(planner, capsys, "--mode", "lora", "--strategy", "fsdp",
                             "--activation-checkpointing", *CLIP)  # fmt: skip
    assert code == 0
    assert sharded["plan"]["peak_bytes"] < lora["plan"]["peak_bytes"]
    code, untiled = run_json(planner, capsys, "--mode", "generate", *CLIP)
    assert code == 1
    assert untiled["plan"]["peak_phase"] == "VAE decode"
    assert untiled["smallest"]["settings"]["tiled_decode"] is True
    code, tiled = run_json(planner, capsys, "--mode", "generate", "--tiled-decode",
                           "--tile-mode", "blended", *CLIP)  # fmt: skip
    assert code == 0
    assert tiled["plan"]["peak_bytes"] <= 80 * GIB


def test_the_cpu_plan_checks_host_memory(
    planner: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    code = planner.main(["--mode", "generate", "--device", "cpu", "--host-memory", "24"])
    out = capsys.readouterr().out
    assert code == 1
    assert "aiprod-19b: generate, CPU, float32" in out
    assert out.splitlines()[-1].startswith("does not fit: generate, CPU, float32 needs ")
    assert "on 24 GiB of host memory" in out
    code = planner.main(["--preset", "tiny", "--mode", "train", "--device", "cpu",
                         "--host-memory", "4"])  # fmt: skip
    assert code == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("fits: train, ddp, CPU")


def test_offloaded_host_memory_is_checked_when_given(
    planner: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--mode", "train", "--gpus", "8", "--strategy", "fsdp", "--cpu-offload",
            "--activation-checkpointing", *CLIP]  # fmt: skip
    code, unchecked = run_json(planner, capsys, *args)
    assert code == 0
    host = unchecked["plan"]["host_bytes"]
    assert host == -(-19_222_059_648 * 16 // 8)
    code, checked = run_json(planner, capsys, *args, "--host-memory", "16")
    assert code == 1
    assert checked["fits"] is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--gpus", "0"], "error: gpus=0: expected a whole number from 1"),
        (["--gpu-memory", "0"], "error: --gpu-memory 0: expected a positive size in GiB"),
        (["--frames", "10"], "error: clip 10x512x768 (FxHxW): "),
        (["--cpu-offload"], "error: cpu_offload=True: offloading moves FSDP's shards"),
        (["--dtype", "int4"], "error: dtype int4: expected one of"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    planner: ModuleType, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert planner.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(message)
    assert err.count("\n") == 1


def test_unknown_preset_is_refused_by_the_parser(planner: ModuleType) -> None:
    with pytest.raises(SystemExit) as info:
        planner.main(["--preset", "huge"])
    assert info.value.code == 2


def test_nox_dev_session_finds_it(repo_root: Path) -> None:
    script = workspace.find_script("dev", "plan_memory", repo_root)
    assert script == repo_root / "scripts" / "dev" / "plan_memory.py"
    assert workspace.script_metadata(script)["dependencies"] == ["aiprod-core", "torch>=2.4"]
