"""The demo profiles and the training configs they make."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from aiprod_core.config import load_config
from aiprod_core.models import PRESETS, get_preset
from aiprod_pipelines.pipelines import GenerationRequest
from aiprod_trainer.data.synthetic import parse_caption
from aiprod_trainer.demo.settings import (
    FULL,
    LONG,
    PROFILES,
    PROMPTS,
    QUICK,
    dit_config,
    vae_config,
)


def test_profiles_are_named_and_only_full_and_long_enforce() -> None:
    assert PROFILES == {"full": FULL, "long": LONG, "quick": QUICK}
    assert FULL.enforce_evidence
    assert LONG.enforce_evidence
    assert not QUICK.enforce_evidence
    assert FULL.min_loss_drop == 0.30


def test_long_profile_is_full_with_the_x2_preset_trained_longer_and_shapes_enforced() -> None:
    assert LONG.preset == "tiny-x2"
    assert FULL.preset == "tiny"
    assert LONG.dit_steps == 8 * FULL.dit_steps
    assert LONG.enforce_prompt_checks
    assert not FULL.enforce_prompt_checks
    assert LONG.required_prompt_passes == 3 == len(LONG.prompts) - 1
    # the same data, prompts, checks and every other number as the README's run
    renamed = dataclasses.replace(
        LONG,
        name=FULL.name,
        preset=FULL.preset,
        registry_name=FULL.registry_name,
        output_folder=FULL.output_folder,
        dit_steps=FULL.dit_steps,
        enforce_prompt_checks=FULL.enforce_prompt_checks,
    )
    assert renamed == FULL


def test_each_profile_registers_its_preset_in_its_own_place() -> None:
    registry = load_config(Path(__file__).resolve().parents[4] / "config", environ={}).models
    for profile in PROFILES.values():
        assert profile.preset in PRESETS
        assert registry[profile.registry_name].preset == profile.preset
    assert len({p.output_folder for p in PROFILES.values()}) == len(PROFILES)
    assert FULL.registry_name == "aiprod-tiny"
    assert LONG.registry_name == "aiprod-tiny-x2"


def test_prompts_are_synthetic_captions_with_every_palette_colour() -> None:
    colours = set()
    for prompt in PROMPTS:
        parts = parse_caption(prompt)
        colours |= {parts.color, parts.background}
    assert len(colours) == 8


def test_fingerprint_changes_with_any_setting_of_the_work() -> None:
    assert FULL.fingerprint() == dataclasses.replace(FULL).fingerprint()
    assert FULL.fingerprint() != QUICK.fingerprint()
    assert FULL.fingerprint() != dataclasses.replace(FULL, dit_steps=1).fingerprint()
    assert FULL.fingerprint() != dataclasses.replace(FULL, preset="tiny-x2").fingerprint()
    # where the results go does not change what the work folder holds
    moved = dataclasses.replace(FULL, output_folder="elsewhere", registry_name="other")
    assert moved.fingerprint() == FULL.fingerprint()


def test_generation_settings_fit_each_profiles_preset() -> None:
    for profile in PROFILES.values():
        request = GenerationRequest(
            PROMPTS[0], width=profile.width, height=profile.height, frames=profile.frames
        )
        request.validate(get_preset(profile.preset))


def test_vae_config_trains_the_vae_of_the_profiles_preset(tmp_path: Path) -> None:
    long = vae_config(LONG, tmp_path / "vae", tmp_path / "t.jsonl", tmp_path / "v.jsonl")
    assert long.model.preset == "tiny-x2"
    config = vae_config(FULL, tmp_path / "vae", tmp_path / "t.jsonl", tmp_path / "v.jsonl")
    assert config.mode == "vae"
    assert config.model.preset == "tiny"
    assert config.training.max_steps == FULL.vae_steps
    assert config.data.batch_size == FULL.vae_batch
    assert config.data.validation_manifest == tmp_path / "v.jsonl"
    assert config.optimizer.lr == FULL.vae_lr
    assert config.vae.kl_weight == FULL.vae_kl_weight
    assert config.validation.every == FULL.vae_steps


def test_dit_config_starts_from_the_vae_bundle(tmp_path: Path) -> None:
    config = dit_config(
        QUICK, tmp_path / "dit", tmp_path / "vae.safetensors", tmp_path / "a", tmp_path / "b"
    )
    assert config.mode == "dit"
    assert config.model.checkpoint == tmp_path / "vae.safetensors"
    assert config.data.cache == tmp_path / "a"
    assert config.data.validation_cache == tmp_path / "b"
    assert config.training.text_dropout == QUICK.text_dropout > 0
    assert config.training.text_dropout_embedding == "empty_prompt"
    assert config.ema.enabled is (QUICK.ema_decay is not None)
    with_ema = dit_config(
        dataclasses.replace(QUICK, ema_decay=0.9), tmp_path, tmp_path, tmp_path, tmp_path
    )
    assert with_ema.ema.enabled
    assert with_ema.ema.decay == 0.9
