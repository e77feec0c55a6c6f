"""The training config: the example configs load, and every mistake is one clear message
naming the file and the key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from aiprod_trainer.config import (
    LORA_TARGETS,
    TrainConfig,
    TrainConfigError,
    load_train_config,
)

CONFIGS = Path(__file__).parents[2] / "configs"

MINIMAL: dict[str, Any] = {
    "mode": "dit",
    "run_dir": "runs/one",
    "model": {"preset": "tiny"},
    "data": {"cache": "cache"},
    "training": {"max_steps": 10},
}


def write(tmp_path: Path, data: Any, name: str = "train.yaml") -> Path:
    path = tmp_path / name
    text = data if isinstance(data, str) else yaml.safe_dump(data)
    path.write_text(text, encoding="utf-8")
    return path


def with_changes(**sections: Any) -> dict[str, Any]:
    data = {
        key: dict(value) if isinstance(value, dict) else value for key, value in MINIMAL.items()
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    return data


def error_of(tmp_path: Path, data: Any, **options: Any) -> str:
    path = write(tmp_path, data)
    with pytest.raises(TrainConfigError) as error:
        load_train_config(path, **options)
    return str(error.value)


@pytest.mark.parametrize("name", ["vae", "dit", "lora", "upsampler"])
def test_example_configs_are_valid(name: str) -> None:
    config = load_train_config(CONFIGS / f"{name}.yaml", check_paths=False)
    assert config.mode == name
    assert config.run_dir.is_absolute()
    assert config.training_data.is_absolute()


@pytest.mark.parametrize("name", ["vae", "dit", "lora", "upsampler"])
def test_every_example_key_is_commented(name: str) -> None:
    path = CONFIGS / f"{name}.yaml"
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.strip()
        if stripped and not stripped.startswith(("#", "- ")):  # keys, not list items
            assert " # " in stripped, f"{path.name}:{number} has no comment: {line!r}"


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    config = load_train_config(write(tmp_path, MINIMAL), check_paths=False)
    assert config.run_dir == tmp_path / "runs" / "one"
    assert config.data.cache == tmp_path / "cache"
    assert config.training_data == tmp_path / "cache"
    assert config.validation_data is None
    assert config.optimizer.lr == 1e-4
    assert config.optimizer.accumulation == 1
    assert config.lora.target_modules == list(LORA_TARGETS)
    assert not config.ema.enabled
    assert config.validation.every == 0


def test_overrides_merge_into_sections(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    config = load_train_config(path, {"training": {"max_steps": 3}}, check_paths=False)
    assert config.training.max_steps == 3
    replaced = load_train_config(path, {"ema": {"enabled": True}}, check_paths=False)
    assert replaced.ema.enabled
    assert replaced.ema.decay == 0.999


def test_yaml_floats_without_a_dot_are_numbers(tmp_path: Path) -> None:
    text = yaml.safe_dump(MINIMAL) + "optimizer:\n  lr: 1e-4\n"
    config = load_train_config(write(tmp_path, text), check_paths=False)
    assert config.optimizer.lr == pytest.approx(1e-4)


def test_unknown_key(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    message = error_of(tmp_path, with_changes(optimizer={"learning_rate": 0.1}), check_paths=False)
    assert message == (
        f"{path}: optimizer.learning_rate: unknown key (not part of the training config schema)"
    )


def test_wrong_types(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    message = error_of(
        tmp_path, with_changes(data={"cache": "c", "batch_size": "two"}), check_paths=False
    )
    assert message == f"{path}: data.batch_size: Input should be a valid integer, got 'two'"
    message = error_of(tmp_path, with_changes(optimizer={"lr": True}), check_paths=False)
    assert message == f"{path}: optimizer.lr: expected a number, not a boolean"
    message = error_of(tmp_path, with_changes(ema={"enabled": "yes"}), check_paths=False)
    assert message == f"{path}: ema.enabled: Input should be a valid boolean, got 'yes'"


def test_several_problems_are_listed_together(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    data = with_changes(training={"max_steps": 0}, optimizer={"lr": -1.0}, mode="gan")
    message = error_of(tmp_path, data, check_paths=False)
    assert message == (
        f"{path}: invalid training config (3 problems):\n"
        f"  {path}: mode: Input should be 'vae', 'dit', 'lora' or 'upsampler', got 'gan'\n"
        f"  {path}: optimizer.lr: Input should be greater than 0, got -1.0\n"
        f"  {path}: training.max_steps: Input should be greater than or equal to 1, got 0"
    )


def test_missing_keys(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    data = {key: value for key, value in MINIMAL.items() if key != "training"}
    assert error_of(tmp_path, data) == f"{path}: training: required key is missing"


def test_model_source_must_be_exactly_one(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    both = with_changes(model={"preset": "tiny", "checkpoint": "m.safetensors"})
    assert error_of(tmp_path, both, check_paths=False) == (
        f"{path}: model: give exactly one of preset (random init) or checkpoint"
    )
    unknown = with_changes(model={"preset": "huge"})
    assert error_of(tmp_path, unknown, check_paths=False) == (
        f"{path}: model: unknown preset 'huge'; expected one of: tiny, tiny-x2, small, aiprod-19b"
    )


def test_data_must_fit_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    assert error_of(tmp_path, with_changes(mode="vae"), check_paths=False) == (
        f"{path}: data.manifest: required in mode 'vae'"
    )
    both = with_changes(data={"cache": "c", "manifest": "m.jsonl"})
    assert error_of(tmp_path, both, check_paths=False) == (
        f"{path}: data.manifest: not used in mode 'dit'; use data.cache"
    )
    kept = with_changes(data={"cache": "c", "keep_in_memory": True})
    assert error_of(tmp_path, kept, check_paths=False) == (
        f"{path}: data.keep_in_memory: only for decoded video clips (mode 'vae'), not mode "
        "'dit', whose latent cache is read from safetensors shards"
    )


UPSAMPLER: dict[str, Any] = {
    "mode": "upsampler",
    "data": {"cache": "full", "low_res_cache": "half"},
}


def test_upsampler_pairs_of_caches(tmp_path: Path) -> None:
    data = {"validation_cache": "val", "validation_low_res_cache": "val-half"}
    changes = {**UPSAMPLER, "data": {**UPSAMPLER["data"], **data}}
    config = load_train_config(write(tmp_path, with_changes(**changes)), check_paths=False)
    assert config.training_data == tmp_path / "full"
    assert config.data.low_res_cache == tmp_path / "half"
    assert config.validation_data == tmp_path / "val"
    assert config.data.validation_low_res_cache == tmp_path / "val-half"


BOTH_OR_NEITHER = (
    "in mode 'upsampler' (the held-out clips at full and at half width and height); give both "
    "or neither"
)


@pytest.mark.fault("config")
@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"cache": "full"},
            (
                "data.low_res_cache: required in mode 'upsampler': a latent cache of the clips "
                "of data.cache at half width and height (compute_latents.py --downscale 2)"
            ),
        ),
        (
            {"cache": "full", "low_res_cache": "half", "validation_cache": "val"},
            f"data.validation_low_res_cache: required with data.validation_cache {BOTH_OR_NEITHER}",
        ),
        (
            {"cache": "full", "low_res_cache": "half", "validation_low_res_cache": "vh"},
            f"data.validation_cache: required with data.validation_low_res_cache {BOTH_OR_NEITHER}",
        ),
        ({"low_res_cache": "half"}, "data.cache: required in mode 'upsampler'"),
    ],
)
def test_upsampler_needs_both_caches_of_a_pair(
    tmp_path: Path, data: dict[str, str], message: str
) -> None:
    config = {**MINIMAL, "mode": "upsampler", "data": data}
    path = tmp_path / "train.yaml"
    assert error_of(tmp_path, config, check_paths=False) == f"{path}: {message}"


@pytest.mark.fault("config")
def test_low_res_caches_belong_to_mode_upsampler(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    data = with_changes(data={"validation_low_res_cache": "vh"})
    assert error_of(tmp_path, data, check_paths=False) == (
        f"{path}: data.validation_low_res_cache: only for mode 'upsampler' (pairs of latents "
        "of a clip at two resolutions), not mode 'dit'"
    )


@pytest.mark.fault("files")
def test_upsampler_low_res_cache_must_exist(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    path = tmp_path / "train.yaml"
    assert error_of(tmp_path, with_changes(**UPSAMPLER)) == (
        f"{path}: data.low_res_cache: folder not found: {tmp_path / 'half'}"
    )


def test_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    assert (
        error_of(tmp_path, MINIMAL) == f"{path}: data.cache: folder not found: {tmp_path / 'cache'}"
    )
    (tmp_path / "cache").mkdir()
    checkpoint = with_changes(model={"preset": None, "checkpoint": "base.safetensors"})
    del checkpoint["model"]["preset"]
    assert error_of(tmp_path, checkpoint) == (
        f"{path}: model.checkpoint: file not found: {tmp_path / 'base.safetensors'}"
    )
    vae = with_changes(mode="vae", data={"cache": None, "manifest": "train.jsonl"})
    del vae["data"]["cache"]
    assert error_of(tmp_path, vae) == (
        f"{path}: data.manifest: file not found: {tmp_path / 'train.jsonl'}"
    )
    missing = tmp_path / "nope.yaml"
    with pytest.raises(TrainConfigError) as error:
        load_train_config(missing)
    assert str(error.value) == f"{missing}: file not found"


def test_unreadable_or_malformed_files(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    assert error_of(tmp_path, "mode: [dit\n") == (
        f"{path}: invalid YAML at line 2 column 1: expected ',' or ']', but got '<stream end>'"
    )
    assert error_of(tmp_path, "- a list\n") == (
        f"{path}: expected a mapping of keys at the top level, got list"
    )
    with pytest.raises(TrainConfigError) as error:
        load_train_config(tmp_path)
    assert str(error.value).startswith(f"{tmp_path}: cannot be read: ")


def test_config_is_frozen() -> None:
    config = TrainConfig.model_validate(MINIMAL)
    with pytest.raises(ValueError, match="frozen"):
        config.seed = 3  # type: ignore[misc]
