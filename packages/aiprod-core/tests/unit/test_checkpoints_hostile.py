"""Checkpoint headers built to hurt: deeply nested JSON, huge alias maps, nested config.

Each ends in a CheckpointError naming the file, never a RecursionError traceback.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch

from aiprod_core.checkpoints import (
    CheckpointError,
    inspect_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from aiprod_core.checkpoints.header import ALIASES_KEY
from aiprod_core.models.presets import TINY

pytestmark = pytest.mark.fault("files")


def raw_file(path: Path, header_text: str, data: bytes = b"") -> Path:
    encoded = header_text.encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + data)
    return path


@pytest.mark.parametrize("depth", [200, 100_000])
def test_deeply_nested_header_is_a_checkpoint_error(tmp_path: Path, depth: int) -> None:
    deep = "[" * depth + "]" * depth
    path = raw_file(tmp_path / "deep.safetensors", '{"__metadata__": {}, "w": ' + deep + "}")
    for read in (read_checkpoint, inspect_checkpoint):
        with pytest.raises(CheckpointError) as info:
            read(path)
        message = str(info.value)
        assert str(path) in message
        assert "nested more than" in message
        assert len(message) < 1024


def test_deeply_nested_alias_metadata_is_a_checkpoint_error(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_checkpoint(torch.nn.Linear(2, 2), TINY, path, component="vae")
    header_length = int.from_bytes(path.read_bytes()[:8], "little")
    header = json.loads(path.read_bytes()[8 : 8 + header_length])
    header["__metadata__"][ALIASES_KEY] = "[" * 50_000 + "]" * 50_000
    body = path.read_bytes()[8 + header_length :]
    raw_file(path, json.dumps(header), body)
    path.with_name(path.name + ".sha256").unlink()
    with pytest.raises(CheckpointError, match=f"corrupt {ALIASES_KEY} metadata"):
        read_checkpoint(path)


def test_config_metadata_with_thousands_of_bad_keys_gives_a_short_error(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_checkpoint(torch.nn.Linear(2, 2), TINY, path, component="vae")
    header_length = int.from_bytes(path.read_bytes()[:8], "little")
    header = json.loads(path.read_bytes()[8 : 8 + header_length])
    config = json.loads(header["__metadata__"]["aiprod.config"])
    config.update({f"junk{i}": "x" * 100 for i in range(10_000)})
    header["__metadata__"]["aiprod.config"] = json.dumps(config)
    body = path.read_bytes()[8 + header_length :]
    raw_file(path, json.dumps(header), body)
    path.with_name(path.name + ".sha256").unlink()
    with pytest.raises(CheckpointError) as info:
        inspect_checkpoint(path)
    message = str(info.value)
    assert "is not a valid model config" in message
    assert "and 9980 more" in message
    assert len(message) < 4096
