"""A run killed mid-write leaves hidden temporary files; starting it again deletes its own.

The orphans are made with the real temporary-name helper, where a killed writer would have
left them: unfinished checkpoint folders, a half-written final model and its sidecar, the
run's logs, adapter and validation samples. Files that are not the run's stay.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from aiprod_core.atomic import temporary_sibling
from aiprod_trainer.config import load_train_config
from aiprod_trainer.training.state import list_checkpoints
from aiprod_trainer.training.trainer import Trainer

pytestmark = pytest.mark.integration


def orphan_file(target: Path, size: int, suffix: str = "") -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    path = temporary_sibling(target, suffix)
    path.write_bytes(b"o" * size)
    return path


def orphan_folder(target: Path, sizes: dict[str, int], suffix: str = "") -> Path:
    path = temporary_sibling(target, suffix)
    path.mkdir(parents=True)
    for name, size in sizes.items():
        (path / name).write_bytes(b"o" * size)
    return path


def not_ours(run_dir: Path) -> dict[Path, bytes]:
    """Files in a run folder that the run did not write, some with temporary-looking names."""
    files = {
        run_dir / "notes.md": b"the user's notes",
        temporary_sibling(run_dir / "notes.md"): b"another program's temporary file",
        temporary_sibling(run_dir / "checkpoints" / "best"): b"not a checkpoint name",
        run_dir / "checkpoints" / ".keep": b"",
    }
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


@pytest.mark.fault("interrupted", guards_data=True)
def test_resume_removes_the_orphans_of_the_run_and_nothing_else(
    latent_cache: Path, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config = load_train_config(write_config())
    run_dir = config.run_dir
    Trainer(config).fit(stop_at_step=4)
    checkpoints = run_dir / "checkpoints"
    finished = (checkpoints / "step-00000004" / "model.safetensors").read_bytes()
    capsys.readouterr()
    orphans = {
        orphan_folder(checkpoints / "step-00000008", {"model.safetensors": 700, "rng.bin": 5}): 705,
        orphan_folder(checkpoints / "step-00000004", {"state.json": 30}, ".old"): 30,
        orphan_file(run_dir / "model.safetensors", 1234): 1234,
        orphan_file(run_dir / "model.safetensors.sha256", 80): 80,
        orphan_file(run_dir / "metrics.jsonl", 17): 17,
        orphan_file(run_dir / "adapter" / "adapter_model.safetensors", 64): 64,
        orphan_file(run_dir / "validation" / "step-00000004" / "sample-00.mp4", 9): 9,
    }
    kept = not_ours(run_dir)

    trainer = Trainer(config, resume=True)

    err = capsys.readouterr().err
    for path, size in orphans.items():
        assert not path.exists(), path
        line = f"removed {path}, left by an interrupted write ({size:,} bytes freed)"
        assert err.count(line) == 1, err
    assert err.count("removed ") == len(orphans)
    for path, data in kept.items():
        assert path.read_bytes() == data
    assert [step for step, _ in list_checkpoints(run_dir)] == [4]
    assert (checkpoints / "step-00000004" / "model.safetensors").read_bytes() == finished

    assert trainer.start_step == 4
    result = trainer.fit()
    assert result.completed
    assert result.final_model == run_dir / "model.safetensors"
    hidden = sorted(p for p in run_dir.rglob(".*"))
    assert hidden == sorted(p for p in kept if p.name.startswith("."))


@pytest.mark.fault("interrupted", guards_data=True)
def test_a_rerun_without_checkpoints_removes_the_orphans_too(
    latent_cache: Path, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A run killed while writing its first checkpoint starts again from step 0."""
    config = load_train_config(write_config())
    run_dir = config.run_dir
    partial = orphan_folder(run_dir / "checkpoints" / "step-00000004", {"model.safetensors": 50})
    config_temp = orphan_file(run_dir / "config.json", 12)
    kept = not_ours(run_dir)

    trainer = Trainer(config)

    assert trainer.start_step == 0
    assert not partial.exists()
    assert not config_temp.exists()
    assert all(path.read_bytes() == data for path, data in kept.items())
    err = capsys.readouterr().err
    assert f"removed {partial}, left by an interrupted write (50 bytes freed)" in err
    assert f"removed {config_temp}, left by an interrupted write (12 bytes freed)" in err
