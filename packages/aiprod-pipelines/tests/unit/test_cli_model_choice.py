"""Which weights ``aiprod-generate`` picks from its options (nothing is loaded here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiprod_core.config import AiprodConfig, find_config_dir, load_config
from aiprod_pipelines.cli.arguments import UsageError, parse_arguments
from aiprod_pipelines.cli.model_choice import ModelChoice, choose_model


@pytest.fixture(scope="module")
def config() -> AiprodConfig:
    """The repository's configuration (development overlay, no environment overrides)."""
    folder = find_config_dir(start=Path(__file__).parent, environ={})
    return load_config(folder, env="development", environ={})


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], ModelChoice("aiprod-tiny", None, None, random_weights=False)),
        (["--model", "aiprod-19b"], ModelChoice("aiprod-19b", None, None, random_weights=False)),
        (["--checkpoint", "w.safetensors"], ModelChoice(None, Path("w.safetensors"), None, False)),
        (["--random-weights"], ModelChoice(None, None, "tiny", random_weights=True)),
        (["--random-weights", "--preset", "small"], ModelChoice(None, None, "small", True)),
        (
            ["--random-weights", "--model", "aiprod-small"],
            ModelChoice("aiprod-small", None, "small", True),
        ),
        (
            ["--random-weights", "--model", "aiprod-19b", "--preset", "tiny"],
            ModelChoice("aiprod-19b", None, "tiny", random_weights=True),
        ),
    ],
)
def test_choice_follows_the_options(
    config: AiprodConfig, argv: list[str], expected: ModelChoice
) -> None:
    assert choose_model(parse_arguments(["p", *argv]), config) == expected


def test_only_random_weights_carry_a_warning(config: AiprodConfig) -> None:
    random = choose_model(parse_arguments(["p", "--random-weights", "--preset", "small"]), config)
    real = choose_model(parse_arguments(["p"]), config)

    assert random.warning == (
        "using RANDOM, UNTRAINED weights of preset small: the video will be noise"
    )
    assert real.warning is None


def test_unknown_model_lists_the_registered_ones(config: AiprodConfig) -> None:
    with pytest.raises(UsageError) as raised:
        choose_model(parse_arguments(["p", "--model", "aiprod-huge", "--random-weights"]), config)

    message = str(raised.value)
    assert message.startswith("--model: model 'aiprod-huge' is not in the registry")
    assert "aiprod-19b, aiprod-small, aiprod-tiny" in message
