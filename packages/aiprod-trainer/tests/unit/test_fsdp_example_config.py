"""configs/dit-19b-fsdp.yaml, the config the Kubernetes training job runs: it validates,
asks for FSDP in bf16 with activation checkpointing, and comments every key."""

from __future__ import annotations

from pathlib import Path

from aiprod_trainer.config import load_train_config

CONFIG = Path(__file__).parents[2] / "configs" / "dit-19b-fsdp.yaml"
REPO = Path(__file__).parents[4]


def test_the_19b_example_validates_as_fsdp_in_bf16() -> None:
    config = load_train_config(CONFIG, check_paths=False)
    assert (config.mode, config.model.preset) == ("dit", "aiprod-19b")
    assert config.distributed.strategy == "fsdp"
    assert config.distributed.param_dtype == "bfloat16"
    assert config.distributed.cpu_offload is False
    assert config.training.gradient_checkpointing is True
    assert config.training.device == "cuda"
    assert config.ema.enabled is False


def test_its_paths_lead_into_the_folders_the_cluster_volume_holds() -> None:
    """Relative to the config's folder, as in the pods, where data/ and outputs/ are the
    shared volume (scripts/deployment/render_manifests.py checks the same)."""
    config = load_train_config(CONFIG, check_paths=False)
    assert config.run_dir == REPO / "outputs" / "train" / "dit-19b-fsdp"
    assert config.data.cache == REPO / "data" / "latents" / "train"
    assert config.data.validation_cache == REPO / "data" / "latents" / "val"


def test_every_key_is_commented() -> None:
    for number, line in enumerate(CONFIG.read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.strip()
        if stripped and not stripped.startswith(("#", "- ")):
            assert " # " in stripped, f"{CONFIG.name}:{number} has no comment: {line!r}"
