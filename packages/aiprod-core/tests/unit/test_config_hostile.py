"""Hostile configuration: alias bombs, self-referencing aliases, deep nesting, env paths.

Each case must end in one bounded ConfigError naming the file, quickly and in little
memory, before pydantic sees the data.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

import pytest

from aiprod_core.config import ConfigError, load_config

pytestmark = pytest.mark.fault("config")

#: Largest message a hostile file may produce.
MAX_MESSAGE = 4096


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """Anchors that multiply by ``width`` per level: ``width ** levels`` values expanded."""
    lines = ["defs:", f"  a0: &a0 [{', '.join(['lol'] * width)}]"]
    for level in range(1, levels):
        aliases = ", ".join([f"*a{level - 1}"] * width)
        lines.append(f"  a{level}: &a{level} [{aliases}]")
    return "\n".join(lines) + f"\nserving:\n  max_frames: *a{levels - 1}\n"


def failure(config_dir: Path, overlay: str) -> str:
    (config_dir / "env" / "development.yaml").write_text(overlay, encoding="utf-8")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        load_config(config_dir, environ={})
    assert time.perf_counter() - started < 5.0
    # ru_maxrss is in KiB on Linux: the process grew by less than 64 MiB.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 * 1024
    message = str(info.value)
    assert len(message) <= MAX_MESSAGE
    assert "development.yaml" in message
    return message


def test_alias_bomb_under_a_known_key_is_refused_before_validation(config_dir: Path) -> None:
    message = failure(config_dir, alias_bomb())
    assert "expands to more than" in message
    assert "aliases" in message


def test_merge_key_bomb_is_refused(config_dir: Path) -> None:
    lines = ["defs:", "  m0: &m0 {a: 1, b: 2}"]
    for level in range(1, 30):
        lines.append(f"  m{level}: &m{level} {{<<: [*m{level - 1}, *m{level - 1}], k{level}: 1}}")
    message = failure(config_dir, "\n".join(lines) + "\nserving:\n  port: *m29\n")
    assert "expands to more than" in message


def test_self_referencing_alias_is_refused(config_dir: Path) -> None:
    message = failure(config_dir, "serving:\n  max_frames: &loop [1, *loop]\n")
    assert "refers to a node that contains it" in message
    assert "line 2" in message


@pytest.mark.parametrize(
    "overlay",
    [
        "serving: " + "[" * 5000 + "]" * 5000 + "\n",
        "serving: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n",
        "".join("  " * level + f"k{level}:\n" for level in range(400)),
    ],
    ids=["flow-sequences", "flow-mappings", "block-mappings"],
)
def test_deep_nesting_is_refused_without_recursion_error(config_dir: Path, overlay: str) -> None:
    message = failure(config_dir, overlay)
    assert "nested more than 64 levels deep" in message


def test_huge_overlay_is_refused_by_size(config_dir: Path) -> None:
    message = failure(config_dir, "serving:\n  note: " + "x" * (5 * 1024 * 1024) + "\n")
    assert "is larger than" in message


def test_long_bad_value_is_truncated_in_the_message(config_dir: Path) -> None:
    message = failure(config_dir, "serving:\n  host: [" + ", ".join(["9"] * 50_000) + "]\n")
    assert "serving.host" in message
    assert "..." in message


def test_deep_json_base_file_is_refused(config_dir: Path) -> None:
    (config_dir / "AIPROD.json").write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"AIPROD\.json: nested more than 64 levels deep"):
        load_config(config_dir, environ={})


@pytest.mark.parametrize(
    "env",
    ["../../tmp/x", "/etc/passwd", "env/development", "..", "development.yaml", "dev elopment"],
)
def test_env_must_be_a_name_not_a_path(config_dir: Path, env: str, tmp_path: Path) -> None:
    outside = tmp_path / "x.yaml"
    outside.write_text("serving:\n  port: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(config_dir, environ={"AIPROD_ENV": env})
    message = str(info.value)
    assert "expected one of: development, production" in message
    assert "not an environment name" in message or "not a known environment" in message


def test_env_pointing_outside_the_config_folder_is_refused(config_dir: Path) -> None:
    outside = config_dir.parent / "outside.yaml"
    outside.write_text("serving:\n  port: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not an environment name"):
        load_config(config_dir, environ={"AIPROD_ENV": "../../outside"})


def test_hostile_variable_value_stays_a_string(config_dir: Path) -> None:
    deep = "[" * 10_000 + "]" * 10_000
    with pytest.raises(ConfigError) as info:
        load_config(config_dir, environ={"AIPROD_SERVING__PORT": deep})
    message = str(info.value)
    assert "environment variable AIPROD_SERVING__PORT: serving.port" in message
    assert len(message) <= MAX_MESSAGE
