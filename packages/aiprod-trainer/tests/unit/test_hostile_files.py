"""Files someone else may have written, made hostile: deep nesting, alias bombs, huge lines.

Every reader of the trainer ends in its own clear error naming the file, never a
RecursionError, MemoryError or a message of megabytes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from aiprod_core.errors import AiprodError
from aiprod_trainer.config import TrainConfigError, load_train_config
from aiprod_trainer.data.latent_cache import INDEX_FILE, CacheMeta, LatentCacheError, read_index
from aiprod_trainer.data.manifest import load_manifest
from aiprod_trainer.data.manifest_errors import ManifestError
from aiprod_trainer.training.run_log import read_metrics
from aiprod_trainer.training.state import ResumeError, load_training_state

pytestmark = pytest.mark.fault("files")

DEEP_JSON = "[" * 100_000 + "]" * 100_000
MAX_MESSAGE = 4096


def bounded(error: BaseException, name: str) -> str:
    message = str(error)
    assert name in message
    assert len(message) <= MAX_MESSAGE
    assert isinstance(error, AiprodError)
    return message


def test_deep_state_json_is_a_resume_error(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints" / "step-00000001"
    folder.mkdir(parents=True)
    (folder / "state.json").write_text('{"format": 1, "data": ' + DEEP_JSON + "}")
    module = nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(module.parameters())
    with pytest.raises(ResumeError) as info:
        load_training_state(folder, module=module, optimizer=optimizer, ema=None)
    assert "nested more than" in bounded(info.value, "state.json")


def test_deep_cache_json_is_a_cache_error(tmp_path: Path) -> None:
    (tmp_path / "cache.json").write_text(DEEP_JSON)
    with pytest.raises(LatentCacheError) as info:
        CacheMeta.read(tmp_path / "cache.json")
    assert "nested more than" in bounded(info.value, "cache.json")


def test_deep_index_line_is_a_cache_error(tmp_path: Path) -> None:
    (tmp_path / INDEX_FILE).write_text('{"id": ' + DEEP_JSON + "}\n")
    with pytest.raises(LatentCacheError) as info:
        read_index(tmp_path)
    assert "nested more than" in bounded(info.value, "index.jsonl:1")


def test_deep_manifest_line_is_an_issue_of_that_line(tmp_path: Path) -> None:
    manifest = tmp_path / "train.jsonl"
    manifest.write_text('{"media": "a.mp4", "caption": ' + DEEP_JSON + "}\n")
    with pytest.raises(ManifestError) as info:
        load_manifest(manifest)
    assert "nested more than" in bounded(info.value, "train.jsonl:1")


def test_deep_metrics_line_is_skipped_like_a_torn_one(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"step": 1}\n{"step": ' + DEEP_JSON + '}\n{"step": 2}\n')
    assert read_metrics(metrics) == [{"step": 1}, {"step": 2}]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "defs:\n  a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1]\n"
            + "".join(f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 8)}]\n" for i in range(1, 9))
            + "training:\n  max_steps: *a8\n",
            "expands to more than",
        ),
        ("training:\n  max_steps: &me [*me]\n", "refers to a node that contains it"),
        ("training: " + "[" * 20_000 + "]" * 20_000 + "\n", "nested more than"),
    ],
    ids=["alias-bomb", "self-alias", "deep"],
)
def test_hostile_training_config_is_a_config_error(tmp_path: Path, text: str, problem: str) -> None:
    config = tmp_path / "train.yaml"
    config.write_text(text)
    with pytest.raises(TrainConfigError) as info:
        load_train_config(config, check_paths=False)
    assert problem in bounded(info.value, "train.yaml")
